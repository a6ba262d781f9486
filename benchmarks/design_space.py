"""The design-space table of issue 5: trained effective-Hamiltonian models (the ablations), plain
B3LYPG/STO-3G DFT, the STO-3G direct fit and the direct surrogates, side by side against the
B3LYPG/def2-TZVP labels, on the qm7like test split and on ``data/larger`` (transfer; never used for
training, early stopping or tuning).

    OMP_NUM_THREADS=1 python benchmarks/design_space.py runs/qm7like-eig runs/qm7like-eig-dip \\
        --direct models/organic-sto3g --surrogate

Each positional argument is a trainer output directory (``<output>/model``), a model directory or a
shipped model name. Only structures carrying ``mo_energy_large`` enter (the def2-TZVP labels are
computed in chunks: every table states N). Metrics: ``mlhcalc.training.metrics`` (REFERENCE.md).
Polarizabilities are also split into planar and non-planar molecules (a planar molecule has no
out-of-plane virtual orbitals in a minimal basis, so its out-of-plane response is capped).
Prints markdown; ``--output FILE`` also writes it there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlhcalc.structure import is_planar  # noqa: E402

torch.set_num_threads(1)

COLUMNS = (
    ("n_structures", "N", 0),
    ("occupied_mae_ev", "occ. MO (eV)", 3),
    ("valence_mae_ev", "valence (eV)", 3),
    ("homo_mae_ev", "HOMO (eV)", 3),
    ("lumo_mae_ev", "LUMO (eV)", 3),
    ("gap_mae_ev", "gap (eV)", 3),
    ("dipole_mae_debye", "dipole (D)", 3),
    ("alpha_n_structures", "N α", 0),
    ("alpha_mae_percent", "α (%)", 1),
    ("alpha_planar_percent", "α planar (%)", 1),
    ("alpha_nonplanar_percent", "α non-planar (%)", 1),
)


def labelled(path: str | Path, split: str | None) -> list:
    """Structures of ``path`` with def2-TZVP MO energies (and in ``split``, if given)."""
    from mlhcalc.reference import read

    if not Path(path).exists():
        return []
    return [a for a in read(path) if "mo_energy_large" in a.info and (split is None or a.info.get("split") == split)]


def resolve_model(spec: str):
    """(name, HamiltonianModel, run directory or None) for a run dir, a model dir or a shipped name."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.registry import find_model

    path = Path(spec)
    if (path / "model" / "model.json").exists():
        return path.name, HamiltonianModel.load(path / "model"), path
    if (path / "model.json").exists():
        return path.name, HamiltonianModel.load(path), None
    return spec, HamiltonianModel.load(find_model(spec)), None


def alpha_split_metrics(score_fn, atoms_list) -> dict[str, float]:
    """α MAE (%) on the planar and the non-planar molecules of ``atoms_list`` (those with a CPKS α);
    ``score_fn(indices)`` returns the metrics of that subset of ``atoms_list``."""
    with_alpha = [k for k, a in enumerate(atoms_list) if "polarizability_large" in a.info]
    out: dict[str, float] = {}
    for key, keep in (("alpha_planar_percent", True), ("alpha_nonplanar_percent", False)):
        part = [k for k in with_alpha if is_planar(atoms_list[k]) == keep]
        if part:
            out[key] = score_fn(part).get("alpha_mae_percent", float("nan"))
    return out


def model_row(model, atoms_list) -> dict[str, float]:
    """All metrics of ``model``; the planar / non-planar α subsets are scored from the same predictions."""
    from mlhcalc.training.dataset import model_samples
    from mlhcalc.training.evaluation import Predictions, predict_samples, score_samples

    block_model = model.block_model
    samples = model_samples(block_model, atoms_list)
    predictions = predict_samples(block_model, samples)

    def score_subset(indices):
        part = Predictions(
            [predictions.mo_energy[k] for k in indices],
            predictions.dipole[indices],
            predictions.polarizability[indices],
        )
        return score_samples(part, [samples[k] for k in indices])

    result = score_samples(predictions, samples)
    result.update(alpha_split_metrics(score_subset, atoms_list))
    return result


def baseline_row(atoms_list) -> dict[str, float]:
    from mlhcalc.training.evaluation import baseline_metrics

    result = baseline_metrics(atoms_list)
    result.update(alpha_split_metrics(lambda indices: baseline_metrics([atoms_list[k] for k in indices]), atoms_list))
    return result


