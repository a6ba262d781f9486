"""The training framework (mlhcalc.training: config, dataset, losses, trainer, evaluation) on a tiny
self-computed set: rattled small molecules labelled with RHF/STO-3G (the model basis: Fock
matrices for the ridge initialisation, the "plain minimal-basis" baseline) and RHF/6-31G as the
"large" basis (MO energies, dipoles, CPHF polarizabilities), written in the reference-label format
so the whole path from a YAML config is exercised. HF instead of B3LYP and 6-31G instead of
def2-TZVP keep the labelling at a few seconds; the trainer does not care which level made the labels.
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule

# molecule, rattles per split: different molecules in train and val would test transfer across
# chemistry with 10 structures; the same molecules, other distortions, test the fit itself
MOLECULES = ("H2O", "NH3", "CH4", "HCN", "H2CO", "CH3OH")
SPLITS = {"train": (0, 1), "val": (2,)}  # rattle seeds per split
POLARIZABILITY_EVERY = 2  # CPHF α on every 2nd structure: the loss must cope with a partial subset
SMALL_HYPERS = {"max_radial": 3, "max_angular": 2, "channels": 4, "pair_channels": 2, "cutoff": 7.0}


def _rhf(atoms, basis):
    from pyscf import scf

    from mlhcalc.structure import to_mole

    mf = scf.RHF(to_mole(atoms, basis))
    mf.conv_tol, mf.conv_tol_grad, mf.verbose = 1e-11, 1e-7, 0
    mf.kernel()
    assert mf.converged
    return mf


def _polarizability(mf):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyscf.prop.polarizability.rhf import Polarizability
    alpha = Polarizability(mf).polarizability()
    return 0.5 * (alpha + alpha.T)


def _label(directory: Path) -> list:
    """Write the tiny set into ``directory`` (reference-label format) and return its structures."""
    import scipy.linalg

    from mlhcalc.reference.storage import prepare_directory, structure_header, write_stage

    directory.mkdir(parents=True, exist_ok=True)
    prepare_directory(directory, "molecule")
    index, structures = 0, []
    for split, seeds in SPLITS.items():
        for seed in seeds:
            for name in MOLECULES:
                atoms = molecule(name)
                atoms.rattle(stdev=0.04, seed=100 * seed + len(structures))
                atoms.info.update(split=split, name=f"{name}-{seed}", parent=name)
                header = structure_header(atoms, f"{index:06d}", index, 0)
                minimal, large = _rhf(atoms, "sto-3g"), _rhf(atoms, "6-31g")
                fock = minimal.get_fock(dm=minimal.make_rdm1())
                overlap = minimal.get_ovlp()
                nocc = minimal.mol.nelectron // 2
                write_stage(
                    directory,
                    "molecule",
                    header,
                    "minimal",
                    {
                        "fock": (fock, "hartree"),
                        "overlap": (overlap, "1"),
                        "mo_energy": (scipy.linalg.eigh(fock, overlap, eigvals_only=True), "hartree"),
                        "nocc": (nocc, "1"),
                        "dipole": (minimal.dip_moment(unit="AU", verbose=0), "e*bohr"),
                        "dipole_origin": (np.zeros(3), "bohr"),
                        "polarizability": (_polarizability(minimal), "bohr^3"),
                    },
                    {"basis": "sto-3g", "xc": "hf"},
                )
                write_stage(
                    directory,
                    "molecule",
                    header,
                    "large",
                    {
                        "mo_energy": (large.mo_energy, "hartree"),
                        "nocc": (nocc, "1"),
                        "dipole": (large.dip_moment(unit="AU", verbose=0), "e*bohr"),
                        "dipole_origin": (np.zeros(3), "bohr"),
                    },
                    {"basis": "6-31g", "xc": "hf"},
                )
                if index % POLARIZABILITY_EVERY == 0:
                    alpha = (_polarizability(large), "bohr^3")
                    write_stage(directory, "molecule", header, "large_polarizability", {"polarizability": alpha}, {})
                structures.append(atoms)
                index += 1
    return structures


@pytest.fixture(scope="session")
def labels(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("training-labels") / "labels.d"
    _label(directory)
    return directory


def _config(labels: Path, output: Path, **sections) -> dict:
    """A small, fast configuration (dict form of the YAML schema) with overrides per section."""
    values = {
        "output": str(output),
        "seed": 3,
        "data": {"labels": str(labels)},
        "model": {"hypers": dict(SMALL_HYPERS)},
        "targets": {"mo_energy": {"weight": 1.0}, "dipole": {"weight": 0.0}},
        "optimizer": {"name": "adam", "lr": 1.0e-2},
        "training": {"batch_size": 4, "max_epochs": 3, "patience": 50, "progress": "off"},
    }
    for section, overrides in sections.items():
        if isinstance(overrides, dict):
            values[section] = {**values.get(section, {}), **overrides}
        else:
            values[section] = overrides
    return values


def _trainer(values: dict, **kwargs):
    from mlhcalc.training.config import config_from_dict
    from mlhcalc.training.trainer import Trainer

    return Trainer(config_from_dict(values), log=lambda message: None, **kwargs)


def _log_rows(directory: Path) -> list[dict]:
    with open(directory / "log.csv") as handle:
        return list(csv.DictReader(handle))


TIME_COLUMNS = ("epoch_seconds", "wall_seconds", "ms_per_structure_step", "compile_seconds")


# ------------------------------------------------------------------------------------ windows
def test_mo_window_matches_occupied_levels_lumo_and_virtuals():
    from mlhcalc.training.dataset import mo_levels

    np.testing.assert_array_equal(mo_levels(5, 7, 19), np.arange(6))  # occupied + LUMO
    np.testing.assert_array_equal(mo_levels(5, 7, 19, virtuals=0), np.arange(5))
    np.testing.assert_array_equal(mo_levels(5, 7, 19, virtuals=4), np.arange(7))  # clipped to the model's 7
    np.testing.assert_array_equal(mo_levels(5, 7, 19, window="minimal"), np.arange(7))
    with pytest.raises(ValueError, match="window"):
        mo_levels(5, 7, 19, window="valence")


# ------------------------------------------------------------------------------ batch assembly
@pytest.fixture(scope="module")
def small_model_and_samples(labels):
    """A ridge-initialised small model and the samples of the first structures plus an exactly
    tetrahedral CH4 (degenerate occupied t2 and LUMO t2 levels)."""
    from mlhcalc.features import FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian.model import BlockModel, fit_ridge
    from mlhcalc.reference import read
    from mlhcalc.training.dataset import build_samples

    structures = read(labels)
    atoms = structures[:4]
    methane = molecule("CH4")
    template = next(a for a in structures if a.info["parent"] == "CH4")
    methane.info.update({k: template.info[k] for k in ("mo_energy_large", "dipole_large", "nocc")})
    model = BlockModel(FeatureHypers(species=(1, 6, 7, 8), **SMALL_HYPERS), "sto-3g")
    fit_ridge(model, systems_from_atoms(atoms), [a.info["fock_minimal"] for a in atoms])
    samples = build_samples(model.features, atoms + [methane], "sto-3g", "occupied", 2)
    return model, samples, atoms + [methane]


def test_gates_added_to_an_initial_model_keep_its_hamiltonian(small_model_and_samples):
    """model.gated with model.init: the loaded linear model gets zero gates, so it predicts the same H
    (to 1e-14) and has gate parameters to train."""
    from mlhcalc.features import systems_from_atoms
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.training.trainer import _with_gates

    block_model, _, atoms = small_model_and_samples
    model = HamiltonianModel(block_model, {"level_of_theory": "test"})
    gated = _with_gates(model)
    assert gated.block_model.gated and len(list(gated.block_model.gates.parameters())) > 0
    with torch.no_grad():
        for before, after in zip(block_model(systems_from_atoms(atoms)), gated.block_model(systems_from_atoms(atoms))):
            np.testing.assert_allclose(after[1].numpy(), before[1].numpy(), atol=1e-14)


def test_batched_fock_and_observables_equal_single_structure_ones(small_model_and_samples):
    """Concatenated features + padding + fillers give each structure's own H and, through the
    batched qm layer, the orbital energies, dipole and α of a plain numpy calculation; the samples'
    integrals are those of mlhcalc.qm.integrals."""
    import scipy.linalg

    from mlhcalc.features import systems_from_atoms
    from mlhcalc.qm.integrals import ao_integrals, make_template
    from mlhcalc.structure import positions_bohr
    from mlhcalc.training.dataset import model_fock_stack, pad_batch
    from mlhcalc.training.losses import qm_observables

    model, samples, atoms = small_model_and_samples
    batch = pad_batch(samples, 8, 16)  # 5 real structures + 3 fillers, 16 AOs → bucket 16
    with torch.no_grad():
        stack = model_fock_stack(model, samples, batch)
        (mo_energy, dipole, alpha), _ = qm_observables(stack, batch)
        for k, (sample, structure) in enumerate(zip(samples, atoms)):
            ((_, fock),) = model(systems_from_atoms([structure]))
            n = sample.nao
            np.testing.assert_allclose(stack[k, :n, :n].numpy(), fock.numpy(), atol=1e-12)
            overlap, dipole_ints = ao_integrals(make_template(structure), positions_bohr(structure))
            np.testing.assert_allclose(sample.overlap, np.asarray(overlap), atol=1e-13)
            np.testing.assert_allclose(sample.dipole_ints, np.asarray(dipole_ints), atol=1e-13)
            assert not stack[k, n:].any() and not stack[k, :, n:].any()
            energies, orbitals = scipy.linalg.eigh(fock.numpy(), sample.overlap)
            np.testing.assert_allclose(mo_energy[k, :n], energies, atol=1e-10)
            occupied = orbitals[:, : sample.nocc]
            density = 2 * occupied @ occupied.T
            expected_dipole = sample.nuclear_dipole - np.einsum("cmn,nm->c", sample.dipole_ints, density)
            np.testing.assert_allclose(dipole[k], expected_dipole, atol=1e-10)
            r_ai = np.einsum("ma,cmn,ni->cai", orbitals[:, sample.nocc :], sample.dipole_ints, occupied)
            gaps = energies[sample.nocc :, None] - energies[None, : sample.nocc]
            np.testing.assert_allclose(alpha[k], 4 * np.einsum("xai,yai->xy", r_ai, r_ai / gaps), atol=1e-9)


def test_loss_gradient_matches_central_finite_differences(small_model_and_samples):
    """d loss / d weights (all three terms, one structure without α, fillers, degenerate CH4 levels
    in the MO window) along a random direction equals the central difference to 1e-7 relative."""
    from mlhcalc.training.dataset import model_fock_stack, pad_batch
    from mlhcalc.training.losses import batch_scales, qm_loss, target_statistics

    model, samples, _ = small_model_and_samples
    assert any(s.polarizability is None for s in samples) and any(s.polarizability is not None for s in samples)
    statistics = target_statistics(samples)
    scales = batch_scales([1.0, 1.0, 1.0], statistics.variances, statistics, len(samples))
    batch = pad_batch(samples, 8, 16)
    parameters = list(model.parameters())
    direction = [torch.from_numpy(np.random.default_rng(1).normal(size=p.shape)) for p in parameters]

    def loss():
        return qm_loss(model_fock_stack(model, samples, batch), batch, scales)[0]

    gradients = torch.autograd.grad(loss(), parameters, allow_unused=True)
    analytic = sum(float((g * v).sum()) for g, v in zip(gradients, direction) if g is not None)
    step = 1e-6
    values = []
    with torch.no_grad():
        for sign in (1.0, -2.0, 1.0):  # +h, -h, back to the start
            for p, v in zip(parameters, direction):
                p.add_(sign * step * v)
            values.append(float(loss()))
    numeric = (values[0] - values[1]) / (2 * step)
    assert abs(analytic) > 1e-3
    assert abs(numeric - analytic) < 1e-7 * abs(analytic)


# ------------------------------------------------------------------------------------ training
def test_short_training_reduces_val_mo_error_below_ridge_start(labels, tmp_path):
    """25 epochs of Adam on 12 structures (MO window: occupied + LUMO) from a YAML file: the val
    occupied-level MAE against the 6-31G levels must fall below half its ridge-start value (measured
    ~0.25×) and below the plain STO-3G one; the saved model reproduces the reported metrics."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.evaluation import evaluate
    from mlhcalc.training.trainer import train_from_config

    values = _config(labels, "run", training={"max_epochs": 25, "patience": 10})
    path = tmp_path / "eig.yaml"
    path.write_text(yaml.safe_dump(values))
    directory = train_from_config(path)
    assert directory == tmp_path / "run" / "model"  # relative paths: relative to the YAML file
    rows = _log_rows(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    initial = float(rows[0]["val_occupied_mae_ev"])
    final = summary["evaluation"]["val"]["occupied_mae_ev"]
    baseline = summary["evaluation"]["val_minimal_basis_baseline"]["occupied_mae_ev"]
    assert final < 0.5 * initial, (initial, final)
    assert final < baseline, (baseline, final)
    assert summary["counts"]["train"] == 12 and summary["counts"]["val"] == 6

    model = HamiltonianModel.load(directory)
    val = [a for a in read(labels) if a.info["split"] == "val"]
    assert evaluate(model, val)["occupied_mae_ev"] == pytest.approx(final, rel=1e-10)
    assert model.metadata["level_of_theory"].startswith("HF/6-31g targets (mo_energy)")
    assert len(model.metadata["training_data_sha256"]) == 64
    assert model.metadata["training_command"].startswith("mlhcalc train")
    stored = model.metadata["training"]["config"]  # paths as the YAML gives them, not this machine's
    assert stored["output"] == "run" and not Path(stored["data"]["labels"]).is_absolute()
    assert (tmp_path / stored["data"]["labels"]).resolve() == Path(labels).resolve()


def _add_polarizability_label(directory: Path, sid: str) -> None:
    """A new ``large_polarizability`` stage for structure ``sid`` (as a running labeller would add)."""
    from ase import Atoms

    from mlhcalc.reference import read
    from mlhcalc.reference.storage import structure_header, write_stage

    (atoms,) = [a for a in read(directory) if a.info["structure_id"] == sid]
    assert "polarizability_large" not in atoms.info
    plain = Atoms(atoms.numbers, atoms.positions, info={k: atoms.info[k] for k in ("split", "name", "parent")})
    header = structure_header(plain, sid, int(sid), 0)
    alpha = (5.0 * np.eye(3), "bohr^3")
    write_stage(directory, "molecule", header, "large_polarizability", {"polarizability": alpha}, {})


def test_interrupted_run_resumes_to_the_same_history(labels, tmp_path):
    """Ctrl-C (a real SIGINT) in the middle of epoch 2 saves a checkpoint; rerunning the config
    continues at that step with the structures and labels of the checkpoint (a label added in
    between is ignored), and a run stopped by max_epochs continues when max_epochs grows. Both
    reproduce the uninterrupted run: every loss and metric of log.csv to 1e-12, the final weights."""
    import os
    import signal

    from mlhcalc.training.config import ConfigError
    from mlhcalc.training.trainer import TrainingInterrupted

    sections = {
        "targets": {"dipole": {"weight": 0.5}, "polarizability": {"weight": 0.2}},
        "optimizer": {"lr": 1.0e-2, "plateau_factor": 0.5, "plateau_patience": 0},
    }
    straight = _trainer(_config(labels, tmp_path / "straight", **sections))
    straight.fit()

    def interrupt(trainer, epoch, step):
        if (epoch, step) == (1, 1):  # epoch 2 of 3, after its 2nd of 3 steps
            os.kill(os.getpid(), signal.SIGINT)

    own_labels = tmp_path / "labels.d"
    shutil.copytree(labels, own_labels)
    interrupted = _config(own_labels, tmp_path / "interrupted", **sections)
    with pytest.raises(TrainingInterrupted):
        _trainer(interrupted).fit(on_step=interrupt)
    _add_polarizability_label(own_labels, "000001")  # labelling goes on meanwhile: must not leak in
    resumed = _trainer(interrupted)
    assert (resumed.state["epoch"], resumed.state["step"]) == (1, 2)
    resumed.fit()

    short = _config(labels, tmp_path / "extended", **sections)
    short["training"] = {**short["training"], "max_epochs": 2}
    _trainer(short).fit()
    longer = {**short, "training": {**short["training"], "max_epochs": 3}}
    extended = _trainer(longer)
    assert extended.state["epoch"] == 2
    extended.fit()

    expected = _log_rows(tmp_path / "straight")
    assert len(expected) == 4  # the initial evaluation and 3 epochs
    for run in ("interrupted", "extended"):
        rows = _log_rows(tmp_path / run)
        assert len(rows) == len(expected)
        for row, reference in zip(rows, expected):
            for column, value in reference.items():
                if column in TIME_COLUMNS or value == "":
                    continue
                assert float(row[column]) == pytest.approx(float(value), rel=1e-12, abs=1e-15), (run, column)
    for run in (resumed, extended):
        for name, tensor in straight.block_model.state_dict().items():
            torch.testing.assert_close(run.block_model.state_dict()[name], tensor, rtol=1e-12, atol=1e-15)

    changed = {**interrupted, "optimizer": {**interrupted["optimizer"], "lr": 0.1}}
    with pytest.raises(ConfigError, match="optimizer.lr"):
        _trainer(changed)


def test_lbfgs_with_initial_normalisation(labels, tmp_path):
    """normalization: initial makes every weighted term 1 for the starting model; one full-batch
    L-BFGS epoch lowers the train loss by more than 10%."""
    values = _config(
        labels,
        tmp_path / "lbfgs",
        targets={"dipole": {"weight": 1.0}, "normalization": "initial"},
        optimizer={"name": "lbfgs", "lr": 1.0, "lbfgs_max_iter": 5},
        training={"max_epochs": 2},
    )
    _trainer(values).fit()
    rows = _log_rows(tmp_path / "lbfgs")
    assert float(rows[0]["train_loss_mo_energy"]) == pytest.approx(1.0, rel=1e-12)
    assert float(rows[0]["train_loss_dipole"]) == pytest.approx(1.0, rel=1e-12)
    assert float(rows[0]["train_loss"]) == pytest.approx(2.0, rel=1e-12)
    # an L-BFGS row's train loss is taken at the start of its epoch: row 2 is after one step
    assert float(rows[2]["train_loss"]) < 0.9 * float(rows[1]["train_loss"])


def test_anchor_keeps_weights_near_the_starting_model(labels, tmp_path):
    """optimizer.anchor (L2-SP): with a strong anchor the weights move (relative to
    the start) less than a quarter as far as without one in the same 3 epochs (Adam still takes
    ~lr-sized steps around θ₀); the penalty is part of the step loss only."""

    def moved(values):
        trainer = _trainer(values)
        trainer.fit()
        return sum(((p - p0) ** 2).sum() for p, p0 in zip(trainer.parameters, trainer._anchor_parameters())) / sum(
            (p0**2).sum() for p0 in trainer._anchor_parameters()
        ), trainer

    free, _ = moved(_config(labels, tmp_path / "free"))
    held, trainer = moved(_config(labels, tmp_path / "held", optimizer={"lr": 1.0e-2, "anchor": 1.0e4}))
    assert float(free) > 1e-8
    assert float(held) < 0.25 * float(free), (float(held), float(free))  # measured 0.07 (Adam steps ~lr)
    assert float(trainer.anchor_penalty()) == pytest.approx(1.0e4 * float(held), rel=1e-10)


def test_trainable_subset_leaves_the_other_weights_exactly(labels, tmp_path):
    """model.trainable 'biases\\..*': after 2 epochs every weight equals its start bit for bit and
    the biases moved; a pattern that matches nothing is a ConfigError."""
    from mlhcalc.training.config import ConfigError

    trainer = _trainer(
        _config(labels, tmp_path / "biases", model={**_config(labels, "x")["model"], "trainable": r"biases\..*"})
    )
    start = {name: p.detach().clone() for name, p in trainer.block_model.named_parameters()}
    trainer.fit()
    after = dict(trainer.block_model.named_parameters())
    assert any(name.startswith("biases.") for name in start)
    for name, value in start.items():
        if name.startswith("biases."):
            continue
        assert torch.equal(after[name].detach(), value), name
    assert any(not torch.equal(after[n].detach(), v) for n, v in start.items() if n.startswith("biases."))
    with pytest.raises(ConfigError, match="matches no parameter"):
        _trainer(_config(labels, tmp_path / "none", model={**_config(labels, "x")["model"], "trainable": "nothing"}))


def test_trained_model_metadata_keeps_only_the_starting_models_provenance():
    """A model trained from model.init must not carry the starting model's metrics or fit settings
    as its own: they move under initial_model (provenance) or are dropped."""
    from mlhcalc.training.trainer import _start_metadata

    direct_fit = {
        "basis": "sto-3g",
        "species": ["H", "C"],
        "periodic": False,
        "level_of_theory": "B3LYPG/STO-3G Fock (direct fit)",
        "reproduce_command": "python benchmarks/direct_fit.py",
        "training_data_sha256": "ab" * 32,
        "metrics": {"test": {"occupied_mae_ev": 0.2}},
        "regularization": {"per_head": {}},
        "timing": {"fit_wall_s": 200.0},
    }
    start = _start_metadata(direct_fit, "models/organic-sto3g")
    assert {k: start[k] for k in ("basis", "species", "periodic")} == {
        "basis": "sto-3g",
        "species": ["H", "C"],
        "periodic": False,
    }
    assert not {"metrics", "regularization", "timing", "level_of_theory", "reproduce_command"} & set(start)
    assert start["initial_model"] == {
        "name": "organic-sto3g",
        "level_of_theory": "B3LYPG/STO-3G Fock (direct fit)",
        "reproduce_command": "python benchmarks/direct_fit.py",
        "training_data_sha256": "ab" * 32,
    }


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 3}, "unknown key 'epochs'"),
        ({"targets": {"mo_energy": {"wieght": 1.0}}}, "unknown key 'targets.mo_energy.wieght'"),
        ({"targets": {"mo_energy": {"window": "valence"}}}, "targets.mo_energy.window must be one of"),
        ({"targets": {"mo_energy": {"window": "minimal", "virtuals": 2}}}, "applies to window 'occupied'"),
        ({"targets": {"mo_energy": {"weight": 0}, "dipole": {"weight": 0}}}, "all target weights are 0"),
        ({"targets": {"dipole": {"weight": -1}}}, "targets.dipole.weight must be ≥ 0"),
        ({"targets": {"normalization": "std"}}, "targets.normalization must be one of"),
        ({"optimizer": {"name": "sgd"}}, "optimizer.name must be one of"),
        ({"optimizer": {"lr": -1e-3}}, "optimizer.lr must be > 0"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr must be a number"),
        ({"training": {"batch_size": 0}}, "training.batch_size must be ≥ 1"),
        ({"training": {"max_epochs": 2.5}}, "training.max_epochs must be an integer"),
        ({"model": {"hypers": {"cutof": 6.0}}}, "unknown key 'model.hypers.cutof'"),
        ({"model": {"hypers": {"cutoff": 0.5}}}, "model.hypers: need 0 < smoothing < cutoff"),
        ({"model": {"hypers": {"learnable_compression": True}}}, "learnable_compression"),
        ({"data": {"labels": None}}, "data.labels must be a non-empty string"),
        ({"data": {"targets": "def2-tzvp"}}, "data.targets must be one of"),
        ({"model": {"trainable": "(biases"}}, "model.trainable must be a regular expression"),
    ],
)
def test_config_errors_name_the_key(change, message, tmp_path):
    from mlhcalc.training.config import ConfigError, config_from_dict

    values = _config(tmp_path / "labels.d", tmp_path / "out")
    for section, value in change.items():
        values[section] = {**values[section], **value} if isinstance(value, dict) and section in values else value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(values)


