"""Molecular observables of an effective one-electron Hamiltonian: the functions the package uses.

From (F, S, r) in PySCF AO order and atomic units: orbital energies, density matrix, dipole
(electronic + nuclear, about a stated origin), Mulliken and Loewdin charges, polarizability.
:func:`response_properties` diagonalises once and carries projector-form derivatives (occupied-
virtual denominators only); :func:`molecule_properties` adds the integrals at given positions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlhcalc.qm.eigen import (
    aufbau_occupations,
    band_energy,
    density_tangent,
    generalized_eigh,
    homo_lumo_gap,
    make_rdm1,
    mo_perturbation,
    symmetrize,
    to_mo_basis,
)
from mlhcalc.qm.integrals import AOTemplate, ao_integrals, dipole_origin, nuclear_dipole
from mlhcalc.qm.response import polarizability_sos, polarizability_tangent

__all__ = [
    "ResponseProperties",
    "response_properties",
    "electronic_dipole",
    "dipole_moment",
    "atom_projector",
    "mulliken_charges",
    "lowdin_charges",
    "spd_sqrt",
    "molecule_properties",
    "pad_system",
]


class ResponseProperties(NamedTuple):
    mo_energy: jax.Array  # (n,) hartree, ascending
    density: jax.Array  # (n, n) AO density matrix, spin factor included
    polarizability: jax.Array  # (3, 3) a.u.


@jax.custom_jvp
def response_properties(fock, overlap, dipole_ints, mo_occ) -> ResponseProperties:
    """Orbital energies, density matrix and polarizability with one diagonalisation.

    Same values and derivatives as :func:`~mlhcalc.qm.eigen.generalized_eigh` (energies),
    :func:`~mlhcalc.qm.eigen.density_matrix` and :func:`~mlhcalc.qm.response.polarizability`.
    """
    mo_energy, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    alpha = polarizability_sos(mo_energy, mo_coeff, symmetrize(dipole_ints), mo_occ)
    return ResponseProperties(mo_energy, make_rdm1(mo_coeff, mo_occ), alpha)


@response_properties.defjvp
def _response_properties_jvp(primals, tangents):
    fock, overlap, dipole_ints, mo_occ = primals
    d_fock, d_overlap, d_dipole_ints, _ = tangents
    mo_energy, mo_coeff = generalized_eigh(symmetrize(fock), symmetrize(overlap))
    dipole_ints = symmetrize(dipole_ints)
    dipole_mo = to_mo_basis(mo_coeff, dipole_ints)
    primal = ResponseProperties(
        mo_energy, make_rdm1(mo_coeff, mo_occ), polarizability_sos(mo_energy, mo_coeff, dipole_ints, mo_occ)
    )
    f, s = mo_perturbation(mo_energy, mo_coeff, d_fock, d_overlap)
    tangent = ResponseProperties(
        jnp.diagonal(f),  # de_p = f_pp (f already holds -e_p s_pp)
        density_tangent(mo_energy, mo_coeff, mo_occ, f, s),
        polarizability_tangent(mo_energy, mo_coeff, mo_occ, dipole_mo, f, s, d_dipole_ints),
    )
    return primal, tangent


def electronic_dipole(density: jax.Array, dipole_ints: jax.Array) -> jax.Array:
    """-tr(D r_c): electrons carry charge -1 (e*bohr, about the origin of ``dipole_ints``)."""
    return -jnp.einsum("cmn,nm->c", dipole_ints, density)


def dipole_moment(density, dipole_ints, nuclear_charges, positions_bohr, origin_bohr) -> jax.Array:
    """Total dipole (e*bohr) about ``origin_bohr``, which must be the origin of ``dipole_ints``.

    mu = -tr(D r) + sum_A Z_A (R_A - O); PySCF's ``dip_moment(unit='AU', origin=O)``.
    """
    return electronic_dipole(density, dipole_ints) + nuclear_dipole(nuclear_charges, positions_bohr, origin_bohr)


def atom_projector(ao_atom, natm: int) -> jax.Array:
    """(natm, nao) 0/1 matrix: row A selects the AOs centred on atom A."""
    return (jnp.asarray(ao_atom)[None, :] == jnp.arange(natm)[:, None]).astype(float)


def mulliken_charges(density, overlap, ao_atom, nuclear_charges) -> jax.Array:
    """q_A = Z_A - sum_{mu on A} (D S)_mu,mu; they sum to the total charge."""
    populations = jnp.einsum("mn,nm->m", density, overlap)
    return jnp.asarray(nuclear_charges) - atom_projector(ao_atom, len(nuclear_charges)) @ populations


@jax.custom_jvp
def spd_sqrt(matrix: jax.Array) -> jax.Array:
    """Square root of a symmetric positive-definite matrix; its derivative solves
    X dX + dX X = dA, i.e. dX_ij = (V^T dA V)_ij / (l_i^1/2 + l_j^1/2): no singular
    denominators, so degenerate eigenvalues of S are harmless."""
    eigenvalues, vectors = jnp.linalg.eigh(symmetrize(matrix))
    return (vectors * jnp.sqrt(eigenvalues)) @ vectors.T


@spd_sqrt.defjvp
def _spd_sqrt_jvp(primals, tangents):
    (matrix,), (d_matrix,) = primals, tangents
    eigenvalues, vectors = jnp.linalg.eigh(symmetrize(matrix))
    roots = jnp.sqrt(eigenvalues)
    d_eigen = vectors.T @ symmetrize(d_matrix) @ vectors / (roots[:, None] + roots[None, :])
    return (vectors * roots) @ vectors.T, vectors @ d_eigen @ vectors.T


def lowdin_charges(density, overlap, ao_atom, nuclear_charges) -> jax.Array:
    """q_A = Z_A - sum_{mu on A} (S^1/2 D S^1/2)_mu,mu; they sum to the total charge."""
    root = spd_sqrt(overlap)
    populations = jnp.einsum("mk,kl,lm->m", root, density, root)
    return jnp.asarray(nuclear_charges) - atom_projector(ao_atom, len(nuclear_charges)) @ populations


def molecule_properties(
    template: AOTemplate, positions_bohr: jax.Array, fock: jax.Array, origin_bohr: jax.Array | None = None
) -> dict[str, jax.Array]:
    """All molecular observables of the model Fock matrix ``fock`` at ``positions_bohr``.

    The integrals come from :func:`~mlhcalc.qm.integrals.ao_integrals`; ``origin_bohr`` (default
    :func:`~mlhcalc.qm.integrals.dipole_origin`) is the origin of the dipole. Returns a dict of
    ``mo_energy``, ``mo_occ``, ``density``, ``dipole`` (e*bohr), ``polarizability`` (a.u.),
    ``band_energy``, ``homo_lumo_gap`` (hartree), ``mulliken_charges``, ``lowdin_charges`` (e).
    Differentiable w.r.t. ``fock`` and ``positions_bohr`` (at fixed ``fock``).
    """
    positions_bohr = jnp.asarray(positions_bohr, dtype=float)
    if origin_bohr is None:
        origin_bohr = dipole_origin(template, positions_bohr)
    overlap, dipole_ints = ao_integrals(template, positions_bohr, origin_bohr)
    mo_occ = jnp.asarray(aufbau_occupations(template.nelectron, template.nao))
    props = response_properties(fock, overlap, dipole_ints, mo_occ)
    charges = (props.density, overlap, template.ao_atom, template.nuclear_charges)
    return {
        "mo_energy": props.mo_energy,
        "mo_occ": mo_occ,
        "density": props.density,
        "dipole": dipole_moment(props.density, dipole_ints, template.nuclear_charges, positions_bohr, origin_bohr),
        "polarizability": props.polarizability,
        "band_energy": band_energy(props.mo_energy, mo_occ),
        "homo_lumo_gap": homo_lumo_gap(props.mo_energy, mo_occ),
        "mulliken_charges": mulliken_charges(*charges),
        "lowdin_charges": lowdin_charges(*charges),
    }


def pad_system(size: int, fock, overlap, dipole_ints, mo_occ, padding_energy: float = 1.0e3):
    """Embed an n-AO system in ``size`` >= n AOs without changing any result.

    Padded AOs are orthonormal (S block = 1), decoupled, at ``padding_energy`` hartree and carry
    no dipole integrals. Above the HOMO they stay empty and contribute exactly zero to the
    density, dipole and polarizability (and their derivatives); above every real orbital (the
    default 1000 Ha) the real orbital energies are also the first n of the padded system.
    Lets structures of different sizes share one compiled function (pad to size buckets).
    """
    n = fock.shape[-1]
    if size < n:
        raise ValueError(f"cannot pad {n} AOs to {size}")
    extra = size - n
    pad2 = [(0, extra), (0, extra)]
    eye = jnp.diag(jnp.concatenate([jnp.zeros(n), jnp.ones(extra)]))
    return (
        jnp.pad(fock, pad2) + padding_energy * eye,
        jnp.pad(overlap, pad2) + eye,
        jnp.pad(dipole_ints, [(0, 0)] + pad2),
        jnp.pad(mo_occ, (0, extra)),
    )
