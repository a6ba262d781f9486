"""Direct surrogates (dipole, polarizability straight from structure): fit on train, choose the
regularisation on val, report on test, with the metrics of REFERENCE.md (mlhcalc.training.metrics).
Reproduces every number of docs/surrogate.md.

    OMP_NUM_THREADS=1 python benchmarks/surrogate.py                         # large if labelled, else minimal
    OMP_NUM_THREADS=1 python benchmarks/surrogate.py --target-level minimal  # STO-3G labels (dipole_minimal, ...)
    OMP_NUM_THREADS=1 python benchmarks/surrogate.py --target-level large    # def2-TZVP labels
    OMP_NUM_THREADS=1 python benchmarks/surrogate.py --learning-curve        # + fits on 1/4, 1/2 of train

Targets are ``dipole_<level>`` (e·bohr, about ``atoms.info['dipole_origin']``) and
``polarizability_<level>`` (a.u.) from ``mlhcalc.reference.read(--labels)``, splits from
``atoms.info['split']``; every structure carrying the key is used (the polarizability is labelled on
a subset). Features: ``FeatureHypers(species=(1, 6, 7, 8))`` (the Hamiltonian model's defaults).
If ``--larger`` exists, the qm7like-trained models are also scored on it (transfer). Deterministic:
seeded features, closed-form ridge, one thread. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlhcalc.features import EquivariantFeatures, FeatureHypers  # noqa: E402
from mlhcalc.structure import is_planar  # noqa: E402
from mlhcalc.training import metrics  # noqa: E402
from mlhcalc.training.surrogate import (  # noqa: E402
    SPECIES,
    DipoleSurrogate,
    PolarizabilitySurrogate,
    structure_features,
)

torch.set_num_threads(1)
KINDS = ("vector", "charges", "both")


def load(path: str | Path) -> list:
    from mlhcalc.reference import read

    return list(read(path))


def resolve_level(structures, level: str) -> str:
    if level != "auto":
        return level
    return "large" if any("dipole_large" in atoms.info for atoms in structures) else "minimal"


def subset(structures, features, key, split=None):
    rows = [
        i
        for i, atoms in enumerate(structures)
        if key in atoms.info and (split is None or atoms.info.get("split") == split)
    ]
    return (
        [structures[i] for i in rows],
        [features[i] for i in rows],
        np.array([np.asarray(structures[i].info[key], dtype=float) for i in rows]),
    )


def fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def dipole_rows(models, data, name, structures, reference_key=None):
    """Markdown rows: one per model kind (+ zero model, + the STO-3G labels if ``reference_key``)."""
    atoms_list, feats, target = data
    rows = []
    for kind, model in models.items():
        rows.append(
            f"| {name} | {kind} | {len(atoms_list)} | {fmt(metrics.dipole_mae_debye(model.predict(feats), target))} |"
        )
    rows.append(f"| {name} | predict 0 | {len(atoms_list)} | {fmt(metrics.dipole_mae_debye(0 * target, target))} |")
    if reference_key:
        has = [i for i, atoms in enumerate(atoms_list) if reference_key in atoms.info]
        if has:
            ref = np.array([atoms_list[i].info[reference_key] for i in has])
            rows.append(
                f"| {name} | plain STO-3G DFT | {len(has)} | {fmt(metrics.dipole_mae_debye(ref, target[has]))} |"
            )
    return rows


def alpha_rows(model, data, name, reference_key=None):
    atoms_list, feats, target = data
    rows = []
    if not len(atoms_list):
        return rows
    pred = model.predict(feats)
    planar = np.array([is_planar(atoms) for atoms in atoms_list])

    def row(label, p, t, count):
        m = metrics.polarizability_metrics(p, t)
        return (
            f"| {name} | {label} | {count} | {fmt(m['mae_au'])} | {fmt(m['mae_percent'], 2)} | "
            f"{fmt(m['isotropic_mae_au'])} | {fmt(m['isotropic_mae_percent'], 2)} | {fmt(m['anisotropic_mae_au'])} | "
            f"{fmt(m['anisotropy_mae_au'])} | {fmt(m['mean_isotropic_ref_au'], 2)} |"
        )

    rows.append(row("surrogate", pred, target, len(target)))
    for label, mask in (("surrogate, planar", planar), ("surrogate, non-planar", ~planar)):
        if mask.any():
            rows.append(row(label, pred[mask], target[mask], int(mask.sum())))
    if reference_key:
        has = [i for i, atoms in enumerate(atoms_list) if reference_key in atoms.info]
        if has:
            ref = np.array([atoms_list[i].info[reference_key] for i in has])
            rows.append(row("plain STO-3G DFT", ref, target[has], len(has)))
    return rows


DIPOLE_HEADER = "| set | model | structures | mean \\|Δμ\\| (D) |\n|---|---|---|---|"
ALPHA_HEADER = (
    "| set | model | structures | MAE (a.u.) | MAE / mean iso (%) | iso MAE (a.u.) | iso MAE (%) "
    "| aniso-part MAE (a.u.) | anisotropy γ MAE (a.u.) | mean iso ref (a.u.) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default="data/qm7like/labels.d", help="qm7like labels (mlhcalc label output)")
    parser.add_argument("--larger", default="data/larger/labels.d", help="transfer-set labels (skipped if absent)")
    parser.add_argument("--target-level", choices=("auto", "large", "minimal"), default="auto")
    parser.add_argument("--penalty", choices=("mean", "diagonal"), default="mean")
    parser.add_argument(
        "--learning-curve", action="store_true", help="also fit the first 1/4 and 1/2 of train (reg. re-chosen on val)"
    )
    args = parser.parse_args(argv)

    print(f"command: `OMP_NUM_THREADS=1 python benchmarks/surrogate.py {shlex.join(argv or sys.argv[1:])}`\n")
    structures = load(args.labels)
    level = resolve_level(structures, args.target_level)
    dipole_key, alpha_key = f"dipole_{level}", f"polarizability_{level}"
    reference = level == "large"  # then also score the plain STO-3G labels against the same targets
    if not any(dipole_key in atoms.info for atoms in structures):
        raise SystemExit(f"no structure in {args.labels} carries {dipole_key!r} (try --target-level minimal)")

    hypers = FeatureHypers(species=SPECIES)
    calculator = EquivariantFeatures(hypers)
    wall = time.perf_counter()
    features = structure_features(structures, calculator=calculator)
    feature_seconds = time.perf_counter() - wall

    splits = {s: subset(structures, features, dipole_key, s) for s in ("train", "val", "test")}
    alpha_splits = {s: subset(structures, features, alpha_key, s) for s in ("train", "val", "test")}
    print(
        f"target level: **{level}** (`{dipole_key}`, `{alpha_key}`), labels `{args.labels}`, penalty `{args.penalty}`"
    )
    print(
        "structures with a dipole label: "
        + ", ".join(f"{s} {len(splits[s][0])}" for s in splits)
        + "; with a polarizability label: "
        + ", ".join(f"{s} {len(alpha_splits[s][0])}" for s in alpha_splits)
        + f" (of {len(structures)} read)\n"
    )

    wall = time.perf_counter()
    dipole_models = {
        kind: DipoleSurrogate(kind=kind, hypers=hypers, penalty=args.penalty).fit(
            splits["train"][1], splits["train"][2], splits["val"][1], splits["val"][2]
        )
        for kind in KINDS
    }
    alpha_model = None
    if len(alpha_splits["train"][0]) and len(alpha_splits["val"][0]):
        alpha_model = PolarizabilitySurrogate(hypers=hypers, penalty=args.penalty).fit(
            alpha_splits["train"][1], alpha_splits["train"][2], alpha_splits["val"][1], alpha_splits["val"][2]
        )
    fit_seconds = time.perf_counter() - wall

    print("regularisation chosen on val (relative to the mean diagonal of XᵀX):")
    for kind, model in dipole_models.items():
        best = min(error for _, error in model.validation_curve)
        print(f"- dipole {kind}: {model.regularization:.1e} (val mean |Δμ| {best:.3f} D)")
    if alpha_model is not None:
        print(f"- polarizability: λ=0 {alpha_model.regularization[0]:.1e}, λ=2 {alpha_model.regularization[1]:.1e}")
    print()

    reference_dipole = "dipole_minimal" if reference else None
    reference_alpha = "polarizability_minimal" if reference else None
    print("### Dipole\n")
    print(DIPOLE_HEADER)
    for split in ("val", "test"):
        for row in dipole_rows(dipole_models, splits[split], split, structures, reference_dipole):
            print(row)
    larger = Path(args.larger)
    larger_data = None
    if larger.exists():
        larger_structures = load(larger)
        larger_features = structure_features(larger_structures, calculator=calculator)
        larger_data = (
            subset(larger_structures, larger_features, dipole_key),
            subset(larger_structures, larger_features, alpha_key),
            len(larger_structures),
        )
        if len(larger_data[0][0]):
            for row in dipole_rows(dipole_models, larger_data[0], "larger", larger_structures, reference_dipole):
                print(row)
    print()
    if alpha_model is not None:
        print("### Polarizability\n")
        print(ALPHA_HEADER)
        for split in ("val", "test"):
            for row in alpha_rows(alpha_model, alpha_splits[split], split, reference_alpha):
                print(row)
        if larger_data is not None:
            for row in alpha_rows(alpha_model, larger_data[1], "larger", reference_alpha):
                print(row)
        print()
    if larger_data is None:
        print(f"transfer set: `{args.larger}` does not exist (not labelled yet): skipped\n")
    else:
        print(
            f"transfer set `{args.larger}`: {larger_data[2]} structures, {len(larger_data[0][0])} with `{dipole_key}`, "
            f"{len(larger_data[1][0])} with `{alpha_key}`\n"
        )

    if args.learning_curve:
        print("### Learning curve (test split; regularisation re-chosen on val for every size)\n")
        print(
            "| train structures (dipole / α) | "
            + " | ".join(f"dipole {k} (D)" for k in KINDS)
            + " | α MAE (%) | α iso MAE (%) |"
        )
        print("|---" * (len(KINDS) + 3) + "|")
        for fraction in (0.25, 0.5, 1.0):
            n, n_alpha = (max(2, round(fraction * len(d[0]))) for d in (splits["train"], alpha_splits["train"]))
            errors = []
            for kind in KINDS:
                model = DipoleSurrogate(kind=kind, hypers=hypers, penalty=args.penalty).fit(
                    splits["train"][1][:n], splits["train"][2][:n], splits["val"][1], splits["val"][2]
                )
                errors.append(fmt(metrics.dipole_mae_debye(model.predict(splits["test"][1]), splits["test"][2])))
            alpha_cells = ["–", "–"]
            if alpha_model is not None:
                model = PolarizabilitySurrogate(hypers=hypers, penalty=args.penalty).fit(
                    alpha_splits["train"][1][:n_alpha],
                    alpha_splits["train"][2][:n_alpha],
                    alpha_splits["val"][1],
                    alpha_splits["val"][2],
                )
                m = metrics.polarizability_metrics(model.predict(alpha_splits["test"][1]), alpha_splits["test"][2])
                alpha_cells = [fmt(m["mae_percent"], 2), fmt(m["isotropic_mae_percent"], 2)]
            print(f"| {n} / {n_alpha} | " + " | ".join(errors + alpha_cells) + " |")
        print()

    # steady-state prediction time per structure (features + linear heads), test split
    test_atoms = splits["test"][0]
    wall = time.perf_counter()
    test_features = structure_features(test_atoms, calculator=calculator)
    for model in dipole_models.values():
        model.predict(test_features)
    if alpha_model is not None:
        alpha_model.predict(test_features)
    per_structure = (time.perf_counter() - wall) / max(len(test_atoms), 1)
    print(
        f"timing (1 thread): features of {len(structures)} structures {feature_seconds:.1f} s; all fits incl. "
        f"val scans {fit_seconds:.1f} s; prediction (features + 3 dipole models + α) {1e3 * per_structure:.1f} ms "
        "per test structure"
    )


if __name__ == "__main__":
    main()
