"""Lattice geometry for the periodic physics: k-point conventions, the lattice translations an AO
pair needs, and the Wigner–Seitz images of a k-mesh's supercell with their boundary weights.

Plain numpy (the geometry is never differentiated). Atomic units: bohr for lattices, positions and
translations, bohr⁻¹ for Cartesian k. Lattice vectors are rows (``lattice[i]`` is a_i), translations
are ``T = n @ lattice`` for integer triples ``n``, and fractional k (ASE's and PySCF's "scaled"
convention) are coordinates in the reciprocal basis: ``k = k_frac @ reciprocal_lattice(lattice)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "reciprocal_lattice",
    "kpts_cartesian",
    "kpts_fractional",
    "gamma_centred_mesh",
    "overlap_cutoff_bohr",
    "lattice_translations",
    "opposite_translation_index",
    "WignerSeitzImages",
    "wigner_seitz_images",
    "atom_index_of_ao",
]


def reciprocal_lattice(lattice_bohr) -> np.ndarray:
    """Reciprocal vectors b_i as rows, bohr⁻¹, with a_i · b_j = 2π δ_ij: ``2π (lattice⁻¹)ᵀ``."""
    return 2.0 * np.pi * np.linalg.inv(np.asarray(lattice_bohr, dtype=float)).T


def kpts_cartesian(kpts_frac, lattice_bohr) -> np.ndarray:
    """Cartesian k (bohr⁻¹) from fractional k (ASE ``bandpath().kpts``, PySCF scaled kpts)."""
    return np.asarray(kpts_frac, dtype=float).reshape(-1, 3) @ reciprocal_lattice(lattice_bohr)


def kpts_fractional(kpts_bohr, lattice_bohr) -> np.ndarray:
    """Inverse of :func:`kpts_cartesian`: ``k_frac = k · a_i / 2π``."""
    return np.asarray(kpts_bohr, dtype=float).reshape(-1, 3) @ np.asarray(lattice_bohr, dtype=float).T / (2 * np.pi)


def gamma_centred_mesh(mesh) -> np.ndarray:
    """Fractional k of the Γ-centred ``n1×n2×n3`` mesh, ``j_i / n_i`` with ``j_i = 0..n_i-1``, in the order
    of PySCF's ``cell.make_kpts(mesh)`` (Γ first, last axis fastest).

    ASE's ``kpts=(n, n, n)`` is a Monkhorst–Pack mesh instead: shifted by half a step for even n, so it
    misses Γ (silicon's valence-band maximum).
    """
    mesh = _mesh_tuple(mesh)
    axes = [np.arange(n) / n for n in mesh]
    return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, 3)


def _mesh_tuple(mesh) -> tuple[int, int, int]:
    values = tuple(int(n) for n in np.broadcast_to(np.asarray(mesh), (3,)))
    if any(n < 1 for n in values):
        raise ValueError(f"k-mesh must have three positive sizes, got {mesh!r}")
    return values


def overlap_cutoff_bohr(mol, precision: float = 1e-12) -> np.ndarray:
    """Per atom pair (natm, natm): the centre–centre distance beyond which every overlap between an AO
    of atom a and an AO of atom b is below ``precision``.

    Bound from the most diffuse primitives (exponents α_a, α_b, highest l_a, l_b): two normalised
    Gaussians at distance r overlap like ``(√(2μ) r)^(l_a+l_b) exp(−μ r²)`` with μ = α_a α_b / (α_a + α_b);
    ``r`` solves that equal to ``precision``. ``tests/test_qm_periodic.py`` checks the bound against
    computed overlaps. ``mol`` is a PySCF ``Mole`` or ``Cell``.
    """
    natm = mol.natm
    alpha = np.full(natm, np.inf)
    lmax = np.zeros(natm, dtype=int)
    for ib in range(mol.nbas):
        atom = mol.bas_atom(ib)
        alpha[atom] = min(alpha[atom], float(np.min(mol.bas_exp(ib))))
        lmax[atom] = max(lmax[atom], int(mol.bas_angular(ib)))
    mu = alpha[:, None] * alpha[None, :] / (alpha[:, None] + alpha[None, :])
    l_sum = lmax[:, None] + lmax[None, :]
    log_inv = -np.log(precision)
    radius = np.sqrt(log_inv / mu)
    for _ in range(50):  # fixed point of μ r² = ln(1/precision) + (l_a + l_b) ln(√(2μ) r)
        radius = np.sqrt((log_inv + l_sum * np.log(np.maximum(1.0, np.sqrt(2 * mu) * radius))) / mu)
    return radius


def _pair_vectors(positions_bohr) -> np.ndarray:
    """τ_b − τ_a for every atom pair, shape (natm, natm, 3)."""
    positions = np.asarray(positions_bohr, dtype=float).reshape(-1, 3)
    return positions[None, :, :] - positions[:, None, :]


def lattice_translations(lattice_bohr, positions_bohr, cutoff_bohr) -> tuple[np.ndarray, np.ndarray]:
    """Integer triples ``n`` and Cartesian ``T = n @ lattice`` (bohr) of every translation for which some
    atom pair (a, b) has |τ_b + T − τ_a| ≤ cutoff(a, b).

    ``cutoff_bohr`` is a scalar or a (natm, natm) array (e.g. :func:`overlap_cutoff_bohr`). The set is
    closed under T → −T, sorted by |T| (T = 0 first, ties by n) so that results are reproducible.
    """
    lattice = np.asarray(lattice_bohr, dtype=float)
    pairs = _pair_vectors(positions_bohr)
    natm = pairs.shape[0]
    cutoff = np.broadcast_to(np.asarray(cutoff_bohr, dtype=float), (natm, natm))
    reach = float(cutoff.max() + np.linalg.norm(pairs, axis=-1).max())
    # |n_i| ≤ reach / (spacing of lattice planes i) = reach · |b_i| / 2π
    bounds = np.ceil(reach * np.linalg.norm(reciprocal_lattice(lattice), axis=1) / (2 * np.pi)).astype(int)
    grid = np.array(list(itertools.product(*[range(-b, b + 1) for b in bounds])), dtype=int)
    translations = grid @ lattice
    distance = np.linalg.norm(pairs[None, :, :, :] + translations[:, None, None, :], axis=-1)
    keep = (distance <= cutoff[None]).any(axis=(1, 2))
    keep |= keep[_negation_index(grid)]  # exact closure under T → −T despite rounding at the cutoff
    return _sorted_translations(grid[keep], lattice)


def _negation_index(n_int) -> np.ndarray:
    lookup = {tuple(v): i for i, v in enumerate(np.asarray(n_int).tolist())}
    return np.array([lookup[tuple(-np.asarray(v))] for v in np.asarray(n_int).tolist()], dtype=int)


def _sorted_translations(n_int, lattice) -> tuple[np.ndarray, np.ndarray]:
    n_int = np.asarray(n_int, dtype=int).reshape(-1, 3)
    length = np.round(np.linalg.norm(n_int @ lattice, axis=1), 8)
    order = np.lexsort((n_int[:, 2], n_int[:, 1], n_int[:, 0], length))
    n_int = n_int[order]
    return n_int, n_int @ lattice


def opposite_translation_index(n_int) -> np.ndarray:
    """Index of −n for every n of a translation set closed under negation (``KeyError`` otherwise)."""
    return _negation_index(n_int)


def atom_index_of_ao(ao_slices, nao: int | None = None) -> np.ndarray:
    """Atom index of every AO, from the per-atom AO slices (``mlhcalc.orbitals.structure_ao_slices``)."""
    owner = np.concatenate([np.full(s.stop - s.start, atom, dtype=int) for atom, s in enumerate(ao_slices)])
    if nao is not None and owner.size != nao:
        raise ValueError(f"AO slices cover {owner.size} AOs, the matrices have {nao}")
    return owner


@dataclass(frozen=True)
class WignerSeitzImages:
    """Wigner–Seitz translations of the supercell of a Γ-centred k-mesh, per atom pair.

    ``n_int`` (nT, 3) integer triples and ``translations_bohr`` (nT, 3) = ``n_int @ lattice``;
    ``weights`` (nT, natm, natm): 1/(number of equidistant shortest images) when T is one of the shortest
    images of its supercell class for the pair (a, b), else 0; ``supercell_index`` (nT,): which of the
    ``supercell_n`` (N, 3) representatives 0 ≤ n_i < mesh_i is T modulo the supercell.
    For every (a, b, R) the weights of the images of R sum to 1.
    """

    mesh: tuple[int, int, int]
    n_int: np.ndarray
    translations_bohr: np.ndarray
    weights: np.ndarray
    supercell_index: np.ndarray
    supercell_n: np.ndarray


def wigner_seitz_images(
    lattice_bohr, positions_bohr, mesh, *, tol_bohr: float = 1e-6, search: int = 3
) -> WignerSeitzImages:
    """For every supercell class R (0 ≤ n_i < mesh_i) and atom pair (a, b), the images T = R + m∘mesh
    (m integer) that minimise the bond length |τ_b + T − τ_a|; equidistant images (within ``tol_bohr``)
    share the weight equally, as in Wannier90's ``use_ws_distance``.

    Centring on the bond vector τ_b − τ_a (not on the origin) keeps the result independent of which
    periodic image of an atom the structure lists. ``search`` bounds |m_i|; a minimum on that bound
    raises ``RuntimeError`` (increase it for very skewed cells).
    """
    mesh = _mesh_tuple(mesh)
    lattice = np.asarray(lattice_bohr, dtype=float)
    pairs = _pair_vectors(positions_bohr)
    supercell_n = np.array(list(itertools.product(*[range(n) for n in mesh])), dtype=int)
    shifts = np.array(list(itertools.product(range(-search, search + 1), repeat=3)), dtype=int)
    candidates = supercell_n[:, None, :] + shifts[None, :, :] * np.array(mesh)  # (N, M, 3)
    vectors = pairs[None, None] + (candidates @ lattice)[:, :, None, None, :]  # (N, M, natm, natm, 3)
    distance = np.linalg.norm(vectors, axis=-1)
    shortest = distance.min(axis=1, keepdims=True)
    chosen = distance <= shortest + tol_bohr  # (N, M, natm, natm)
    on_edge = np.abs(shifts).max(axis=1) == search
    if chosen[:, on_edge].any():
        raise RuntimeError(f"Wigner–Seitz search reached |m| = {search}: call with a larger `search`")
    weights = chosen / chosen.sum(axis=1, keepdims=True)

    used = chosen.any(axis=(2, 3))  # (N, M)
    r_idx, m_idx = np.nonzero(used)
    n_int = candidates[r_idx, m_idx]
    n_sorted, _ = _sorted_translations(n_int, lattice)
    order = {tuple(v): i for i, v in enumerate(n_int.tolist())}
    pick = np.array([order[tuple(v)] for v in n_sorted.tolist()], dtype=int)
    return WignerSeitzImages(
        mesh=mesh,
        n_int=n_sorted,
        translations_bohr=n_sorted @ lattice,
        weights=weights[r_idx[pick], m_idx[pick]],
        supercell_index=r_idx[pick],
        supercell_n=supercell_n,
    )
