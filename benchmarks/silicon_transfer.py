"""Transfer of a periodic model to the rattled 64-atom silicon supercell at Γ (issue 7, item 3).

The model was trained on two-atom cells on 4×4×4 meshes; the 64-atom cell (2×2×2 conventional cubic
cells, every atom rattled by σ = 0.05 Å) at Γ alone folds the same 4×4×4 primitive mesh, but no
translation symmetry is left and every atom sees a different environment. Reference: its PBE/gth-dzvp
label in ``data/silicon/supercell64_labels.d`` (``mlhcalc label data/silicon/supercell64.extxyz ...
--level silicon --stages large --xc-grid uniform``: the labeller's KRKS/GDF at Γ, XC on the uniform
grid because the periodic Becke partition is out of reach for 64 atoms, docs/data.md). Prints one
markdown table, the band metrics of ``mlhcalc.training.metrics.band_metrics`` (valence, window =
valence + conduction to CBM_ref + 1.5 eV, gap), for each model given, and writes them as JSON with
``--json``.

    OMP_NUM_THREADS=1 python benchmarks/silicon_transfer.py silicon silicon-szv --json models/silicon/transfer64.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mlhcalc.model import HamiltonianModel

REPO = Path(__file__).resolve().parent.parent
LABELS = REPO / "data/silicon/supercell64_labels.d"


def reference_cells(labels: Path = LABELS) -> list:
    """The labelled supercells (ASE Atoms with ``info['bands_large']``, hartree, shape (1, n_bands))."""
    from mlhcalc.reference import read as read_labels

    cells = [a for a in read_labels(labels) if "bands_large" in a.info]
    if not cells:
        raise SystemExit(
            f"no gth-dzvp labels in {labels}: run `mlhcalc label data/silicon/supercell64.extxyz "
            "-o data/silicon/supercell64_labels.h5 --level silicon --stages large --xc-grid uniform` first "
            "(docs/data.md)"
        )
    return cells


def label_mesh_bands(model: str | HamiltonianModel, atoms) -> tuple[np.ndarray, float]:
    """The model's eigenvalues on the label's k-points (hartree, shape (n_k, n_bands); Γ alone for the
    64-atom cell) from the ASE calculator, and the wall time of the calculator, model loading included (s)."""
    from silicon_plots import model_bands_ev

    from mlhcalc.training.metrics import HARTREE_TO_EV

    kpts_frac = np.atleast_2d(np.asarray(atoms.info.get("kpts_frac", np.zeros((1, 3))), dtype=float))
    started = time.perf_counter()
    bands = model_bands_ev(model, atoms.copy(), kpts_frac)
    return np.asarray(bands) / HARTREE_TO_EV, time.perf_counter() - started


def transfer_metrics(model: str, cells: list, window_ev: float = 1.5) -> dict:
    """Band metrics (eV) of ``model`` on ``cells`` against their gth-dzvp labels, with prediction times."""
    from mlhcalc.training.metrics import HARTREE_TO_EV, band_metrics

    predictions, references, n_valence, seconds = [], [], [], []
    for atoms in cells:
        bands, elapsed = label_mesh_bands(model, atoms)
        reference = np.sort(np.atleast_2d(np.asarray(atoms.info["bands_large"])), axis=1)
        predictions.append(np.sort(bands.reshape(reference.shape[0], -1), axis=1))
        references.append(reference[:, : predictions[-1].shape[1]])
        n_valence.append(int(atoms.info["nocc"]))
        seconds.append(elapsed)
    result = band_metrics(predictions, references, n_valence, window_ev)
    result["predict_seconds"] = float(np.mean(seconds))
    # the lowest conduction states of the first cell: error and position above the CBM (eV)
    lowest = slice(n_valence[0], n_valence[0] + 4)
    pred, ref = predictions[0][0] * HARTREE_TO_EV, references[0][0] * HARTREE_TO_EV
    result["lowest_conduction_error_ev"] = (pred[lowest] - ref[lowest]).tolist()
    result["lowest_conduction_above_cbm_ev"] = (pred[lowest] - pred[n_valence[0]]).tolist()
    result["lowest_conduction_above_cbm_ref_ev"] = (ref[lowest] - ref[n_valence[0]]).tolist()
    result["cells"] = [a.info.get("name", "") for a in cells]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or directories (e.g. silicon silicon-szv)")
    parser.add_argument(
        "--labels",
        default=str(LABELS),
        help="labelled cells, scored on their own label meshes (e.g. data/silicon/cubic_labels.d)",
    )
    parser.add_argument("--window", type=float, default=1.5, help="conduction window above CBM_ref (eV)")
    parser.add_argument("--json", help="write the metrics of every model to this file")
    args = parser.parse_args()

    cells = reference_cells(Path(args.labels))
    results = {model: transfer_metrics(model, cells, args.window) for model in args.models}
    names = ", ".join(results[args.models[0]]["cells"])
    print(f"{len(cells)} cell(s) ({names}) on their label k-points against PBE/gth-dzvp; errors in eV, no alignment")
    print(
        "| model | valence MAE | window MAE | conduction (≤ CBM+1.5) MAE | gap error | VBM error | CBM error "
        "| calculator s (incl. load) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model, r in results.items():
        print(
            f"| {model} | {r['valence_mae_ev']:.3f} | {r['window_mae_ev']:.3f} | {r['conduction_window_mae_ev']:.3f} "
            f"| {r['gap_mae_ev']:.3f} | {r['vbm_mae_ev']:.3f} | {r['cbm_mae_ev']:.3f} | {r['predict_seconds']:.1f} |"
        )
    for model, r in results.items():
        print(
            f"{model}, lowest 4 conduction states (first cell, first k-point): error "
            + ", ".join(f"{e:+.3f}" for e in r["lowest_conduction_error_ev"])
            + " eV; above the CBM "
            + ", ".join(f"{e:.3f}" for e in r["lowest_conduction_above_cbm_ev"])
            + " eV (reference "
            + ", ".join(f"{e:.3f}" for e in r["lowest_conduction_above_cbm_ref_ev"])
            + ")"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
