"""Polarizability of an SCC model with and without the charges' response (finite field), against def2-TZVP.

    OMP_NUM_THREADS=1 python benchmarks/alpha_coupled.py [MODEL] [--sets data/qm7like/labels.h5,data/larger/labels.h5]

The shipped α of a model is the non-self-consistent (sum-over-states) response of its final
Hamiltonian: the Mulliken charges stay frozen in the field. For an SCC model (electrostatics="scc")
the charges could also respond: H(E) = H_ML + E·r + H_es(q*(E)), q* re-solved in the field. Both are
evaluated here by central differences of the dipole (field 1e-4 a.u.) with the same code, so the
frozen-charge column reproduces the model's SOS α (a check of the method) and the other shows what
charge coupling would change. Prints, per split with α labels, the α metric of ../shared/REFERENCE.md
(MAE over components / mean isotropic reference α) and the mean isotropic error.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from mlhcalc.hamiltonian.electrostatics import gamma_matrix, solve_scc
from mlhcalc.model import HamiltonianModel
from mlhcalc.reference import read
from mlhcalc.registry import find_model
from mlhcalc.training import direct

FIELD = 1e-4  # a.u.


def polarizabilities(model, atoms) -> tuple[np.ndarray, np.ndarray]:
    """(frozen-charge α, charge-coupled α), (3, 3) a.u., by central differences of the dipole."""
    ref = direct.Reference.from_atoms(atoms, model.basis)
    (h_model,) = direct.predict_focks(model.block_model, [atoms])
    scc = (gamma_matrix(ref.numbers, ref.positions), ref.ao_atom, ref.numbers, ref.nocc)
    h_final, charges, _ = solve_scc(h_model, ref.overlap, *scc, tolerance=1e-11)

    def dipole(hamiltonian):
        return direct.fock_observables(ref, hamiltonian)["dipole"]

    frozen, coupled = np.zeros((3, 3)), np.zeros((3, 3))
    for j in range(3):
        field = FIELD * ref.dipole_ints[j]  # electron energy in a uniform field E along j: +E r_j
        coupled_h = [
            solve_scc(h_model + s * field, ref.overlap, *scc, charges=charges, tolerance=1e-11)[0] for s in (1, -1)
        ]
        frozen[:, j] = (dipole(h_final + field) - dipole(h_final - field)) / (2 * FIELD)
        coupled[:, j] = (dipole(coupled_h[0]) - dipole(coupled_h[1])) / (2 * FIELD)
    return frozen, coupled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="organic")
    parser.add_argument("--sets", default="data/qm7like/labels.h5,data/larger/labels.h5")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_default_dtype(torch.float64)
    model = HamiltonianModel.load(find_model(args.model))
    if model.block_model.electrostatics != "scc":
        raise SystemExit(f"{args.model} has no self-consistent charges: its α has no charge response to compare")
    rows: dict[str, list] = {}
    for path in args.sets.split(","):
        for atoms in read(path):
            if "polarizability_large" in atoms.info:
                split = str(atoms.info.get("split", "larger"))
                rows.setdefault(split, []).append((atoms.info["polarizability_large"], *polarizabilities(model, atoms)))
    print(f"{args.model}: α against def2-TZVP CPKS (frozen = the shipped SOS α; coupled = charges respond)\n")
    print("| split | molecules | frozen α % | coupled α % | frozen iso err | coupled iso err | ref iso (a.u.) |")
    print("|---|---|---|---|---|---|---|")
    for split in ("test", "val", "train", "larger"):
        if split not in rows:
            continue
        ref, frozen, coupled = (np.array(x) for x in zip(*rows[split]))
        iso = np.trace(ref, axis1=1, axis2=2).mean() / 3
        cells = [f"{np.abs(p - ref).mean() / iso * 100:.1f}" for p in (frozen, coupled)]
        cells += [f"{np.trace(p - ref, axis1=1, axis2=2).mean() / 3:+.2f}" for p in (frozen, coupled)]
        print(f"| {split} | {len(ref)} | " + " | ".join(cells) + f" | {iso:.1f} |")


if __name__ == "__main__":
    main()
