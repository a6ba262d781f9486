"""Periodic one-electron physics on real-space matrices M(T): image overlaps S(T), Bloch sums,
band energies, DOS and band edges, and the Wigner–Seitz inverse transform from a k-mesh back to M(T).

Conventions (checked against PySCF in ``tests/test_qm_periodic.py``, explained in ``docs/periodic.md``):
``M(T)[μ, ν] = <φ_μ(r)| M |φ_ν(r − T)>`` (the ket carries T), ``M(k) = Σ_T e^{ik·T} M(T)``; with these,
``M(k)`` equals PySCF's ``cell.pbc_intor(..., kpts=k)`` / ``mf.get_fock()``; real M(T) with
``M(−T) = M(T)ᵀ`` gives Hermitian M(k). Atomic units (hartree, bohr, bohr⁻¹), PySCF AO order, float64.
Geometry helpers (k conventions, translation sets, Wigner–Seitz images) live in :mod:`mlhcalc.qm.lattice`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlhcalc.qm.lattice import (
    WignerSeitzImages,
    atom_index_of_ao,
    kpts_fractional,
    opposite_translation_index,
    wigner_seitz_images,
)

__all__ = [
    "translated_mole",
    "overlap_images",
    "overlap_images_ad",
    "bloch_sum",
    "symmetrize_real_space",
    "band_energies_k",
    "band_energies",
    "density_of_states",
    "band_edges",
    "band_gap",
    "fermi_level",
    "wigner_seitz_transform",
]


# ----------------------------------------------------------------------------- image overlaps S(T)


def translated_mole(mol, translations_bohr: ArrayLike, *, differentiable: bool = False):
    """A molecule holding the atoms of ``mol`` (a PySCF ``Mole`` or ``Cell``) shifted by every T, image
    by image (AO order: all AOs of image 0, then image 1, ...), with the same basis and no ECP or
    pseudopotential (only for one-electron basis integrals such as overlaps).

    ``differentiable=True`` gives a PySCFAD ``Mole`` with traced coordinates (exponents and contraction
    coefficients untraced); ``translated_mole(cell, [[0, 0, 0]], differentiable=True)`` is the home cell
    as a PySCFAD molecule for :func:`overlap_images_ad`.
    """
    from pyscf import gto

    translations = np.asarray(translations_bohr, dtype=float).reshape(-1, 3)
    coords = gto.Mole.atom_coords(mol, unit="Bohr")  # from PySCF's env: a PySCFAD mol may hold traced coords
    symbols = [mol.atom_symbol(i) for i in range(mol.natm)]
    atom = [(s, tuple(c + t)) for t in translations for s, c in zip(symbols, coords)]
    n_electrons = len(translations) * sum(gto.charge(mol.atom_pure_symbol(i)) for i in range(mol.natm))
    kwargs = dict(atom=atom, basis=mol._basis, unit="Bohr", cart=mol.cart, spin=n_electrons % 2, verbose=0)
    if differentiable:
        from pyscfad import gto as gto_ad

        images = gto_ad.Mole(**kwargs)
        images.build(trace_exp=False, trace_ctr_coeff=False)
        return images
    return gto.M(**kwargs)


def overlap_images(mol, translations_bohr: ArrayLike) -> np.ndarray:
    """S(T)[μ, ν] = <φ_μ(r)|φ_ν(r − T)> for every T, shape (nT, nao, nao), numpy (not differentiable).

    One call of ``pyscf.gto.mole.intor_cross`` between the home cell and a molecule of all images (no
    lattice sum, unlike ``pyscf.pbc.gto.intor_cross``).
    """
    from pyscf.gto.mole import intor_cross

    translations = np.asarray(translations_bohr, dtype=float).reshape(-1, 3)
    home = translated_mole(mol, np.zeros((1, 3)))
    cross = intor_cross("int1e_ovlp", home, translated_mole(mol, translations))
    nao = home.nao
    return np.ascontiguousarray(cross.reshape(nao, len(translations), nao).transpose(1, 0, 2))


def overlap_images_ad(mol_ad, translations_bohr: ArrayLike) -> jax.Array:
    """:func:`overlap_images` through PySCFAD, differentiable with respect to ``mol_ad.coords`` (bohr).

    ``mol_ad`` is a PySCFAD ``Mole`` of the home cell (``translated_mole(cell, [[0, 0, 0]],
    differentiable=True)``); the image molecule's coordinates are ``mol_ad.coords + T``, so a gradient
    taken PySCFAD-style, ``jax.grad(f)(mol_ad).coords``, collects both the bra and all ket images.
    Not jit-able (PySCF's C integrals run eagerly); reverse and forward mode both work.
    """
    from pyscfad.gto.mole import intor_cross

    translations = np.asarray(translations_bohr, dtype=float).reshape(-1, 3)
    images = translated_mole(mol_ad, translations, differentiable=True)
    images.coords = (mol_ad.coords[None, :, :] + jnp.asarray(translations)[:, None, :]).reshape(-1, 3)
    cross = intor_cross("int1e_ovlp", mol_ad, images)
    nao = mol_ad.nao
    return cross.reshape(nao, len(translations), nao).transpose(1, 0, 2)


# ----------------------------------------------------------------------------- Bloch sums and bands


def bloch_sum(matrices_t: ArrayLike, translations_bohr: ArrayLike, kpts_bohr: ArrayLike) -> jax.Array:
    """M(k) = Σ_T e^{ik·T} M(T): (..., nT, nao, nao) and (nk, 3) → (..., nk, nao, nao), complex."""
    phase = jnp.exp(1j * (jnp.asarray(kpts_bohr).reshape(-1, 3) @ jnp.asarray(translations_bohr).T))
    return jnp.einsum("kt,...tij->...kij", phase, jnp.asarray(matrices_t))


def symmetrize_real_space(matrices_t: ArrayLike, n_int: np.ndarray) -> jax.Array:
    """(M(T) + M(−T)ᵀ) / 2: the nearest real-space matrices with Hermitian Bloch sums. ``n_int`` is the
    (nT, 3) integer translation set, closed under negation."""
    matrices_t = jnp.asarray(matrices_t)
    partner = opposite_translation_index(n_int)
    return 0.5 * (matrices_t + jnp.swapaxes(matrices_t[..., partner, :, :], -1, -2))


def band_energies_k(hamiltonian_k: ArrayLike, overlap_k: ArrayLike) -> jax.Array:
    """Eigenvalues ε_n(k), ascending, of H(k) C = S(k) C ε for a stack (..., nk, nao, nao) → (..., nk, nao).

    ``pyscfad.scipy.linalg.eigh`` (complex Hermitian, differentiable). Gradients of single eigenvalues
    inside a degenerate set are ill-defined; use sums over degenerate sets or over all occupied bands.
    """
    from pyscfad.scipy.linalg import eigh

    return eigh(hamiltonian_k, overlap_k, eigvals_only=True)


def band_energies(
    hamiltonian_t: ArrayLike, overlap_t: ArrayLike, translations_bohr: ArrayLike, kpts_bohr: ArrayLike
) -> jax.Array:
    """ε_n(k) (nk, nao) from real-space H(T) and S(T) at Cartesian k (bohr⁻¹); differentiable in H(T), S(T)."""
    return band_energies_k(
        bloch_sum(hamiltonian_t, translations_bohr, kpts_bohr), bloch_sum(overlap_t, translations_bohr, kpts_bohr)
    )


def density_of_states(
    band_energies_nk: ArrayLike,
    energies: ArrayLike,
    sigma: float,
    *,
    weights: ArrayLike | None = None,
    spin_degeneracy: float = 2.0,
) -> jax.Array:
    """Gaussian-smeared DOS per cell (states / hartree / cell), both spins by default.

    DOS(E) = g_s Σ_k w_k Σ_n exp(−(E − ε_nk)² / 2σ²) / (σ √(2π)) with k weights ``weights`` (default
    uniform, summing to 1) and g_s = ``spin_degeneracy``. So ∫ DOS dE = g_s × nbands (= 2 nao by default)
    and ∫ DOS up to midgap = the electrons per cell of a closed-shell insulator.
    """
    eps = jnp.asarray(band_energies_nk)
    nk = eps.shape[0]
    w = jnp.full(nk, 1.0 / nk) if weights is None else jnp.asarray(weights)
    x = (jnp.asarray(energies)[:, None, None] - eps[None]) / sigma
    gauss = jnp.exp(-0.5 * x**2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return spin_degeneracy * jnp.einsum("k,ekn->e", w, gauss)


def _n_occupied(n_electrons: int, nbands: int) -> int:
    if int(n_electrons) != n_electrons or n_electrons % 2 or not 0 < n_electrons < 2 * nbands:
        raise ValueError(
            f"n_electrons = {n_electrons} per cell: need an even number between 0 and 2·nbands = {2 * nbands} "
            "(closed shell, two electrons per band)"
        )
    return int(n_electrons) // 2


def band_edges(band_energies_nk: ArrayLike, n_electrons: int) -> tuple[jax.Array, jax.Array]:
    """(VBM, CBM) in hartree: the highest occupied and lowest empty band energy over all k, for a closed-shell
    cell with ``n_electrons`` valence electrons per cell (two per band, the same bands occupied at every k)."""
    eps = jnp.asarray(band_energies_nk)
    n_occ = _n_occupied(n_electrons, eps.shape[-1])
    return jnp.max(eps[:, n_occ - 1]), jnp.min(eps[:, n_occ])


def band_gap(band_energies_nk: ArrayLike, n_electrons: int) -> jax.Array:
    """CBM − VBM (hartree) on the given k-points; negative means the bands overlap (not an insulator)."""
    vbm, cbm = band_edges(band_energies_nk, n_electrons)
    return cbm - vbm


def fermi_level(band_energies_nk: ArrayLike, n_electrons: int) -> jax.Array:
    """Midgap (VBM + CBM) / 2 in hartree, the zero-temperature Fermi level of an insulator; ``ValueError``
    if the bands overlap (use :func:`density_of_states` and a smearing for metals)."""
    vbm, cbm = band_edges(band_energies_nk, n_electrons)
    if not isinstance(vbm, jax.core.Tracer) and cbm < vbm:  # under jit/grad the check is skipped
        raise ValueError(f"VBM {float(vbm):.6f} Ha > CBM {float(cbm):.6f} Ha: not an insulator on these k-points")
    return 0.5 * (vbm + cbm)


# ----------------------------------------------------------------------------- k-mesh → real space


def _mesh_indices(kpts_bohr, lattice_bohr, mesh) -> np.ndarray:
    """Integer j (nk, 3) with k_frac ≡ j / mesh (mod 1); ``ValueError`` unless the k are the full mesh."""
    mesh = np.asarray(mesh, dtype=int)
    scaled = kpts_fractional(kpts_bohr, lattice_bohr) * mesh
    j = np.rint(scaled).astype(int)
    if np.abs(scaled - j).max() > 1e-6:
        raise ValueError(f"the k-points are not on a Γ-centred {tuple(mesh)} mesh (cell.make_kpts(mesh))")
    j %= mesh
    if len({tuple(v) for v in j.tolist()}) != len(j) or len(j) != mesh.prod():
        raise ValueError(f"need each of the {mesh.prod()} k-points of the {tuple(mesh)} mesh exactly once")
    return j


def wigner_seitz_transform(
    matrices_k: ArrayLike,
    kpts_bohr: ArrayLike,
    lattice_bohr: ArrayLike,
    positions_bohr: ArrayLike,
    ao_slices: list[slice],
    mesh,
    *,
    real: bool = True,
) -> tuple[WignerSeitzImages, jax.Array]:
    """Real-space M(T) from M(k) on a full Γ-centred mesh (any order, e.g. ``cell.make_kpts(mesh)``).

    M_sc(R) = (1/N) Σ_k e^{−ik·R} M(k) is the supercell-periodic inverse transform; each atom-pair block
    (a, b) of M_sc(R) is placed on the shortest images T ≡ R of the bond τ_b + T − τ_a, split evenly among
    equidistant ones (:func:`mlhcalc.qm.lattice.wigner_seitz_images`). On the mesh, Σ_T e^{ik·T} M(T)
    reproduces M(k) exactly, and M(−T) = M(T)ᵀ holds for Hermitian M(k).

    ``matrices_k`` (..., nk, nao, nao) — stack H and S to transform both at once; ``ao_slices`` per atom
    (``mlhcalc.orbitals.structure_ao_slices``). ``real=True`` keeps the real part, exact when M(−k) =
    conj M(k) (time reversal, real AOs); ``real=False`` returns the complex result so the discarded
    imaginary part can be checked. Differentiable in ``matrices_k`` (a linear map).
    Returns ``(images, matrices_t)`` with matrices_t (..., nT, nao, nao) on ``images.n_int``.
    """
    matrices_k = jnp.asarray(matrices_k)
    nao = matrices_k.shape[-1]
    images = wigner_seitz_images(lattice_bohr, positions_bohr, mesh)
    j = _mesh_indices(kpts_bohr, lattice_bohr, images.mesh)
    # e^{−ik·R} with k·R = 2π Σ_i j_i n_i / mesh_i, from integers for exact phases
    angle = 2 * np.pi * ((j[:, None, :] * images.supercell_n[None, :, :]) / np.array(images.mesh)).sum(-1)
    phase = np.exp(-1j * angle) / len(j)
    supercell = jnp.einsum("kr,...kij->...rij", phase, matrices_k)
    owner = atom_index_of_ao(ao_slices, nao)
    weights_ao = images.weights[:, owner[:, None], owner[None, :]]
    matrices_t = weights_ao * supercell[..., images.supercell_index, :, :]
    return images, (matrices_t.real if real else matrices_t)
