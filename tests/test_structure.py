"""ase.Atoms → PySCF, and the input checks every entry point shares."""

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import Bohr

from mlhcalc.structure import dipole_origin, resolve_charge, to_cell, to_mole, validate_atoms


def test_mole_positions_are_converted_to_bohr():
    water = molecule("H2O")
    mol = to_mole(water)
    np.testing.assert_allclose(mol.atom_coords(unit="Bohr"), water.positions / Bohr, atol=1e-12)
    assert mol.nelectron == 10 and mol.spin == 0 and mol.nao == 7


def test_differentiable_mole_is_pyscfad():
    from pyscfad import gto as gto_ad

    mol = to_mole(molecule("H2O"), differentiable=True)
    assert isinstance(mol, gto_ad.Mole)


def test_charge_from_info_and_caller():
    hydronium = Atoms("OH3", positions=[[0, 0, 0], [0.97, 0, 0], [-0.3, 0.9, 0], [-0.3, -0.5, 0.8]])
    hydronium.info["charge"] = 1
    assert to_mole(hydronium).charge == 1
    assert resolve_charge(hydronium, charge=-1) == -1  # the caller wins
    np.testing.assert_allclose(dipole_origin(hydronium), hydronium.get_center_of_mass() / Bohr)
    np.testing.assert_array_equal(dipole_origin(molecule("H2O")), np.zeros(3))


def test_cell_lattice_in_bohr():
    silicon = bulk("Si", "diamond", a=5.431)
    cell = to_cell(silicon)
    np.testing.assert_allclose(cell.lattice_vectors(), np.asarray(silicon.cell) / Bohr, atol=1e-12)
    assert cell.nelectron == 8  # gth-pade: 4 valence electrons per Si


@pytest.mark.parametrize(
    ("atoms", "kwargs", "message"),
    [
        (Atoms(), {}, "no atoms"),
        (Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]), {}, "odd electron counts are open shells"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.05]]), {}, "atoms 0 and 1 are 0.0500 Å apart"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, np.nan]]), {}, "atom 1 has non-finite coordinates"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, np.inf]]), {}, "atom 1 has non-finite coordinates"),
        (Atoms("HAu", positions=[[0, 0, 0], [0, 0, 1.5]]), {}, "atom 1 is Au, which basis 'sto-3g' does not"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], pbc=True), {}, "cell is missing"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], pbc=[1, 1, 0], cell=[3, 3, 3]), {}, "only molecules"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"spin": 2}), {}, "only closed-shell singlets"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"multiplicity": 3}), {}, "only closed-shell"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), {"charge": 0.5}, "integer number of electrons"),
        (Atoms("X2", positions=[[0, 0, 0], [0, 0, 0.74]]), {}, "ghost/dummy atom"),
        (molecule("H2O"), {"periodic": True}, "needs a 3D-periodic cell"),
        (bulk("Si"), {"periodic": False}, "for molecules but the atoms are periodic"),
    ],
)
def test_bad_input_names_the_problem(atoms, kwargs, message):
    basis = "gth-szv" if atoms.pbc.all() else "sto-3g"
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_atoms(atoms, basis, **kwargs)


def test_close_atoms_across_the_periodic_boundary_are_found():
    cell = Atoms("H2", positions=[[0.02, 0, 0], [2.97, 0, 0]], cell=[3.0, 3.0, 3.0], pbc=True)
    with pytest.raises(ValueError, match="atoms 0 and 1 are 0.0500 Å apart"):
        validate_atoms(cell, "gth-szv")


def test_charged_closed_shell_is_accepted():
    hydroxide = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]], info={"charge": -1})
    assert validate_atoms(hydroxide, "sto-3g") == -1


def test_plane_normal_and_planarity_follow_a_rotation():
    """The least-squares plane of benzene (in the xy plane as built) turns with the molecule; methane
    is not planar; a small out-of-plane displacement crosses ``PLANAR_TOLERANCE_ANGSTROM``."""
    from scipy.spatial.transform import Rotation

    from mlhcalc.structure import PLANAR_TOLERANCE_ANGSTROM, is_planar, plane_normal

    benzene = molecule("C6H6")
    rotation = Rotation.from_euler("xyz", [0.3, -1.1, 0.7]).as_matrix()
    turned = benzene.copy()
    turned.positions = benzene.positions @ rotation.T
    assert abs(abs(plane_normal(turned) @ (rotation @ [0.0, 0.0, 1.0])) - 1.0) < 1e-12
    assert is_planar(turned) and not is_planar(molecule("CH4"))
    bent = benzene.copy()
    bent.positions[0, 2] += 3 * PLANAR_TOLERANCE_ANGSTROM
    assert not is_planar(bent)
