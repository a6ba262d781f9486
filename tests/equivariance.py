"""One reusable equivariance checker for anything that maps ``ase.Atoms`` to labelled equivariant
blocks (a metatensor ``TensorMap`` whose keys carry ``lambda`` and ``sigma`` and whose blocks have
one component axis μ = -λ..λ), in the spirit of e3nn's ``assert_equivariant``.

Wigner-D matrices: real spherical harmonics are built from scipy's complex ``sph_harm_y`` with the
usual real combination (Y_{l,m>0} = √2 (-1)^m Re Y_l^m, Y_{l,m<0} = √2 (-1)^m Im Y_l^|m|), which is
featomic's convention (l = 1 ∝ (y, z, x); tests/test_features.py pins it against featomic). For an
orthogonal Q, D^λ(Q) is the least-squares solution of Y_λ(Q x_k) = D Y_λ(x_k) over random unit
vectors x_k (exact to ~1e-14: the system is consistent). For improper Q this D already contains
(-1)^λ, so a block of parity σ must transform with σ·D^λ(Q).

Transformations checked: proper and improper rotations (about the origin; cell rotated too),
translations, permutations of the atoms (sample atom indices are mapped; the first permutation is
the reversal, which exchanges the atoms of every pair), and, for periodic
structures, moving atoms to other periodic images (cell shifts of pair samples are mapped:
T → T + n_i - n_j).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

ATOM_COLUMNS = ("atom", "atom_i", "atom_j")
SHIFT_COLUMNS = ("cell_shift_a", "cell_shift_b", "cell_shift_c")


def real_spherical_harmonics(lam: int, directions: np.ndarray) -> np.ndarray:
    """Real Y_λμ (μ = -λ..λ) of unit vectors [n, 3] → [n, 2λ+1] (orthonormal on the sphere)."""
    x, y, z = np.asarray(directions, dtype=float).T
    theta = np.arccos(np.clip(z, -1.0, 1.0))
    phi = np.arctan2(y, x)
    values = np.empty((len(x), 2 * lam + 1))
    for m in range(-lam, lam + 1):
        complex_y = sph_harm_y(lam, abs(m), theta, phi)
        if m > 0:
            values[:, lam + m] = np.sqrt(2.0) * (-1) ** m * complex_y.real
        elif m < 0:
            values[:, lam + m] = np.sqrt(2.0) * (-1) ** m * complex_y.imag
        else:
            values[:, lam] = complex_y.real
    return values


def wigner_d(lam: int, orthogonal: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Real Wigner-D of order λ for an orthogonal 3×3 matrix (proper or improper)."""
    rng = rng or np.random.default_rng(12345)
    points = rng.normal(size=(4 * (2 * lam + 1) + 8, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    before = real_spherical_harmonics(lam, points)
    after = real_spherical_harmonics(lam, points @ orthogonal.T)
    d_transposed, *_ = np.linalg.lstsq(before, after, rcond=None)
    return d_transposed.T


def random_orthogonal(rng: np.random.Generator, improper: bool) -> np.ndarray:
    rotation = Rotation.random(random_state=rng).as_matrix()
    return -rotation if improper else rotation


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def _blocks(tensor_map) -> tuple[list[str], dict[tuple, tuple[list[str], np.ndarray, np.ndarray]]]:
    """Key names and {key values: (sample names, sample rows, values [n, 2λ+1, p])} of a TensorMap."""
    names = list(tensor_map.keys.names)
    result = {}
    for key, block in tensor_map.items():
        key_values = tuple(int(v) for v in _as_numpy(key.values).astype(int))
        samples = _as_numpy(block.samples.values).astype(int)
        result[key_values] = (list(block.samples.names), samples, _as_numpy(block.values))
    return names, result


def _compare(reference, transformed, *, key_names, map_sample, rotate, swap_sign, atol, rtol, what):
    ref_names, ref_blocks = reference
    new_names, new_blocks = transformed
    assert ref_names == new_names, f"{what}: key names changed {ref_names} → {new_names}"
    assert set(ref_blocks) == set(new_blocks), (
        f"{what}: keys differ: missing {sorted(set(ref_blocks) - set(new_blocks))[:5]}, "
        f"extra {sorted(set(new_blocks) - set(ref_blocks))[:5]}"
    )
    lam_index, sigma_index = key_names.index("lambda"), key_names.index("sigma")
    overall_scale = max(np.abs(values).max(initial=0.0) for _, _, values in ref_blocks.values())
    worst = 0.0
    for key, (sample_names, samples, values) in ref_blocks.items():
        _, new_samples, new_values = new_blocks[key]
        assert len(samples) == len(new_samples), (
            f"{what}: key {key} has {len(new_samples)} samples, expected {len(samples)}"
        )
        lookup = {tuple(row): index for index, row in enumerate(new_samples)}
        rows, signs = [], []
        for row in samples:
            target = map_sample(sample_names, row)
            if tuple(target) in lookup:
                rows.append(lookup[tuple(target)])
                signs.append(1.0)
                continue
            swapped = _swap_pair(sample_names, target)
            assert swap_sign is not None and swapped is not None and tuple(swapped) in lookup, (
                f"{what}: key {key}: sample {row.tolist()} → {target.tolist()} not found"
            )
            rows.append(lookup[tuple(swapped)])
            signs.append(swap_sign(dict(zip(key_names, key))))
        expected = rotate(key[lam_index], key[sigma_index], values) * np.array(signs)[:, None, None]
        got = new_values[rows]
        scale = max(np.abs(values).max(initial=0.0), 1e-300)
        error = np.abs(got - expected).max(initial=0.0)
        worst = max(worst, error / overall_scale)
        assert error <= atol + rtol * scale, (
            f"{what}: key {dict(zip(key_names, key))}: error {error:.3e} (scale {scale:.3e})"
        )
    return worst


def _swap_pair(sample_names, row):
    if "atom_i" not in sample_names or "atom_j" not in sample_names:
        return None
    swapped = np.array(row)
    i, j = sample_names.index("atom_i"), sample_names.index("atom_j")
    swapped[i], swapped[j] = row[j], row[i]
    for name in SHIFT_COLUMNS:
        if name in sample_names:
            swapped[sample_names.index(name)] *= -1
    return swapped


def _identity_rotation(lam, sigma, values):
    return values


def assert_equivariant(
    function,
    atoms,
    *,
    seed: int = 0,
    trials: int = 2,
    atol: float = 1e-12,
    rtol: float = 1e-9,
    swap_sign=None,
    checks: tuple[str, ...] = ("rotation", "improper", "translation", "permutation", "images"),
) -> dict[str, float]:
    """Check that ``function(atoms)`` (a TensorMap with keys ``lambda``, ``sigma``) is equivariant.

    ``swap_sign(key_dict)``: optional; when a transformed output stores a pair (i, j, T) only as
    its partner (j, i, -T) (canonical pair order, e.g. Hamiltonian blocks), the partner's values
    times ``swap_sign`` are compared. Each block must agree to ``atol + rtol·max|block|``. Returns,
    per check, the worst error relative to the largest value of the whole output (to report).
    Samples must be found one-to-one: a missing or extra sample fails.
    """
    rng = np.random.default_rng(seed)
    reference = _blocks(function(atoms))
    key_names = reference[0]
    assert {"lambda", "sigma"} <= set(key_names), f"keys {key_names} need 'lambda' and 'sigma'"
    assert any(np.abs(v).max(initial=0) > 0 for _, _, v in reference[1].values()), "all blocks are zero"
    periodic = bool(np.all(atoms.pbc))
    worst: dict[str, float] = {}
    identity_map = _sample_mapper(np.arange(len(atoms)), np.zeros((len(atoms), 3), dtype=int))

    for check in checks:
        for trial in range(trials):
            moved = atoms.copy()
            rotate, map_sample = _identity_rotation, identity_map
            if check in ("rotation", "improper"):
                q = random_orthogonal(rng, improper=check == "improper")
                moved.positions = atoms.positions @ q.T
                if periodic:
                    moved.set_cell(np.asarray(atoms.cell) @ q.T, scale_atoms=False)
                rotate = _rotator(q)
            elif check == "translation":
                moved.positions = atoms.positions + rng.normal(scale=2.0, size=3)
            elif check == "permutation":
                # the first trial reverses the order, so every pair (i < j) is exchanged at least once
                order = np.arange(len(atoms))[::-1] if trial == 0 else rng.permutation(len(atoms))
                moved = atoms[order]
                new_index = np.argsort(order)
                map_sample = _sample_mapper(new_index, np.zeros((len(atoms), 3), dtype=int))
            elif check == "images":
                if not periodic:
                    continue
                images = rng.integers(-1, 2, size=(len(atoms), 3))
                moved.positions = atoms.positions + images @ np.asarray(atoms.cell)
                map_sample = _sample_mapper(np.arange(len(atoms)), images)
            else:
                raise ValueError(f"unknown check {check!r}")
            error = _compare(
                reference,
                _blocks(function(moved)),
                key_names=key_names,
                map_sample=map_sample,
                rotate=rotate,
                swap_sign=swap_sign,
                atol=atol,
                rtol=rtol,
                what=check,
            )
            worst[check] = max(worst.get(check, 0.0), error)
    return worst


def _rotator(orthogonal: np.ndarray):
    improper = np.linalg.det(orthogonal) < 0
    cache: dict[int, np.ndarray] = {}

    def rotate(lam, sigma, values):
        if lam not in cache:
            cache[lam] = wigner_d(lam, orthogonal)
        factor = sigma if improper else 1
        return factor * np.einsum("uv,svp->sup", cache[lam], values)

    return rotate


def _sample_mapper(new_index: np.ndarray, images: np.ndarray):
    """Sample rows after moving atom k to index new_index[k] and by images[k] lattice vectors."""

    def map_sample(sample_names, row):
        target = np.array(row)
        for name in ATOM_COLUMNS:
            if name in sample_names:
                target[sample_names.index(name)] = new_index[row[sample_names.index(name)]]
        if "atom_i" in sample_names and SHIFT_COLUMNS[0] in sample_names:
            i, j = row[sample_names.index("atom_i")], row[sample_names.index("atom_j")]
            shift = images[i] - images[j]
            for axis, name in enumerate(SHIFT_COLUMNS):
                target[sample_names.index(name)] += shift[axis]
        return target

    return map_sample