def surrogate_rows(train, val, sets: dict[str, list]) -> dict[str, dict[str, float]]:
    """Direct dipole (kind 'both') and α surrogates fitted on train (reg. on val), scored per set."""
    from mlhcalc.features import FeatureHypers
    from mlhcalc.training import metrics
    from mlhcalc.training.surrogate import SPECIES, DipoleSurrogate, PolarizabilitySurrogate

    hypers = FeatureHypers(species=SPECIES)

    def with_key(atoms_list, key):
        keep = [a for a in atoms_list if key in a.info]
        return keep, np.array([np.asarray(a.info[key], dtype=float) for a in keep])

    (tr, tr_mu), (va, va_mu) = with_key(train, "dipole_large"), with_key(val, "dipole_large")
    mu_model = DipoleSurrogate(kind="both", hypers=hypers).fit(tr, tr_mu, va, va_mu)
    (tr_a, tr_alpha), (va_a, va_alpha) = with_key(train, "polarizability_large"), with_key(val, "polarizability_large")
    alpha_model = None
    if len(tr_a) >= 5 and len(va_a):
        alpha_model = PolarizabilitySurrogate(hypers=hypers).fit(tr_a, tr_alpha, va_a, va_alpha)
    rows = {}
    for name, atoms_list in sets.items():
        row: dict[str, float] = {}
        structures, target = with_key(atoms_list, "dipole_large")
        row["n_structures"] = row["dipole_n_structures"] = len(structures)
        if structures:
            row["dipole_mae_debye"] = metrics.dipole_mae_debye(mu_model.predict(structures), target)
        structures, target = with_key(atoms_list, "polarizability_large")
        row["alpha_n_structures"] = len(structures)
        if alpha_model is not None and structures:
            row["alpha_mae_percent"] = metrics.polarizability_metrics(alpha_model.predict(structures), target)[
                "mae_percent"
            ]
            for key, keep in (("alpha_planar_percent", True), ("alpha_nonplanar_percent", False)):
                mask = np.array([is_planar(a) == keep for a in structures])
                if mask.any():
                    row[key] = metrics.polarizability_metrics(
                        alpha_model.predict([s for s, m in zip(structures, mask) if m]), target[mask]
                    )["mae_percent"]
        rows[name] = row
    return rows


def run_summary(run_dir: Path | None) -> str:
    """Training cost from a trainer run's ``log.csv``: epochs, wall time, median ms/structure/step."""
    if run_dir is None or not (run_dir / "log.csv").exists():
        return ""
    import csv

    with open(run_dir / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    steps = [float(r["ms_per_structure_step"]) for r in rows if r.get("ms_per_structure_step")]
    wall = float(rows[-1]["wall_seconds"]) if rows else 0.0
    n_train = ""
    config = run_dir / "config.json"
    if config.exists():
        targets = json.loads(config.read_text()).get("targets", {})
        n_train = ", ".join(k for k, v in targets.items() if isinstance(v, dict) and v.get("weight", 0) > 0)
    median = f"{np.median(steps):.1f}" if steps else "–"
    return f"{run_dir.name}: terms [{n_train}], {len(rows) - 1} epochs, {wall / 60:.1f} min, {median} ms/structure/step"


def fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{int(value)}" if digits == 0 else f"{value:.{digits}f}"


def table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows:
        cells = [fmt(row.get(key), digits) for key, _, digits in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="trainer run directories, model directories or shipped names")
    parser.add_argument("--labels", default="data/qm7like/labels.d")
    parser.add_argument("--larger", default="data/larger/labels.d")
    parser.add_argument("--split", default="test")
    parser.add_argument("--direct", default=None, help="the STO-3G direct-fit model (e.g. models/organic-sto3g)")
    parser.add_argument("--surrogate", action="store_true", help="fit and score the direct dipole/α surrogates")
    parser.add_argument("--output", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)

    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        print(f"command: `OMP_NUM_THREADS=1 python benchmarks/design_space.py {shlex.join(argv or sys.argv[1:])}`\n")
        sets = {args.split: labelled(args.labels, args.split), "larger": labelled(args.larger, None)}
        print("structures with def2-TZVP labels: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + "\n")
        rows: dict[str, list] = {name: [] for name in sets}
        for name, atoms_list in sets.items():
            if atoms_list:
                rows[name].append(("plain B3LYPG/STO-3G DFT", baseline_row(atoms_list)))
        specs = ([args.direct] if args.direct else []) + list(args.models)
        summaries = []
        for spec in specs:
            label, model, run_dir = resolve_model(spec)
            if spec == args.direct:
                label = f"{label} (direct fit to STO-3G F)"
            summaries.append(run_summary(run_dir))
            for name, atoms_list in sets.items():
                if atoms_list:
                    rows[name].append((label, model_row(model, atoms_list)))
        if args.surrogate:
            train = labelled(args.labels, "train")
            val = labelled(args.labels, "val")
            for name, row in surrogate_rows(train, val, {k: v for k, v in sets.items() if v}).items():
                rows[name].append(("direct surrogate (dipole 'both', α λ0⊕λ2)", row))
        for name, lines in rows.items():
            if not lines:
                print(f"### {name}: no def2-TZVP labels yet, skipped\n")
                continue
            print(f"### {name} (against B3LYPG/def2-TZVP)\n")
            print("\n".join(table(lines)))
            print()
        summaries = [s for s in summaries if s]
        if summaries:
            print("training: " + "; ".join(summaries) + "\n")
        print(f"run time {time.perf_counter() - start:.0f} s")
    text = out.getvalue()
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
