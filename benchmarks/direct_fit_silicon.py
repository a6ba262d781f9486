"""Direct ridge fit of PBE/gth-szv real-space H(T) of bulk silicon: reproduces the silicon numbers of
docs/direct_fit.md.

    OMP_NUM_THREADS=1 python benchmarks/direct_fit_silicon.py                 # chosen hypers: fit, val, test
    OMP_NUM_THREADS=1 python benchmarks/direct_fit_silicon.py --search        # + the hyper-parameter search on val
    OMP_NUM_THREADS=1 python benchmarks/direct_fit_silicon.py --save models/silicon-szv
    # the shipped model and docs/direct_fit.md's silicon results (label snapshot: input cells 0-12):
    OMP_NUM_THREADS=1 python benchmarks/direct_fit_silicon.py --first 13 --search --save models/silicon-szv

Protocol: targets are the Wigner–Seitz H(T) of the labelled H(k) (stage ``minimal``: KRKS/PBE, gth-szv,
gth-pade, Γ-centred 4×4×4 mesh) restricted to the blocks the model predicts (on-site, pairs inside the
feature cutoff); fit on ``train`` (closed-form per-head ridge, mlhcalc.training.direct_periodic),
choose hypers and regularisation on ``val`` by the band-energy MAE over all bands, report on ``test``.
Band energies: eigenvalues of (Σ_T e^{ik·T} H(T), S_label(k)) on the label mesh against the labelled
gth-szv bands (not gth-dzvp), eV, absolute. Deterministic; prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import replace

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import direct_fit  # noqa: E402  (the molecular benchmark: label snapshot, markdown tables)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from direct_fit import table  # noqa: E402

import mlhcalc.qm  # noqa: E402, F401  (float64 JAX)
from mlhcalc.features import FeatureHypers  # noqa: E402
from mlhcalc.hamiltonian.model import BlockModel  # noqa: E402
from mlhcalc.model import HamiltonianModel, hash_files  # noqa: E402
from mlhcalc.orbitals import structure_ao_slices  # noqa: E402
from mlhcalc.qm.lattice import atom_index_of_ao  # noqa: E402
from mlhcalc.training import direct, direct_periodic, metrics  # noqa: E402

torch.set_num_threads(1)

LEVEL = "PBE/gth-szv (gth-pade) real-space H(T) (direct fit)"
REFERENCE_LABELS = (
    "PySCF pbc.dft.KRKS(xc='pbe').density_fit(), gth-szv, gth-pade, Γ-centred mesh (atoms.info['kmesh']); "
    "H(k) = Fock of the final density; H(T) by the Wigner–Seitz transform (mlhcalc.qm.periodic)"
)
TARGET_EV = 0.1  # issue 4, item 6: band-energy MAE of the direct fit
BASE = FeatureHypers(species=(14,))  # docs/model.md defaults: cutoff 8 bohr, width 0.6, n 5, l 3, 8/4 channels
# a 2-atom diamond site has ρ^l = 0 for l = 1, 2 (Td symmetry): max_angular 4 lets the ν = 2 pair features see
# the crystal's directions (with 3, even the perfect cell alone cannot be fitted: 0.13 eV in-sample)
SEARCH = {
    "c13.5-l3": {"cutoff": 13.5},
    "c12-l4": {"cutoff": 12.0, "max_angular": 4},
    "c12-l4-ch6x6": {"cutoff": 12.0, "max_angular": 4, "channels": 6, "pair_channels": 6},
    "c13-l4": {"cutoff": 13.0, "max_angular": 4},
    "c13.5-l4": {"cutoff": 13.5, "max_angular": 4},
    "c13.5-l4-ch6x6": {"cutoff": 13.5, "max_angular": 4, "channels": 6, "pair_channels": 6},
    "c13.5-l4-smooth0.5": {"cutoff": 13.5, "max_angular": 4, "smoothing": 0.5},
}
# chosen by `--first 13 --search` (docs/direct_fit.md, silicon); the default run refits it
CHOSEN = {"name": "c13.5-l4-ch6x6", "hypers": {"cutoff": 13.5, "max_angular": 4, "channels": 6, "pair_channels": 6}}
SHIFTS = [round(-0.05 * i, 2) for i in range(11)]  # μ (Ha) of the target H − μS, chosen by the train cutoff floor
FLOOR_CUTOFFS = (8.0, 10.0, 12.0, 13.0, 13.5, 14.0)
METRIC_ROWS = [
    ("H(T) − μS(T) MAE over the model's translations (Ha)", "hamiltonian_mae_ha"),
    ("band energies MAE, all gth-szv bands (eV)", "band_mae_ev"),
    ("valence bands MAE (eV)", "valence_mae_ev"),
    ("valence + conduction ≤ CBM + 1.5 eV, MAE (eV)", "window_mae_ev"),
    ("conduction ≤ CBM + 1.5 eV, MAE (eV)", "conduction_window_mae_ev"),
    ("band gap MAE (eV)", "gap_mae_ev"),
    ("VBM MAE (eV)", "vbm_mae_ev"),
    ("CBM MAE (eV)", "cbm_mae_ev"),
]
SHORT = ["H(T) Ha", "bands eV", "valence eV", "window eV", "cond. window eV", "gap eV", "VBM eV", "CBM eV"]


class Data(direct_fit.Data):
    """Labelled cells by split and their references (WS H(T), S(T); μ = 0)."""

    key = direct_periodic.HAMILTONIAN_KEY
    reference = staticmethod(direct_periodic.CellReference.from_atoms)
    default_basis = direct_periodic.BASIS

    def pair(self, split, overlap_shift: float = 0.0):
        """(atoms, references with target H − μS) of ``split``."""
        return self.splits[split], [r.with_overlap_shift(overlap_shift) for r in self.refs[split]]


def row(result: dict) -> list:
    return [result[key] for _, key in METRIC_ROWS]


def fit(data: Data, hypers: FeatureHypers, overlap_shift: float | None = None):
    """μ (unless given) from the train cutoff floor, then the ridge fit with regularisation chosen on val."""
    model = HamiltonianModel.create(hypers, "gth-szv", periodic=True, level_of_theory=LEVEL, pseudo="gth-pade")
    scan = direct_periodic.overlap_shift_scan(model.block_model, *data.pair("train"), SHIFTS)
    if overlap_shift is None:
        overlap_shift = min(scan, key=lambda result: result["band_mae_ev"])["overlap_shift_ha"]
    model.metadata["overlap_shift_ha"] = overlap_shift
    record, candidates = direct_periodic.fit(
        model.block_model, data.pair("train", overlap_shift), data.pair("val", overlap_shift)
    )
    record.update(overlap_shift_ha=overlap_shift, shift_scan=scan)
    return model, record, candidates


def search(data: Data, names, log=print):
    """Fit every named hyper set; the table and the best (objective, name, overrides, model, record) by
    the val band MAE (test is not looked at). A hyper set whose cutoff reaches beyond the unique
    Wigner–Seitz images of the mesh is reported and skipped."""
    rows, best = [], None
    for name in names:
        overrides = SEARCH[name]
        try:
            model, record, candidates = fit(data, replace(BASE, **overrides))
        except ValueError as err:
            rows.append([name, "refused", str(err)[:90], *[None] * len(SHORT), None])
            continue
        for strategy, label, val in candidates:
            rows.append([name, f"{record['overlap_shift_ha']:+.2f}", f"{strategy} {label}", *row(val)])
            rows[-1].append(record["fit_wall_s"])
        if best is None or record["objective"] < best[0]:
            best = (record["objective"], name, overrides, model, record)
        log(f"  searched {name}: {record['fit_wall_s']:.0f} s wall", file=sys.stderr)
    header = ["hypers", "μ Ha", "regularisation", *SHORT, "fit s"]
    return table(header, rows), best


def floor_rows(data: Data, hypers: FeatureHypers, overlap_shift: float, split: str = "test"):
    """Bands of the target truncated to the blocks of models with other cutoffs, for μ = 0 and the chosen μ."""
    rows = []
    for cutoff in FLOOR_CUTOFFS:
        model = BlockModel(replace(hypers, cutoff=cutoff), "gth-szv")
        try:
            results = direct_periodic.overlap_shift_scan(model, *data.pair(split), sorted({0.0, overlap_shift}))
        except ValueError:
            rows.append([f"{cutoff:g}", "–", "beyond the unique WS images", *[None] * (len(SHORT) - 1)])
            continue
        rows += [[f"{cutoff:g}", f"{r['overlap_shift_ha']:+.2f}", *row(r)] for r in results]
    return rows


def block_origin_rows(model: HamiltonianModel, data: Data, predictions, split: str = "test"):
    """Predicted blocks of one kind (on-site or pairs), truncated target blocks elsewhere."""
    atoms_list, refs = data.pair(split, model.metadata["overlap_shift_ha"])
    rows = []
    for label, keep_predicted_on_site in (
        ("on-site blocks predicted, pair blocks exact", True),
        ("pair blocks predicted, on-site blocks exact", False),
    ):
        mixed = []
        for atoms, ref, (n_int, hamiltonian_t) in zip(atoms_list, refs, predictions):
            target = direct_periodic.truncated_reference(model.block_model, atoms, ref)
            target = target[direct_periodic.translation_rows(n_int, ref.images.n_int)]
            owner = atom_index_of_ao(structure_ao_slices(atoms.get_chemical_symbols(), model.basis))
            on_site = (np.abs(n_int).sum(axis=1) == 0)[:, None, None] & (owner[:, None] == owner[None, :])[None]
            mixed.append((n_int, np.where(on_site == keep_predicted_on_site, hamiltonian_t, target)))
        rows.append([label, *row(direct_periodic.score(refs, mixed))])
    return rows


def calculator_check(model_dir: str, data: Data, predictions, overlap_shift: float, split: str = "test"):
    """The saved model through the ASE calculator on each cell's own mesh ({'size': mesh, 'gamma': True},
    exact S(T) images) against the fit's evaluation (label S(k)): max |Δε| (Ha) and seconds per cell."""
    from mlhcalc.calculator import MLHamiltonian

    worst, seconds = 0.0, []
    for atoms, ref, (n_int, hamiltonian_t) in zip(*data.pair(split, overlap_shift), predictions):
        start = time.perf_counter()
        calc = MLHamiltonian(model=model_dir, kpts={"size": tuple(ref.images.mesh), "gamma": True})
        bands = calc.get_property("eigenvalues", atoms)[0] / metrics.HARTREE_TO_EV
        seconds.append(time.perf_counter() - start)
        order = direct_periodic.kpoint_order(calc.get_ibz_k_points(), atoms.info["kpts_frac"])
        worst = max(worst, float(np.abs(bands[order] - direct_periodic.cell_bands(ref, hamiltonian_t, n_int)).max()))
    return worst, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="data/silicon/primitive_labels.d", help="label directory (mlhcalc label)")
    parser.add_argument(
        "--first", type=int, metavar="N", help="use only input structures 0..N-1 (a snapshot of a growing label set)"
    )
    parser.add_argument("--search", action="store_true", help="run the hyper-parameter search on val first")
    parser.add_argument("--configs", default=",".join(SEARCH), help="comma-separated names of SEARCH to try")
    parser.add_argument("--save", metavar="DIR", help="save the fitted model (e.g. models/silicon-szv)")
    args = parser.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    t0 = time.perf_counter()

    data = Data(args.labels, args.first)
    print("# Direct ridge fit of PBE/gth-szv real-space H(T) (bulk silicon)\n")
    print(f"command: `{command}`  ")
    print(
        f"labels: `{args.labels}`, read + Wigner–Seitz transform {data.seconds:.1f} s; python "
        f"{platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}\n"
    )
    counts = []
    for split in direct.SPLITS:
        atoms_list, refs = data.pair(split)
        counts.append(
            [
                split,
                len(atoms_list),
                ", ".join(sorted({str(a.info.get("kind")) for a in atoms_list})),
                ", ".join(sorted({"×".join(map(str, r.images.mesh)) for r in refs})),
                f"{min(len(r.images.n_int) for r in refs)}–{max(len(r.images.n_int) for r in refs)}",
                " ".join(str(a.info["input_index"]) for a in atoms_list),
            ]
        )
    print(table(["split", "cells", "kind", "k-mesh", "WS translations", "input indices"], counts), "\n")

    chosen = dict(CHOSEN)
    if args.search:
        text, best = search(data, args.configs.split(","))
        print("## Hyper-parameter search (val split; objective = band MAE over all bands)\n")
        print(text, "\n")
        _, name, overrides, model, record = best
        chosen = {"name": name, "hypers": overrides}
        print(f"best by the val band MAE: {name} / {record['strategy']} ({best[0]:.4f} eV)\n")
    else:
        model, record, _ = fit(data, replace(BASE, **chosen["hypers"]))
    hypers, shift = model.block_model.features.hypers, record["overlap_shift_ha"]
    predictions = {s: direct_periodic.predict_real_space(model.block_model, data.splits[s]) for s in direct.SPLITS}
    results = {s: direct_periodic.score(data.pair(s, shift)[1], predictions[s]) for s in direct.SPLITS}
    floor = {
        split: direct_periodic.overlap_shift_scan(model.block_model, *data.pair(split), [shift])[0]
        for split in ("val", "test")
    }

    regularisation = f"{record['strategy']} regularisation ({record['regularization_label']})"
    print(f"## Chosen model: {chosen['name']} hypers, target H − μS with μ = {shift:+.2f} Ha, {regularisation}\n")
    print(f"hypers: `{hypers.to_dict()}`\n")
    print("μ from the cutoff floor of the train cells (band MAE, eV):")
    print(", ".join(f"{r['overlap_shift_ha']:+.2f}: {r['band_mae_ev']:.3f}" for r in record["shift_scan"]) + "\n")
    rows = []
    for label, key in METRIC_ROWS:
        rows.append([label, results["test"][key], results["val"][key], results["train"][key], floor["test"][key]])
        rows[-1].append(f"≤ {TARGET_EV}" if key == "band_mae_ev" else "")
    print(
        table(
            [
                "metric (vs gth-szv labels)",
                f"test ({results['test']['n_structures']})",
                f"val ({results['val']['n_structures']})",
                f"train, in-sample ({results['train']['n_structures']})",
                f"cutoff floor, test ({hypers.cutoff:g} bohr)",
                "issue target",
            ],
            rows,
        ),
        "\n",
    )

    print("## Per test cell (eV): band MAE, band gap reference / predicted\n")
    rows = []
    for atoms, ref, (n_int, hamiltonian_t) in zip(*data.pair("test", shift), predictions["test"]):
        one = direct_periodic.score([ref], [(n_int, hamiltonian_t)])
        bands = direct_periodic.cell_bands(ref, hamiltonian_t, n_int)
        gaps = [metrics.band_gap(b, ref.n_valence)[0] * metrics.HARTREE_TO_EV for b in (ref.bands, bands)]
        rows.append([atoms.info.get("name"), one["band_mae_ev"], one["window_mae_ev"], *gaps])
    print(table(["cell", "band MAE", "window MAE", "gap ref", "gap pred"], rows), "\n")

    print("## Where the test error comes from: predicted blocks of one kind, reference blocks elsewhere\n")
    print(table(["test", *SHORT], block_origin_rows(model, data, predictions["test"])), "\n")

    print("## Cutoff floor: target H − μS restricted to the blocks of a model with this cutoff, + μS (test)\n")
    print(table(["cutoff (bohr)", "μ Ha", *SHORT], floor_rows(data, hypers, shift)), "\n")

    timing = [
        [
            f"fit: train normal equations ({len(data.splits['train'])} cells)",
            f"{record['train_normal_equations_wall_s']:.1f} s",
        ],
        ["fit: total incl. val selection", f"{record['fit_wall_s']:.1f} s wall, {record['fit_cpu_s']:.1f} s CPU"],
    ]
    if args.save:
        used = data.splits["train"] + data.splits["val"]
        keep = [key for _, key in METRIC_ROWS] + ["n_structures"]
        model.save(
            args.save,
            level_of_theory=LEVEL,
            reference_labels=REFERENCE_LABELS,
            training_data_sha256=hash_files(direct.label_files(args.labels, used)),
            training_data=f"{len(data.splits['train'])} train (fit) + {len(data.splits['val'])} val (selection) "
            f"label files {args.labels}/<structure_id>.minimal.h5, sorted by name",
            test_data_sha256=hash_files(direct.label_files(args.labels, data.splits["test"])),
            hypers=hypers.to_dict(),
            overlap_shift_ha=shift,
            prediction="H(T) − μS(T) with μ = overlap_shift_ha: the Hamiltonian is the prediction + μ S(T) (bands + μ)",
            regularization={
                "penalty": record["penalty"],
                "strategy": record["strategy"],
                "per_head": record["regularization"],
            },
            metrics={
                "test": {k: results["test"][k] for k in keep},
                "val": {k: results["val"][k] for k in keep},
                "cutoff_floor_test": {k: floor["test"][k] for k in keep},
            },
            training_command=command,
        )
        worst, seconds = calculator_check(args.save, data, predictions["test"], shift)
        print(
            f"saved {args.save}; MLHamiltonian(model='{args.save}', kpts={{'size': mesh, 'gamma': True}}) on the test "
            f"cells: max |Δε| against the fit's evaluation {worst:.1e} Ha\n"
        )
        timing.append(
            [
                "calculator, per test cell (first includes loading and compilation)",
                ", ".join(f"{s:.2f}" for s in seconds) + " s",
            ]
        )
    print("## Timing (wall, shared 2-core machine, 1 thread)\n")
    print(table(["step", "time"], timing), "\n")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
