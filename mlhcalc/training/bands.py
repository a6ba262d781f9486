"""Train a periodic model on large-basis band energies through the qm layer (issue 7).

The gth-szv model (H(T) − μS(T) from features, :mod:`mlhcalc.training.direct_periodic`) is trained so
that the bands of (Σ_T e^{ik·T} H'(T) + μ S(k), S(k)) — S the exact gth-szv overlap of the cell —
reproduce the PBE/gth-dzvp bands labelled on the cell's Γ-centred mesh (stage ``large``,
``atoms.info['bands_large']``). The eigenvalues come from :func:`mlhcalc.qm.periodic.band_energies_k`
(PySCFAD ``eigh``, JAX) through the torch bridge, so the gradient reaches the model's weights.

**Which states.** A minimal sp³ basis has 4 bands per Si atom; the 2·nao − … higher dzvp conduction
states are out of its reach. The loss takes every valence band and the conduction states whose
reference energy is ≤ CBM_ref + ``window_ev`` (per cell, CBM on the mesh), matched by index in the
sorted bands (the window holds ≤ 2 conduction states per k for Si; never more than the model has).

**Degeneracies.** A single eigenvalue is not differentiable inside a degenerate set; the target of
each state is the mean of the reference states degenerate with it (within ``degeneracy_ev``), so
the squared error's gradient is the same for all members of a degenerate predicted set, and its
pullback V diag(g) V† does not depend on the arbitrary basis of that set.

**Loss.** Mean squared error (hartree²) over the selected states of all train cells, divided by the
starting model's value (so 1 at the start), plus ``anchor`` · ‖θ − θ₀‖² / ‖θ₀‖² (L2-SP towards the
direct fit). Full-batch L-BFGS; the val window MAE decides the best epoch and early stopping.

A run lives in ``output/`` like a molecular run (:mod:`mlhcalc.training.trainer`): ``checkpoint.pt``
after every epoch (resume by rerunning; Ctrl-C saves first), ``log.csv``, ``model/`` and
``metrics.json``. Config keys: :class:`BandConfig`; example ``configs/silicon.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from mlhcalc.training import metrics
from mlhcalc.training.config import PROGRESS, ConfigError, _check_keys, _choice, _number, _path

__all__ = [
    "BandConfig",
    "BandTarget",
    "load_band_config",
    "band_target",
    "CellBands",
    "band_scores",
    "BandTrainer",
    "train_bands_from_config",
    "is_band_config",
]

_CHECKPOINT_FORMAT = "mlhcalc.training.bands.checkpoint/1"
_RESUMABLE = ("max_epochs", "patience", "progress")


@dataclass(frozen=True)
class BandConfig:
    """One band-training run (YAML keys; relative paths are relative to the YAML file).

    - ``kind``: ``bands`` (marks the file for ``mlhcalc train``).
    - ``labels``: labelled cells (``OUT.d`` or ``.h5`` of ``mlhcalc label --level silicon``) with the
      ``large`` stage, or a list of such sets (e.g. primitive and cubic cells), each a path or a mapping
      ``{path, max_train, max_val}``; ``train_split`` / ``val_split`` values of ``atoms.info['split']``;
      ``max_train`` / ``max_val``: the first N labelled cells of each split (input order), per set
      unless the set gives its own.
    - ``init``: the starting model (a direct H(T) fit, e.g. ``models/silicon-szv``).
    - ``window_ev``: conduction states up to CBM_ref + this; ``degeneracy_ev``: reference states closer
      than this share their mean as target.
    - ``anchor``: L2-SP weight; ``lr``, ``lbfgs_max_iter``, ``lbfgs_history``: L-BFGS (strong Wolfe);
      ``max_epochs``, ``patience`` (epochs without a better val window MAE).
    - ``output``: run directory; ``save_model``: also write the best model there (e.g. ``models/silicon``).
    - ``evaluation_splits``: splits scored at the end; ``seed``; ``progress``: auto / on / off.
    """

    kind: str = "bands"
    labels: str | tuple = ""
    train_split: str = "train"
    val_split: str = "val"
    max_train: int | None = None
    max_val: int | None = None
    init: str = ""
    window_ev: float = 1.5
    degeneracy_ev: float = 1e-3
    anchor: float = 0.0
    lr: float = 1.0
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 50
    max_epochs: int = 30
    patience: int = 8
    output: str = ""
    save_model: str | None = None
    evaluation_splits: tuple[str, ...] = ("val", "test")
    seed: int = 0
    progress: str = "auto"
    source: str | None = None  # the YAML file (not a key)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values.pop("source")
        values["evaluation_splits"] = list(self.evaluation_splits)
        if isinstance(self.labels, tuple):
            values["labels"] = list(values["labels"])  # as the checkpoint's JSON holds it
        return values

    def label_sets(self) -> list[tuple[str, int | None, int | None]]:
        """``(path, max_train, max_val)`` of every label set, in the order given."""
        if isinstance(self.labels, str):
            return [(self.labels, self.max_train, self.max_val)]
        return [(e["path"], e.get("max_train", self.max_train), e.get("max_val", self.max_val)) for e in self.labels]


def is_band_config(path: str | os.PathLike) -> bool:
    """Whether the YAML file ``path`` is a band-training config (``kind: bands``)."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(values, dict) and values.get("kind") == "bands"


