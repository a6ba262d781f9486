"""The reference-label storage format (HDF5, ``format_version`` 1) and its reader.

Layout (the same groups in a per-stage file and in a consolidated file; ``docs/data.md`` has the
full schema table)::

    /                                attrs: format_version, level, mlhcalc_version, created
    /structures/<sid>/               attrs: structure_id, input_index, input_file, charge, periodic, geometry_hash
        numbers (n,) int32           atomic numbers
        positions (n, 3) float64     bohr
        cell (3, 3) float64          bohr, lattice vectors as rows (periodic only)
        metadata/                    attrs: the input's atoms.info entries (str, numbers, numeric arrays)
        metadata_json/               attrs: other atoms.info entries, JSON-encoded
        <stage>/                     attrs: level of theory, convergence, versions, wall_time (s), ...
            <label>                  dataset, attr ``unit``; matrices gzip-compressed
    /failures/<sid>.<stage>          attrs: structure_id, stage, error_type, error, traceback, ... (consolidated only)

While labelling, results live in a directory ``OUT.d/`` of small files, one per finished
structure-stage (``<sid>.<stage>.h5``), each written to a temporary name, flushed and renamed
into place, so a killed run never leaves a half-written result (an orphaned temporary file is
removed by the next run). Failed structure-stages are ``<sid>.<stage>.failed.json``.
:func:`consolidate` packs the directory into one file; :func:`read` reads either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.units import Bohr

import mlhcalc
from mlhcalc.reference.levels import LEVELS, MOLECULE_STAGES, STAGE_SUFFIX

__all__ = [
    "FORMAT_VERSION",
    "LabelError",
    "SHARED_LABELS",
    "result_paths",
    "structure_header",
    "geometry_hash",
    "write_stage",
    "write_failure",
    "remove_failure",
    "scan",
    "Scan",
    "read",
    "read_failures",
    "consolidate",
    "lock_directory",
    "prepare_directory",
]

FORMAT_VERSION = 1


class LabelError(RuntimeError):
    """A labelling job cannot start (output directory in use or inconsistent, bad options); nothing was computed."""


# labels that do not depend on the stage: stored in each stage that computes them, read without suffix
SHARED_LABELS = ("nocc", "kpts", "kpts_frac", "kmesh", "dipole_origin")
_STAGE_FILE = re.compile(r"^(?P<sid>\d+)\.(?P<stage>[a-z_]+)\.h5$")
_FAILED_FILE = re.compile(r"^(?P<sid>\d+)\.(?P<stage>[a-z_]+)\.failed\.json$")
_STAGE_ORDER = {stage: rank for rank, stage in enumerate(MOLECULE_STAGES)}
_GZIP = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def result_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """``(directory, consolidated_file)`` for ``-o OUT.h5`` (or ``OUT.d``): ``OUT.d/`` and ``OUT.h5``."""
    path = Path(output)
    if path.suffix == ".d":
        return path, path.with_suffix(".h5")
    if path.suffix in (".h5", ".hdf5"):
        return path.with_suffix(".d"), path
    return path.with_name(path.name + ".d"), path.with_name(path.name + ".h5")


def structure_id(index: int) -> str:
    return f"{index:06d}"


def geometry_hash(numbers, positions_bohr, cell_bohr, charge: int) -> str:
    """A short fingerprint of the structure, to refuse mixing results of different inputs."""
    digest = hashlib.sha256()
    digest.update(np.asarray(numbers, dtype=np.int64).tobytes())
    digest.update(np.round(np.asarray(positions_bohr, dtype=np.float64), 6).tobytes())
    if cell_bohr is not None:
        digest.update(np.round(np.asarray(cell_bohr, dtype=np.float64), 6).tobytes())
    digest.update(str(int(charge)).encode())
    return digest.hexdigest()[:16]


def structure_header(atoms: Atoms, sid: str, index: int, charge: int, input_file: str = "") -> dict:
    periodic = bool(np.all(atoms.pbc))
    positions = np.asarray(atoms.get_positions(), dtype=np.float64) / Bohr
    cell = np.asarray(atoms.cell, dtype=np.float64) / Bohr if periodic else None
    numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int32)
    return {
        "structure_id": sid,
        "input_index": int(index),
        "input_file": str(input_file),
        "charge": int(charge),
        "periodic": periodic,
        "numbers": numbers,
        "positions": positions,
        "cell": cell,
        "geometry_hash": geometry_hash(numbers, positions, cell, charge),
        "info": dict(atoms.info),
    }


# ----------------------------------------------------------------------------------------- writing


def _set_attr(obj, key: str, value) -> None:
    if value is None:
        return
    obj.attrs[key] = value


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _write_metadata(group: h5py.Group, info: dict) -> None:
    native = group.create_group("metadata")
    encoded = group.create_group("metadata_json")
    for key, value in info.items():
        key = str(key)
        if isinstance(value, str | bool | int | float | np.bool_ | np.integer | np.floating):
            native.attrs[key] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size > 0:
            native.attrs[key] = value
        else:
            encoded.attrs[key] = json.dumps(value, default=_json_default)


def _write_header(root: h5py.File, header: dict) -> h5py.Group:
    group = root.require_group("structures").create_group(header["structure_id"])
    for key in ("structure_id", "input_index", "input_file", "charge", "periodic", "geometry_hash"):
        group.attrs[key] = header[key]
    group.create_dataset("numbers", data=header["numbers"])
    group.create_dataset("positions", data=header["positions"]).attrs["unit"] = "bohr"
    if header["cell"] is not None:
        group.create_dataset("cell", data=header["cell"]).attrs["unit"] = "bohr"
    _write_metadata(group, header["info"])
    return group


def _write_root_attrs(root: h5py.File, level: str) -> None:
    root.attrs["format_version"] = FORMAT_VERSION
    root.attrs["level"] = level
    root.attrs["mlhcalc_version"] = mlhcalc.__version__
    root.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem/OS supports it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic(final: Path):
    """Yield a temporary path next to ``final``; on success flush it to disk and rename it over ``final``."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_directory(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_stage(directory: Path, level: str, header: dict, stage: str, datasets: dict, attrs: dict) -> Path:
    """Write one finished structure-stage atomically as ``directory/<sid>.<stage>.h5``."""
    final = Path(directory) / f"{header['structure_id']}.{stage}.h5"
    with _atomic(final) as tmp:
        with h5py.File(tmp, "w") as root:
            _write_root_attrs(root, level)
            group = _write_header(root, header).create_group(stage)
            for key, value in attrs.items():
                _set_attr(group, key, value)
            for name, (array, unit) in datasets.items():
                array = np.asarray(array)
                options = _GZIP if array.ndim >= 2 else {}
                group.create_dataset(name, data=array, **options).attrs["unit"] = unit
    return final


