"""One-electron integrals of the model basis as differentiable JAX functions of nuclear positions.

Owns the overlap ``S`` (``int1e_ovlp``), the dipole integrals ``r_c = <mu|(r - O)_c|nu>``
(``int1e_r`` with common origin ``O``), the nuclear dipole, and the default dipole origin.
Everything is in atomic units (bohr) and PySCF AO order. :func:`ao_integrals` is jittable and
vmappable (libcint runs in a host callback) and has an exact JVP from the nuclear-derivative
integrals; :func:`ao_integrals_pyscfad` is the same through a PySCFAD ``Mole`` pytree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from pyscf.gto import mole as pyscf_mole
from pyscf.gto.moleintor import getints

from mlhcalc.structure import ao_atom_map, to_mole

__all__ = [
    "AOTemplate",
    "make_template",
    "template_from_mole",
    "ao_integrals",
    "ao_integrals_pyscfad",
    "dipole_origin",
    "nuclear_dipole",
]


@dataclass(frozen=True, eq=False)
class AOTemplate:
    """Species, basis and charge of one molecule: everything but the positions.

    Hashable by identity, so it can be a static argument of ``jax.jit``. ``ao_atom[mu]`` is the
    atom carrying AO ``mu``; ``atm``/``bas``/``env`` are libcint's tables (positions in ``env``
    are overwritten on every call).
    """

    atm: np.ndarray
    bas: np.ndarray
    env: np.ndarray
    cart: bool
    nao: int
    ao_atom: np.ndarray
    nuclear_charges: np.ndarray
    masses: np.ndarray
    charge: int

    @property
    def natm(self) -> int:
        return len(self.atm)

    @property
    def nelectron(self) -> int:
        return int(round(self.nuclear_charges.sum())) - self.charge


def template_from_mole(mol, masses: np.ndarray | None = None) -> AOTemplate:
    """Template from a built PySCF (or PySCFAD) ``Mole``; ``masses`` in amu default to PySCF's."""
    ao_atom = ao_atom_map(mol)
    masses = mol.atom_mass_list(isotope_avg=True) if masses is None else np.asarray(masses, dtype=float)
    return AOTemplate(
        atm=np.array(mol._atm, dtype=np.int32),
        bas=np.array(mol._bas, dtype=np.int32),
        env=np.array(mol._env, dtype=np.float64),
        cart=bool(mol.cart),
        nao=int(mol.nao_nr()),
        ao_atom=ao_atom,
        nuclear_charges=np.asarray(mol.atom_charges(), dtype=np.float64),
        masses=np.asarray(masses, dtype=np.float64),
        charge=int(mol.charge),
    )


def make_template(atoms: Atoms, basis: str = "sto-3g", charge: int | None = None) -> AOTemplate:
    """Template for ``atoms`` (validated by :func:`mlhcalc.structure.to_mole`); ASE masses."""
    return template_from_mole(to_mole(atoms, basis, charge), masses=atoms.get_masses())


def dipole_origin(template: AOTemplate, positions_bohr: jax.Array) -> jax.Array:
    """Default origin (bohr) of dipoles: 0 for neutral molecules, the centre of mass if charged.

    Same convention as :func:`mlhcalc.structure.dipole_origin`, but a JAX function of the
    positions, so derivatives of a charged molecule's dipole include the moving origin.
    """
    positions_bohr = jnp.asarray(positions_bohr)
    if template.charge == 0:
        return jnp.zeros(positions_bohr.shape[:-2] + (3,), dtype=positions_bohr.dtype)
    masses = jnp.asarray(template.masses)
    return jnp.einsum("a,...ax->...x", masses, positions_bohr) / masses.sum()


def nuclear_dipole(
    nuclear_charges: jax.Array, positions_bohr: jax.Array, origin_bohr: jax.Array | None = None
) -> jax.Array:
    """sum_A Z_A (R_A - O), in e*bohr."""
    positions_bohr = jnp.asarray(positions_bohr)
    if origin_bohr is not None:
        positions_bohr = positions_bohr - jnp.asarray(origin_bohr)[..., None, :]
    return jnp.einsum("a,...ax->...x", jnp.asarray(nuclear_charges), positions_bohr)


def _env_at(template: AOTemplate, positions_bohr: np.ndarray, origin_bohr: np.ndarray) -> np.ndarray:
    env = template.env.copy()
    ptr = template.atm[:, pyscf_mole.PTR_COORD]
    env[ptr[:, None] + np.arange(3)] = positions_bohr
    env[pyscf_mole.PTR_COMMON_ORIG : pyscf_mole.PTR_COMMON_ORIG + 3] = origin_bohr
    return env


