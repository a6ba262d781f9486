"""ase.Atoms → PySCF ``Mole`` / PBC ``Cell``, with the input checks every entry point shares.

Positions arrive in Å (ASE) and leave in bohr (PySCF, atomic units). The charge comes from the
caller, else ``atoms.info['charge']``, else 0. Only closed shells are supported: an odd electron
count or a spin other than singlet is a ``ValueError`` naming what to change. Charged closed-shell
molecules are fine; their dipole is taken about the centre of mass (:func:`dipole_origin`), the
neutral ones about the origin of the coordinates (where the dipole is origin-independent).
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.units import Bohr

from mlhcalc.orbitals import species_layout

__all__ = [
    "is_planar",
    "plane_normal",
    "PLANAR_TOLERANCE_ANGSTROM",
    "MIN_DISTANCE_ANGSTROM",
    "resolve_charge",
    "validate_atoms",
    "is_periodic",
    "to_mole",
    "to_cell",
    "dipole_origin",
    "positions_bohr",
    "lattice_bohr",
]

MIN_DISTANCE_ANGSTROM = 0.1
_SPIN_KEYS = ("spin", "multiplicity")


def resolve_charge(atoms: Atoms, charge: int | None = None) -> int:
    """The total charge: ``charge`` if given, else ``atoms.info['charge']``, else 0."""
    value = charge if charge is not None else atoms.info.get("charge", 0)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"charge must be an integer, got {value!r}") from None
    if not math.isfinite(as_float) or as_float != round(as_float):
        raise ValueError(f"charge must be an integer number of electrons, got {value!r}")
    return int(round(as_float))


def is_periodic(atoms: Atoms) -> bool:
    """True for 3D-periodic cells, False for molecules; partial periodicity is rejected."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return True
    if not pbc.any():
        return False
    raise ValueError(
        f"atoms.pbc = {pbc.tolist()}: only molecules (pbc all False) and 3D-periodic cells (pbc all True) "
        "are supported; set atoms.pbc accordingly"
    )


def _check_spin(atoms: Atoms) -> None:
    for key in _SPIN_KEYS:
        if key in atoms.info:
            value = atoms.info[key]
            singlet = 0 if key == "spin" else 1
            if value is not None and float(value) != singlet:
                raise ValueError(
                    f"atoms.info[{key!r}] = {value!r}: only closed-shell singlets are supported "
                    f"(open shells are not implemented yet); remove the key or set it to {singlet}"
                )
    if atoms.has("initial_magmoms"):
        magmoms = atoms.get_initial_magnetic_moments()
        bad = np.flatnonzero(np.abs(magmoms) > 1e-12)
        if len(bad):
            raise ValueError(
                f"atom {bad[0]} has initial magnetic moment {magmoms[bad[0]]}: only closed-shell (non-magnetic) "
                "systems are supported; call atoms.set_initial_magnetic_moments(None)"
            )


