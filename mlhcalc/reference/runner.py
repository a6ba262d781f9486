"""Plan, run and record a labelling job: resumable, parallel over structures, one writer.

The parent process plans the missing structure-stages, hands them to an executor (a local
``ProcessPoolExecutor``, an in-process serial runner, or a Dask ``distributed.Client``; the same loop
drives all three) and is the only process that writes: each finished structure-stage becomes one
small HDF5 file renamed atomically into ``OUT.d/`` (:mod:`mlhcalc.reference.storage`). A failed
structure-stage is recorded with its error and the run goes on; it is retried only with
``retry_failed``. Ctrl-C/SIGTERM stop the workers and keep everything finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from ase import Atoms

from mlhcalc.reference import storage
from mlhcalc.reference.compute import parse_kmesh
from mlhcalc.reference.levels import XC_GRIDS, MoleculeLevel, SiliconLevel, stages_for
from mlhcalc.reference.storage import LabelError
from mlhcalc.reference.worker import THREAD_VARIABLES, Task, failure_result, init_worker, run_task
from mlhcalc.structure import resolve_charge, validate_atoms

__all__ = ["label", "LabelSummary", "LabelError", "POLARIZABILITY_MODES", "default_workers", "parse_stages"]

POLARIZABILITY_MODES = ("none", "all", "info")
_MAX_WORKER_DEATHS = 2  # a structure-stage whose worker process dies this often is recorded as failed


@dataclass
class LabelSummary:
    directory: Path
    consolidated: Path | None = None
    n_structures: int = 0
    n_tasks: int = 0
    computed: list = field(default_factory=list)  # (structure_id, stage) finished in this run
    failed: list = field(default_factory=list)  # failure dicts recorded in this run
    skipped_done: int = 0
    skipped_failed: int = 0  # failed before and not retried (see retry_failed)
    wall_time: float = 0.0


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def parse_stages(stages: str | Sequence[str] | None, level: str) -> tuple[str, ...]:
    known = stages_for(level)
    if stages is None:
        return known
    names = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else [str(s) for s in stages]
    names = [s for s in names if s]
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        raise LabelError(f"unknown stage(s) {unknown or names} for --level {level}: choose from {', '.join(known)}")
    return tuple(s for s in known if s in names)


def info_flag(value) -> bool:
    """A yes/no value of ``atoms.info`` (bool, number, or text such as extxyz's T/F, true, yes)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "yes", "y")
    try:
        return bool(value)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------- executors


class _SerialBackend:
    """Runs each task in this process when submitted (``workers=0``): debugging and tiny jobs."""

    def __init__(self):
        from pyscf import lib

        self._threads = lib.num_threads()

    def capacity(self) -> int:
        return 1

    def submit(self, fn, task) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(task))
        except Exception as err:
            future.set_exception(err)
        return future

    def wait(self, futures):
        return futures

    def close(self, abort: bool = False, running=()) -> None:
        from pyscf import lib

        lib.num_threads(self._threads)


class _LocalBackend:
    """A ``ProcessPoolExecutor`` of spawned workers with capped threads; restartable if a worker dies."""

    def __init__(self, workers: int, threads: int):
        self.workers = workers
        self.threads = threads
        self._executor = None
        self.restart()

    def restart(self) -> None:
        import multiprocessing

        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.threads, os.getpid()),
        )

    def capacity(self) -> int:
        return self.workers

    def submit(self, fn, task) -> Future:
        return self._executor.submit(fn, task)

    def wait(self, futures):
        done, _ = futures_wait(futures, return_when=FIRST_COMPLETED)
        return done

    def close(self, abort: bool = False, running=()) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if abort:
            terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
            if terminate is not None:
                terminate()
            else:
                for process in list((getattr(executor, "_processes", None) or {}).values()):
                    with contextlib.suppress(Exception):
                        process.terminate()
            executor.shutdown(wait=True, cancel_futures=True)
        else:
            executor.shutdown(wait=True)


class _DaskBackend:
    """The same tasks as Dask futures on a ``distributed`` cluster; this process still does all writing."""

    def __init__(self, scheduler):
        import distributed

        self._distributed = distributed
        if isinstance(scheduler, distributed.Client):
            self.client, self._own = scheduler, False
        else:
            self.client, self._own = distributed.Client(scheduler), True

    def capacity(self) -> int:
        try:
            threads = sum(self.client.nthreads().values())
        except Exception:  # pragma: no cover - scheduler unreachable: keep a small queue
            threads = 0
        return max(4, 2 * threads)

    def submit(self, fn, task):
        return self.client.submit(
            fn, task, pure=False, key=f"mlhcalc-label-{task.structure_id}-{task.stage}-{id(task)}"
        )

    def wait(self, futures):
        done, _ = self._distributed.wait(futures, return_when="FIRST_COMPLETED")
        return done

    def close(self, abort: bool = False, running=()) -> None:
        if abort and running:
            with contextlib.suppress(Exception):
                self.client.cancel(list(running))
        if self._own:
            self.client.close()