def _intor(template: AOTemplate, env: np.ndarray, name: str, comp: int) -> np.ndarray:
    name = name + ("_cart" if template.cart else "_sph")
    ints = getints(name, template.atm, template.bas, env, comp=comp, hermi=0)
    return np.asarray(ints, dtype=np.float64).reshape(comp, template.nao, template.nao)


def _host_integrals(template: AOTemplate, positions_bohr, origin_bohr, with_derivatives: bool):
    env = _env_at(template, np.asarray(positions_bohr), np.asarray(origin_bohr))
    overlap = _intor(template, env, "int1e_ovlp", 1)[0]
    dipole_ints = _intor(template, env, "int1e_r", 3)
    if not with_derivatives:
        return overlap, dipole_ints
    # <d_x mu|nu> and <d_x mu|r_c|nu> = (<nu|r_c d_x|mu>)^T; int1e_irp is ordered (c, x).
    ip_overlap = _intor(template, env, "int1e_ipovlp", 3)
    ip_dipole = _intor(template, env, "int1e_irp", 9).reshape(3, 3, template.nao, template.nao)
    return overlap, dipole_ints, ip_overlap, ip_dipole.swapaxes(-1, -2)


def _callback(template: AOTemplate, positions_bohr, origin_bohr, with_derivatives: bool):
    nao = template.nao
    shapes = [(nao, nao), (3, nao, nao)] + ([(3, nao, nao), (3, 3, nao, nao)] if with_derivatives else [])
    dtype = jnp.result_type(float)
    result = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape in shapes)
    host = partial(_host_integrals, template, with_derivatives=with_derivatives)
    return jax.pure_callback(host, result, positions_bohr, origin_bohr, vmap_method="sequential")


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _ao_integrals(template: AOTemplate, positions_bohr: jax.Array, origin_bohr: jax.Array):
    return _callback(template, positions_bohr, origin_bohr, with_derivatives=False)


@_ao_integrals.defjvp
def _ao_integrals_jvp(template, primals, tangents):
    positions_bohr, origin_bohr = primals
    d_positions, d_origin = tangents
    overlap, dipole_ints, ip_overlap, ip_dipole = _callback(
        template, positions_bohr, origin_bohr, with_derivatives=True
    )
    # A basis function centred on atom A depends on r - R_A: d chi_mu / d R_Ax = -d_x chi_mu.
    d_row = d_positions[..., template.ao_atom, :]  # (nao, 3): displacement of the atom of each AO
    d_overlap = -jnp.einsum("xmn,mx->mn", ip_overlap, d_row)
    d_overlap = d_overlap + d_overlap.T
    d_dipole = -jnp.einsum("cxmn,mx->cmn", ip_dipole, d_row)
    d_dipole = d_dipole + d_dipole.swapaxes(-1, -2) - d_origin[:, None, None] * overlap
    return (overlap, dipole_ints), (d_overlap, d_dipole)


def ao_integrals(
    template: AOTemplate, positions_bohr: jax.Array, origin_bohr: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Overlap ``S`` (nao, nao) and dipole integrals ``r`` (3, nao, nao) at ``positions_bohr``.

    ``r[c, mu, nu] = <mu|(r - O)_c|nu>`` with ``O = origin_bohr`` (default :func:`dipole_origin`:
    0 for neutral molecules, the centre of mass for charged ones). Differentiable (forward and
    reverse, exact) with respect to positions and origin; jittable (``template`` static) and
    vmappable over positions.
    """
    positions_bohr = jnp.asarray(positions_bohr, dtype=float)
    if positions_bohr.shape != (template.natm, 3):
        raise ValueError(f"positions_bohr has shape {positions_bohr.shape}, expected ({template.natm}, 3)")
    origin_bohr = dipole_origin(template, positions_bohr) if origin_bohr is None else origin_bohr
    return _ao_integrals(template, positions_bohr, jnp.asarray(origin_bohr, dtype=float))


def ao_integrals_pyscfad(mol, origin_bohr=None) -> tuple[jax.Array, jax.Array]:
    """``S`` and ``r`` of a PySCFAD ``Mole`` through ``mol.intor``: differentiable w.r.t. ``mol``
    (the gradient lands in ``mol.coords``). Not jittable over geometries: the values come from
    the geometry the ``Mole`` was built with. ``origin_bohr`` defaults to (0, 0, 0)."""
    origin_bohr = np.zeros(3) if origin_bohr is None else np.asarray(origin_bohr, dtype=float)
    overlap = mol.intor("int1e_ovlp")
    with mol.with_common_orig(origin_bohr):
        dipole_ints = mol.intor("int1e_r", comp=3)
    return overlap, dipole_ints