def test_yaml_errors_and_shipped_examples(tmp_path):
    from mlhcalc.training.config import ConfigError, load_config

    broken = tmp_path / "broken.yaml"
    broken.write_text("output: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    missing = tmp_path / "missing.yaml"
    missing.write_text("data: {labels: x.d}\n")
    with pytest.raises(ConfigError, match="output is required"):
        load_config(missing)
    examples = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert examples, "configs/ holds the example configurations"
    from mlhcalc.training.bands import is_band_config, load_band_config

    for path in examples:
        if is_band_config(path):  # periodic band training (mlhcalc.training.bands)
            config = load_band_config(path)
            assert all(Path(path).is_dir() for path, _, _ in config.label_sets()) and Path(config.init).is_dir()
            continue
        config = load_config(path)
        assert Path(config.data.labels).is_absolute() and Path(config.output).is_absolute()


def test_polarizability_limits_keep_the_first_alpha_labels_only(labels, tmp_path):
    """``max_train_polarizability`` / ``max_val_polarizability``: the α label stays on only the first
    N α-labelled structures (input order); the structures and their other labels are unchanged."""
    from mlhcalc.training.config import config_from_dict
    from mlhcalc.training.trainer import load_training_data

    def load(**data):
        values = _config(labels, tmp_path / "run")
        values["data"] = {**values["data"], **data}
        return load_training_data(config_from_dict(values))

    def alpha_ids(structures):
        return [a.info["structure_id"] for a in structures if "polarizability_large" in a.info]

    everything, limited = load(), load(max_train_polarizability=1, max_val_polarizability=0)
    assert len(alpha_ids(everything.train)) >= 2 and alpha_ids(everything.val)  # the limits bite
    assert alpha_ids(limited.train) == alpha_ids(everything.train)[:1]
    assert alpha_ids(limited.val) == []
    assert [a.info["structure_id"] for a in limited.train] == [a.info["structure_id"] for a in everything.train]
    for a, b in zip(limited.train + limited.val, everything.train + everything.val):
        assert np.array_equal(a.info["mo_energy_large"], b.info["mo_energy_large"])
    assert limited.counts["train_polarizability"] == 1 and limited.counts["val_polarizability"] == 0
    assert sum(len(keys) for _, keys in limited.record["train"]) == sum(
        len(keys) for _, keys in everything.record["train"]
    ) - (len(alpha_ids(everything.train)) - 1)


def _label_minimal_in(labels: Path, directory: Path, basis: str, splits=("train", "val")) -> None:
    """Minimal-stage labels of the structures of ``labels`` (in ``splits``) computed in ``basis``,
    written to ``directory`` under the same structure ids (what ``mlhcalc label --basis-minimal`` makes)."""
    from mlhcalc.reference import read
    from mlhcalc.reference.storage import prepare_directory, structure_header, write_stage

    directory.mkdir(parents=True, exist_ok=True)
    prepare_directory(directory, "molecule")
    for atoms in read(labels):
        if atoms.info["split"] not in splits:
            continue
        sid = atoms.info["structure_id"]
        mf = _rhf(atoms, basis)
        fock, overlap = mf.get_fock(dm=mf.make_rdm1()), mf.get_ovlp()
        datasets = {
            "fock": (fock, "hartree"),
            "overlap": (overlap, "1"),
            "mo_energy": (mf.mo_energy, "hartree"),
            "nocc": (mf.mol.nelectron // 2, "1"),
            "dipole": (mf.dip_moment(unit="AU", verbose=0), "e*bohr"),
            "dipole_origin": (np.zeros(3), "bohr"),
        }
        header = structure_header(atoms, sid, int(sid), 0)
        write_stage(directory, "molecule", header, "minimal", datasets, {"basis": basis, "xc": "hf"})


def test_model_basis_other_than_sto3g_takes_its_minimal_labels_from_data_minimal_labels(labels, tmp_path):
    """``model.basis: 3-21g``: without minimal labels in that basis the trainer refuses (naming the
    labeller option); with ``data.minimal_labels`` the ridge start is fitted to the 3-21G Fock
    matrices (a 3-21G-sized H whose occupied levels follow the 3-21G ones) and the plain-basis
    baseline is plain 3-21G, closer to the 6-31G targets than STO-3G is (split valence in both); the
    model's stored config names the minimal labels relative to the YAML file, like data.labels."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.config import ConfigError, config_from_dict, load_config
    from mlhcalc.training.dataset import build_samples
    from mlhcalc.training.evaluation import predict_samples
    from mlhcalc.training.trainer import Trainer, load_training_data

    model_section = {"basis": "3-21g", "hypers": dict(SMALL_HYPERS)}
    with pytest.raises(ConfigError, match="--basis-minimal 3-21g"):
        _trainer(_config(labels, tmp_path / "refused", model=model_section, training={"max_epochs": 1}))
    minimal = tmp_path / "minimal-321g.d"
    _label_minimal_in(labels, minimal, "3-21g")
    values = _config(labels, tmp_path / "run", model=model_section, training={"max_epochs": 1})
    values["data"]["minimal_labels"] = str(minimal)
    data = load_training_data(config_from_dict(values))
    assert len(data.ridge) == 12 and all(a.info["fock_minimal"].shape[0] > 10 for a in data.ridge)  # H2O: 13
    path = tmp_path / "model-basis.yaml"
    path.write_text(yaml.safe_dump(values))
    trainer = Trainer(load_config(path), log=lambda message: None)
    model = trainer.block_model
    assert model.basis == "3-21g"
    predictions = predict_samples(model, build_samples(model.features, data.ridge, model.basis))
    errors = [
        np.abs(np.asarray(levels)[: a.info["nocc"]] - a.info["mo_energy_minimal"][: a.info["nocc"]]).mean()
        for levels, a in zip(predictions.mo_energy, data.ridge)
    ]
    assert np.mean(errors) < 1e-3, errors  # Ha (measured 7e-5): the ridge reproduces its training Fock matrices
    trainer.fit()
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    plain_321g = summary["evaluation"]["val_minimal_basis_baseline"]["occupied_mae_ev"]
    from mlhcalc.training.evaluation import baseline_metrics

    plain_sto3g = baseline_metrics([a for a in read(labels) if a.info["split"] == "val"])["occupied_mae_ev"]
    assert plain_321g < 0.5 * plain_sto3g, (plain_321g, plain_sto3g)  # measured 0.78 against 3.04 eV
    stored = HamiltonianModel.load(tmp_path / "run" / "model").metadata["training"]["config"]["data"]
    assert stored["minimal_labels"] == "minimal-321g.d"  # not this machine's absolute path


def test_lowdin_representation_model_predicts_the_orthogonalised_hamiltonian(labels, tmp_path):
    """``model.representation: lowdin`` (3-21G model basis): the ridge start is fitted to
    S^-1/2 F S^-1/2 and its levels follow the 3-21G ones; the trainer's orthogonal-basis samples and
    ``HamiltonianModel.predict`` (H = S^1/2 H_L S^1/2, generalised eigenproblem) give the same levels
    (an identity, 1e-8 Ha); save/load keeps the representation; position derivatives are refused."""
    import scipy.linalg

    from mlhcalc.model import HamiltonianModel
    from mlhcalc.structure import to_mole
    from mlhcalc.training.config import ConfigError, config_from_dict
    from mlhcalc.training.dataset import build_samples
    from mlhcalc.training.evaluation import predict_samples
    from mlhcalc.training.trainer import Trainer

    minimal = tmp_path / "minimal-321g.d"
    _label_minimal_in(labels, minimal, "3-21g", splits=("train",))
    model_section = {"basis": "3-21g", "hypers": dict(SMALL_HYPERS), "representation": "lowdin"}
    values = _config(labels, tmp_path / "run", model=model_section, training={"max_epochs": 0})
    values["data"]["minimal_labels"] = str(minimal)
    trainer = Trainer(config_from_dict(values), log=lambda message: None)
    block = trainer.block_model
    assert block.representation == "lowdin"
    structures = trainer.data.ridge[:4]
    samples = build_samples(block.features, structures, block.basis, representation="lowdin")
    assert np.allclose(samples[0].overlap, np.eye(samples[0].nao))
    levels = predict_samples(block, samples).mo_energy
    directory = trainer.model.save(tmp_path / "saved")
    loaded = HamiltonianModel.load(directory)
    assert loaded.block_model.representation == "lowdin"
    for atoms, sample_levels in zip(structures, levels):
        nocc = atoms.info["nocc"]
        reference = atoms.info["mo_energy_minimal"][:nocc]
        assert np.abs(np.asarray(sample_levels)[:nocc] - reference).mean() < 1e-3  # Ha: the ridge fit itself
        hamiltonian = loaded.predict(atoms).hamiltonian.detach().numpy()
        overlap = to_mole(atoms, "3-21g").intor("int1e_ovlp")
        generalised = scipy.linalg.eigh(hamiltonian, overlap, eigvals_only=True)
        assert np.abs(generalised - np.sort(np.asarray(sample_levels))).max() < 1e-8
    with pytest.raises(ValueError, match="Löwdin-basis Hamiltonian"):
        loaded.predict(structures[0], positions_requires_grad=True)
    values["model"]["representation"] = "orthogonal"
    with pytest.raises(ConfigError, match="model.representation must be 'ao' or 'lowdin'"):
        config_from_dict(values)


def test_minimal_targets_train_on_the_model_basis_labels_themselves(labels, tmp_path):
    """``data.targets: minimal`` (issue 4's observable fit): the targets are the STO-3G labels of every
    structure with a minimal stage (MO energies, dipole, CPKS α exactly as stored), the label files
    behind the run are minimal-stage files only, the plain-basis baseline is then the reference
    itself (0 to round-off), training lowers the train loss against those targets, and the model
    records the minimal level of theory."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.config import config_from_dict
    from mlhcalc.training.trainer import load_training_data

    values = _config(
        labels,
        tmp_path / "run",
        data={"targets": "minimal"},
        model={"ridge_regularization": 0.1},  # a deliberately poor start (1e-8 interpolates these 12 in-sample)
        targets={"mo_energy": {"weight": 1.0}, "dipole": {"weight": 1.0}, "normalization": "initial"},
        optimizer={"name": "lbfgs", "lr": 1.0, "lbfgs_max_iter": 10},
        training={"max_epochs": 3},
    )
    data = load_training_data(config_from_dict(values))
    stored = {a.info["structure_id"]: a for a in read(labels)}
    assert len(data.train) == 12 and len(data.val) == 6
    for atoms in data.train + data.val:
        reference = stored[atoms.info["structure_id"]].info
        np.testing.assert_array_equal(atoms.info["mo_energy_large"], reference["mo_energy_minimal"])
        np.testing.assert_array_equal(atoms.info["dipole_large"], reference["dipole_minimal"])
        np.testing.assert_array_equal(atoms.info["polarizability_large"], reference["polarizability_minimal"])
        assert not np.allclose(atoms.info["dipole_large"], reference["dipole_large"], atol=1e-3)
    assert data.level == "HF/sto-3g"
    assert data.label_files and all(f.name.endswith(".minimal.h5") for f in data.label_files)

    trainer = _trainer(values)
    trainer.fit()
    rows = _log_rows(tmp_path / "run")
    start, end = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert end < 0.5 * start, (start, end)  # measured 2.0 → 0.44 (initial normalisation: the start is 2)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    baseline = summary["evaluation"]["val_minimal_basis_baseline"]
    assert baseline["occupied_mae_ev"] < 1e-8 and baseline["dipole_mae_debye"] < 1e-8
    model = HamiltonianModel.load(tmp_path / "run" / "model")
    assert model.metadata["level_of_theory"].startswith("HF/sto-3g targets (mo_energy, dipole)")

    # without minimal-stage labels the error names them (and nothing is computed before it)
    large_only = tmp_path / "large-only.d"
    shutil.copytree(labels, large_only, ignore=shutil.ignore_patterns("*.minimal.h5"))
    values = _config(large_only, tmp_path / "run-empty", data={"targets": "minimal"}, training={"max_epochs": 1})
    with pytest.raises(ValueError, match="has minimal-stage labels"):
        _trainer(values)


def test_self_consistent_charge_model_trains_through_its_charges(labels, tmp_path):
    """A model with ``electrostatics="scc"`` (ridge start fitted to F − H_es(q_F)) as ``model.init``:
    the trainer's batched H is the self-consistent one of ``HamiltonianModel.predict`` (1e-7 Ha), the
    loss gradient through the charges matches central differences (1e-4 relative: the SCC is converged
    to 1e-8 e), a short training run lowers the train loss, and the saved model keeps the option."""
    from mlhcalc.features import FeatureHypers
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training import direct
    from mlhcalc.training.dataset import model_fock_stack, model_samples, pad_batch
    from mlhcalc.training.losses import batch_scales, qm_loss, target_statistics

    train = [a for a in read(labels) if a.info["split"] == "train"]
    hypers = FeatureHypers(species=(1, 6, 7, 8), long_range_widths=(2.0,), **SMALL_HYPERS)
    start = HamiltonianModel.create(hypers, "sto-3g", periodic=False, level_of_theory="HF/STO-3G", electrostatics="scc")
    refs = [direct.Reference.from_atoms(a) for a in train]
    normal = direct.normal_equations(start.block_model, train, [direct.to_scc_target(r, r.fock) for r in refs])
    direct.solve(start.block_model, normal, 1e-6)
    start.save(tmp_path / "start", training_data_sha256="0" * 64)

    block = start.block_model
    samples = model_samples(block, train[:5])
    batch = pad_batch(samples, 8, 16)
    with torch.no_grad():
        stack = model_fock_stack(block, samples, batch)
    for k, (sample, atoms) in enumerate(zip(samples, train[:5])):
        predicted = start.predict(atoms).hamiltonian.numpy()
        assert np.abs(stack[k, : sample.nao, : sample.nao].numpy() - predicted).max() < 1e-7

    statistics = target_statistics(samples)
    scales = batch_scales([1.0, 1.0, 0.0], statistics.variances, statistics, len(samples))
    parameters = [p for p in block.parameters() if p.requires_grad]
    direction = [torch.from_numpy(np.random.default_rng(4).normal(size=p.shape)) for p in parameters]

    def loss():
        return qm_loss(model_fock_stack(block, samples, batch), batch, scales)[0]

    gradients = torch.autograd.grad(loss(), parameters, allow_unused=True)
    analytic = sum(float((g * v).sum()) for g, v in zip(gradients, direction) if g is not None)
    step, values = 1e-4, []
    with torch.no_grad():
        for sign in (1.0, -2.0, 1.0):
            for p, v in zip(parameters, direction):
                p.add_(sign * step * v)
            values.append(float(loss()))
    numeric = (values[0] - values[1]) / (2 * step)
    assert abs(analytic) > 1e-3 and abs(numeric - analytic) < 1e-4 * abs(analytic), (analytic, numeric)

    values = _config(
        labels,
        tmp_path / "run",
        targets={"mo_energy": {"weight": 1.0}, "dipole": {"weight": 1.0}},
        training={"max_epochs": 4},
    )
    values["model"] = {"init": str(tmp_path / "start")}
    trainer = _trainer(values)
    assert trainer.block_model.electrostatics == "scc"
    directory = trainer.fit()
    rows = _log_rows(tmp_path / "run")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]), rows
    assert HamiltonianModel.load(directory).block_model.electrostatics == "scc"