# ------------------------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    tasks: list
    headers: dict
    invalid: list  # failure dicts for structures that fail validation
    skipped_done: int = 0
    skipped_failed: int = 0


def _stage_basis(level: str, stage: str, basis_large: str | None, basis_minimal: str | None = None) -> str:
    levels = MoleculeLevel if level == "molecule" else SiliconLevel
    if stage == "minimal":
        return basis_minimal or levels.basis_minimal
    return basis_large or levels.basis_large


def _plan(
    structures: Sequence[Atoms],
    directory: Path,
    level: str,
    stages: tuple[str, ...],
    polarizability: str,
    kmesh,
    basis_large: str | None,
    threads: int,
    retry_failed: bool,
    input_file: str,
    xc_grid: str = "becke",
    conv_tol: float | None = None,
    only: Sequence[int] | None = None,
    basis_minimal: str | None = None,
) -> _Plan:
    content = storage.scan(directory)
    plan = _Plan(tasks=[], headers={}, invalid=[])
    periodic = level == "silicon"
    # structures outside ``only`` are not planned at all; those inside run in the order given
    priority = {index: position for position, index in enumerate(only)} if only is not None else None
    for index, atoms in enumerate(structures):
        if priority is not None and index not in priority:
            continue
        sid = storage.structure_id(index)
        wants_alpha = level == "molecule" and (
            polarizability == "all" or (polarizability == "info" and info_flag(atoms.info.get("polarizability", False)))
        )
        applicable = [s for s in stages if s != "large_polarizability" or wants_alpha]
        error = None
        charge = 0
        mesh = None
        try:
            for stage in applicable:
                basis = _stage_basis(level, stage, basis_large, basis_minimal)
                charge = validate_atoms(atoms, basis, periodic=periodic)
            if periodic:
                source = atoms.info.get("kmesh", kmesh)
                if source is None:
                    raise ValueError("no k-mesh: give --kmesh N N N or atoms.info['kmesh'] (e.g. '4 4 4')")
                mesh = parse_kmesh(source)
        except (ValueError, TypeError) as err:
            error = err
            with contextlib.suppress(ValueError):
                charge = resolve_charge(atoms)
        header = storage.structure_header(atoms, sid, index, charge, input_file)
        plan.headers[sid] = header
        todo = []
        for stage in applicable:
            key = (sid, stage)
            if key in content.done:
                recompute = False
                if error is None:
                    summary = storage.stage_summary(content.done[key])
                    basis = _stage_basis(level, stage, basis_large, basis_minimal)
                    _check_consistent(content.done[key], summary, header, basis, mesh)
                    # a minimal stage stored without the polarizability that is now asked for
                    recompute = stage == "minimal" and wants_alpha and not summary["has_polarizability"]
                if not recompute:
                    plan.skipped_done += 1
                    continue
            if key in content.failed and not retry_failed:
                plan.skipped_failed += 1
                continue
            todo.append(stage)
        # both large-basis stages due: one task, one SCF (the CPKS reuses it)
        joint = error is None and level == "molecule" and "large" in todo and "large_polarizability" in todo
        if joint:
            todo.remove("large_polarizability")
        for stage in todo:
            task = Task(
                structure_id=sid,
                index=index,
                stage=stage,
                level=level,
                atoms=atoms,
                charge=charge,
                polarizability=wants_alpha,
                kmesh=mesh,
                basis_large=basis_large,
                basis_minimal=basis_minimal,
                threads=threads,
                joint_polarizability=joint and stage == "large",
                xc_grid=xc_grid,
                conv_tol=conv_tol,
            )
            if error is not None:
                failure = failure_result(task, error, tb="")
                failure["input_file"] = input_file
                if "name" in atoms.info:
                    failure["name"] = str(atoms.info["name"])
                plan.invalid.append(failure)
            else:
                plan.tasks.append(task)
    rank = {stage: r for r, stage in enumerate(stages)}
    # cheap stages of every structure first; within a stage, input order (or the order of ``only``)
    plan.tasks.sort(key=lambda t: (rank[t.stage], priority[t.index] if priority is not None else t.index))
    return plan


def _check_consistent(path: Path, summary: dict, header: dict, basis: str, mesh) -> None:
    if summary["geometry_hash"] != header["geometry_hash"]:
        raise LabelError(
            f"{path} holds a different structure than input structure {header['input_index']} (geometry/charge "
            "changed): these results belong to another input; use another output"
        )
    if summary["basis"] != basis:
        raise LabelError(
            f"{path} was computed in basis {summary['basis']!r}, this run asks for {basis!r}: use another output"
        )
    if mesh is not None and summary["kmesh"] is not None and tuple(summary["kmesh"]) != tuple(mesh):
        raise LabelError(
            f"{path} was computed on k-mesh {summary['kmesh']}, this run asks for {mesh}: use another output"
        )


