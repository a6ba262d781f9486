"""Static polarizability of an effective one-electron Hamiltonian (non-self-consistent response).

alpha_xy = d mu_x / d E_y for H(E) = H + E.r (the perturbation -mu.E of electrons of charge -1),
equal to the sum over states alpha_xy = 4 sum_{i occ, a vir} r^x_ia r^y_ai / (e_a - e_i).
:func:`polarizability` is the one the package uses: its JVP (w.r.t. F, S and r) is the third
derivative of the band energy written with occupied-virtual denominators only (Wigner's 2n+1
rule), exact for degenerate occupied levels. Closed shell: occupations 2 or 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlhcalc.qm.eigen import (
    density_matrix,
    generalized_eigh,
    mo_perturbation,
    ov_amplitudes,
    symmetrize,
    to_mo_basis,
)

__all__ = [
    "polarizability_sos",
    "polarizability",
    "polarizability_field",
    "polarizability_tangent",
]


def polarizability_sos(mo_energy, mo_coeff, dipole_ints, mo_occ) -> jax.Array:
    """Sum-over-states alpha (3, 3) in a.u. from orbitals; plain autodiff if differentiated.

    alpha_xy = 2 sum_{a vir, i occ} n_i r^x_ai r^y_ai / (e_a - e_i) with n_i = 2.
    """
    dipole_mo = to_mo_basis(mo_coeff, dipole_ints)
    amplitudes = ov_amplitudes(mo_energy, mo_occ, dipole_mo) * mo_occ[None, :]
    return -2.0 * jnp.einsum("xai,yai->xy", dipole_mo, amplitudes)


def polarizability_tangent(mo_energy, mo_coeff, mo_occ, dipole_mo, f, s, d_dipole_ints) -> jax.Array:
    """d alpha for the MO-basis perturbation (f, s) of :func:`~mlhcalc.qm.eigen.mo_perturbation`
    and the AO change ``d_dipole_ints`` of r; occupied-virtual denominators only.

    With U^A_ai = A_ai / (e_i - e_a) and t(A, B, C) = tr(U_A^T B U_C) - tr(U_A B U_C^T) (the
    third-order band energy per spin is t(V, V, V)), for closed shells
    d alpha_xy = -4 [sum_ai (rho^x U^y + U^x rho^y)_ai + t(r_x, f, r_y) + t(r_x, r_y, f) + t(r_y, r_x, f)],
    where rho = C^T dr C - (s r + r s)/2 is the change of r in the re-orthonormalised basis.
    """
    rho = to_mo_basis(mo_coeff, symmetrize(d_dipole_ints)) - 0.5 * (s @ dipole_mo + dipole_mo @ s)
    u_dip = ov_amplitudes(mo_energy, mo_occ, dipole_mo)
    u_f = ov_amplitudes(mo_energy, mo_occ, f)
    first = jnp.einsum("xai,yai->xy", rho, u_dip)
    through_f = jnp.einsum("xai,yai->xy", u_dip, f @ u_dip - u_dip @ f)
    through_r = jnp.einsum("xai,yai->xy", u_dip, dipole_mo @ u_f - u_f @ dipole_mo)
    return -4.0 * (first + first.T + through_f + through_r + through_r.T)


@jax.custom_jvp
def polarizability(fock, overlap, dipole_ints, mo_occ) -> jax.Array:
    """Non-self-consistent static polarizability (3, 3), a.u., of the closed-shell aufbau state
    of (F, S) with dipole integrals r (3, n, n). Projector-form derivatives (see module doc)."""
    mo_energy, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    return polarizability_sos(mo_energy, mo_coeff, symmetrize(dipole_ints), mo_occ)


@polarizability.defjvp
def _polarizability_jvp(primals, tangents):
    fock, overlap, dipole_ints, mo_occ = primals
    d_fock, d_overlap, d_dipole_ints, _ = tangents
    mo_energy, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    dipole_ints = symmetrize(dipole_ints)
    dipole_mo = to_mo_basis(mo_coeff, dipole_ints)
    alpha = polarizability_sos(mo_energy, mo_coeff, dipole_ints, mo_occ)
    f, s = mo_perturbation(mo_energy, mo_coeff, d_fock, d_overlap)
    return alpha, polarizability_tangent(mo_energy, mo_coeff, mo_occ, dipole_mo, f, s, d_dipole_ints)


def polarizability_field(fock, overlap, dipole_ints, mo_occ) -> jax.Array:
    """alpha_xy = d mu_x / d E_y at E = 0 by forward-mode autodiff of the dipole of H + E.r.

    An independent route to :func:`polarizability` (through the density-matrix JVP); its own
    derivatives differentiate that JVP and so go through ``eigh`` (tests only).
    """

    def electronic_dipole_in_field(field):
        perturbed = fock + jnp.einsum("c,cmn->mn", field, dipole_ints)
        density = density_matrix(perturbed, overlap, mo_occ)
        return -jnp.einsum("cmn,nm->c", dipole_ints, density)

    return jax.jacfwd(electronic_dipole_in_field)(jnp.zeros(3, dtype=fock.dtype))
