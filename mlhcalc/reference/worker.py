"""What runs in a worker process (local pool or Dask worker): one structure-stage per task.

A task never writes files: it returns a plain dict (``status`` ``"ok"`` with the arrays, or
``"failed"`` with the error text) that the parent process writes. Exceptions from the calculation
are caught here and returned as failures; anything else that reaches the parent (a worker that
died, an injected error) is recorded by the parent the same way.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass

from ase import Atoms

__all__ = ["Task", "run_task", "init_worker", "set_threads", "THREAD_VARIABLES"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Task:
    """One structure-stage: everything a worker needs, picklable."""

    structure_id: str
    index: int
    stage: str
    level: str
    atoms: Atoms
    charge: int
    polarizability: bool = False
    kmesh: tuple[int, int, int] | None = None
    basis_large: str | None = None
    basis_minimal: str | None = None  # the model-basis experiment's minimal basis (None: the level's)
    threads: int = 1
    joint_polarizability: bool = False  # stage "large" that also computes "large_polarizability" (one SCF)
    xc_grid: str = "becke"  # periodic stages: the XC quadrature grid, "becke" or "uniform"
    conv_tol: float | None = None  # periodic stages: SCF energy tolerance (None: the level's, 1e-10 Ha)


def set_threads(threads: int) -> int:
    """Cap OpenMP/BLAS threads in this process (env for libraries loaded later, PySCF's OpenMP now)."""
    threads = max(1, int(threads))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from pyscf import lib

    lib.num_threads(threads)
    return lib.num_threads()


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: have the kernel kill this worker when the labelling process dies (even by SIGKILL).

    Without it an orphaned pool worker waits forever on its task queue. No-op elsewhere.
    """
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def init_worker(threads: int, parent_pid: int | None = None) -> None:
    """Initialiser of the local process pool: threads capped, Ctrl-C left to the parent (which stops us)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)


def _versions() -> dict:
    from importlib import metadata

    import numpy
    import pyscf

    import mlhcalc

    try:
        properties = metadata.version("pyscf-properties")
    except metadata.PackageNotFoundError:  # pragma: no cover
        properties = "unknown"
    return {
        "pyscf_version": pyscf.__version__,
        "pyscf_properties_version": properties,
        "mlhcalc_version": mlhcalc.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
    }


def run_task(task: Task) -> dict:
    """Compute one structure-stage; never raises for a failed calculation (returns ``status='failed'``).

    A ``joint_polarizability`` task (stage ``large``) also returns the ``large_polarizability``
    stage, computed from the same SCF, as ``result["extra"]`` (a result dict of the same form, or a
    failure if only the CPKS failed).
    """
    from mlhcalc.reference.compute import compute_stage, molecule_large_with_polarizability
    from mlhcalc.reference.levels import MoleculeLevel

    start = time.perf_counter()
    alpha = alpha_attrs = None
    try:
        threads = set_threads(task.threads)
        if task.joint_polarizability:
            datasets, attrs, alpha, alpha_attrs = molecule_large_with_polarizability(
                task.atoms, task.charge, MoleculeLevel(), task.basis_large
            )
        else:
            datasets, attrs = compute_stage(task)
    except Exception as err:  # recorded per structure; the run goes on
        return failure_result(task, err, time.perf_counter() - start)
    wall = time.perf_counter() - start
    common = {
        **_versions(),
        "threads": threads,
        "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cpks_time = (alpha_attrs or {}).get("polarizability_wall_time", 0.0)
    attrs.update(common, wall_time=wall - cpks_time)
    result = {
        "status": "ok",
        "structure_id": task.structure_id,
        "stage": task.stage,
        "datasets": datasets,
        "attrs": attrs,
    }
    if task.joint_polarizability:
        alpha_task = dataclasses.replace(task, stage="large_polarizability", joint_polarizability=False)
        if isinstance(alpha, BaseException):
            extra = failure_result(alpha_task, alpha, wall)
        else:
            alpha_attrs.update(common, wall_time=wall, scf_shared_with_stage="large")
            extra = {
                "status": "ok",
                "structure_id": task.structure_id,
                "stage": alpha_task.stage,
                "datasets": alpha,
                "attrs": alpha_attrs,
            }
        result["extra"] = [extra]
    return result


def failure_result(task: Task, err: BaseException, wall_time: float = 0.0, tb: str | None = None) -> dict:
    return {
        "status": "failed",
        "structure_id": task.structure_id,
        "index": task.index,
        "stage": task.stage,
        "error_type": type(err).__name__,
        "error": str(err) or repr(err),
        "traceback": tb if tb is not None else "".join(traceback.format_exception(err)),
        "wall_time": wall_time,
        "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
