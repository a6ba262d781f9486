"""A periodic model against every labelled silicon cell of one split, one row per cell.

Reads the committed PBE/gth-dzvp labels of ``data/silicon/{primitive,cubic}_labels.d`` and prints, for
each cell of ``--split`` that has its ``large`` label: the model's window MAE (valence bands and
conduction states up to CBM + 1.5 eV, eV, no alignment) and band-gap error through the ASE calculator on
the label's own mesh, the same for plain PBE/gth-szv DFT where the cell has its ``minimal`` label, and
how the reference was occupied. The model card's test row is from the cells labelled when the model was
trained; this table follows the labels as more of them arrive.

    python benchmarks/silicon_held_out.py silicon --split test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LABELS = ("data/silicon/primitive_labels.d", "data/silicon/cubic_labels.d")


def main() -> None:
    from silicon_transfer import label_mesh_bands

    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.reference.compute import AUFBAU_OCCUPATION, FIXED_OCCUPATION_PREFIX
    from mlhcalc.training import metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="silicon", help="model name or directory")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    args = parser.parse_args()

    model = HamiltonianModel.load(args.model)  # loaded once, for every cell
    cells = [
        a for labels in LABELS for a in read(REPO / labels, provenance=True)
        if a.info.get("split") == args.split and "bands_large" in a.info
    ]  # fmt: skip
    if not cells:
        raise SystemExit(f"no labelled {args.split} cells with a gth-dzvp label")
    print(f"{args.model} on {len(cells)} {args.split} cells against PBE/gth-dzvp (eV)\n")
    header = ("cell", "atoms", "reference gap", "occupation", "model window", "model gap error", "gth-szv window",
              "gth-szv gap error")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|---|---|")
    predicted, reference, nocc, plain = [], [], [], []
    for cell in cells:
        pred = label_mesh_bands(model, cell)[0]
        ref = np.sort(cell.info["bands_large"], axis=1)[:, : pred.shape[1]]
        n = int(cell.info["nocc"])
        predicted.append(pred)
        reference.append(ref)
        nocc.append(n)
        occupation = cell.info["provenance"]["large"].get("occupation", AUFBAU_OCCUPATION)
        row = [
            cell.info.get("name", "?"), str(len(cell)), f"{metrics.band_gap(ref, n)[0] * metrics.HARTREE_TO_EV:+.3f}",
            "fixed per k" if occupation.startswith(FIXED_OCCUPATION_PREFIX) else "aufbau",
            f"{metrics.band_window_mae_ev([pred], [ref], [n]):.3f}", f"{metrics.band_gap_error_ev(pred, ref, n):.3f}",
        ]  # fmt: skip
        if "bands_minimal" in cell.info:
            szv = np.asarray(cell.info["bands_minimal"])
            plain.append((pred, szv, ref, n))
            row += [
                f"{metrics.band_window_mae_ev([szv], [ref], [n]):.3f}", f"{metrics.band_gap_error_ev(szv, ref, n):.3f}"
            ]  # fmt: skip
        else:
            row += ["", ""]
        print("| " + " | ".join(row) + " |")
    scores = metrics.band_metrics(predicted, reference, nocc)
    worst = max(metrics.band_gap_error_ev(p, r, n) for p, r, n in zip(predicted, reference, nocc))
    print(
        f"\nmodel, all {len(cells)} cells: window MAE {scores['window_mae_ev']:.3f}, "
        f"gap MAE {scores['gap_mae_ev']:.3f}, largest gap error {worst:.3f}"
    )
    if plain:
        ours, szv, ref, n = zip(*plain)
        print(
            f"on the {len(plain)} with a gth-szv label: model window MAE "
            f"{metrics.band_window_mae_ev(ours, ref, n):.3f}, "
            f"plain gth-szv {metrics.band_window_mae_ev(szv, ref, n):.3f}"
        )


if __name__ == "__main__":
    main()
