"""Steady-state throughput of prediction (eigenvalues + dipole + polarizability + charges) on
QM7-size molecules, the path of ``mlhcalc predict`` (``mlhcalc.calculator.electronic_results``).

A first pass over the structures compiles what is needed (JAX: one function per size bucket and
chunk size; featomic/torch warm-up) and is reported separately; then each batch size is timed on
warm code over the same structures, with a breakdown into features + model H (torch) and the rest
(integrals, padding, batched JAX eigen/response, ASE units). The model is ``--model`` (a name or
directory) or, by default, a toy HCNO model with the default ``FeatureHypers`` ridge-fitted to
core Hamiltonians (speed does not depend on the weights, only on the hypers and the basis).

    python benchmarks/predict.py [--model organic] [--n 512] [--batch-sizes 1 8 32]

Threads are capped to 1 (the machine is shared): numbers are per core. Wall-clock and process CPU
time are both reported; on a loaded machine the CPU time is the better estimate of a free core.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("PYSCFAD_HOME", os.path.join(os.path.expanduser("~"), ".cache", "mlhcalc-pyscfad"))

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QM7LIKE = REPO / "data" / "qm7like" / "structures.extxyz"


def structures(n: int) -> list:
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    if QM7LIKE.is_file():
        atoms_list = ase.io.read(QM7LIKE, index=":")
        source = str(QM7LIKE.relative_to(REPO))
    else:  # fallback: closed-shell HCNO molecules of ASE's G2 set
        atoms_list = [molecule(name) for name in g2.names]
        atoms_list = [a for a in atoms_list if set(a.symbols) <= set("HCNO") and a.numbers.sum() % 2 == 0]
        source = "ase.collections.g2 (HCNO, closed shell)"
    rng = np.random.default_rng(0)
    picked = [atoms_list[i] for i in rng.permutation(len(atoms_list))[:n]]
    return picked, source


def toy_model():
    import torch

    from mlhcalc.features import FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian import fit_ridge
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.structure import to_mole

    train, _ = structures(24)
    targets = []
    for atoms in train:
        mol = to_mole(atoms)
        targets.append(torch.tensor(mol.intor("int1e_kin") + mol.intor("int1e_nuc")))
    model = HamiltonianModel.create(
        FeatureHypers(species=(1, 6, 7, 8)),
        "sto-3g",
        periodic=False,
        level_of_theory="core Hamiltonian (benchmark toy)",
    )
    fit_ridge(model.block_model, systems_from_atoms(train), targets)
    return model


def timed_pass(model, atoms_list, batch_size: int) -> dict:
    """One pass over ``atoms_list`` in batches; seconds in total, in features + model H, and compiling."""
    import mlhcalc.calculator as calc_module

    model_seconds = 0.0
    original = calc_module._hamiltonians

    def timed_hamiltonians(*args, **kwargs):
        nonlocal model_seconds
        start = time.perf_counter()
        result = original(*args, **kwargs)
        model_seconds += time.perf_counter() - start
        return result

    calc_module._hamiltonians = timed_hamiltonians
    compiled_before = calc_module.qm_compile_seconds()
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        for first in range(0, len(atoms_list), batch_size):
            results = calc_module.electronic_results(model, atoms_list[first : first + batch_size])
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise failed[0]
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        calc_module._hamiltonians = original
    compiled = calc_module.qm_compile_seconds() - compiled_before
    return {"total": total, "cpu": cpu, "model": model_seconds, "compile": compiled}


def main() -> None:
    import torch

    from mlhcalc.model import HamiltonianModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or directory (default: toy HCNO model)")
    parser.add_argument("--n", type=int, default=512, help="number of structures")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=2, help="warm passes per batch size (the fastest is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    atoms_list, source = structures(args.n)
    n_atoms = sum(len(a) for a in atoms_list)
    start = time.perf_counter()
    model = toy_model() if args.model is None else HamiltonianModel.load(args.model)
    print(f"model: {args.model or 'toy HCNO (default FeatureHypers)'} [{time.perf_counter() - start:.1f} s to build]")
    print(
        f"{len(atoms_list)} structures from {source}: {n_atoms / len(atoms_list):.1f} atoms on average, "
        f"{min(len(a) for a in atoms_list)}-{max(len(a) for a in atoms_list)}"
    )

    cold = timed_pass(model, atoms_list, max(args.batch_sizes))
    print(
        f"first pass (cold, batch {max(args.batch_sizes)}): {cold['total']:.2f} s, of which JAX compilation "
        f"{cold['compile']:.2f} s (all size buckets and chunk sizes), features + model H {cold['model']:.2f} s"
    )

    print("\nwall-clock (shared machine) and CPU time of this process (what one free core would take):\n")
    print(
        "| batch | structures/s | ms/structure | ms/atom | features + model H | integrals + JAX + rest "
        "| CPU ms/structure | structures/s per CPU-second |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        timed_pass(model, atoms_list[: 2 * batch_size], batch_size)  # compile this chunk size, if new
        runs = [timed_pass(model, atoms_list, batch_size) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["total"] - r["compile"])
        steady = best["total"] - best["compile"]
        n = len(atoms_list)
        cpu = best["cpu"] - best["compile"]  # compilation is single-threaded CPU work too
        print(
            f"| {batch_size} | {n / steady:.1f} | {1e3 * steady / n:.2f} | {1e3 * steady / n_atoms:.3f} | "
            f"{1e3 * best['model'] / n:.2f} ms | {1e3 * (steady - best['model']) / n:.2f} ms | "
            f"{1e3 * cpu / n:.2f} | {n / cpu:.1f} |"
        )


if __name__ == "__main__":
    main()
