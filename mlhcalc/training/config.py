"""Training configuration: a YAML file → validated, frozen dataclasses (schema in ``docs/training.md``).

Every section is strict: an unknown key, a wrong type or an out-of-range value raises
:class:`ConfigError` naming the key (``targets.mo_energy.window``) and what is allowed. Relative
paths are resolved against the directory of the YAML file, so a run does not depend on the
working directory it was started from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "MOTargetConfig",
    "TermConfig",
    "TargetsConfig",
    "OptimizerConfig",
    "TrainingConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "RESUMABLE_KEYS",
    "MO_WINDOWS",
    "NORMALIZATIONS",
    "OPTIMIZERS",
]

MO_WINDOWS = ("occupied", "minimal")
NORMALIZATIONS = ("variance", "initial")
OPTIMIZERS = ("adam", "lbfgs")
PROGRESS = ("auto", "on", "off")
TARGET_STAGES = ("large", "minimal")
# keys that may change between a run and its resumption (how long to go on, how to display it)
RESUMABLE_KEYS = ("training.max_epochs", "training.patience", "training.progress", "evaluation.splits")


class ConfigError(ValueError):
    """An invalid training configuration; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DataConfig:
    """Where the labels are and which splits to use.

    ``labels``: a labels directory (``OUT.d``) or consolidated ``.h5`` (:func:`mlhcalc.reference.read`).
    ``train_split`` / ``val_split``: values of ``atoms.info['split']``. ``max_train`` / ``max_val``: keep
    only the first N structures (input order) of each split that carry the needed labels (quick runs).
    ``max_train_polarizability`` / ``max_val_polarizability``: of those, keep the polarizability label
    of only the first N that carry one (the others train on their other targets), so that a run
    stays reproducible while polarizability labelling goes on.
    ``minimal_labels``: a second labels directory or file whose minimal stage was computed in
    ``model.basis`` (``mlhcalc label --basis-minimal BASIS``), for a model basis other than STO-3G:
    every ``*_minimal`` label (the ridge initialisation's Fock matrices, the plain-basis baseline)
    comes from there instead of ``labels``.
    ``targets``: ``large`` (default; the def2-TZVP labels) or ``minimal``: train on the minimal-basis
    labels themselves (MO energies, dipole, CPKS α of the model basis, every structure with a minimal
    stage): an observable-based fit of the model's own level of theory, the indirect counterpart of
    the closed-form Fock fit (docs/direct_fit.md).
    """

    labels: str = ""
    minimal_labels: str | None = None
    targets: str = "large"
    train_split: str = "train"
    val_split: str = "val"
    max_train: int | None = None
    max_val: int | None = None
    max_train_polarizability: int | None = None
    max_val_polarizability: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The model to train: either ``init`` (a model directory written by ``HamiltonianModel.save``,
    trained on from its weights) or a new model (``hypers``: :class:`~mlhcalc.features.FeatureHypers`
    fields, lengths in bohr; ``species`` default: the elements of the data) initialised by the
    closed-form ridge fit of the minimal-basis Fock matrices of the train split. ``gated`` with
    ``init`` adds zero gates to a linear model. ``trainable``: a regular expression; only parameters
    whose name matches it (``re.fullmatch``, e.g. ``biases\\..*`` or ``(biases|weights)\\.on_site.*``)
    are trained, the others stay at their starting values."""

    init: str | None = None
    basis: str = "sto-3g"
    species: tuple[int, ...] | None = None
    hypers: dict = field(default_factory=dict)
    gated: bool = False
    trainable: str = ".*"
    ridge_regularization: float = 1e-8
    representation: str = "ao"


@dataclass(frozen=True)
class TermConfig:
    """One loss term: its weight (0 switches it off)."""

    weight: float = 1.0


@dataclass(frozen=True)
class MOTargetConfig:
    """Orbital-energy term. ``window='occupied'``: all occupied levels and the ``virtuals`` lowest
    virtual ones (1 = the LUMO, 0 = occupied only) of the large basis, matched level by level to the
    model's sorted eigenvalues; ``window='minimal'``: the lowest n_min levels (n_min = number of
    minimal-basis orbitals) of both."""

    weight: float = 1.0
    window: str = "occupied"
    virtuals: int = 1


@dataclass(frozen=True)
class TargetsConfig:
    """The loss terms and how each is normalised before weighting: ``variance`` (of its targets over
    the train set) or ``initial`` (the initial model's train mean squared error: every term starts at 1)."""

    mo_energy: MOTargetConfig = MOTargetConfig()
    dipole: TermConfig = TermConfig(weight=1.0)
    polarizability: TermConfig = TermConfig(weight=0.0)
    normalization: str = "variance"


@dataclass(frozen=True)
class OptimizerConfig:
    """``adam`` (mini-batches, ``lr``, optional ``weight_decay``, optional reduce-on-plateau of the
    learning rate by ``plateau_factor`` after ``plateau_patience`` epochs without a better val loss)
    or ``lbfgs`` (full batch, one ``torch.optim.LBFGS`` step of at most ``lbfgs_max_iter``
    iterations with a strong-Wolfe line search per epoch). ``anchor`` (both): the L2-SP penalty
    anchor · Σ‖θ − θ₀‖² / Σ‖θ₀‖² that keeps the weights near the starting model θ₀ (the STO-3G fit)
    where the targets do not constrain them."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    anchor: float = 0.0
    plateau_factor: float | None = None
    plateau_patience: int = 5
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 20


@dataclass(frozen=True)
class TrainingConfig:
    """``batch_size`` structures per Adam step; at most ``max_epochs`` epochs; stop after ``patience``
    epochs without a val loss lower than the best by more than ``min_delta`` (relative). AO matrices
    are padded to multiples of ``bucket`` for the batched qm layer. ``progress``: tqdm bar
    ``auto`` (when stderr is a terminal), ``on`` or ``off``."""

    batch_size: int = 16
    max_epochs: int = 200
    patience: int = 20
    min_delta: float = 0.0
    bucket: int = 16
    progress: str = "auto"


@dataclass(frozen=True)
class EvaluationConfig:
    """Splits on which the final model is evaluated (all metrics, and the plain minimal-basis
    baseline on the same structures)."""

    splits: tuple[str, ...] = ("val",)


@dataclass(frozen=True)
class Config:
    """A whole training run. ``output``: run directory (checkpoint, log, final model);
    ``seed``: the one seed of the run (batch order; features have their own ``hypers.seed``)."""

    output: str = ""
    seed: int = 0
    level_of_theory: str | None = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    targets: TargetsConfig = TargetsConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    source: str | None = field(default=None, compare=False)  # the YAML file, if any

    def to_dict(self) -> dict:
        """Plain (YAML/JSON-serialisable) form, without ``source``."""
        result = _plain(dataclasses.asdict(self))
        result.pop("source", None)
        return result

    def differences(self, other: Config, ignore: tuple[str, ...] = RESUMABLE_KEYS) -> list[str]:
        """Dotted keys whose values differ between ``self`` and ``other`` (``ignore`` left out)."""
        return [key for key in _diff(self.to_dict(), other.to_dict()) if key not in ignore]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict) and key != "hypers":
            keys += _diff(a[key], b[key], name + ".")
        elif a.get(key) != b.get(key):
            keys.append(name)
    return keys


# ------------------------------------------------------------------------------------ validation
def _check_keys(values: Any, cls, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping of keys to values, got {values!r}")
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = [key for key in values if key not in allowed]
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; allowed keys of {where or 'the top level'}: {allowed}"
        )
    return values


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _number(value, key: str, *, integer: bool = False, low=None, high=None, low_open: bool = False, optional=False):
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(f"{key} must be {kind}, got {value!r}")
    value = int(value) if integer else float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{key} must be {'>' if low_open else '≥'} {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{key} must be ≤ {high}, got {value!r}")
    return value


def _choice(value, key: str, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
    return value


def _string(value, key: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _path(value, key: str, base: Path | None, optional: bool = False) -> str | None:
    value = _string(value, key, optional)
    if value is None:
        return None
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)


def _data(values, base) -> DataConfig:
    values = _check_keys(values, DataConfig, "data")
    if "labels" not in values:
        raise ConfigError("data.labels is required: a labels directory (OUT.d) or consolidated .h5 file")
    return DataConfig(
        labels=_path(values["labels"], "data.labels", base),
        minimal_labels=_path(values.get("minimal_labels"), "data.minimal_labels", base, optional=True),
        targets=_choice(values.get("targets", "large"), "data.targets", TARGET_STAGES),
        train_split=_string(values.get("train_split", "train"), "data.train_split"),
        val_split=_string(values.get("val_split", "val"), "data.val_split"),
        max_train=_number(values.get("max_train"), "data.max_train", integer=True, low=1, optional=True),
        max_val=_number(values.get("max_val"), "data.max_val", integer=True, low=1, optional=True),
        max_train_polarizability=_number(
            values.get("max_train_polarizability"), "data.max_train_polarizability", integer=True, low=0, optional=True
        ),
        max_val_polarizability=_number(
            values.get("max_val_polarizability"), "data.max_val_polarizability", integer=True, low=0, optional=True
        ),
    )


def _model(values, base) -> ModelConfig:
    from mlhcalc.features import FeatureHypers

    values = _check_keys(values, ModelConfig, "model")
    hypers = values.get("hypers") or {}
    if not isinstance(hypers, dict):
        raise ConfigError(f"model.hypers must be a mapping of FeatureHypers fields, got {hypers!r}")
    allowed = [f.name for f in dataclasses.fields(FeatureHypers) if f.name != "species"]
    for key in hypers:
        if key not in allowed:
            raise ConfigError(f"unknown key 'model.hypers.{key}'; allowed: {allowed} (species: model.species)")
    if hypers.get("learnable_compression"):
        raise ConfigError(
            "model.hypers.learnable_compression: true is not supported by the trainer (it precomputes the "
            "features once, which requires weight-independent features)"
        )
    species = values.get("species")
    if species is not None:
        if not isinstance(species, (list, tuple)) or not species:
            raise ConfigError(f"model.species must be a list of atomic numbers, got {species!r}")
        species = tuple(_number(z, "model.species[]", integer=True, low=1, high=118) for z in species)
    try:  # let FeatureHypers check the values it owns
        FeatureHypers(**hypers, **({"species": species} if species else {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.hypers: {err}") from None
    gated = values.get("gated", False)
    if not isinstance(gated, bool):
        raise ConfigError(f"model.gated must be true or false, got {gated!r}")
    init = _path(values.get("init"), "model.init", base, optional=True)
    if init is not None and (hypers or species):
        raise ConfigError("model.init (start from a saved model) excludes model.hypers and model.species")
    trainable = _string(values.get("trainable", ".*"), "model.trainable")
    from mlhcalc.hamiltonian.model import REPRESENTATIONS

    representation = _string(values.get("representation", "ao"), "model.representation")
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"model.representation must be 'ao' or 'lowdin', got {representation!r}")
    try:
        re.compile(trainable)
    except re.error as err:
        raise ConfigError(f"model.trainable must be a regular expression on parameter names: {err}") from None
    return ModelConfig(
        init=init,
        basis=_string(values.get("basis", "sto-3g"), "model.basis"),
        species=species,
        hypers=dict(hypers),
        gated=gated,
        trainable=trainable,
        representation=representation,
        ridge_regularization=_number(
            values.get("ridge_regularization", 1e-8), "model.ridge_regularization", low=0, low_open=True
        ),
    )


def _weight(values: dict, key: str, default: float) -> float:
    return _number(values.get("weight", default), f"{key}.weight", low=0)


def _targets(values) -> TargetsConfig:
    values = _check_keys(values, TargetsConfig, "targets")
    mo = _check_keys(values.get("mo_energy"), MOTargetConfig, "targets.mo_energy")
    dipole = _check_keys(values.get("dipole"), TermConfig, "targets.dipole")
    alpha = _check_keys(values.get("polarizability"), TermConfig, "targets.polarizability")
    window = _choice(mo.get("window", "occupied"), "targets.mo_energy.window", MO_WINDOWS)
    virtuals = _number(mo.get("virtuals", 1), "targets.mo_energy.virtuals", integer=True, low=0)
    if window == "minimal" and "virtuals" in mo:
        raise ConfigError("targets.mo_energy.virtuals applies to window 'occupied' only ('minimal' uses n_min levels)")
    targets = TargetsConfig(
        mo_energy=MOTargetConfig(_weight(mo, "targets.mo_energy", 1.0), window, virtuals),
        dipole=TermConfig(_weight(dipole, "targets.dipole", 1.0)),
        polarizability=TermConfig(_weight(alpha, "targets.polarizability", 0.0)),
        normalization=_choice(values.get("normalization", "variance"), "targets.normalization", NORMALIZATIONS),
    )
    if targets.mo_energy.weight + targets.dipole.weight + targets.polarizability.weight == 0:
        raise ConfigError(
            "all target weights are 0: give at least one of targets.{mo_energy,dipole,polarizability} a weight > 0"
        )
    return targets


def _optimizer(values) -> OptimizerConfig:
    values = _check_keys(values, OptimizerConfig, "optimizer")
    name = _choice(values.get("name", "adam"), "optimizer.name", OPTIMIZERS)
    factor = _number(values.get("plateau_factor"), "optimizer.plateau_factor", low=0, low_open=True, optional=True)
    if factor is not None and factor >= 1:
        raise ConfigError(f"optimizer.plateau_factor must be in (0, 1), got {factor}")
    if name == "lbfgs" and (factor is not None or values.get("weight_decay")):
        raise ConfigError("optimizer.plateau_factor and optimizer.weight_decay apply to adam only")
    return OptimizerConfig(
        name=name,
        lr=_number(values.get("lr", 1.0 if name == "lbfgs" else 1e-3), "optimizer.lr", low=0, low_open=True),
        weight_decay=_number(values.get("weight_decay", 0.0), "optimizer.weight_decay", low=0),
        anchor=_number(values.get("anchor", 0.0), "optimizer.anchor", low=0),
        plateau_factor=factor,
        plateau_patience=_number(values.get("plateau_patience", 5), "optimizer.plateau_patience", integer=True, low=0),
        lbfgs_max_iter=_number(values.get("lbfgs_max_iter", 20), "optimizer.lbfgs_max_iter", integer=True, low=1),
        lbfgs_history=_number(values.get("lbfgs_history", 20), "optimizer.lbfgs_history", integer=True, low=1),
    )


def _training(values) -> TrainingConfig:
    values = _check_keys(values, TrainingConfig, "training")
    return TrainingConfig(
        batch_size=_number(values.get("batch_size", 16), "training.batch_size", integer=True, low=1),
        max_epochs=_number(values.get("max_epochs", 200), "training.max_epochs", integer=True, low=0),
        patience=_number(values.get("patience", 20), "training.patience", integer=True, low=1),
        min_delta=_number(values.get("min_delta", 0.0), "training.min_delta", low=0, high=1),
        bucket=_number(values.get("bucket", 16), "training.bucket", integer=True, low=1),
        progress=_choice(values.get("progress", "auto"), "training.progress", PROGRESS),
    )


def _evaluation(values) -> EvaluationConfig:
    values = _check_keys(values, EvaluationConfig, "evaluation")
    splits = values.get("splits", ["val"])
    if isinstance(splits, str) or not isinstance(splits, (list, tuple)):
        raise ConfigError(f"evaluation.splits must be a list of split names, got {splits!r}")
    return EvaluationConfig(splits=tuple(_string(s, "evaluation.splits[]") for s in splits))


def config_from_dict(values: dict, base: str | os.PathLike | None = None, source: str | None = None) -> Config:
    """Validate a configuration mapping; relative paths are taken relative to ``base``."""
    base = Path(base) if base is not None else None
    values = _check_keys(values, Config, "")
    if "output" not in values:
        raise ConfigError("output is required: the run directory (checkpoint, log.csv, model/)")
    level = values.get("level_of_theory")
    return Config(
        output=_path(values["output"], "output", base),
        seed=_number(values.get("seed", 0), "seed", integer=True, low=0),
        level_of_theory=_string(level, "level_of_theory", optional=True),
        data=_data(values.get("data"), base),
        model=_model(values.get("model"), base),
        targets=_targets(values.get("targets")),
        optimizer=_optimizer(values.get("optimizer")),
        training=_training(values.get("training")),
        evaluation=_evaluation(values.get("evaluation")),
        source=source,
    )


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a YAML training configuration (paths relative to the file's directory)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read the config {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    try:
        return config_from_dict(values if values is not None else {}, base=path.resolve().parent, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
