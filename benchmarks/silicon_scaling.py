"""Prediction time of a periodic model against cell size (2–512 atoms) at constant k-point density, with
the fitted exponent and where the time goes (issue 7, item 6).

Series: the 2-atom primitive cell on 6×6×6 and cubic 8-atom supercells r1×r2×r3 on (4/r1)×(4/r2)×(4/r3)
Γ-centred meshes, so atoms × k-points = 512 for every cubic cell (432 for the primitive one); slightly
rattled (σ = 0.02 Å, seed 0). Per cell, the steady (warm) wall time of one ``electronic_results`` call
(bands, occupations, charges) and of its parts, each timed alone: features + H(T) (model), S(T)
(PySCF integrals over the images), and the rest (Bloch sums, generalised eigh at every k, charges)
as the difference. Peak memory as in benchmarks/run.py (VmHWM of the steady call).

    OMP_NUM_THREADS=1 python benchmarks/silicon_scaling.py silicon [--max-atoms 512] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import fit_power_law, markdown_table, measure  # noqa: E402

SERIES = (  # (kind, repeat, mesh)
    ("primitive", (1, 1, 1), (6, 6, 6)),
    ("cubic", (1, 1, 1), (4, 4, 4)),
    ("cubic", (2, 1, 1), (2, 4, 4)),
    ("cubic", (2, 2, 1), (2, 2, 4)),
    ("cubic", (2, 2, 2), (2, 2, 2)),
    ("cubic", (4, 2, 2), (1, 2, 2)),
    ("cubic", (4, 4, 2), (1, 1, 2)),
    ("cubic", (4, 4, 4), (1, 1, 1)),
)
FIT_MIN_ATOMS = 16


def cell(kind: str, repeat, seed: int = 0):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=(kind == "cubic")).repeat(repeat)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.02, size=atoms.positions.shape)
    return atoms


def main() -> None:
    from mlhcalc.calculator import _cell_and_overlaps, _hamiltonians, electronic_results
    from mlhcalc.model import HamiltonianModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="silicon")
    parser.add_argument("--max-atoms", type=int, default=512)
    parser.add_argument("--output", help="also write the tables to this markdown file")
    args = parser.parse_args()
    model = HamiltonianModel.load(args.model)
    started = time.perf_counter()
    rows, points = [], []
    for kind, repeat, mesh in SERIES:
        atoms = cell(kind, repeat)
        if len(atoms) > args.max_atoms:
            continue
        kpts = {"size": mesh, "gamma": True}
        total, (result,) = measure(partial(electronic_results, model, [atoms], kpts=kpts), 1, memory=True)
        if isinstance(result, Exception):
            raise result
        model_part, _ = measure(partial(_hamiltonians, model, [atoms]), 1)
        overlap_part, _ = measure(partial(_cell_and_overlaps, model, atoms, 0), 1)
        nk = int(np.prod(mesh))
        nao = int(np.asarray(result["eigenvalues"]).shape[-1])
        rest = max(total.wall - model_part.wall - overlap_part.wall, 0.0)
        points.append((len(atoms), total.wall, model_part.wall, overlap_part.wall, rest, total.peak_mb))
        rows.append(
            [
                f"{kind} {'×'.join(map(str, repeat))}",
                len(atoms),
                "×".join(map(str, mesh)),
                len(atoms) * nk,
                nao,
                total.wall,
                model_part.wall,
                overlap_part.wall,
                rest,
                total.first,
                total.peak_mb,
            ]
        )
        print(f"  {len(atoms)} atoms, {nk} k-points: {total.wall:.2f} s", flush=True)
    atoms_n = [p[0] for p in points]
    exponents = [
        [name, fit_power_law(atoms_n, [p[column] for p in points], FIT_MIN_ATOMS)]
        for name, column in (("total", 1), ("features + H(T)", 2), ("S(T) integrals", 3), ("Bloch + eigh + rest", 4))
    ]
    text = [
        f"# Silicon prediction time vs cell size at constant k-point density (model {args.model})\n",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/silicon_scaling.py "
        + " ".join(sys.argv[1:])
        + "`; one thread, steady (warm) calls; first call includes JAX compilation.\n",
        markdown_table(
            [
                "cell",
                "atoms",
                "k-mesh",
                "atoms × k",
                "bands",
                "total s",
                "features + H(T) s",
                "S(T) s",
                "Bloch + eigh + rest s",
                "first call s",
                "peak RSS MB",
            ],
            rows,
        ),
        "",
        markdown_table([f"part (fit over ≥ {FIT_MIN_ATOMS} atoms)", "time exponent in atoms"], exponents),
        "",
        f"Run time {time.perf_counter() - started:.0f} s.",
    ]
    print("\n".join(text))
    if args.output:
        Path(args.output).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
