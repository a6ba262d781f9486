"""Where the time of one def2-TZVP reference label goes, and whether the initial guess changes it.

    OMP_NUM_THREADS=1 python benchmarks/label_cost.py [--index 10]

Runs the project's large-basis SCF (B3LYPG/def2-TZVP, density fitting, conv_tol 1e-10; REFERENCE.md)
on one structure of data/qm7like with PySCF's initial guesses minao (the default, used for the
labels), sap, huckel and the projected converged STO-3G density, and prints CPU time, SCF cycles,
the share of the exchange–correlation quadrature (nr_rks) and the largest MO-energy difference to
the minao run (the guess only changes where inside conv_tol the SCF stops). Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from pyscf import dft, scf  # noqa: E402

from mlhcalc.reference.levels import MoleculeLevel  # noqa: E402
from mlhcalc.structure import to_mole  # noqa: E402


def run(atoms, guess: str, level: MoleculeLevel) -> dict:
    mol = to_mole(atoms, level.basis_large, 0)
    mf = dft.RKS(mol, xc=level.xc).density_fit(auxbasis=level.auxbasis_large)
    mf.conv_tol, mf.verbose = level.conv_tol_large, 0
    xc_seconds = [0.0]
    nr_rks = mf._numint.nr_rks

    def timed_nr_rks(*args, **kwargs):
        start = time.process_time()
        out = nr_rks(*args, **kwargs)
        xc_seconds[0] += time.process_time() - start
        return out

    mf._numint.nr_rks = timed_nr_rks
    start = time.process_time()
    if guess == "projected STO-3G":
        small = to_mole(atoms, level.basis_minimal, 0)
        mf0 = dft.RKS(small, xc=level.xc)
        mf0.verbose = 0
        mf0.kernel()
        mf.kernel(dm0=scf.addons.project_dm_nr2nr(small, mf0.make_rdm1(), mol))
    else:
        mf.init_guess = guess
        mf.kernel()
    return {"cpu": time.process_time() - start, "cycles": mf.cycles, "xc": xc_seconds[0], "mo": mf.mo_energy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default="data/qm7like/structures.extxyz")
    parser.add_argument("--index", type=int, default=10)
    args = parser.parse_args()
    atoms = ase.io.read(args.input, args.index)
    level = MoleculeLevel()
    print(f"structure {args.index} of {args.input}: {atoms.get_chemical_formula()} ({len(atoms)} atoms)\n")
    print("| initial guess | CPU (s) | SCF cycles | XC quadrature share | max |Δε| vs minao (Ha) |")
    print("|---|---|---|---|---|")
    reference = None
    for guess in ("minao", "sap", "huckel", "projected STO-3G"):
        result = run(atoms, guess, level)
        reference = result["mo"] if reference is None else reference
        delta = float(np.abs(result["mo"] - reference).max())
        print(
            f"| {guess} | {result['cpu']:.1f} | {result['cycles']} | {result['xc'] / result['cpu']:.0%} | {delta:.1e} |"
        )


if __name__ == "__main__":
    main()
