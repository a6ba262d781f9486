"""Cost of the model's input side: features (featomic + compressed CG products) and H assembly.

Prints, per structure size: steady-state CPU time per structure (best of repeats of the process CPU
time, which on a loaded machine is closer to an idle core than wall time; first call excluded)
for featomic's pair expansion alone, the whole feature computation, the block layout and the
assembly of H from coupled blocks (random values standing in for the block model's output), the whole
``BlockModel`` forward pass (features → linear heads → H, random weights; it computes the pair
features a chunk of pairs at a time), and two peak resident memories of a fresh process (torch alone is
~220 MB of each): ``model_peak_MB`` after one forward pass (and, with ``--model``, one ``predict``)
only, what a prediction needs; ``peak_rss_MB`` after also computing every pair feature at once
(``feature_MB`` of them, as the training-data cache holds them), the layout and the assembly. One
thread, float64.

    OMP_NUM_THREADS=1 python benchmarks/features.py [--sizes 20 100 500] [--grad] [--keep-freed-memory]
    OMP_NUM_THREADS=1 python benchmarks/features.py --model organic --sizes 20 100   # a shipped model

``--model NAME``: the features, heads and weights of a saved model instead of the default hypers with random
weights, plus ``predict_ms``: ``HamiltonianModel.predict`` as the calculator calls it (for an SCC model
including the self-consistent charge loop, which needs the overlap matrix from PySCF).

``--keep-freed-memory``: glibc keeps freed blocks for reuse (``mlhcalc.memory.keep_freed_memory``,
what ``mlhcalc predict`` does), instead of fresh mmap pages for every feature block.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def alkane(n_carbon: int):
    """Zig-zag CnH2n+2 (3n+2 atoms): a chain, few neighbours per atom."""
    from ase import Atoms

    symbols, positions = [], []
    for k in range(n_carbon):
        carbon = np.array([1.26 * k, 0.42 * (k % 2), 0.0])
        symbols.append("C")
        positions.append(carbon)
        side = 1 if k % 2 else -1
        symbols += ["H", "H"]
        positions += [carbon + [0, 0.6 * side, 0.89], carbon + [0, 0.6 * side, -0.89]]
    symbols += ["H", "H"]
    positions += [positions[0] + [-1.0, -0.3, 0.0], positions[3 * (n_carbon - 1)] + [1.0, -0.3, 0.0]]
    return Atoms(symbols, positions=positions)


def water_cluster(n_atoms: int, seed: int = 0):
    """Waters on a 3.1 Å grid with random orientations: liquid density, the dense worst case."""
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    n_water = n_atoms // 3
    side = int(np.ceil(n_water ** (1 / 3)))
    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    atoms = None
    for index in range(n_water):
        grid = np.array(np.unravel_index(index, (side, side, side))) * 3.1
        copy = water.copy()
        copy.positions = copy.positions @ Rotation.random(random_state=rng).as_matrix().T + grid
        atoms = copy if atoms is None else atoms + copy
    return atoms


def structure(kind: str, n_atoms: int):
    return alkane(max(1, (n_atoms - 2) // 3)) if kind == "alkane" else water_cluster(n_atoms)


def best_time(function, repeats: int) -> float:
    """Best CPU time of the process (s): on a shared machine wall time mostly measures the neighbours."""
    function()  # first call (allocations, caches) excluded
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def measure(kind: str, n_atoms: int, grad: bool, keep_freed: bool = False, model_name: str | None = None) -> dict:
    import torch

    if keep_freed:
        from mlhcalc.memory import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("--keep-freed-memory: mallopt is not available here (glibc only)")

    torch.set_num_threads(1)
    from mlhcalc.features import EquivariantFeatures, FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian import hamiltonian_layout, reconstruct
    from mlhcalc.hamiltonian.model import BlockModel

    atoms = structure(kind, n_atoms)
    if model_name:
        from mlhcalc.model import HamiltonianModel

        saved = HamiltonianModel.load(model_name)
        saved.check(atoms)
        model, module, basis = saved.block_model, saved.block_model.features, saved.basis
    else:
        saved, module, basis = None, EquivariantFeatures(FeatureHypers()), "sto-3g"
    repeats = 10 if len(atoms) <= 100 else 3

    def systems():
        return systems_from_atoms(atoms, positions_requires_grad=grad)

    if saved is None:
        model = BlockModel(FeatureHypers(), basis)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_()

    # what a prediction needs, before anything else runs: the model (pair features in chunks) and predict
    def forward():  # as the calculator calls it: no graph unless position derivatives are wanted
        with torch.set_grad_enabled(grad):
            return model(systems())

    forward()
    if saved is not None:
        saved.predict(atoms, positions_requires_grad=grad)
    model_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def features():  # all pair features at once (as the training data cache holds them)
        return module(systems())

    result = features()
    pairs = torch.cat([result.pair_samples[:, 1:3], result.pair_samples[:, 3:]], dim=1).numpy()

    def layout():
        return hamiltonian_layout(atoms.numbers, basis, pairs=pairs)

    block_layout = layout()
    coupled = [torch.randn(len(g.samples), g.coupling.shape[1], dtype=torch.float64) for g in block_layout.groups]

    def assemble():
        return reconstruct(coupled, block_layout)

    assemble()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # one pass, before the timing loops
    n_features = sum(v.numel() for v in result.atom.values()) + sum(v.numel() for v in result.pair.values())
    n_pairs = len(result.pair_samples)
    del result

    timings = {
        "featomic_ms": 1e3 * best_time(lambda: module._calculator.compute(systems()), repeats),
        "features_ms": 1e3 * best_time(features, repeats),
        "layout_ms": 1e3 * best_time(layout, repeats),
        "assemble_ms": 1e3 * best_time(assemble, repeats),
        "model_ms": 1e3 * best_time(forward, repeats),
    }
    if saved is not None:
        timings["predict_ms"] = 1e3 * best_time(lambda: saved.predict(atoms, positions_requires_grad=grad), repeats)
    return {
        "structure": kind,
        "atoms": len(atoms),
        "pairs": n_pairs,
        "feature_MB": 8 * n_features / 2**20,
        **timings,
        "model_peak_MB": model_peak_mb,
        "peak_rss_MB": peak_rss_mb,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--structures", nargs="+", default=["alkane", "water"])
    parser.add_argument(
        "--grad", action="store_true", help="positions require grad (featomic then also computes gradients)"
    )
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="raise glibc's mmap/trim thresholds (mlhcalc.memory)"
    )
    parser.add_argument("--model", metavar="NAME", help="a shipped model's name or directory (default: random weights)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.grad, args.keep_freed_memory, args.model)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    columns = [
        "structure",
        "atoms",
        "pairs",
        "featomic_ms",
        "features_ms",
        "layout_ms",
        "assemble_ms",
        "model_ms",
        *(["predict_ms"] if args.model else []),
        "feature_MB",
        "model_peak_MB",
        "peak_rss_MB",
    ]
    print(" ".join(f"{c:>12}" for c in columns))
    for kind in args.structures:
        for size in args.sizes:
            command = (
                [sys.executable, __file__, "--one", kind, str(size)]
                + (["--grad"] if args.grad else [])
                + (["--keep-freed-memory"] if args.keep_freed_memory else [])
                + (["--model", args.model] if args.model else [])
            )
            row = json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)
            print(" ".join(f"{row[c]:>12.1f}" if isinstance(row[c], float) else f"{row[c]:>12}" for c in columns))


if __name__ == "__main__":
    main()
