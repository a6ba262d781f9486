"""Born effective charges (dipole derivatives) of shipped molecular models against B3LYPG/STO-3G.

The models' Born charges come from autodiff through the features, the model H and the qm layer
(`MLHamiltonian.get_born_effective_charges`); the reference from central differences (step 1e-3 Å)
of the B3LYPG/STO-3G SCF dipole (PySCF, the level of the direct fits' targets). Small molecules at
ASE's geometries (`ase.build.molecule`); the table gives the MAE over all 9 components of every
atom, in e, and the largest component error.

    OMP_NUM_THREADS=1 python benchmarks/born_charges.py organic organic-v1 organic-sto3g-scc organic-sto3g

A model's dipole can be accurate at the training geometries while its slope is not: this measures
the slope, which IR intensities use. STO-3G is the direct fits' own level; the trained models target
def2-TZVP dipoles, so for them it is a plausibility check, not their reference.
"""

from __future__ import annotations

import argparse
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.units import Bohr  # noqa: E402

MOLECULES = ("H2O", "NH3", "H2CO", "CH3OH", "HCN")
STEP = 1e-3  # Å


def reference_born(atoms) -> np.ndarray:
    """[atom, i, j] = dμ_i/dR_aj (e) of B3LYPG/STO-3G by central differences."""
    from pyscf import dft

    from mlhcalc.structure import to_mole

    def dipole(moved):
        mf = dft.RKS(to_mole(moved, "sto-3g"))
        mf.xc, mf.verbose, mf.conv_tol = "b3lypg", 0, 1e-11
        mf.kernel()
        return mf.dip_moment(unit="AU", verbose=0) * Bohr  # e·Å

    born = np.zeros((len(atoms), 3, 3))
    for a in range(len(atoms)):
        for j in range(3):
            values = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[a, j] += sign * STEP
                values.append(dipole(moved))
            born[a, :, j] = (values[0] - values[1]) / (2 * STEP)
    return born


def main(argv=None) -> None:
    from mlhcalc import MLHamiltonian

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or directories")
    args = parser.parse_args(argv)
    references = {name: reference_born(molecule(name)) for name in MOLECULES}
    header = ["model", *MOLECULES, "all: MAE (e)", "all: max |error| (e)"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for model in args.models:
        errors = []
        row = [model]
        for name in MOLECULES:
            atoms = molecule(name)
            atoms.calc = MLHamiltonian(model)
            error = atoms.calc.get_born_effective_charges(atoms) - references[name]
            errors.append(error.ravel())
            row.append(f"{np.abs(error).mean():.3f}")
        every = np.concatenate(errors)
        row += [f"{np.abs(every).mean():.3f}", f"{np.abs(every).max():.3f}"]
        print("| " + " | ".join(row) + " |")
    scale = np.concatenate([r.ravel() for r in references.values()])
    print(f"\nreference (B3LYPG/STO-3G): mean |Z*| component {np.abs(scale).mean():.3f} e; MAE per molecule in e")


if __name__ == "__main__":
    main()