def load_band_config(path: str | os.PathLike) -> BandConfig:
    """Read and validate a band-training YAML file; ``ConfigError`` names a bad key."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    try:
        return BandConfig(**_band_values(values, path.resolve().parent), source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _band_values(values, base: Path) -> dict:
    """The validated keyword arguments of :class:`BandConfig` (the validators of the molecular config)."""
    values = dict(_check_keys(values, BandConfig, ""))
    if values.get("kind") != "bands":
        raise ConfigError("a band-training config needs 'kind: bands'")
    for key in ("init", "output", "save_model"):
        values[key] = _path(values.get(key), key, base, optional=key == "save_model")
    values["labels"] = _label_sets(values.get("labels"), base)
    for key in ("window_ev", "degeneracy_ev", "anchor", "lr"):
        if key in values:
            values[key] = _number(values[key], key, low=0)
    for key in ("max_train", "max_val", "lbfgs_max_iter", "lbfgs_history", "max_epochs", "patience", "seed"):
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    values["progress"] = _choice(values.get("progress", "auto"), "progress", PROGRESS)
    if "evaluation_splits" in values:
        values["evaluation_splits"] = tuple(values["evaluation_splits"])
    return values


def _label_sets(value, base: Path) -> str | tuple:
    """``labels``: one path (kept a string) or a list of paths / ``{path, max_train, max_val}`` mappings."""
    if not isinstance(value, list):
        return _path(value, "labels", base)
    if not value:
        raise ConfigError("labels: an empty list; give at least one labels directory")
    sets = []
    for n, entry in enumerate(value):
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or "path" not in entry:
            raise ConfigError(f"labels[{n}] must be a path or a mapping with 'path', got {entry!r}")
        unknown = set(entry) - {"path", "max_train", "max_val"}
        if unknown:
            raise ConfigError(f"labels[{n}]: unknown keys {sorted(unknown)} (allowed: path, max_train, max_val)")
        checked = {"path": _path(entry["path"], f"labels[{n}].path", base)}
        for key in ("max_train", "max_val"):
            if key in entry:
                checked[key] = _number(entry[key], f"labels[{n}].{key}", integer=True, low=1)
        sets.append(checked)
    return tuple(sets)


# ------------------------------------------------------------------------------------------ targets
@dataclass
class BandTarget:
    """One cell's band targets (hartree) on its label mesh, and the model-basis overlap there."""

    name: str
    kpts: np.ndarray  # (nk, 3) bohr⁻¹
    overlap_k: np.ndarray  # (nk, nao, nao) complex, model basis (exact integrals)
    reference: np.ndarray  # (nk, n_ref) sorted large-basis bands
    n_valence: int
    target: np.ndarray  # (nk, nao): degenerate-set means of the reference, 0 where not selected
    selected: np.ndarray  # (nk, nao) bool: valence + conduction within the window


def _degenerate_means(bands: np.ndarray, tolerance: float) -> np.ndarray:
    """Each sorted level replaced by the mean of its run of levels closer than ``tolerance``."""
    out = bands.copy()
    for k, levels in enumerate(bands):
        start = 0
        for n in range(1, len(levels) + 1):
            if n == len(levels) or levels[n] - levels[n - 1] > tolerance:
                out[k, start:n] = levels[start:n].mean()
                start = n
    return out


