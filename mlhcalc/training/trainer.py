"""Train the minimal-basis model against large-basis targets through the qm layer.

``train_from_config(path)`` runs one configuration (``docs/training.md``): read the labels, start
from the ridge fit of the train split's minimal-basis Fock matrices (or a saved model), precompute
features and integrals once (:mod:`~mlhcalc.training.dataset`), then optimise the loss of
:mod:`~mlhcalc.training.losses` with Adam (shuffled mini-batches) or full-batch L-BFGS, validating
every epoch, stopping early on the val loss, and save the best model with its metrics.

A run lives in its output directory: ``checkpoint.pt`` (model, optimiser, scheduler, epoch and
step, RNG state, best weights, history; rewritten atomically after every epoch and on Ctrl-C),
``log.csv`` (one row per epoch), ``init_model/`` (the starting point), ``model/`` (the final
model) and ``metrics.json``. Rerunning the same config resumes from the checkpoint with the same
structures and gives the same numbers as an uninterrupted run: the batch order of epoch e is
drawn from ``(seed, e)`` alone, so a mid-epoch checkpoint only needs the step index.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from mlhcalc.training.config import Config, ConfigError, load_config
from mlhcalc.training.dataset import (
    LARGE_KEYS,
    Sample,
    has_targets,
    lowdin_fock,
    model_fock_stack,
    model_samples,
    pad_batch,
)
from mlhcalc.training.evaluation import Predictions, baseline_metrics, predict_samples, score_samples
from mlhcalc.training.losses import TERMS, batch_scales, qm_loss, set_losses, target_counts, target_statistics

__all__ = [
    "train_from_config",
    "Trainer",
    "TrainingInterrupted",
    "TrainingData",
    "load_training_data",
    "use_minimal_targets",
    "initial_model",
    "CHECKPOINT_FILE",
    "LOG_FILE",
    "MODEL_DIR",
    "INIT_MODEL_DIR",
    "METRICS_FILE",
]

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.csv"
MODEL_DIR = "model"
INIT_MODEL_DIR = "init_model"
METRICS_FILE = "metrics.json"
CONFIG_COPY = "config.yaml"
_CHECKPOINT_FORMAT = "mlhcalc.training.checkpoint/1"
# metrics written to log.csv for train and val (empty when a set has no such labels)
LOG_METRICS = (
    "occupied_mae_ev",
    "valence_mae_ev",
    "homo_mae_ev",
    "lumo_mae_ev",
    "gap_mae_ev",
    "dipole_mae_debye",
    "alpha_mae_au",
    "alpha_mae_percent",
)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C); the checkpoint holds the state, rerun to resume."""


