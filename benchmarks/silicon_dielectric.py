"""ε∞ of a periodic model on the perfect silicon crystal, against the k-mesh (issue 7, item 5).

Clamped ions, independent particles, from dH/dk and dS/dk of the model's H (``MLHamiltonian``
property ``dielectric_tensor``, docs/periodic.md), on shifted Monkhorst–Pack meshes n×n×n. Prints a
markdown table of the isotropic ε∞ = tr ε/3 per mesh and the wall time.

    OMP_NUM_THREADS=1 python benchmarks/silicon_dielectric.py silicon silicon-szv --meshes 6 8 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def epsilon_infinity(model: str, mesh: int, lattice_constant: float = 5.431) -> tuple[float, float]:
    """(tr ε∞ / 3, seconds) of ``model`` on the perfect diamond cell on an n×n×n Monkhorst–Pack mesh."""
    from ase.build import bulk

    from mlhcalc.calculator import MLHamiltonian

    atoms = bulk("Si", "diamond", a=lattice_constant)
    started = time.perf_counter()
    calc = MLHamiltonian(model=model, kpts=(mesh, mesh, mesh))
    epsilon = np.asarray(calc.get_dielectric_tensor(atoms))
    return float(np.trace(epsilon) / 3), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or directories")
    parser.add_argument("--meshes", type=int, nargs="+", default=[6, 8, 10])
    args = parser.parse_args()
    print("| model | " + " | ".join(f"{n}×{n}×{n}" for n in args.meshes) + " |")
    print("|---|" + "---|" * len(args.meshes))
    for model in args.models:
        cells = []
        for n in args.meshes:
            value, seconds = epsilon_infinity(model, n)
            cells.append(f"{value:.2f} ({seconds:.0f} s)")
        print(f"| {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