def band_target(atoms: Atoms, basis: str, pseudo: str, window_ev: float, degeneracy_ev: float) -> BandTarget:
    """The targets of a cell labelled with the ``large`` stage, and S(k) of ``basis`` on its mesh."""
    from mlhcalc.structure import to_cell

    info = atoms.info
    reference = np.sort(np.asarray(info["bands_large"], dtype=float), axis=1)
    kpts = np.asarray(info["kpts"], dtype=float)
    n_valence = int(info["nocc"])
    cell = to_cell(atoms, basis, pseudo, validate=False)
    overlap_k = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kpts))
    nao = overlap_k.shape[-1]
    if reference.shape[1] < nao:
        raise ValueError(f"{info.get('name')}: {reference.shape[1]} reference bands, fewer than the model's {nao}")
    cbm = metrics.band_gap(reference, n_valence)[2]
    means = _degenerate_means(reference, degeneracy_ev / metrics.HARTREE_TO_EV)[:, :nao]
    selected = reference[:, :nao] <= cbm + window_ev / metrics.HARTREE_TO_EV
    selected[:, :n_valence] = True
    return BandTarget(
        name=str(info.get("name", info.get("structure_id", "?"))),
        kpts=kpts,
        overlap_k=overlap_k,
        reference=reference,
        n_valence=n_valence,
        target=np.where(selected, means, 0.0),
        selected=selected,
    )


# ----------------------------------------------------------------------------------------- model
def _bands_jax(hamiltonian_t, phase, overlap_k, shift):
    import jax.numpy as jnp

    from mlhcalc.qm.periodic import band_energies_k

    hamiltonian_k = jnp.einsum("kt,tij->kij", phase, hamiltonian_t) + shift * overlap_k
    return band_energies_k(hamiltonian_k, overlap_k)


class CellBands:
    """Features of fixed cells computed once; :meth:`bands` gives each cell's model bands (torch,
    differentiable in the model weights) through the qm layer."""

    def __init__(self, model, atoms_list: Sequence[Atoms], targets: Sequence[BandTarget], shift: float):
        import jax.numpy as jnp

        from mlhcalc.features import systems_from_atoms
        from mlhcalc.hamiltonian.model import model_layouts
        from mlhcalc.qm.bridge import jax_to_torch
        from mlhcalc.structure import lattice_bohr

        self.block_model = model.block_model
        self.cells = []
        for atoms, target in zip(atoms_list, targets):
            systems = systems_from_atoms([atoms])
            with torch.no_grad():
                features = self.block_model.features(systems)
            (layout,) = model_layouts(features, systems, self.block_model.basis)
            translations = np.asarray(layout.translations) @ lattice_bohr(atoms)
            phase = jnp.asarray(np.exp(1j * target.kpts @ translations.T))
            function = jax_to_torch(
                partial(_bands_jax, phase=phase, overlap_k=jnp.asarray(target.overlap_k), shift=float(shift))
            )
            self.cells.append((features, layout, function))

    def bands(self) -> list[torch.Tensor]:
        from mlhcalc.hamiltonian.blocks import reconstruct

        return [
            function(reconstruct(self.block_model.coupled(features, layout), layout).contiguous())
            for features, layout, function in self.cells
        ]


def _squared_error(bands: Sequence[torch.Tensor], targets: Sequence[BandTarget]) -> tuple[torch.Tensor, int]:
    total, count = torch.zeros((), dtype=torch.float64), 0
    for predicted, target in zip(bands, targets):
        mask = torch.as_tensor(target.selected)
        total = total + (((predicted - torch.as_tensor(target.target)) ** 2) * mask).sum()
        count += int(target.selected.sum())
    return total, count


BREAK_BINS_EV = ((0.0, 1.5), (1.5, 3.0), (3.0, 5.0), (5.0, math.inf))


