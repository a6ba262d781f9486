"""Build the bulk-silicon structure sets (geometries only) in data/silicon/.

primitive.extxyz   2-atom fcc primitive diamond cells, k-mesh 4x4x4
cubic.extxyz       8-atom conventional cubic cells,   k-mesh 2x2x2 (same k-point density)
supercell64.extxyz one rattled 2x2x2 conventional supercell (64 atoms), Γ only, "transfer" split

Each of primitive/cubic: the perfect cell (a = 5.431 Å), four pure isotropic strains
(-3, -1.5, +1.5, +3 %), and the rest random symmetric strains (six independent components
uniform in [-0.03, 0.03]) with Gaussian rattles (sigma uniform in [0.03, 0.08] Å per
structure). Splits ~70/15/15 with a fixed seed; the perfect cell is always "test" (it is the
reference for band-structure and band-gap benchmarks, so it must not be trained on).

Run:  python scripts/make_silicon.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write

SEED = 20240609
A_SI = 5.431  # Å
ISOTROPIC = (-0.03, -0.015, 0.015, 0.03)
MAX_STRAIN = 0.03
SIGMA_RANGE = (0.03, 0.08)  # Å


def voigt_to_tensor(e: np.ndarray) -> np.ndarray:
    """(xx, yy, zz, yz, xz, xy) -> symmetric 3×3 strain tensor."""
    return np.array([[e[0], e[5], e[4]], [e[5], e[1], e[3]], [e[4], e[3], e[2]]])


def deform(reference: Atoms, strain_voigt: np.ndarray, sigma: float, rng: np.random.Generator) -> Atoms:
    """Apply (I + ε) to the cell (atoms follow), then an isotropic Gaussian rattle."""
    atoms = reference.copy()
    atoms.set_cell(reference.cell.array @ (np.eye(3) + voigt_to_tensor(strain_voigt)), scale_atoms=True)
    if sigma > 0:
        atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
    atoms.pbc = True
    return atoms


def assign_splits(n: int, rng: np.random.Generator, forced_test: int = 0) -> list[str]:
    """Exact ~70/15/15 counts over a seeded permutation; index `forced_test` is always test."""
    n_train, n_val = round(0.70 * n), round(0.15 * n)
    labels = ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)
    labels = [labels[i] for i in rng.permutation(n)]
    if labels[forced_test] != "test":  # swap with a test entry, keeping the counts
        j = next(i for i, lab in enumerate(labels) if lab == "test" and i != forced_test)
        labels[j], labels[forced_test] = labels[forced_test], labels[j]
    return labels


def strained_set(
    reference: Atoms, n: int, kind: str, prefix: str, kmesh: tuple[int, int, int], rng: np.random.Generator
) -> list:
    recipes = [(np.zeros(6), 0.0)]
    recipes += [(np.array([e, e, e, 0.0, 0.0, 0.0]), 0.0) for e in ISOTROPIC]
    while len(recipes) < n:
        strain = rng.uniform(-MAX_STRAIN, MAX_STRAIN, size=6)
        recipes.append((strain, float(rng.uniform(*SIGMA_RANGE))))
    structures = [deform(reference, strain, sigma, rng) for strain, sigma in recipes]
    splits = assign_splits(n, rng)
    for i, (atoms, (strain, sigma)) in enumerate(zip(structures, recipes)):
        atoms.info = {
            "name": f"{prefix}-{i:02d}", "kind": kind, "split": splits[i], "kmesh": np.array(kmesh),
            "strain": float(np.max(np.abs(strain))), "rattle_sigma": sigma,
            "strain_voigt": np.round(strain, 6), "a0": A_SI,
        }
    return structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "data" / "silicon"))
    parser.add_argument("--n-primitive", type=int, default=44)
    parser.add_argument("--n-cubic", type=int, default=22)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    primitive = strained_set(bulk("Si", "diamond", a=A_SI), args.n_primitive, "primitive", "si-prim", (4, 4, 4), rng)
    cubic_ref = bulk("Si", "diamond", a=A_SI, cubic=True)
    cubic = strained_set(cubic_ref, args.n_cubic, "cubic", "si-cubic", (2, 2, 2), rng)
    supercell = deform(cubic_ref.repeat((2, 2, 2)), np.zeros(6), 0.05, rng)
    supercell.info = {
        "name": "si-sc64-00", "kind": "supercell", "split": "transfer", "kmesh": np.array([1, 1, 1]),
        "strain": 0.0, "rattle_sigma": 0.05, "strain_voigt": np.zeros(6), "a0": A_SI,
    }

    write(out / "primitive.extxyz", primitive, format="extxyz")
    write(out / "cubic.extxyz", cubic, format="extxyz")
    write(out / "supercell64.extxyz", [supercell], format="extxyz")
    for name, structures in (("primitive", primitive), ("cubic", cubic), ("supercell64", [supercell])):
        splits = {s: sum(a.info["split"] == s for a in structures) for s in ("train", "val", "test", "transfer")}
        print(f"{name}: {len(structures)} structures of {len(structures[0])} atoms; splits {splits}")
    print("perfect cells:", primitive[0].info["split"], cubic[0].info["split"])


if __name__ == "__main__":
    main()