def write_failure(directory: Path, failure: dict) -> Path:
    final = Path(directory) / f"{failure['structure_id']}.{failure['stage']}.failed.json"
    with _atomic(final) as tmp:
        tmp.write_text(json.dumps(failure, indent=1, default=_json_default))
    return final


def remove_failure(directory: Path, sid: str, stage: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(directory) / f"{sid}.{stage}.failed.json")


# ------------------------------------------------------------------------------- directory upkeep


@contextlib.contextmanager
def lock_directory(directory: Path):
    """Exclusive lock on a results directory (one labelling run at a time); released on exit or kill."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    handle = open(Path(directory) / ".lock", "a")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LabelError(
                f"{directory} is in use by another labelling run (lock {directory / '.lock'}); wait for it or "
                "use another output"
            ) from None
        yield
    finally:
        handle.close()


def prepare_directory(directory: Path, level: str) -> None:
    """Create ``directory`` (with ``manifest.json``), check its level, remove orphaned temporary files.

    Call with the directory locked (:func:`lock_directory`).
    """
    directory = Path(directory)
    manifest = directory / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise LabelError(
                f"{directory} holds format_version {data.get('format_version')}, this mlhcalc writes "
                f"{FORMAT_VERSION}: use another output"
            )
        if data.get("level") != level:
            raise LabelError(
                f"{directory} holds --level {data.get('level')} results; this run is --level {level}: "
                "use another output"
            )
    else:
        with _atomic(manifest) as tmp:
            tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, "level": level}) + "\n")
    for orphan in directory.glob(".*.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            orphan.unlink()


@dataclass
class Scan:
    """What a results directory holds: ``(sid, stage) → path`` of finished and of failed stages."""

    done: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)


def scan(directory: Path) -> Scan:
    result = Scan()
    directory = Path(directory)
    if not directory.is_dir():
        return result
    for path in directory.iterdir():
        match = _STAGE_FILE.match(path.name)
        if match:
            result.done[(match["sid"], match["stage"])] = path
            continue
        match = _FAILED_FILE.match(path.name)
        if match:
            result.failed[(match["sid"], match["stage"])] = path
    return result


def stage_summary(path: Path) -> dict:
    """Header hash and the attributes a rerun compares (basis, kmesh, polarizability present)."""
    with h5py.File(path, "r") as root:
        (sid,) = root["structures"].keys()
        group = root["structures"][sid]
        (stage,) = [
            key for key in group.keys() if key not in ("numbers", "positions", "cell", "metadata", "metadata_json")
        ]
        attrs = group[stage].attrs
        return {
            "geometry_hash": str(group.attrs["geometry_hash"]),
            "basis": str(attrs.get("basis", "")),
            "kmesh": tuple(int(k) for k in attrs["kmesh"]) if "kmesh" in attrs else None,
            "has_polarizability": "polarizability" in group[stage],
        }


# ----------------------------------------------------------------------------------------- reading


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _read_attrs(obj) -> dict:
    return {key: _plain(value) for key, value in obj.attrs.items()}


def _read_header(group: h5py.Group) -> dict:
    header = _read_attrs(group)
    header["numbers"] = group["numbers"][()]
    header["positions"] = group["positions"][()]
    header["cell"] = group["cell"][()] if "cell" in group else None
    info = _read_attrs(group["metadata"]) if "metadata" in group else {}
    if "metadata_json" in group:
        info.update({key: json.loads(value) for key, value in _read_attrs(group["metadata_json"]).items()})
    header["info"] = info
    return header


def _read_stage(group: h5py.Group) -> tuple[dict, dict]:
    datasets = {}
    for name, dataset in group.items():
        value = dataset[()]
        datasets[name] = _plain(value) if np.ndim(value) == 0 else value
    return datasets, _read_attrs(group)


def _stage_names(group: h5py.Group) -> list[str]:
    names = [key for key, item in group.items() if isinstance(item, h5py.Group) and key in STAGE_SUFFIX]
    return sorted(names, key=lambda s: _STAGE_ORDER.get(s, 99))


def _check_version(root: h5py.File, path) -> None:
    version = root.attrs.get("format_version")
    if version is None or int(version) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {version} is not readable by mlhcalc {mlhcalc.__version__} "
            f"(reads up to {FORMAT_VERSION})"
        )


def _collect_directory(directory: Path) -> dict:
    records: dict[str, dict] = {}
    files = sorted(scan(directory).done.items(), key=lambda item: (int(item[0][0]), _STAGE_ORDER.get(item[0][1], 99)))
    for (sid, stage), path in files:
        with h5py.File(path, "r") as root:
            _check_version(root, path)
            group = root["structures"][sid]
            record = records.setdefault(sid, {"header": _read_header(group), "stages": {}})
            record["stages"][stage] = _read_stage(group[stage])
    return records


def _collect_file(path: Path) -> dict:
    records: dict[str, dict] = {}
    with h5py.File(path, "r") as root:
        _check_version(root, path)
        for sid, group in root.get("structures", {}).items():
            records[sid] = {
                "header": _read_header(group),
                "stages": {stage: _read_stage(group[stage]) for stage in _stage_names(group)},
            }
    return records


def _resolve(path) -> Path:
    path = Path(path)
    if path.exists():
        return path
    directory, _ = result_paths(path)
    if directory.is_dir():
        return directory
    raise FileNotFoundError(f"no labels at {path} (nor a results directory {directory})")


def _to_atoms(sid: str, record: dict, provenance: bool) -> Atoms:
    header = record["header"]
    periodic = bool(header["periodic"])
    atoms = Atoms(
        numbers=header["numbers"],
        positions=np.asarray(header["positions"]) * Bohr,
        cell=np.asarray(header["cell"]) * Bohr if periodic else None,
        pbc=periodic,
    )
    atoms.info.update(header["info"])
    atoms.info.update(
        structure_id=sid,
        input_index=int(header["input_index"]),
        charge=int(header["charge"]),
        stages=list(record["stages"]),
    )
    for stage, (datasets, attrs) in record["stages"].items():
        suffix = STAGE_SUFFIX[stage]
        for name, value in datasets.items():
            atoms.info[name if name in SHARED_LABELS else f"{name}_{suffix}"] = value
        atoms.info[f"wall_time_{stage}"] = float(attrs.get("wall_time", float("nan")))
    if provenance:
        atoms.info["provenance"] = {stage: attrs for stage, (_, attrs) in record["stages"].items()}
    return atoms


def read(path, provenance: bool = False) -> list[Atoms]:
    """Labels of ``path`` (a consolidated ``.h5`` or a results directory ``OUT.d``) as ``ase.Atoms``.

    Positions and cell in Å (ASE); every label in ``atoms.info`` in atomic units, named
    ``<label>_<minimal|large>`` (``nocc``, ``kpts``, ``kpts_frac``, ``kmesh``, ``dipole_origin`` without
    suffix); the input's ``atoms.info`` keys come along. Structures are in input order; only those
    with at least one finished stage appear (``info['stages']`` lists them). ``provenance=True`` adds
    ``info['provenance'] = {stage: attributes}`` (level of theory, versions, wall time).
    If ``path`` does not exist but ``path``'s results directory does, that directory is read.
    """
    path = _resolve(path)
    records = _collect_directory(path) if path.is_dir() else _collect_file(path)
    return [_to_atoms(sid, records[sid], provenance) for sid in sorted(records, key=int)]


def read_failures(path) -> list[dict]:
    """Failed structure-stages (structure_id, stage, error_type, error, traceback, ...) of ``path``."""
    path = _resolve(path)
    failures = []
    if path.is_dir():
        for (_, _), file in sorted(scan(path).failed.items()):
            failures.append(json.loads(file.read_text()))
    else:
        with h5py.File(path, "r") as root:
            for _, group in sorted(root.get("failures", {}).items()):
                failures.append(_read_attrs(group))
    return failures


def consolidate(directory, output=None) -> Path:
    """Pack a results directory into one compressed HDF5 file (atomically replacing ``output``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no results directory {directory}")
    output = Path(output) if output is not None else result_paths(directory)[1]
    manifest = json.loads((directory / "manifest.json").read_text()) if (directory / "manifest.json").exists() else {}
    level = manifest.get("level", "")
    if level and level not in LEVELS:
        raise ValueError(f"{directory}/manifest.json has unknown level {level!r}")
    content = scan(directory)
    files = sorted(content.done.items(), key=lambda item: (int(item[0][0]), _STAGE_ORDER.get(item[0][1], 99)))
    with _atomic(output) as tmp:
        with h5py.File(tmp, "w") as root:
            _write_root_attrs(root, level)
            structures = root.create_group("structures")
            for (sid, stage), path in files:
                with h5py.File(path, "r") as source:
                    _check_version(source, path)
                    group = source["structures"][sid]
                    if sid not in structures:
                        target = structures.create_group(sid)
                        for key, value in group.attrs.items():
                            target.attrs[key] = value
                        for key in group.keys():
                            if key not in STAGE_SUFFIX:
                                source.copy(group[key], target, name=key)
                    source.copy(group[stage], structures[sid], name=stage)
            failures = root.create_group("failures")
            for (sid, stage), path in sorted(content.failed.items()):
                entry = failures.create_group(f"{sid}.{stage}")
                for key, value in json.loads(path.read_text()).items():
                    _set_attr(entry, key, value if isinstance(value, str | int | float | bool) else json.dumps(value))
    return output