def _log_to_stderr(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------- data
# label → stage file that holds it (``<sid>.<stage>.h5`` in a labels directory)
_STAGE_OF = {"fock_minimal": "minimal", **{key: "large" for key in ("mo_energy_large", "dipole_large")}}
_STAGE_OF["polarizability_large"] = "large_polarizability"


@dataclass
class TrainingData:
    """Structures of one run: ``train`` and ``val`` (with large-basis labels), ``ridge`` (train
    split with minimal-basis Fock matrices), ``splits`` (every split with large labels, for the
    final evaluation), and for provenance: ``record`` (structure ids and the target labels used,
    what a checkpoint stores), the label files behind them and counts."""

    train: list[Atoms]
    val: list[Atoms]
    ridge: list[Atoms]
    splits: dict[str, list[Atoms]]
    record: dict = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    label_files: list[Path] = field(default_factory=list)
    level: str = ""


def _key(atoms: Atoms) -> str:
    return str(atoms.info.get("structure_id", atoms.info.get("name", "")))


def _level_of_theory(atoms_list: Sequence[Atoms]) -> str:
    """'XC/basis' of the large stage, from the stored provenance (empty if unknown)."""
    for atoms in atoms_list:
        attrs = atoms.info.get("provenance", {}).get("large")
        if attrs:
            return f"{str(attrs.get('xc', '?')).upper()}/{attrs.get('basis', '?')}"
    return ""


def _targets_of(atoms: Atoms) -> list[str]:
    return [key for key in LARGE_KEYS.values() if key in atoms.info]


def _first_polarizabilities(group: Sequence[Atoms], limit: int, labels: Path) -> list[Atoms]:
    """``group`` with the polarizability label kept on only the first ``limit`` structures carrying one."""
    key, seen, result = LARGE_KEYS["polarizability"], 0, []
    for atoms in group:
        if key in atoms.info:
            seen += 1
            if seen > limit:
                atoms = _with_targets(atoms, [k for k in _targets_of(atoms) if k != key], labels)
        result.append(atoms)
    return result


def _with_targets(atoms: Atoms, keys: Sequence[str], labels: Path) -> Atoms:
    """``atoms`` with exactly the large-basis labels ``keys`` (those a checkpoint recorded)."""
    missing = [key for key in keys if key not in atoms.info]
    if missing:
        raise ValueError(
            f"structure {_key(atoms)} has lost {missing} in {labels} since the checkpoint: resume with the "
            "same labels or start a new run"
        )
    if set(_targets_of(atoms)) == set(keys):
        return atoms
    restricted = atoms.copy()
    for key in set(_targets_of(atoms)) - set(keys):
        del restricted.info[key]
    return restricted


def _label_files(
    labels: Path, record: dict, minimal_labels: Path | None = None, target_stage: str = "large"
) -> list[Path]:
    """The files holding the labels of ``record`` (a consolidated file: the file itself); the
    ridge's minimal-stage files from ``minimal_labels`` when given; with ``target_stage='minimal'``
    the targets are in the minimal-stage files (of ``minimal_labels`` when given)."""
    ridge_source = minimal_labels or labels
    if ridge_source.is_file():
        files = {ridge_source}
    else:
        files = {ridge_source / f"{sid}.minimal.h5" for sid in record["ridge"]}
    if labels.is_file():
        files.add(labels)
    else:
        for sid, keys in record["train"] + record["val"]:
            if target_stage == "minimal":
                files.add(ridge_source / f"{sid}.minimal.h5" if ridge_source.is_dir() else ridge_source)
            else:
                files.update(labels / f"{sid}.{_STAGE_OF[key]}.h5" for key in keys)
    return sorted(f for f in files if f.is_file())


def _replace_minimal(structures: Sequence[Atoms], minimal_labels: Path) -> None:
    """Swap every ``*_minimal`` label (and the minimal provenance) of ``structures`` for those of
    ``minimal_labels`` (same input, minimal stage in the model basis); structures it lacks keep none."""
    from mlhcalc.reference import read

    if not minimal_labels.exists():
        raise ConfigError(f"data.minimal_labels: {minimal_labels} does not exist")
    source = {_key(a): a for a in read(minimal_labels, provenance=True) if "fock_minimal" in a.info}
    if not source:
        raise ConfigError(f"data.minimal_labels: {minimal_labels} holds no minimal-stage Fock matrices")
    for atoms in structures:
        for key in [k for k in atoms.info if k.endswith("_minimal")]:
            del atoms.info[key]
        atoms.info.get("provenance", {}).pop("minimal", None)
        other = source.get(_key(atoms))
        if other is None:
            continue
        if other.info.get("geometry_hash", 0) != atoms.info.get("geometry_hash", 0) or not np.allclose(
            other.positions, atoms.positions, rtol=0.0, atol=1e-10
        ):
            raise ConfigError(
                f"data.minimal_labels: structure {_key(atoms)} of {minimal_labels} has another geometry than "
                "data.labels: label the same input file"
            )
        atoms.info.update({k: v for k, v in other.info.items() if k.endswith("_minimal")})
        atoms.info.setdefault("provenance", {})["minimal"] = other.info.get("provenance", {}).get("minimal", {})


def use_minimal_targets(structures: Sequence[Atoms]) -> None:
    """``data.targets: minimal``: the minimal-basis labels become the training targets. The
    large-basis slots (``LARGE_KEYS``) of every structure are replaced by its ``*_minimal`` values
    (structures without a minimal stage keep no targets), and the target provenance by the
    minimal stage's, so the level of theory a model records is the one it was trained on."""
    for atoms in structures:
        for key in LARGE_KEYS.values():
            atoms.info.pop(key, None)
            source = key.replace("_large", "_minimal")
            if source in atoms.info:
                atoms.info[key] = np.array(atoms.info[source], dtype=float, copy=True)
        provenance = atoms.info.get("provenance", {})
        provenance.pop("large", None)
        provenance.pop("large_polarizability", None)
        if "minimal" in provenance:
            provenance["large"] = provenance["minimal"]


def load_training_data(config: Config, record: dict | None = None) -> TrainingData:
    """Read ``config.data.labels`` and select the structures of the run. ``record``: the structure
    ids and target labels stored in a checkpoint; a resumed run uses exactly those (labels that a
    running labelling job added since are left out)."""
    from mlhcalc.reference import read

    labels = Path(config.data.labels)
    by_split: dict[str, list[Atoms]] = {}
    structures = read(labels, provenance=True)
    if config.data.minimal_labels:
        _replace_minimal(structures, Path(config.data.minimal_labels))
    if config.data.targets == "minimal":
        use_minimal_targets(structures)
    for atoms in structures:
        by_split.setdefault(str(atoms.info.get("split", "none")), []).append(atoms)
    labelled = {split: [a for a in group if has_targets(a)] for split, group in by_split.items()}
    data = config.data

    def select(split: str, limit: int | None, part: str, alpha_limit: int | None) -> list[Atoms]:
        group = labelled.get(split, [])
        if record is None:
            group = group[:limit] if limit else group
            return group if alpha_limit is None else _first_polarizabilities(group, alpha_limit, labels)
        index = {_key(a): a for a in group}
        missing = [sid for sid, _ in record[part] if sid not in index]
        if missing:
            raise ValueError(
                f"{len(missing)} {split} structures of the checkpoint (e.g. id {missing[0]}) are no longer "
                f"labelled in {labels}: resume with the same labels or start a new run"
            )
        return [_with_targets(index[sid], keys, labels) for sid, keys in record[part]]

    train = select(data.train_split, data.max_train, "train", data.max_train_polarizability)
    val = select(data.val_split, data.max_val, "val", data.max_val_polarizability)
    wanted = (
        "minimal-stage labels (data.targets: minimal; label them with `mlhcalc label --stages minimal`)"
        if data.targets == "minimal"
        else "large-basis labels (mo_energy_large)"
    )
    if not train:
        raise ValueError(
            f"no structure of split {data.train_split!r} in {labels} has {wanted}; "
            f"splits present: { {s: len(g) for s, g in labelled.items()} }"
        )
    if not val:
        raise ValueError(f"no structure of split {data.val_split!r} in {labels} has {wanted}")
    ridge = [a for a in by_split.get(data.train_split, []) if "fock_minimal" in a.info]
    if record is not None:
        ridge_ids = set(record["ridge"])
        ridge = [a for a in ridge if _key(a) in ridge_ids]
    record = {
        "train": [[_key(a), _targets_of(a)] for a in train],
        "val": [[_key(a), _targets_of(a)] for a in val],
        "ridge": [_key(a) for a in ridge],
    }
    counts = {f"{split}_structures": len(group) for split, group in by_split.items()}
    counts.update({f"{split}_large_labelled": len(group) for split, group in labelled.items()})
    counts.update(train=len(train), val=len(val), ridge=len(ridge))
    counts["train_polarizability"] = sum("polarizability_large" in a.info for a in train)
    counts["val_polarizability"] = sum("polarizability_large" in a.info for a in val)
    return TrainingData(
        train=train,
        val=val,
        ridge=ridge,
        splits={**labelled, data.train_split: train, data.val_split: val},
        record=record,
        counts=counts,
        label_files=_label_files(
            labels, record, Path(data.minimal_labels) if data.minimal_labels else None, data.targets
        ),
        level=_level_of_theory(train),
    )


# ------------------------------------------------------------------------------------------ model
def initial_model(config: Config, data: TrainingData, log: Callable[[str], None] = _log_to_stderr):
    """The starting model: ``config.model.init`` loaded, or a new model fitted in closed form to
    the minimal-basis Fock matrices of the train split (``fit_ridge``)."""
    from mlhcalc.features import FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian.model import fit_ridge
    from mlhcalc.model import HamiltonianModel

    if config.model.init is not None:
        model = HamiltonianModel.load(config.model.init)
        if model.basis != config.model.basis:
            raise ConfigError(f"model.init has basis {model.basis!r}, model.basis is {config.model.basis!r}")
        if model.block_model.representation != config.model.representation:
            raise ConfigError(
                f"model.init has representation {model.block_model.representation!r}, model.representation is "
                f"{config.model.representation!r}"
            )
        if model.periodic:
            raise ConfigError("model.init is a periodic model; the trainer handles molecules")
        log(f"initial model: {config.model.init}")
        model.metadata = _start_metadata(model.metadata, config.model.init)
        if config.model.gated and not model.block_model.gated:
            model = _with_gates(model)
            log("model.gated: gates added to the initial model (zero, so it predicts the same H)")
        return model
    species = config.model.species or tuple(sorted({int(z) for a in data.train + data.val for z in a.numbers}))
    hypers = FeatureHypers(species=species, **config.model.hypers)
    model = HamiltonianModel.create(
        hypers,
        config.model.basis,
        periodic=False,
        level_of_theory="",
        gated=config.model.gated,
        representation=config.model.representation,
    )
    if not data.ridge:
        raise ValueError(
            "no train structure has fock_minimal for the ridge initialisation: label the minimal stage first"
        )
    bases = {str(a.info.get("provenance", {}).get("minimal", {}).get("basis", "")).lower() for a in data.ridge}
    if bases - {config.model.basis.lower(), ""}:
        raise ConfigError(
            f"model.basis is {config.model.basis!r} but the ridge Fock matrices are in {sorted(bases)}: label the "
            f"minimal stage in the model basis (mlhcalc label --basis-minimal {config.model.basis} -o OUT) and set "
            "data.minimal_labels: OUT"
        )
    start = time.perf_counter()
    focks = [np.asarray(a.info["fock_minimal"]) for a in data.ridge]
    if config.model.representation == "lowdin":
        focks = [lowdin_fock(fock, a, config.model.basis) for fock, a in zip(focks, data.ridge)]
    fit_ridge(
        model.block_model,
        systems_from_atoms(data.ridge),
        focks,
        regularization=config.model.ridge_regularization,
    )
    log(f"ridge initialisation on {len(data.ridge)} minimal-basis Fock matrices: {time.perf_counter() - start:.1f} s")
    return model


_INHERITED = ("basis", "species", "periodic", "pseudo")
_PROVENANCE = ("level_of_theory", "training_command", "reproduce_command", "training_data_sha256", "weights_sha256")


def _start_metadata(metadata: dict, init_path) -> dict:
    """The metadata a trained model starts from: the starting model's basis/species/periodicity, and
    its provenance under ``initial_model`` (its other entries — metrics, fit settings — describe the
    starting model, not the trained one, and are dropped)."""
    start = {k: metadata[k] for k in _INHERITED if k in metadata}
    # the directory name, not the machine's path; the weights' checksum identifies it
    start["initial_model"] = {"name": Path(init_path).name, **{k: metadata[k] for k in _PROVENANCE if k in metadata}}
    return start


def _with_gates(model):
    """The same model with (zero) invariant gates on every head: identical predictions, more freedom."""
    from mlhcalc.hamiltonian.model import BlockModel
    from mlhcalc.model import HamiltonianModel

    block = model.block_model
    gated = BlockModel(
        block.features.hypers,
        block.basis,
        gated=True,
        representation=block.representation,
        electrostatics=block.electrostatics,
    )
    missing, unexpected = gated.load_state_dict(block.state_dict(), strict=False)
    if unexpected or any(not name.startswith("gates.") for name in missing):
        raise ConfigError(f"model.init cannot take gates (unexpected {unexpected}, missing {missing})")
    return HamiltonianModel(gated, model.metadata)


# ------------------------------------------------------------------------------------ checkpoints
def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Rows (dicts with the keys of the first) as a CSV file, replaced atomically; nothing if no rows."""
    if not rows:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def l2sp_penalty(weight: float, parameters, anchor, anchor_scale: float) -> torch.Tensor:
    """The L2-SP penalty weight · Σ‖θ − θ₀‖² / Σ‖θ₀‖² (``anchor_scale`` = Σ‖θ₀‖², computed once)."""
    if weight == 0:
        return torch.zeros((), dtype=torch.float64)
    moved = sum(((p - p0) ** 2).sum() for p, p0 in zip(parameters, anchor))
    return weight * moved / anchor_scale


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _stop_on_sigint(trainer: Trainer):
    """First Ctrl-C: finish the current step, save a checkpoint, raise TrainingInterrupted.
    Second Ctrl-C: the usual KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        trainer.log("interrupt: saving a checkpoint after this step (Ctrl-C again to abort without saving)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_enabled(setting: str) -> bool:
    return setting == "on" or (setting == "auto" and sys.stderr.isatty())


# ---------------------------------------------------------------------------------------- trainer
class Trainer:
    """One training run (see the module docstring). ``fit()`` trains (or resumes) and returns the
    directory of the final model; ``on_step(trainer, epoch, step)`` is called after every
    optimisation step (tests use it to interrupt a run with :meth:`request_stop`)."""

    def __init__(self, config: Config, *, resume: bool = True, log: Callable[[str], None] = _log_to_stderr):
        self.config = config
        self.log = log
        self.output = Path(config.output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.stop_requested = False
        checkpoint_path = self.output / CHECKPOINT_FILE
        self.checkpoint = None
        if resume and checkpoint_path.is_file():
            self.checkpoint = torch.load(checkpoint_path, weights_only=True)
            self._check_resumable()
        self._setup()

    # ------------------------------------------------------------------ setup
    def _check_resumable(self) -> None:
        from mlhcalc.training.config import config_from_dict

        if self.checkpoint.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{self.output / CHECKPOINT_FILE} is not a training checkpoint of this mlhcalc")
        previous = config_from_dict(json.loads(self.checkpoint["config"]))
        changed = self.config.differences(previous)
        if changed:
            raise ConfigError(
                f"{self.output} holds a run of a different configuration (changed: {', '.join(changed)}); "
                "use another output directory, or resume=False to start this one afresh"
            )

    def _setup(self) -> None:
        from mlhcalc.hamiltonian.model import block_model_from_config
        from mlhcalc.model import HamiltonianModel

        config, checkpoint = self.config, self.checkpoint
        torch.manual_seed(config.seed)
        self.data = load_training_data(config, json.loads(checkpoint["data"]) if checkpoint else None)
        if checkpoint:
            block_model = block_model_from_config(json.loads(checkpoint["block_model_config"]))
            block_model.load_state_dict(checkpoint["model"])
            self.model = HamiltonianModel(block_model, json.loads(checkpoint["model_metadata"]))
            torch.set_rng_state(checkpoint["torch_rng"])
        else:
            self.model = initial_model(config, self.data, self.log)
            self.model.save(self.output / INIT_MODEL_DIR)
            _atomic_text(json.dumps(config.to_dict(), indent=1, sort_keys=True), self.output / "config.json")
        self.block_model = self.model.block_model
        trainable = re.compile(config.model.trainable)
        for name, parameter in self.block_model.named_parameters():
            parameter.requires_grad_(trainable.fullmatch(name) is not None)
        self.parameters = [p for p in self.block_model.parameters() if p.requires_grad]
        if not self.parameters:
            raise ConfigError(f"model.trainable {config.model.trainable!r} matches no parameter of the model")
        self.anchor = self._anchor_parameters() if config.optimizer.anchor > 0 else None
        if self.anchor is not None:  # Σ‖θ₀‖², constant: once, not per step
            self.anchor_scale = sum(float((p0**2).sum()) for p0 in self.anchor)
        if hasattr(self.block_model.features, "compression") and isinstance(
            self.block_model.features.compression, torch.nn.Parameter
        ):
            raise ConfigError("models with learnable_compression cannot be trained here (features are precomputed)")

        start = time.perf_counter()
        self.train_samples = self._split_samples(self.data.train)
        self.val_samples = self._split_samples(self.data.val)
        self.log(
            f"precomputed features and integrals of {len(self.train_samples)} train and {len(self.val_samples)} val "
            f"structures: {time.perf_counter() - start:.1f} s"
        )
        self.statistics = target_statistics(self.train_samples)
        targets = config.targets
        self.weights = np.array([targets.mo_energy.weight, targets.dipole.weight, targets.polarizability.weight])
        for term, weight, count in zip(TERMS, self.weights, self.statistics.counts):
            if weight > 0 and count == 0:
                raise ValueError(
                    f"targets.{term}.weight > 0 but no training structure has {term} labels "
                    f"(large basis); set the weight to 0 or label them"
                )
            if weight > 0 and not self.statistics.variances[TERMS.index(term)] > 0:
                raise ValueError(f"the {term} targets of the train set have zero variance: cannot normalise")
        self.normalizers = self.statistics.variances
        self.optimizer = self._make_optimizer()
        self.scheduler = None
        if config.optimizer.name == "adam" and config.optimizer.plateau_factor is not None:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=config.optimizer.plateau_factor, patience=config.optimizer.plateau_patience
            )
        if checkpoint:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(json.loads(checkpoint["scheduler"]))
            self.state = json.loads(checkpoint["state"])
            self.normalizers = np.asarray(self.state["normalizers"], dtype=float)
            self.best_model = checkpoint["best_model"]
            self.partial = checkpoint["partial"]
        else:
            self.state = {"epoch": 0, "step": 0, "status": "new", "best_loss": math.inf, "best_epoch": 0}
            self.state.update(bad_epochs=0, wall_time=0.0, history=[])
            self.best_model = {k: v.clone() for k, v in self.block_model.state_dict().items()}
            self.partial = None
        self._compiled_buckets: set[int] = set()  # AO buckets whose training step is compiled
        self.checkpoint = None

    def _anchor_parameters(self) -> list[torch.Tensor]:
        """θ₀ of the L2-SP penalty: the starting model (``init_model/`` of this run, also on resume)."""
        from mlhcalc.model import HamiltonianModel

        start = HamiltonianModel.load(self.output / INIT_MODEL_DIR).block_model
        reference = dict(start.named_parameters())
        names = [n for n, p in self.block_model.named_parameters() if p.requires_grad]
        return [reference[n].detach().clone() for n in names]

    def anchor_penalty(self) -> torch.Tensor:
        """optimizer.anchor · Σ‖θ − θ₀‖² / Σ‖θ₀‖² (0 without an anchor)."""
        if self.anchor is None:
            return torch.zeros((), dtype=torch.float64)
        return l2sp_penalty(self.config.optimizer.anchor, self.parameters, self.anchor, self.anchor_scale)

    def _make_optimizer(self):
        settings = self.config.optimizer
        if settings.name == "adam":
            return torch.optim.Adam(self.parameters, lr=settings.lr, weight_decay=settings.weight_decay)
        return torch.optim.LBFGS(
            self.parameters,
            lr=settings.lr,
            max_iter=settings.lbfgs_max_iter,
            history_size=settings.lbfgs_history,
            line_search_fn="strong_wolfe",
        )

    def request_stop(self) -> None:
        """Stop after the current optimisation step with a checkpoint (what Ctrl-C does)."""
        self.stop_requested = True

    # ----------------------------------------------------------- evaluation
    def evaluate_set(self, samples: Sequence[Sample]) -> tuple[dict, dict]:
        """(normalised losses per term and total, metrics) of the current model on ``samples``."""
        training = self.config.training
        predictions = predict_samples(self.block_model, samples, training.batch_size, training.bucket)
        losses = set_losses(predictions.sse, target_counts(samples), self.normalizers, self.weights)
        return losses, score_samples(predictions, samples)

    # --------------------------------------------------------------- steps
    def _batch_loss(self, samples: Sequence[Sample]):
        training = self.config.training
        batch = pad_batch(samples, training.batch_size, training.bucket)
        compiling = batch.bucket not in self._compiled_buckets
        self._compiled_buckets.add(batch.bucket)
        fock = model_fock_stack(self.block_model, samples, batch)
        scales = batch_scales(self.weights, self.normalizers, self.statistics, len(samples))
        loss, sse, observables = qm_loss(fock, batch, scales)
        return loss + self.anchor_penalty(), sse, observables, compiling

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        n, size = len(self.train_samples), self.config.training.batch_size
        if self.config.optimizer.name == "lbfgs":
            order = np.arange(n)
        else:
            order = np.random.default_rng([self.config.seed, epoch]).permutation(n)
        return [order[start : start + size] for start in range(0, n, size)]

    def _new_partial(self) -> dict:
        n = len(self.train_samples)
        return {
            "sse": torch.zeros(3, dtype=torch.float64),
            "seen": torch.zeros(n, dtype=torch.bool),
            "mo_energy": [torch.zeros(s.nao, dtype=torch.float64) for s in self.train_samples],
            "dipole": torch.zeros(n, 3, dtype=torch.float64),
            "alpha": torch.zeros(n, 3, 3, dtype=torch.float64),
            "step_seconds": torch.zeros(2, dtype=torch.float64),  # (seconds, structures) of steady steps
            "compile_seconds": torch.zeros(1, dtype=torch.float64),
        }

    def _record(self, indices, sse, observables, seconds: float, compiling: bool) -> None:
        partial = self.partial
        if compiling:
            partial["compile_seconds"] += seconds
        else:
            partial["step_seconds"] += torch.tensor([seconds, len(indices)], dtype=torch.float64)
        if bool(partial["seen"][torch.as_tensor(indices)].any()):  # L-BFGS evaluates batches repeatedly: keep the first
            return
        partial["sse"] += torch.tensor(sse)
        mo, dipole, alpha = observables
        for row, k in enumerate(indices):
            partial["seen"][k] = True
            partial["mo_energy"][k] = torch.tensor(mo[row, : self.train_samples[k].nao])
            partial["dipole"][k] = torch.tensor(dipole[row])
            partial["alpha"][k] = torch.tensor(alpha[row])

    def _adam_epoch(self, epoch: int, on_step, progress) -> None:
        batches = self._epoch_batches(epoch)
        for step in range(self.state["step"], len(batches)):
            indices = batches[step]
            start = time.perf_counter()
            loss, sse, observables, compiling = self._batch_loss([self.train_samples[k] for k in indices])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._record(indices, sse, observables, time.perf_counter() - start, compiling)
            self.state["step"] = step + 1
            progress.update(1)
            progress.set_postfix(loss=f"{float(loss.detach()):.4g}")
            if on_step is not None:
                on_step(self, epoch, step)
            if self.stop_requested and self.state["step"] < len(batches):
                self._save_checkpoint()
                raise TrainingInterrupted(
                    f"interrupted in epoch {epoch + 1} after step {step + 1}; checkpoint saved in {self.output}"
                )

    def _lbfgs_epoch(self, epoch: int, on_step, progress) -> None:
        batches = self._epoch_batches(epoch)
        n_train = len(self.train_samples)

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for indices in batches:
                start = time.perf_counter()
                loss, sse, observables, compiling = self._batch_loss([self.train_samples[k] for k in indices])
                (loss * (len(indices) / n_train)).backward()
                total += float(loss.detach()) * len(indices) / n_train
                self._record(indices, sse, observables, time.perf_counter() - start, compiling)
            progress.update(1)
            progress.set_postfix(loss=f"{total:.4g}")
            return torch.tensor(total, dtype=torch.float64)

        self.optimizer.step(closure)
        self.state["step"] = len(batches)
        if on_step is not None:
            on_step(self, epoch, 0)

    # ------------------------------------------------------------ bookkeeping
    def _row(self, epoch: int, train: tuple[dict, dict] | None, val: tuple[dict, dict], seconds: float) -> dict:
        row = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        for name, result in (("train", train), ("val", val)):
            losses, scores = result if result is not None else ({}, {})
            row[f"{name}_loss"] = losses.get("total", "")
            for term in TERMS:
                row[f"{name}_loss_{term}"] = losses.get(term, "")
            for metric in LOG_METRICS:
                row[f"{name}_{metric}"] = scores.get(metric, "")
        partial = self.partial
        steady, structures = (float(x) for x in partial["step_seconds"]) if partial is not None else (0.0, 0.0)
        row["ms_per_structure_step"] = 1e3 * steady / structures if structures else ""
        row["compile_seconds"] = float(partial["compile_seconds"]) if partial is not None else ""
        row["epoch_seconds"] = seconds
        row["wall_seconds"] = self.state["wall_time"]
        return row

    def _write_log(self) -> None:
        write_csv(self.state["history"], self.output / LOG_FILE)

    def _save_checkpoint(self) -> None:
        checkpoint = {
            "format": _CHECKPOINT_FORMAT,
            "config": json.dumps(self.config.to_dict()),
            "data": json.dumps(self.data.record),
            "block_model_config": json.dumps(self.block_model.config()),
            "model_metadata": json.dumps(self.model.metadata),
            "model": self.block_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": json.dumps(self.scheduler.state_dict() if self.scheduler is not None else None),
            "best_model": self.best_model,
            "state": json.dumps(self.state),
            "partial": self.partial,
            "torch_rng": torch.get_rng_state(),
        }
        _atomic_save(checkpoint, self.output / CHECKPOINT_FILE)
        self._write_log()

    def _end_of_epoch(self, epoch: int, epoch_start: float) -> None:
        """Validate, log, early-stopping and learning-rate bookkeeping; ``epoch`` counts from 1."""
        partial, samples = self.partial, self.train_samples
        train_losses = set_losses(partial["sse"].numpy(), target_counts(samples), self.normalizers, self.weights)
        running = Predictions(
            [x.numpy() for x in partial["mo_energy"]], partial["dipole"].numpy(), partial["alpha"].numpy()
        )
        train = (train_losses, score_samples(running, samples))
        val = self.evaluate_set(self.val_samples)
        seconds = time.perf_counter() - epoch_start
        self.state["wall_time"] += seconds
        self.state["history"].append(self._row(epoch, train, val, seconds))
        val_loss = val[0]["total"]
        state = self.state
        if val_loss < state["best_loss"] * (1.0 - self.config.training.min_delta):
            state.update(best_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            self.best_model = {k: v.detach().clone() for k, v in self.block_model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        state.update(epoch=epoch, step=0)
        self.partial = None
        self.log(
            f"epoch {epoch}: train loss {train_losses['total']:.5g}, val loss {val_loss:.5g}, "
            f"val occupied MAE {val[1]['occupied_mae_ev']:.4f} eV, "
            + (f"dipole {val[1]['dipole_mae_debye']:.4f} D, " if "dipole_mae_debye" in val[1] else "")
            + f"{seconds:.1f} s"
        )

    def _initial_evaluation(self) -> None:
        start = time.perf_counter()
        if self.config.targets.normalization == "initial":
            training = self.config.training
            predictions = predict_samples(self.block_model, self.train_samples, training.batch_size, training.bucket)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.normalizers = predictions.sse / self.statistics.counts
            for term, weight, value in zip(TERMS, self.weights, self.normalizers):
                if weight > 0 and not value > 0:
                    raise ValueError(
                        f"the initial model fits the {term} targets exactly: cannot normalise by its error"
                    )
        self.state["normalizers"] = [float(x) for x in self.normalizers]
        train, val = self.evaluate_set(self.train_samples), self.evaluate_set(self.val_samples)
        self.state["best_loss"] = val[0]["total"]
        seconds = time.perf_counter() - start
        self.state["history"].append(self._row(0, train, val, seconds))
        self.state["status"] = "running"
        self.log(
            f"initial model: train loss {train[0]['total']:.5g}, val loss {val[0]['total']:.5g}, "
            f"val occupied MAE {val[1]['occupied_mae_ev']:.4f} eV"
        )
        self._save_checkpoint()

    # ------------------------------------------------------------------- run
    def fit(self, on_step: Callable | None = None) -> Path:
        """Train until ``max_epochs`` or early stopping (resuming where the checkpoint left off),
        save the best model and its metrics; returns the model directory."""
        from tqdm import tqdm

        training, state = self.config.training, self.state
        if state["status"] == "new":
            self._initial_evaluation()
        if state["status"] == "max_epochs" and state["epoch"] < training.max_epochs:
            state["status"] = "running"  # the config now allows more epochs
        if state["status"] == "running" and state["bad_epochs"] >= training.patience:
            state["status"] = "early_stopping"
        show = _progress_enabled(training.progress)
        with _stop_on_sigint(self):
            while state["status"] == "running":
                epoch = state["epoch"]
                if epoch >= training.max_epochs:
                    state["status"] = "max_epochs"
                    break
                if self.partial is None:
                    self.partial = self._new_partial()
                start = time.perf_counter()
                n_steps = len(self._epoch_batches(epoch)) if self.config.optimizer.name == "adam" else None
                with tqdm(
                    total=n_steps, initial=state["step"], desc=f"epoch {epoch + 1}", disable=not show, leave=False
                ) as progress:
                    if self.config.optimizer.name == "adam":
                        self._adam_epoch(epoch, on_step, progress)
                    else:
                        self._lbfgs_epoch(epoch, on_step, progress)
                self._end_of_epoch(epoch + 1, start)
                if state["bad_epochs"] >= training.patience:
                    state["status"] = "early_stopping"
                self._save_checkpoint()
                if self.stop_requested and state["status"] == "running":
                    raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}; checkpoint saved in {self.output}")
        self._save_checkpoint()
        return self._finish()

    def _finish(self) -> Path:
        """Save the best model with its metrics (val and the configured splits, with the plain
        minimal-basis baseline on the same structures)."""
        from mlhcalc.model import hash_files

        self.block_model.load_state_dict(self.best_model)
        config, state = self.config, self.state
        results = {}
        for split in config.evaluation.splits:
            structures = self.data.splits.get(split, [])
            if not structures:
                continue
            samples = self.val_samples if split == config.data.val_split else self._split_samples(structures)
            results[split] = self.evaluate_set(samples)[1]
            with contextlib.suppress(ValueError):  # structures without minimal labels: no baseline
                results[f"{split}_minimal_basis_baseline"] = baseline_metrics(structures)
        initial = state["history"][0]
        summary = {
            "status": state["status"],
            "best_epoch": state["best_epoch"],
            "epochs": state["epoch"],
            "best_val_loss": state["best_loss"],
            "initial_val_loss": initial["val_loss"],
            "ms_per_structure_step": _mean_step_time(state["history"]),
            "wall_seconds": state["wall_time"],
            "counts": self.data.counts,
            "target_statistics": self.statistics.to_dict(),
            "normalizers": dict(zip(TERMS, self.state["normalizers"])),
            "evaluation": results,
        }
        _atomic_text(json.dumps(summary, indent=1, default=float) + "\n", self.output / METRICS_FILE)
        terms = [t for t, w in zip(TERMS, self.weights) if w > 0]
        level = config.level_of_theory or (
            f"{self.data.level or 'large-basis'} targets ({', '.join(terms)}) through an effective "
            f"{self.block_model.basis} Hamiltonian"
        )
        command = f"mlhcalc train {shlex.quote(config.source)}" if config.source else "mlhcalc.training.Trainer"
        directory = self.model.save(
            self.output / MODEL_DIR,
            level_of_theory=level,
            training_data_sha256=hash_files(self.data.label_files),
            training_command=command,
            metrics={split: values for split, values in results.items()},
            training={
                "best_epoch": state["best_epoch"],
                "epochs": state["epoch"],
                "status": state["status"],
                "counts": self.data.counts,
                "config": _portable_paths(config.to_dict(), config.source),
            },
        )
        self.log(f"best epoch {state['best_epoch']} (val loss {state['best_loss']:.5g}); model saved in {directory}")
        return directory

    def _split_samples(self, structures: Sequence[Atoms]) -> list[Sample]:
        mo = self.config.targets.mo_energy
        return model_samples(self.block_model, structures, mo.window, mo.virtuals)


_PATH_KEYS = (("data", "labels"), ("data", "minimal_labels"), ("model", "init"), ("output",))


def _portable_paths(values: dict, source: str | None) -> dict:
    """The config with its paths relative to the YAML file's directory, as written there (a model's
    metadata should not carry the training machine's absolute paths)."""
    if not source:
        return values
    base = Path(source).resolve().parent
    for keys in _PATH_KEYS:
        holder = values
        for key in keys[:-1]:
            holder = holder.get(key) or {}
        if isinstance(holder.get(keys[-1]), str):
            holder[keys[-1]] = os.path.relpath(Path(holder[keys[-1]]).resolve(), base)
    return values


def _mean_step_time(history: list[dict]) -> float | None:
    values = [row["ms_per_structure_step"] for row in history if row.get("ms_per_structure_step") not in ("", None)]
    return float(np.mean(values)) if values else None


def train_from_config(path: str | os.PathLike, *, resume: bool = True) -> Path:
    """Train (or resume) the run described by the YAML file ``path``; returns the final model's
    directory (``<output>/model``). Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`."""
    config = load_config(path)
    return Trainer(config, resume=resume).fit()