def band_scores(bands: Sequence[np.ndarray], targets: Sequence[BandTarget], window_ev: float = 1.5) -> dict:
    """Metrics (eV) of model bands against the large-basis reference (each cell's first nao reference bands):
    window MAE (valence + conduction to CBM + ``window_ev``), valence, conduction window, gap / VBM /
    CBM errors (means over cells), and the conduction-state MAE in bins of E_ref − CBM_ref (where the
    minimal basis breaks). Cells may differ in size (e.g. primitive and cubic)."""
    refs = [t.reference[:, : b.shape[1]] for b, t in zip(bands, targets)]
    n_valence = [t.n_valence for t in targets]
    result = {"n_structures": len(targets), **metrics.band_metrics(bands, refs, n_valence, window_ev)}
    above = np.concatenate([(r[:, nv:] - metrics.band_gap(r, nv)[2]).ravel() for r, nv in zip(refs, n_valence)])
    errors = np.concatenate([np.abs(b[:, nv:] - r[:, nv:]).ravel() for b, r, nv in zip(bands, refs, n_valence)])
    for low, high in BREAK_BINS_EV:
        inside = (above * metrics.HARTREE_TO_EV >= low) & (above * metrics.HARTREE_TO_EV < high)
        key = f"conduction_{low:g}_{high:g}_ev_mae_ev".replace("inf", "up")
        result[key] = float(errors[inside].mean() * metrics.HARTREE_TO_EV) if inside.any() else None
    return result


