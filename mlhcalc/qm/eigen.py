"""Generalized eigenproblem F C = S C e, closed-shell aufbau occupations and the density matrix.

Pure JAX functions of arrays (single matrices; use ``jax.vmap`` for batches). Occupations are
arrays (2 or 0 per orbital, PySCF's ``mo_occ``), not integers, so structures with different
electron counts share one compiled function. :func:`density_matrix` carries a projector-form
JVP with occupied-virtual denominators only (see docs/qm.md), exact also when occupied levels
are (near-)degenerate; :func:`generalized_eigh` is PySCFAD's differentiable ``eigh``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from pyscfad.scipy.linalg import eigh as _pyscfad_eigh

__all__ = [
    "generalized_eigh",
    "n_occupied",
    "aufbau_occupations",
    "make_rdm1",
    "density_matrix",
    "band_energy",
    "homo_lumo_gap",
    "symmetrize",
    "mo_perturbation",
    "ov_amplitudes",
    "density_tangent",
    "to_mo_basis",
]


def symmetrize(matrix: jax.Array) -> jax.Array:
    """(A + A^T) / 2 over the last two axes."""
    return 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))


def generalized_eigh(fock: jax.Array, overlap: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve F C = S C e for symmetric F and positive-definite S.

    Returns ``(mo_energy, mo_coeff)``: energies ascending (n,), columns of ``mo_coeff`` are the
    orbitals, normalised as C^T S C = 1. Differentiable through PySCFAD (its VJP has 1/(e_i - e_j)
    terms for all pairs; for densities and response use the projector-form functions).
    """
    return _pyscfad_eigh(fock, overlap)


def n_occupied(nelectron: int, nmo: int) -> int:
    """Number of doubly occupied orbitals; ``ValueError`` for odd or too many electrons."""
    nelectron = int(nelectron)
    if nelectron < 0:
        raise ValueError(f"nelectron = {nelectron} is negative")
    if nelectron % 2:
        raise ValueError(f"nelectron = {nelectron} is odd: only closed shells (even electron counts) are supported")
    if nelectron > 2 * nmo:
        raise ValueError(
            f"nelectron = {nelectron} does not fit in {nmo} orbitals (at most {2 * nmo}): check the charge and basis"
        )
    return nelectron // 2


def aufbau_occupations(nelectron: int, nmo: int, dtype=np.float64) -> np.ndarray:
    """Closed-shell aufbau ``mo_occ`` (2 for the nelectron/2 lowest orbitals, 0 above)."""
    occ = np.zeros(nmo, dtype=dtype)
    occ[: n_occupied(nelectron, nmo)] = 2.0
    return occ


def make_rdm1(mo_coeff: jax.Array, mo_occ: jax.Array) -> jax.Array:
    """D = C diag(n) C^T (PySCF's ``make_rdm1``), the AO density matrix with the spin factor."""
    return (mo_coeff * mo_occ) @ mo_coeff.T


def to_mo_basis(mo_coeff: jax.Array, ao_matrices: jax.Array) -> jax.Array:
    """C^T A C for one AO matrix or a stack (..., n, n)."""
    return jnp.einsum("mp,...mn,nq->...pq", mo_coeff, ao_matrices, mo_coeff)


def mo_perturbation(mo_energy, mo_coeff, d_fock, d_overlap):
    """First-order perturbation in the MO basis of a change (dF, dS).

    Returns ``(f, s)`` with f = C^T sym(dF) C - (s e + e s)/2 and s = C^T sym(dS) C: a change dS
    is the change -(s e + e s)/2 of the MO Fock matrix in the re-orthonormalised basis
    C (1 - s/2) (see docs/qm.md).
    """
    s = to_mo_basis(mo_coeff, symmetrize(d_overlap))
    f = to_mo_basis(mo_coeff, symmetrize(d_fock))
    return f - 0.5 * (s * mo_energy[None, :] + mo_energy[:, None] * s), s


def ov_amplitudes(mo_energy, mo_occ, perturbation):
    """U[a, i] = V[a, i] / (e_i - e_a) for virtual a and occupied i, zero elsewhere.

    First-order orbital response c_i -> c_i + sum_a c_a U[a, i] to an MO-basis perturbation V
    (with the leading axes of ``perturbation`` as batch axes). Only occupied-virtual
    denominators appear.
    """
    occupied = mo_occ > 0
    mask = jnp.logical_and(~occupied[:, None], occupied[None, :])
    gap = mo_energy[None, :] - mo_energy[:, None]
    return jnp.where(mask, perturbation / jnp.where(mask, gap, 1.0), 0.0)


@jax.custom_jvp
def density_matrix(fock: jax.Array, overlap: jax.Array, mo_occ: jax.Array) -> jax.Array:
    """Closed-shell AO density matrix D = C diag(mo_occ) C^T of the aufbau state of (F, S).

    ``mo_occ`` lists the occupations of the orbitals in ascending energy order (from
    :func:`aufbau_occupations`). Derivatives w.r.t. F and S use the projector form
    dD = C [U n + n U^T - (s n + n s)/2] C^T, with U the occupied-virtual amplitudes of
    :func:`ov_amplitudes` and (f, s) from :func:`mo_perturbation`: exact for (near-)degenerate
    occupied levels, provided the HOMO-LUMO gap is open.
    """
    _, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    return make_rdm1(mo_coeff, mo_occ)


@density_matrix.defjvp
def _density_matrix_jvp(primals, tangents):
    fock, overlap, mo_occ = primals
    d_fock, d_overlap, _ = tangents  # occupations are piecewise constant: no tangent
    mo_energy, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    density = make_rdm1(mo_coeff, mo_occ)
    f, s = mo_perturbation(mo_energy, mo_coeff, d_fock, d_overlap)
    return density, density_tangent(mo_energy, mo_coeff, mo_occ, f, s)


def density_tangent(mo_energy, mo_coeff, mo_occ, f, s) -> jax.Array:
    """dD for the MO-basis perturbation (f, s) of :func:`mo_perturbation`.

    dc_p = sum_q c_q (U_qp - s_qp / 2) with U the response to f; the occupied-occupied part of
    U cancels in D for equal occupations, leaving dD = C [U n + n U^T - (s n + n s)/2] C^T
    with only the occupied-virtual amplitudes of :func:`ov_amplitudes`.
    """
    amplitudes = ov_amplitudes(mo_energy, mo_occ, f) * mo_occ[None, :]
    d_mo = amplitudes + amplitudes.T - 0.5 * (s * mo_occ[None, :] + mo_occ[:, None] * s)
    return mo_coeff @ d_mo @ mo_coeff.T


def band_energy(mo_energy: jax.Array, mo_occ: jax.Array) -> jax.Array:
    """sum_p n_p e_p (hartree), spin factor included: twice the sum of occupied orbital energies."""
    return jnp.sum(mo_occ * mo_energy, axis=-1)


def homo_lumo_gap(mo_energy: jax.Array, mo_occ: jax.Array) -> jax.Array:
    """e_LUMO - e_HOMO (hartree). Not differentiable where the HOMO or LUMO is degenerate."""
    occupied = mo_occ > 0
    homo = jnp.max(jnp.where(occupied, mo_energy, -jnp.inf), axis=-1)
    lumo = jnp.min(jnp.where(occupied, jnp.inf, mo_energy), axis=-1)
    return lumo - homo