def validate_atoms(
    atoms: Atoms,
    basis: str,
    charge: int | None = None,
    *,
    periodic: bool | None = None,
    min_distance: float = MIN_DISTANCE_ANGSTROM,
) -> int:
    """Check ``atoms`` can be computed in ``basis`` and return the resolved total charge.

    Raises ``ValueError`` (naming the atom index and the fix) for: no atoms, unknown element or an
    element without basis functions, NaN/inf positions, two atoms closer than ``min_distance`` Å,
    a periodic structure without a cell, a molecule given where a cell is expected (``periodic``)
    or vice versa, an odd electron count or a non-singlet spin.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    numbers = atoms.get_atomic_numbers()
    for index, z in enumerate(numbers):
        if z <= 0:
            raise ValueError(f"atom {index} has atomic number {z} (a ghost/dummy atom): remove it")
    symbols = atoms.get_chemical_symbols()
    for symbol in dict.fromkeys(symbols):
        try:
            species_layout(basis, symbol)
        except ValueError:
            index = symbols.index(symbol)
            raise ValueError(
                f"atom {index} is {symbol}, which basis {basis!r} does not cover: remove it or use a "
                "model/basis that includes this element"
            ) from None
    positions = atoms.get_positions()
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"atom {index} has non-finite coordinates {positions[index].tolist()}: fix the input geometry")

    structure_is_periodic = is_periodic(atoms)
    if periodic is not None and periodic != structure_is_periodic:
        if periodic:
            raise ValueError(
                "this calculation needs a 3D-periodic cell but the atoms are a molecule (pbc all False): "
                "set atoms.cell and atoms.pbc = True, or use a molecular model"
            )
        raise ValueError(
            "this calculation is for molecules but the atoms are periodic (pbc True): set atoms.pbc = False "
            "for an isolated molecule, or use a periodic model"
        )
    if structure_is_periodic:
        cell = np.asarray(atoms.cell)
        if not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1e-6:
            raise ValueError(
                "atoms.pbc is True but the cell is missing or singular (volume ~0): set atoms.cell to the lattice "
                "vectors in Å"
            )
    _check_close_atoms(atoms, min_distance)

    total_charge = resolve_charge(atoms, charge)
    _check_spin(atoms)
    n_electrons = int(numbers.sum()) - total_charge  # pseudopotential cores hold an even number of electrons
    if n_electrons <= 0:
        raise ValueError(f"charge {total_charge} leaves {n_electrons} electrons: check atoms.info['charge']")
    if n_electrons % 2:
        raise ValueError(
            f"{n_electrons} electrons (charge {total_charge}): odd electron counts are open shells, which are not "
            "supported yet; give a closed-shell structure or set the charge so the electron count is even"
        )
    return total_charge


def _check_close_atoms(atoms: Atoms, min_distance: float) -> None:
    if len(atoms) < 2:
        return
    from ase.neighborlist import neighbor_list

    first, second, distance = neighbor_list("ijd", atoms, min_distance, self_interaction=False)
    if len(first):
        k = int(np.argmin(distance))
        raise ValueError(
            f"atoms {first[k]} and {second[k]} are {distance[k]:.4f} Å apart (minimum {min_distance} Å): "
            "the geometry is broken (duplicated atom or wrong units?)"
        )


def ao_atom_map(mol) -> np.ndarray:
    """Atom index of every AO of a PySCF ``Mole`` or ``Cell`` (PySCF AO order)."""
    ao_atom = np.zeros(mol.nao_nr(), dtype=np.int64)
    for atom, (_, _, start, stop) in enumerate(mol.aoslice_by_atom()):
        ao_atom[start:stop] = atom
    return ao_atom


def positions_bohr(atoms: Atoms) -> np.ndarray:
    return atoms.get_positions() / Bohr


def lattice_bohr(atoms: Atoms) -> np.ndarray:
    """Lattice vectors as rows, in bohr."""
    return np.asarray(atoms.cell) / Bohr


def _atom_list(atoms: Atoms) -> list:
    return [(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), positions_bohr(atoms))]


def to_mole(
    atoms: Atoms,
    basis: str = "sto-3g",
    charge: int | None = None,
    *,
    differentiable: bool = False,
    validate: bool = True,
    verbose: int = 0,
):
    """PySCF ``Mole`` (or PySCFAD ``Mole`` with traceable coordinates if ``differentiable``)."""
    if validate:
        charge = validate_atoms(atoms, basis, charge, periodic=False)
    else:
        charge = resolve_charge(atoms, charge)
    kwargs = dict(atom=_atom_list(atoms), basis=basis, charge=charge, spin=0, unit="Bohr", verbose=verbose)
    if differentiable:
        from pyscfad import gto as gto_ad

        mol = gto_ad.Mole(**kwargs)
        mol.build(trace_exp=False, trace_ctr_coeff=False)
        return mol
    from pyscf import gto

    return gto.M(**kwargs)


def to_cell(
    atoms: Atoms,
    basis: str = "gth-szv",
    pseudo: str | None = "gth-pade",
    charge: int | None = None,
    *,
    validate: bool = True,
    verbose: int = 0,
    **cell_kwargs,
):
    """PySCF PBC ``Cell`` (lattice and positions in bohr)."""
    if validate:
        charge = validate_atoms(atoms, basis, charge, periodic=True)
    else:
        charge = resolve_charge(atoms, charge)
    from pyscf.pbc import gto as pbcgto

    cell = pbcgto.Cell()
    cell.build(
        atom=_atom_list(atoms),
        a=lattice_bohr(atoms),
        basis=basis,
        pseudo=pseudo,
        charge=charge,
        spin=0,
        unit="Bohr",
        verbose=verbose,
        **cell_kwargs,
    )
    return cell


def dipole_origin(atoms: Atoms, charge: int | None = None) -> np.ndarray:
    """Origin (bohr) of the dipole and of the dipole integrals.

    Neutral molecules: (0, 0, 0), where PySCF's ``dip_moment`` takes it (the dipole of a neutral
    system does not depend on the origin). Charged molecules: the centre of mass, the usual
    convention, so the reported dipole does not depend on where the molecule sits.
    """
    if resolve_charge(atoms, charge) == 0:
        return np.zeros(3)
    return atoms.get_center_of_mass() / Bohr


PLANAR_TOLERANCE_ANGSTROM = 0.05
"""Largest distance (Å) of an atom from the best plane through a molecule that still counts as planar."""


def is_planar(atoms: Atoms, tolerance: float = PLANAR_TOLERANCE_ANGSTROM) -> bool:
    """True if every atom lies within ``tolerance`` Å of the least-squares plane through the atoms
    (≤ 3 atoms: always). A planar molecule has no out-of-plane virtual orbitals in a minimal basis,
    which caps its out-of-plane polarizability (REFERENCE.md)."""
    if len(atoms) <= 3:
        return True
    centred = atoms.positions - atoms.positions.mean(0)
    return float(np.abs(centred @ plane_normal(atoms)).max()) < tolerance


def plane_normal(atoms: Atoms) -> np.ndarray:
    """Unit normal of the least-squares plane through the atoms (the direction of least spread; not
    unique for collinear atoms)."""
    return np.linalg.svd(atoms.positions - atoms.positions.mean(0))[2][-1]