# ---------------------------------------------------------------------------------------- trainer
class BandTrainer:
    """One band-training run; :meth:`fit` trains or resumes and returns the model directory."""

    def __init__(self, config: BandConfig, *, resume: bool = True, log: Callable[[str], None] | None = None):
        from mlhcalc.model import HamiltonianModel
        from mlhcalc.training.trainer import _log_to_stderr, _start_metadata

        self.config, self.log = config, log or _log_to_stderr
        self.output = Path(config.output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.stop_requested = False
        torch.manual_seed(config.seed)
        checkpoint_path = self.output / "checkpoint.pt"
        checkpoint = torch.load(checkpoint_path, weights_only=True) if resume and checkpoint_path.is_file() else None
        if checkpoint is not None:
            self._check_resumable(checkpoint)
        start = HamiltonianModel.load(config.init)
        if not start.periodic:
            raise ConfigError(f"init {config.init} is a molecular model; band training needs a periodic one")
        self.model = HamiltonianModel(start.block_model, _start_metadata(start.metadata, config.init))
        self.shift = float(start.metadata.get("overlap_shift_ha", 0.0))
        self.model.metadata["overlap_shift_ha"] = self.shift
        if "prediction" in start.metadata:  # what the output is (H − μS), as the start describes it
            self.model.metadata["prediction"] = start.metadata["prediction"]
        self.pseudo = str(start.metadata.get("pseudo", "gth-pade"))
        self.anchor = [p.detach().clone() for p in self.model.block_model.parameters()]
        self.anchor_scale = sum(float((p**2).sum()) for p in self.anchor) or 1.0
        self._load_data()
        self.optimizer = torch.optim.LBFGS(
            list(self.model.block_model.parameters()),
            lr=config.lr,
            max_iter=config.lbfgs_max_iter,
            history_size=config.lbfgs_history,
            line_search_fn="strong_wolfe",
        )
        if checkpoint is not None:
            self.model.block_model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.state = json.loads(checkpoint["state"])
            self.best_model = checkpoint["best_model"]
        else:
            self.state = {"epoch": 0, "status": "new", "best": math.inf, "best_epoch": 0, "bad_epochs": 0}
            self.state.update(wall_time=0.0, history=[], normalizer=None)
            self.best_model = {k: v.detach().clone() for k, v in self.model.block_model.state_dict().items()}

    def _check_resumable(self, checkpoint: dict) -> None:
        if checkpoint.get("format") != _CHECKPOINT_FORMAT:
            raise ConfigError(f"{self.output / 'checkpoint.pt'} is not a band-training checkpoint")
        previous, current = json.loads(checkpoint["config"]), self.config.to_dict()
        changed = [k for k in current if k not in _RESUMABLE and previous.get(k) != current[k]]
        if changed:
            raise ConfigError(
                f"{self.output} holds a run of a different configuration (changed: {', '.join(changed)}); "
                "use another output directory or --restart"
            )

    def _load_data(self) -> None:
        from mlhcalc.reference import result_paths
        from mlhcalc.training.direct import load_labelled

        config = self.config
        started = time.perf_counter()
        self.splits: dict[str, list[Atoms]] = {}
        self.label_dirs: list[Path] = []
        for n, (path, max_train, max_val) in enumerate(config.label_sets()):
            groups = load_labelled(path, key="bands_large")
            for split, limit in ((config.train_split, max_train), (config.val_split, max_val)):
                if limit is not None and split in groups:
                    groups[split] = groups[split][:limit]
            for split, cells in groups.items():
                for atoms in cells:
                    atoms.info["label_set"] = n  # which set's files hold the cell (training-data hash)
                self.splits.setdefault(split, []).extend(cells)
            self.label_dirs.append(result_paths(path)[0])
        for split in (config.train_split, config.val_split):
            if not self.splits.get(split):
                sets = ", ".join(path for path, _, _ in config.label_sets())
                raise ValueError(f"{sets}: no cell of split {split!r} has large-basis bands (label them first)")
        self._targets: dict[str, list[BandTarget]] = {}
        self.train = CellBands(
            self.model, self.splits[config.train_split], self.targets(config.train_split), self.shift
        )
        self.val = CellBands(self.model, self.splits[config.val_split], self.targets(config.val_split), self.shift)
        self.log(
            f"{len(self.splits[config.train_split])} train / {len(self.splits[config.val_split])} val cells, "
            f"features and overlaps {time.perf_counter() - started:.1f} s"
        )

    def targets(self, split: str) -> list[BandTarget]:
        """The band targets of a split's cells, built when first needed (S(k) integrals per cell)."""
        if split not in self._targets:
            config = self.config
            self._targets[split] = [
                band_target(a, self.model.basis, self.pseudo, config.window_ev, config.degeneracy_ev)
                for a in self.splits[split]
            ]
        return self._targets[split]

    def request_stop(self) -> None:
        self.stop_requested = True

    def _anchor_penalty(self) -> torch.Tensor:
        from mlhcalc.training.trainer import l2sp_penalty

        parameters = list(self.model.block_model.parameters())
        return l2sp_penalty(self.config.anchor, parameters, self.anchor, self.anchor_scale)

    def _loss(self) -> torch.Tensor:
        sse, count = _squared_error(self.train.bands(), self.targets(self.config.train_split))
        return sse / count / self.state["normalizer"] + self._anchor_penalty()

    def evaluate(self, predictor: CellBands, split: str) -> dict:
        with torch.no_grad():
            bands = [b.numpy() for b in predictor.bands()]
        return band_scores(bands, self.targets(split), self.config.window_ev)

    def _record(self, epoch: int, seconds: float, loss: float | None) -> dict:
        train = self.evaluate(self.train, self.config.train_split)
        val = self.evaluate(self.val, self.config.val_split)
        row = {"epoch": epoch, "train_loss": loss if loss is not None else ""}
        for name, scores in (("train", train), ("val", val)):
            for key in ("window_mae_ev", "valence_mae_ev", "conduction_window_mae_ev", "gap_mae_ev"):
                row[f"{name}_{key}"] = scores[key]
        row["epoch_seconds"] = seconds
        self.state["history"].append(row)
        self.log(
            f"epoch {epoch}: train window MAE {train['window_mae_ev']:.4f} eV, val {val['window_mae_ev']:.4f} eV, "
            f"val gap {val['gap_mae_ev']:.4f} eV, {seconds:.1f} s"
        )
        return val

    def _save_checkpoint(self) -> None:
        from mlhcalc.training.trainer import _atomic_save

        _atomic_save(
            {
                "format": _CHECKPOINT_FORMAT,
                "config": json.dumps(self.config.to_dict()),
                "model": self.model.block_model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "best_model": self.best_model,
                "state": json.dumps(self.state),
            },
            self.output / "checkpoint.pt",
        )
        self._write_log()

    def _write_log(self) -> None:
        from mlhcalc.training.trainer import write_csv

        write_csv(self.state["history"], self.output / "log.csv")

    def fit(self, on_epoch: Callable | None = None) -> Path:
        from tqdm import tqdm

        from mlhcalc.training.trainer import TrainingInterrupted, _progress_enabled, _stop_on_sigint

        config, state = self.config, self.state
        if state["status"] == "new":
            started = time.perf_counter()
            with torch.no_grad():
                sse, count = _squared_error(self.train.bands(), self.targets(config.train_split))
            state["normalizer"] = float(sse) / count
            val = self._record(0, time.perf_counter() - started, 1.0)
            state.update(status="running", best=val["window_mae_ev"])
            self._save_checkpoint()
        if state["status"] == "max_epochs" and state["epoch"] < config.max_epochs:
            state["status"] = "running"
        with (
            _stop_on_sigint(self),
            tqdm(
                total=config.max_epochs,
                initial=state["epoch"],
                desc="epochs",
                disable=not _progress_enabled(config.progress),
            ) as progress,
        ):
            while state["status"] == "running":
                if state["epoch"] >= config.max_epochs:
                    state["status"] = "max_epochs"
                    break
                started = time.perf_counter()

                def closure():
                    self.optimizer.zero_grad()
                    loss = self._loss()
                    loss.backward()
                    return loss

                loss = float(self.optimizer.step(closure).detach())  # at the start of the step
                state["epoch"] += 1
                seconds = time.perf_counter() - started
                state["wall_time"] += seconds
                val = self._record(state["epoch"], seconds, loss)
                if val["window_mae_ev"] < state["best"]:
                    state.update(best=val["window_mae_ev"], best_epoch=state["epoch"], bad_epochs=0)
                    self.best_model = {k: v.detach().clone() for k, v in self.model.block_model.state_dict().items()}
                else:
                    state["bad_epochs"] += 1
                    if state["bad_epochs"] >= config.patience:
                        state["status"] = "early_stopping"
                self._save_checkpoint()
                progress.update(1)
                if on_epoch is not None:
                    on_epoch(self, state["epoch"])
                if self.stop_requested and state["status"] == "running":
                    raise TrainingInterrupted(f"interrupted after epoch {state['epoch']}; checkpoint in {self.output}")
        self._save_checkpoint()
        return self._finish()

    def _finish(self) -> Path:
        from mlhcalc.model import hash_files
        from mlhcalc.training.direct import label_files
        from mlhcalc.training.trainer import _atomic_text

        config, state = self.config, self.state
        self.model.block_model.load_state_dict(self.best_model)
        results = {}
        for split in config.evaluation_splits:
            if not self.splits.get(split):
                continue
            predictor = (
                self.val
                if split == config.val_split
                else CellBands(self.model, self.splits[split], self.targets(split), self.shift)
            )
            results[split] = self.evaluate(predictor, split)
            baseline = [
                np.sort(np.asarray(a.info["bands_minimal"]), axis=1)
                for a in self.splits[split]
                if "bands_minimal" in a.info
            ]
            if len(baseline) == len(self.splits[split]):
                results[f"{split}_minimal_basis_baseline"] = band_scores(
                    baseline, self.targets(split), config.window_ev
                )
        used = self.splits[config.train_split] + self.splits[config.val_split]
        files = [
            path
            for n, labels_dir in enumerate(self.label_dirs)
            for path in label_files(labels_dir, [a for a in used if a.info["label_set"] == n], stage="large")
        ]
        counts = [
            f"{sum(a.info['label_set'] == n for a in self.splits[config.train_split])} train + "
            f"{sum(a.info['label_set'] == n for a in self.splits[config.val_split])} val cells of {labels_dir.name}"
            for n, labels_dir in enumerate(self.label_dirs)
        ]
        summary = {
            "status": state["status"],
            "best_epoch": state["best_epoch"],
            "epochs": state["epoch"],
            "wall_seconds": state["wall_time"],
            "counts": {split: len(cells) for split, cells in self.splits.items()},
            "evaluation": results,
        }
        _atomic_text(json.dumps(summary, indent=1) + "\n", self.output / "metrics.json")
        command = f"mlhcalc train {shlex.quote(os.path.relpath(config.source))}" if config.source else "BandTrainer"
        metadata = dict(
            level_of_theory=f"PBE/gth-dzvp (gth-pade) band energies through an effective {self.model.basis} H(T)",
            training_data_sha256=hash_files(files),
            training_data=f"{'; '.join(counts)} (large stage), input order",
            training_command=command,
            metrics=results,
            training={
                "best_epoch": state["best_epoch"],
                "epochs": state["epoch"],
                "status": state["status"],
                "wall_seconds": state["wall_time"],
                "window_ev": config.window_ev,
                "anchor": config.anchor,
            },
        )
        directory = self.model.save(self.output / "model", **metadata)
        if config.save_model:
            self.model.save(config.save_model)
        self.log(f"best epoch {state['best_epoch']} (val window MAE {state['best']:.4f} eV); model in {directory}")
        return directory


def train_bands_from_config(path: str | os.PathLike, *, resume: bool = True) -> Path:
    """Train (or resume) the band-training run of the YAML file ``path``; returns ``<output>/model``."""
    return BandTrainer(load_band_config(path), resume=resume).fit()
