"""Band-energy training of the periodic model (mlhcalc.training.bands), on committed PBE/gth-dzvp
labels of four Si₂ cells (data/silicon) and the shipped direct fit models/silicon-szv as the start."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import mlhcalc.qm  # noqa: F401  (float64 JAX)
from mlhcalc.calculator import MLHamiltonian
from mlhcalc.model import HamiltonianModel
from mlhcalc.reference import read
from mlhcalc.training import bands as band_training
from mlhcalc.training.config import ConfigError
from mlhcalc.training.metrics import HARTREE_TO_EV

REPO = Path(__file__).resolve().parent.parent
LABELS = REPO / "data" / "silicon" / "primitive_labels.d"
CUBIC = REPO / "data" / "silicon" / "cubic_labels.d"  # rattled 8-atom cells, 2×2×2 mesh
INIT = REPO / "models" / "silicon-szv"


@pytest.fixture(scope="module")
def cells():
    cells = [a for a in read(LABELS) if "bands_large" in a.info][:4]
    assert len(cells) == 4 and {a.info["split"] for a in cells} >= {"train", "test"}
    return cells


@pytest.fixture(scope="module")
def start():
    return HamiltonianModel.load(INIT)


def _target(atoms, window_ev=1.5):
    return band_training.band_target(atoms, "gth-szv", "gth-pade", window_ev, 1e-3)


def test_degenerate_means_replace_each_run_by_its_mean():
    bands = np.array([[-1.0, 0.2, 0.2 + 1e-6, 0.2 + 2e-6, 0.5, 0.9, 0.9]])
    out = band_training._degenerate_means(bands, 1e-5)
    np.testing.assert_allclose(out, [[-1.0, 0.2 + 1e-6, 0.2 + 1e-6, 0.2 + 1e-6, 0.5, 0.9, 0.9]], rtol=0, atol=1e-15)


def test_targets_select_valence_and_the_conduction_window(cells):
    atoms = cells[0]
    target = _target(atoms)
    reference = np.sort(atoms.info["bands_large"], axis=1)
    nv = int(atoms.info["nocc"])
    cbm = reference[:, nv].min()
    assert target.selected[:, :nv].all()
    inside = reference[:, nv:8] <= cbm + 1.5 / HARTREE_TO_EV
    np.testing.assert_array_equal(target.selected[:, nv:], inside)
    assert target.selected[:, nv].any()  # the CBM state itself
    # S(k) is the exact gth-szv overlap: the minimal-stage label's S(k) where the cell has one
    np.testing.assert_allclose(target.overlap_k, atoms.info["sk_minimal"], rtol=0, atol=1e-10)
    # a wider window takes more conduction states, never fewer
    assert _target(atoms, 3.0).selected.sum() > target.selected.sum()


def test_model_bands_match_the_calculator(cells, start):
    """The training path (cached features, Bloch sum and PySCFAD eigh through the bridge) and the ASE
    calculator (its own S(T) images and eigensolver) give the same bands of the same model."""
    atoms = cells[1]
    target = _target(atoms)
    predictor = band_training.CellBands(start, [atoms], [target], start.metadata["overlap_shift_ha"])
    with torch.no_grad():
        (trained_path,) = predictor.bands()
    calc = MLHamiltonian(model=start, kpts=np.asarray(atoms.info["kpts_frac"]))
    probe = atoms.copy()
    probe.info = {}
    calc.calculate(probe, ["eigenvalues"])
    eigenvalues = calc.results["eigenvalues"][0] / HARTREE_TO_EV
    np.testing.assert_allclose(trained_path.numpy(), eigenvalues, rtol=0, atol=1e-8)


def test_loss_gradient_equals_finite_differences(cells, start):
    """d loss / dt along a random direction of all weights: autograd through the JAX eigensolver
    against a central difference (h = 1e-4 relative), on the perfect diamond cell, whose bands are
    exactly degenerate at Γ, X and L (threefold valence top at Γ): the degenerate-set targets keep
    the loss differentiable there."""
    model = HamiltonianModel(start.block_model, dict(start.metadata))
    atoms = cells[0]
    assert atoms.info["rattle_sigma"] == 0 and not np.any(atoms.info["strain_voigt"])
    target = _target(atoms)
    predictor = band_training.CellBands(model, [atoms], [target], start.metadata["overlap_shift_ha"])
    parameters = list(model.block_model.parameters())
    rng = np.random.default_rng(0)
    direction = [torch.tensor(rng.normal(size=p.shape)) * (p.detach().abs().mean() + 1e-3) for p in parameters]

    def loss():
        sse, count = band_training._squared_error(predictor.bands(), [target])
        return sse / count

    with torch.no_grad():
        (bands,) = predictor.bands()
    gamma = int(np.argmin(np.abs(target.kpts).sum(axis=1)))
    top = bands[gamma, 1:4].numpy()  # the Γ₂₅' valence top: threefold in the model too
    assert np.ptp(top) < 1e-8

    for p in parameters:
        p.grad = None
    value = loss()
    value.backward()
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(parameters, direction))
    original = [p.detach().clone() for p in parameters]
    h = 1e-4
    values = []
    with torch.no_grad():
        for sign in (1, -1):
            for p, p0, d in zip(parameters, original, direction):
                p.copy_(p0 + sign * h * d)
            values.append(float(loss()))
        for p, p0 in zip(parameters, original):
            p.copy_(p0)
    numeric = (values[0] - values[1]) / (2 * h)
    assert abs(analytic) > 1e-8
    assert abs(analytic - numeric) <= 1e-6 * abs(analytic)


def _config(tmp_path, cells, **overrides):
    labels = tmp_path / "labels.d"
    if not labels.exists():
        labels.mkdir()
        for atoms in cells:
            for file in LABELS.glob(f"{atoms.info['structure_id']}.*.h5"):
                shutil.copy(file, labels / file.name)
        for extra in ("manifest.json",):
            if (LABELS / extra).exists():
                shutil.copy(LABELS / extra, labels / extra)
    values = dict(
        kind="bands", labels=str(labels), init=str(INIT), output=str(tmp_path / "run"), train_split="train",
        val_split="test", max_epochs=2, lbfgs_max_iter=10, anchor=0.01, progress="off", evaluation_splits=["test"],
    )  # fmt: skip
    values.update(overrides)
    path = tmp_path / "bands.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_training_lowers_the_band_error_and_resumes_exactly(tmp_path, cells):
    path = _config(tmp_path, cells)
    trainer = band_training.BandTrainer(band_training.load_band_config(path), log=lambda _: None)
    model_dir = trainer.fit()
    history = trainer.state["history"]
    assert history[-1]["train_window_mae_ev"] < 0.5 * history[0]["train_window_mae_ev"]
    reference = HamiltonianModel.load(model_dir).block_model.state_dict()
    saved = HamiltonianModel.load(model_dir)
    assert saved.metadata["overlap_shift_ha"] == HamiltonianModel.load(INIT).metadata["overlap_shift_ha"]
    assert saved.metadata["initial_model"]["name"] == "silicon-szv"
    assert "gth-dzvp" in saved.metadata["level_of_theory"]

    # interrupted after epoch 1, then resumed from the checkpoint: the same weights as one run
    path = _config(tmp_path, cells, output=str(tmp_path / "run2"))

    def stop(trainer, epoch):
        trainer.request_stop()

    interrupted = band_training.BandTrainer(band_training.load_band_config(path), log=lambda _: None)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(on_epoch=stop)
    assert interrupted.state["epoch"] == 1
    resumed = band_training.BandTrainer(band_training.load_band_config(path), log=lambda _: None)
    assert resumed.state["epoch"] == 1
    model_dir = resumed.fit()
    for key, value in HamiltonianModel.load(model_dir).block_model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-12)


def test_config_errors_name_the_key(tmp_path, cells):
    path = _config(tmp_path, cells, window=1.5)
    with pytest.raises(ConfigError, match="unknown key 'window'"):
        band_training.load_band_config(path)
    path = _config(tmp_path, cells, anchor=-1)
    with pytest.raises(ConfigError, match="anchor"):
        band_training.load_band_config(path)
    path = _config(tmp_path, cells, output=str(tmp_path / "run3"))
    trainer = band_training.BandTrainer(band_training.load_band_config(path), log=lambda _: None)
    trainer.fit()
    path = _config(tmp_path, cells, output=str(tmp_path / "run3"), window_ev=2.0)
    with pytest.raises(ConfigError, match="window_ev"):
        band_training.BandTrainer(band_training.load_band_config(path), log=lambda _: None)
    assert band_training.is_band_config(path)
    assert not band_training.is_band_config(REPO / "configs" / "organic.yaml")


def test_several_label_sets_with_their_own_limits(tmp_path, cells):
    """``labels`` as a list (primitive and cubic cells): the splits are the union, ``max_train``
    applies per set, cells of different sizes train and score together, and the training-data hash
    and description cover every set's files."""
    (tmp_path / "a.d").mkdir()
    for atoms in cells:
        for file in LABELS.glob(f"{atoms.info['structure_id']}.*.h5"):
            shutil.copy(file, tmp_path / "a.d" / file.name)
    shutil.copytree(CUBIC, tmp_path / "b.d", ignore=shutil.ignore_patterns(".lock", "0000[1-9]*", "00000[0-57-9]*"))
    ids = {split: [a.info["structure_id"] for a in cells if a.info["split"] == split] for split in ("train", "test")}
    path = _config(
        tmp_path, cells, labels=[{"path": str(tmp_path / "a.d"), "max_train": 1}, str(tmp_path / "b.d")],
        max_epochs=1, lbfgs_max_iter=2, output=str(tmp_path / "run-sets"),
    )  # fmt: skip
    config = band_training.load_band_config(path)
    assert config.label_sets() == [(str(tmp_path / "a.d"), 1, None), (str(tmp_path / "b.d"), None, None)]
    trainer = band_training.BandTrainer(config, log=lambda _: None)
    assert [a.info["structure_id"] for a in trainer.splits["train"]] == [*ids["train"][:1], "000006"]
    assert [len(a) for a in trainer.splits["train"]] == [2, 8]
    assert [a.info["structure_id"] for a in trainer.splits["test"]] == ids["test"]  # the val split here
    saved = HamiltonianModel.load(trainer.fit())
    assert "1 train + 2 val cells of a.d; 1 train + 0 val cells of b.d" in saved.metadata["training_data"]
    scores = band_training.band_scores([b.detach().numpy() for b in trainer.train.bands()], trainer.targets("train"))
    assert scores["n_structures"] == 2 and np.isfinite(scores["gap_mae_ev"])  # 8 and 32 bands together
    for bad, message in (([], "empty list"), ([{"max_train": 1}], r"labels\[0\] must be"),
                         ([{"path": "x", "cap": 1}], "unknown keys")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            band_training.load_band_config(_config(tmp_path, cells, labels=bad))