# -------------------------------------------------------------------------------------------- running


@contextlib.contextmanager
def _thread_environment(threads: int):
    """Workers inherit these variables when spawned (BLAS reads them at import)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _read_input(structures) -> tuple[list[Atoms], str]:
    if isinstance(structures, str | os.PathLike):
        import ase.io

        return list(ase.io.read(structures, index=":")), str(structures)
    if isinstance(structures, Atoms):
        return [structures], ""
    return list(structures), ""


def label(
    structures: str | os.PathLike | Atoms | Iterable[Atoms],
    output: str | os.PathLike,
    level: str = "molecule",
    stages: str | Sequence[str] | None = None,
    polarizability: str = "none",
    kmesh=None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler=None,
    retry_failed: bool = False,
    consolidate: bool = False,
    basis_large: str | None = None,
    progress: bool | None = None,
    task_function: Callable[[Task], dict] | None = None,
    input_file: str | None = None,
    xc_grid: str = "becke",
    conv_tol: float | None = None,
    only: Sequence[int] | None = None,
    basis_minimal: str | None = None,
) -> LabelSummary:
    """Label every structure (an ASE-readable file or ``ase.Atoms``) into ``output``'s results directory.

    ``output`` ``OUT.h5`` → results in ``OUT.d/`` (one file per structure-stage), and with
    ``consolidate`` packed into ``OUT.h5``. Only missing structure-stages are computed (and failed ones
    with ``retry_failed``). ``polarizability``: ``"none"``, ``"all"`` or ``"info"`` (per structure,
    ``atoms.info['polarizability']``). ``kmesh`` (silicon): the mesh of structures without
    ``atoms.info['kmesh']``. ``workers``: local processes (0: in this process; default min(2, cores));
    ``scheduler``: a Dask scheduler address or ``distributed.Client`` instead. ``basis_large``
    overrides the large basis (tests only: it is not the project's reference level).
    ``basis_minimal`` replaces the minimal basis (STO-3G / gth-szv) by a model basis to experiment
    with (e.g. ``def2-svp``, for ``model.basis`` in a training config); write such labels to their
    own output, the stored basis is checked on every rerun.
    ``input_file`` is recorded with each structure (default: the path given as ``structures``).
    ``xc_grid`` (silicon): ``"becke"`` (the reference labels) or ``"uniform"`` (for cells too large
    for the periodic Becke partition; recorded as ``grid`` in each label's attributes).
    ``conv_tol`` (silicon): SCF energy tolerance in hartree instead of the level's 1e-10 (recorded as
    ``conv_tol``; for large cells, where 1e-10 Ha of a total energy of hundreds of hartree is near
    round-off and the last decades take many cycles without moving the bands, docs/data.md).
    ``only``: label just these input indices (0-based), in this order (the rest are left alone;
    ids stay the input positions, so a later run of the whole input resumes around them).
    ``task_function`` replaces :func:`mlhcalc.reference.worker.run_task` (tests; must be picklable).
    Raises ``KeyboardInterrupt`` after Ctrl-C/SIGTERM, with every finished result kept.
    """
    start = time.perf_counter()
    level = str(level)
    stage_list = parse_stages(stages, level)
    if polarizability not in POLARIZABILITY_MODES:
        raise LabelError(f"polarizability must be one of {POLARIZABILITY_MODES}, got {polarizability!r}")
    if kmesh is not None:
        try:
            kmesh = parse_kmesh(kmesh)
        except ValueError as err:
            raise LabelError(str(err)) from None
    threads = max(1, int(threads_per_worker))
    if xc_grid not in XC_GRIDS:
        raise LabelError(f"xc_grid must be one of {', '.join(XC_GRIDS)}, got {xc_grid!r}")
    if conv_tol is not None:
        if level != "silicon":
            raise LabelError("conv_tol applies to periodic labels (--level silicon) only; molecules keep the level's")
        if not (isinstance(conv_tol, int | float) and 0 < conv_tol <= 1e-6):
            raise LabelError(f"conv_tol must be a number in (0, 1e-6] hartree, got {conv_tol!r}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise LabelError(f"workers must be >= 0, got {workers}")
    atoms_list, source = _read_input(structures)
    input_file = str(input_file) if input_file is not None else source
    if only is not None:
        only = [int(i) for i in only]
        if not only:
            raise LabelError("only: no indices given; name the 0-based input positions to label, e.g. 0,3,5")
        outside = [i for i in only if not 0 <= i < len(atoms_list)]
        if outside:
            raise LabelError(f"only: indices {outside} are outside the input's {len(atoms_list)} structures (0-based)")
        if len(set(only)) != len(only):
            raise LabelError(f"only: repeated indices in {only}")
    directory, consolidated_path = storage.result_paths(output)
    directory.mkdir(parents=True, exist_ok=True)
    summary = LabelSummary(directory=directory, n_structures=len(atoms_list))
    fn = task_function or run_task
    with storage.lock_directory(directory):
        storage.prepare_directory(directory, level)
        plan = _plan(
            atoms_list,
            directory,
            level,
            stage_list,
            polarizability,
            kmesh,
            basis_large,
            threads,
            retry_failed,
            input_file,
            xc_grid,
            conv_tol,
            only,
            basis_minimal,
        )
        summary.skipped_done, summary.skipped_failed = plan.skipped_done, plan.skipped_failed
        for failure in plan.invalid:
            storage.write_failure(directory, failure)
            summary.failed.append(failure)
        summary.n_tasks = sum(1 + t.joint_polarizability for t in plan.tasks)
        if plan.tasks:
            _run(plan, fn, directory, level, workers, threads, scheduler, progress, input_file, summary)
        if consolidate:
            summary.consolidated = storage.consolidate(directory, consolidated_path)
    summary.wall_time = time.perf_counter() - start
    return summary


def _run(plan, fn, directory, level, workers, threads, scheduler, progress, input_file, summary) -> None:
    from tqdm.auto import tqdm

    pending = deque(plan.tasks)
    running: dict = {}
    deaths: dict = {}
    suspects: set = set()  # in flight when a worker died: rerun one at a time to find the culprit
    with _thread_environment(threads), _sigterm_as_interrupt():
        if scheduler is not None:
            backend = _DaskBackend(scheduler)
        elif workers == 0:
            backend = _SerialBackend()
        else:
            backend = _LocalBackend(min(workers, len(plan.tasks)), threads)
        bar = tqdm(
            total=summary.n_tasks,
            desc="label",
            unit="stage",
            disable=None if progress is None else not progress,
        )
        aborted = True
        try:
            while pending or running:
                capacity = 1 if suspects else backend.capacity()
                while pending and len(running) < capacity:
                    task = pending.popleft()
                    running[backend.submit(fn, task)] = task
                in_flight_when_broken = []
                for future in backend.wait(list(running)):
                    task = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        in_flight_when_broken.append(task)
                        continue
                    except Exception as err:  # raised outside run_task, or by the cluster (e.g. KilledWorker)
                        result = failure_result(task, err)
                    suspects.discard((task.structure_id, task.stage))
                    _record(result, task, plan, directory, level, input_file, summary)
                    bar.update(1 + task.joint_polarizability)
                    bar.set_postfix(failed=len(summary.failed), refresh=False)
                if in_flight_when_broken:
                    in_flight_when_broken += list(running.values())
                    running.clear()
                    backend.restart()
                    if len(in_flight_when_broken) > 1:
                        for task in reversed(in_flight_when_broken):
                            suspects.add((task.structure_id, task.stage))
                            pending.appendleft(task)
                        continue
                    (task,) = in_flight_when_broken
                    key = (task.structure_id, task.stage)
                    deaths[key] = deaths.get(key, 0) + 1
                    if deaths[key] < _MAX_WORKER_DEATHS:
                        pending.appendleft(task)
                        continue
                    suspects.discard(key)
                    error = RuntimeError(
                        f"the worker process died {deaths[key]} times while computing this structure-stage "
                        "(killed, out of memory or crashed)"
                    )
                    _record(failure_result(task, error, tb=""), task, plan, directory, level, input_file, summary)
                    bar.update(1)
            aborted = False
        finally:
            bar.close()
            backend.close(abort=aborted, running=list(running))


def _record(result: dict, task: Task, plan: _Plan, directory: Path, level: str, input_file: str, summary) -> None:
    for extra in result.pop("extra", ()):  # a joint task's second stage (same structure)
        _record(
            extra,
            dataclasses.replace(task, stage=extra["stage"], joint_polarizability=False),
            plan,
            directory,
            level,
            input_file,
            summary,
        )
    if result.get("status") == "ok":
        storage.write_stage(
            directory, level, plan.headers[task.structure_id], task.stage, result["datasets"], result["attrs"]
        )
        storage.remove_failure(directory, task.structure_id, task.stage)
        summary.computed.append((task.structure_id, task.stage))
    else:
        result.setdefault("index", task.index)
        result["input_file"] = input_file
        name = plan.headers[task.structure_id]["info"].get("name")
        if name is not None:
            result["name"] = str(name)
        storage.write_failure(directory, result)
        summary.failed.append(result)
