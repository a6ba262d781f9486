"""Clamped-ion electronic response of a periodic model Hamiltonian in the independent-particle
approximation (non-self-consistent, like :func:`mlhcalc.qm.response.polarizability` for molecules):
interband position matrix elements from ∂_k H(k), ∂_k S(k) and the position images R(T), the static
polarizability per cell α_cell and the dielectric tensor ε∞ = 1 + 4π α_cell / V.

Atomic units (hartree, bohr, bohr⁻¹, α in bohr³), PySCF AO order, the Bloch convention of
:mod:`mlhcalc.qm.periodic` (``M(k) = Σ_T e^{ik·T} M(T)``, the ket carries T). Derivation and k-mesh
convergence: docs/periodic.md ("Dielectric response"); tests: tests/test_qm_periodic_response.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlhcalc.qm.eigen import generalized_eigh
from mlhcalc.qm.periodic import _n_occupied, band_gap, bloch_sum, overlap_images, translated_mole

__all__ = [
    "position_images",
    "bloch_sum_derivative",
    "interband_position",
    "cell_polarizability_k",
    "cell_polarizability",
    "dielectric_tensor",
    "MIN_BAND_GAP",
]

MIN_BAND_GAP = 1e-6
"""Hartree: a smaller CBM − VBM over the k-points counts as no gap (degenerate bands split by round-off)."""


def position_images(mol, translations_bohr: ArrayLike) -> np.ndarray:
    """R(T)[c, t, μ, ν] = <φ_μ(r)| (r − T)_c |φ_ν(r − T)>, shape (3, nT, nao, nao), bohr, numpy.

    The position is measured from the image cell's origin T (so that Σ_T e^{ik·T} R(T) is the AO
    matrix of the position in the cell-periodic gauge, see :func:`interband_position`): the
    ``int1e_r`` cross integrals about the origin 0 between the home cell and all images
    (``pyscf.gto.mole.intor_cross``, no lattice sum), minus T·S(T). Use the translations of S(T)
    (:func:`mlhcalc.qm.lattice.overlap_cutoff_bohr`): R(T) decays like S(T) times a distance.
    """
    from pyscf.gto.mole import intor_cross

    translations = np.asarray(translations_bohr, dtype=float).reshape(-1, 3)
    home = translated_mole(mol, np.zeros((1, 3)))
    home.set_common_orig(np.zeros(3))  # int1e_r takes its origin from the first molecule's env
    cross = intor_cross("int1e_r", home, translated_mole(mol, translations), comp=3)
    nao = home.nao
    position_t = cross.reshape(3, nao, len(translations), nao).transpose(0, 2, 1, 3)
    return position_t - translations.T[:, :, None, None] * overlap_images(mol, translations)[None]


def bloch_sum_derivative(matrices_t: ArrayLike, translations_bohr: ArrayLike, kpts_bohr: ArrayLike) -> jax.Array:
    """∂M(k)/∂k_c = Σ_T i T_c e^{ik·T} M(T): (..., nT, nao, nao) → (..., 3, nk, nao, nao), complex (bohr × M)."""
    translations = jnp.asarray(translations_bohr).reshape(-1, 3)
    weighted = 1j * translations.T[:, :, None, None] * jnp.asarray(matrices_t)[..., None, :, :, :]
    return bloch_sum(weighted, translations, kpts_bohr)


def interband_position(
    hamiltonian_k: ArrayLike,
    overlap_k: ArrayLike,
    d_hamiltonian_k: ArrayLike,
    d_overlap_k: ArrayLike,
    position_k: ArrayLike,
    n_occupied: int,
) -> tuple[jax.Array, jax.Array]:
    """Band energies ε (nk, nao) and the interband position matrix elements r_cv = i<u_c|∂_k u_v>
    (3, nk, nvir, nocc) between the empty bands c and the ``n_occupied`` lowest bands v, bohr.

    Inputs: H(k), S(k) (nk, nao, nao); their k-derivatives (3, nk, nao, nao)
    (:func:`bloch_sum_derivative`); R(k) = Σ_T e^{ik·T} R(T) (3, nk, nao, nao) of
    :func:`position_images`. With C solving H C = S C ε (C†SC = 1),
    r_cv = i C_c†(∂H − ε_v ∂S) C_v / (ε_v − ε_c) + C_c† R C_v
    (the first term is i C_c† S ∂C_v, the second the k-derivative of the Bloch phase e^{−ik·(r−T)};
    derivation in docs/periodic.md). Independent of the position origin for c ≠ v (C_c†S C_v = 0)
    and of the phases of the eigenvectors up to r_cv → e^{−iθ_c} r_cv e^{iθ_v}. Needs ε_c > ε_v
    (an insulator on these k-points); degeneracies inside the occupied or the empty bands are harmless.
    """
    band_energy, coefficients = generalized_eigh(jnp.asarray(hamiltonian_k), jnp.asarray(overlap_k))
    occupied, empty = coefficients[..., :n_occupied], coefficients[..., n_occupied:]
    e_occupied, e_empty = band_energy[:, :n_occupied], band_energy[:, n_occupied:]

    def empty_occupied(matrices):  # C_c† M C_v for a (3, nk, nao, nao) stack
        return jnp.einsum("kmc,xkmn,knv->xkcv", empty.conj(), jnp.asarray(matrices), occupied)

    gap = e_empty[:, :, None] - e_occupied[:, None, :]  # ε_c − ε_v, (nk, nvir, nocc)
    d_band = empty_occupied(d_hamiltonian_k) - e_occupied[None, :, None, :] * empty_occupied(d_overlap_k)
    return band_energy, -1j * d_band / gap + empty_occupied(position_k)


def cell_polarizability_k(
    hamiltonian_k: ArrayLike,
    overlap_k: ArrayLike,
    d_hamiltonian_k: ArrayLike,
    d_overlap_k: ArrayLike,
    position_k: ArrayLike,
    n_electrons: int,
    weights: ArrayLike | None = None,
) -> jax.Array:
    """Static clamped-ion polarizability per cell (3, 3), bohr³, from the k-space matrices of
    :func:`interband_position` on a uniform k-mesh with weights summing to 1 (default uniform):

    α_ab = 4 Σ_k w_k Σ_{v occ, c empty} Re[r^a_vc r^b_cv] / (ε_c − ε_v)

    (closed shell: 2 for spin × 2 for the static sum over states, with r_vc = conj(r_cv)); the
    k-average of the molecular sum-over-states α of the Bloch states, i.e. the independent-particle
    (no local fields, no self-consistency) response of the electrons of one cell to a uniform field.
    ``ValueError`` if the band gap over the k-points (CBM − VBM, :func:`mlhcalc.qm.periodic.band_gap`) is
    below :data:`MIN_BAND_GAP`: a metal's static response is not finite (not checked under jit/grad).
    """
    nk = jnp.shape(hamiltonian_k)[0]
    n_occupied = _n_occupied(n_electrons, jnp.shape(hamiltonian_k)[-1])
    band_energy, position_cv = interband_position(
        hamiltonian_k, overlap_k, d_hamiltonian_k, d_overlap_k, position_k, n_occupied
    )
    smallest_gap = band_gap(band_energy, n_electrons)
    if not isinstance(smallest_gap, jax.core.Tracer) and smallest_gap < MIN_BAND_GAP:
        raise ValueError(
            f"band gap {float(smallest_gap):.3e} Ha on these k-points: the response of a metal (or of touching bands) "
            "is not finite in this closed-shell formula, which needs an insulator"
        )
    gap = band_energy[:, n_occupied:, None] - band_energy[:, None, :n_occupied]
    w = jnp.full(nk, 1.0 / nk) if weights is None else jnp.asarray(weights)
    alpha = 4.0 * jnp.einsum("k,akcv,bkcv->ab", w, position_cv.conj(), position_cv / gap[None]).real
    return 0.5 * (alpha + alpha.T)


def cell_polarizability(
    hamiltonian_t: ArrayLike,
    hamiltonian_translations_bohr: ArrayLike,
    overlap_t: ArrayLike,
    position_t: ArrayLike,
    overlap_translations_bohr: ArrayLike,
    kpts_bohr: ArrayLike,
    n_electrons: int,
    weights: ArrayLike | None = None,
) -> jax.Array:
    """:func:`cell_polarizability_k` from real-space matrices: H(T) on its translations, S(T) and
    R(T) (:func:`position_images`) on theirs (they may differ), at Cartesian k (bohr⁻¹) of a uniform
    mesh, e.g. ``kpts_cartesian(gamma_centred_mesh(n), lattice)``. Returns α per cell (3, 3), bohr³."""
    hamiltonian_k = bloch_sum(hamiltonian_t, hamiltonian_translations_bohr, kpts_bohr)
    d_hamiltonian_k = bloch_sum_derivative(hamiltonian_t, hamiltonian_translations_bohr, kpts_bohr)
    stacked_t = jnp.concatenate([jnp.asarray(overlap_t)[None], jnp.asarray(position_t)])  # (4, nT, nao, nao)
    stacked_k = bloch_sum(stacked_t, overlap_translations_bohr, kpts_bohr)
    overlap_k, position_k = stacked_k[0], stacked_k[1:]
    d_overlap_k = bloch_sum_derivative(overlap_t, overlap_translations_bohr, kpts_bohr)
    return cell_polarizability_k(
        hamiltonian_k, overlap_k, d_hamiltonian_k, d_overlap_k, position_k, n_electrons, weights
    )


def dielectric_tensor(polarizability_cell_au: ArrayLike, lattice_bohr: ArrayLike) -> jax.Array:
    """ε∞ = 1 + 4π α_cell / V_cell (3, 3), dimensionless, from α per cell (bohr³) and the lattice
    (rows a_i, bohr): Gaussian units, χ = α_cell / V is the polarizability per volume."""
    volume = abs(float(np.linalg.det(np.asarray(lattice_bohr, dtype=float))))
    return jnp.eye(3) + 4.0 * jnp.pi * jnp.asarray(polarizability_cell_au) / volume
