"""Per molecule: the model's HOMO–LUMO gap and isotropic polarizability against B3LYPG/def2-TZVP, on
the qm7like test molecules that carry a CPKS α. Shows how a polarizability term buys α by closing
the gap of the effective minimal-basis Hamiltonian (models/organic/README.md, 'Ablations').

    OMP_NUM_THREADS=1 python benchmarks/alpha_gap.py organic runs/qm7like-eig-dip-pol \\
        runs/experiments/eig-occupied-dip-pol

Each argument is a trainer output directory, a model directory or a shipped model name (as in
``benchmarks/design_space.py``). Prints one markdown table per model: gap (eV) and isotropic α
(a.u.) of the model and of the reference, per molecule, and the median gap change; then, for the
planar molecules, α resolved along the plane normal n (nᵀαn) and in the plane (the mean of the two
in-plane principal values): the out-of-plane response a minimal basis cannot carry (REFERENCE.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from design_space import labelled, resolve_model  # noqa: E402

from mlhcalc.structure import is_planar, plane_normal  # noqa: E402
from mlhcalc.units import HARTREE_TO_EV  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def plane_components(atoms, alpha: np.ndarray) -> tuple[float, float]:
    """(out-of-plane nᵀαn, mean in-plane value (tr α − nᵀαn)/2) of ``alpha`` (n: the plane normal)."""
    normal = plane_normal(atoms)
    across = float(normal @ alpha @ normal)
    return across, (float(np.trace(alpha)) - across) / 2.0


def rows(spec: str, molecules: list) -> tuple[str, list[list], float, list[list]]:
    from mlhcalc.training.dataset import model_samples
    from mlhcalc.training.evaluation import predict_samples

    name, model, _ = resolve_model(spec)
    block_model = model.block_model
    predictions = predict_samples(block_model, model_samples(block_model, molecules))
    table, shifts, planar = [], [], []
    for k, atoms in enumerate(molecules):
        nocc = int(atoms.info["nocc"])  # present with every def2-TZVP label (training.dataset.has_targets)
        levels, reference = np.asarray(predictions.mo_energy[k]), np.asarray(atoms.info["mo_energy_large"])
        gap = HARTREE_TO_EV * (levels[nocc] - levels[nocc - 1])
        gap_ref = HARTREE_TO_EV * (reference[nocc] - reference[nocc - 1])
        tensor, tensor_ref = np.asarray(predictions.polarizability[k]), np.asarray(atoms.info["polarizability_large"])
        alpha, alpha_ref = np.trace(tensor) / 3.0, np.trace(tensor_ref) / 3.0
        shifts.append(gap - gap_ref)
        label = atoms.info.get("smiles") or atoms.info.get("name", str(k))
        table.append([label, f"{gap:.2f}", f"{gap_ref:.2f}", f"{alpha:.1f}", f"{alpha_ref:.1f}"])
        if is_planar(atoms) and len(atoms) > 2:
            out_model, in_model = plane_components(atoms, tensor)
            out_ref, in_ref = plane_components(atoms, tensor_ref)
            planar.append([label, f"{out_model:.1f}", f"{out_ref:.1f}", f"{in_model:.1f}", f"{in_ref:.1f}"])
    return name, table, float(np.median(shifts)), planar


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="run directories, model directories or shipped names")
    parser.add_argument("--labels", default=str(REPO / "data" / "qm7like" / "labels.d"))
    args = parser.parse_args(argv)
    molecules = [a for a in labelled(args.labels, "test") if "polarizability_large" in a.info]
    print(f"{len(molecules)} test molecules with a def2-TZVP CPKS α\n")
    for spec in args.models:
        name, table, median_shift, planar = rows(spec, molecules)
        print(f"### {name} (median gap error {median_shift:+.2f} eV)\n")
        print("| molecule | gap (eV) | reference gap (eV) | iso α (a.u.) | reference iso α (a.u.) |")
        print("|---|---|---|---|---|")
        for row in table:
            print("| " + " | ".join(row) + " |")
        print(f"\n{name}, planar molecules (α in a.u., n = plane normal):\n")
        print("| molecule | nᵀαn | reference nᵀαn | in-plane α | reference in-plane α |")
        print("|---|---|---|---|---|")
        for row in planar:
            print("| " + " | ".join(row) + " |")
        print()


if __name__ == "__main__":
    main()
