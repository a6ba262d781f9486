"""AO layouts and the PySCF → m-ordered permutation."""

import numpy as np
import pytest
from pyscf import gto

from mlhcalc.orbitals import (
    m_order_permutation,
    m_to_pyscf_order,
    pyscf_to_m_order,
    species_layout,
    structure_ao_slices,
)


@pytest.mark.parametrize(
    ("basis", "symbol", "expected"),
    [
        ("sto-3g", "H", [(0, 0)]),
        ("sto-3g", "O", [(0, 0), (1, 0), (0, 1)]),
        ("gth-szv", "Si", [(0, 0), (0, 1)]),
        ("def2-svp", "C", [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (0, 2)]),
    ],
)
def test_species_shells_follow_pyscf(basis, symbol, expected):
    layout = species_layout(basis, symbol)
    assert [(s.n, s.l) for s in layout.shells] == expected
    mol = gto.M(atom=[(symbol, (0, 0, 0))], basis=basis, spin=gto.charge(symbol) % 2, verbose=0)
    assert layout.nao == mol.nao


def test_structure_slices_match_pyscf_aoslice():
    symbols = ["O", "H", "H", "C", "N"]
    coords = np.arange(15.0).reshape(5, 3)
    mol = gto.M(atom=list(zip(symbols, coords)), basis="sto-3g", spin=1, verbose=0)
    slices = structure_ao_slices(symbols, "sto-3g")
    assert [(s.start, s.stop) for s in slices] == [tuple(r[2:]) for r in mol.aoslice_by_atom()]


def test_unknown_element_in_basis_is_a_value_error():
    with pytest.raises(ValueError, match="no functions for element"):
        species_layout("sto-3g", "Og")


def test_p_shell_values_follow_real_harmonics_after_reordering():
    # PySCF p AOs are (x, y, z)·R(r); real spherical harmonics m = -1, 0, 1 are ∝ (y, z, x).
    mol = gto.M(atom=[("N", (0, 0, 0))], basis="sto-3g", spin=1, verbose=0)
    point = np.array([[0.3, -0.7, 1.1]])
    values = mol.eval_gto("GTOval_sph", point)[0]
    p_pyscf = values[2:5]
    p_m = p_pyscf[pyscf_to_m_order(1)]
    expected_direction = np.array([point[0, 1], point[0, 2], point[0, 0]])
    np.testing.assert_allclose(p_m / np.linalg.norm(p_m), expected_direction / np.linalg.norm(expected_direction),
                               atol=1e-12)


def test_d_shell_labels_are_already_m_ordered():
    mol = gto.M(atom=[("C", (0, 0, 0))], basis="def2-svp", verbose=0)
    d_labels = [label.split()[-1] for label in mol.ao_labels() if "3d" in label]
    assert d_labels == ["3dxy", "3dyz", "3dz^2", "3dxz", "3dx2-y2"]  # m = -2..2
    assert list(pyscf_to_m_order(2)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_permutations_are_inverse(l):
    forward, backward = pyscf_to_m_order(l), m_to_pyscf_order(l)
    np.testing.assert_array_equal(forward[backward], np.arange(2 * l + 1))


def test_atom_block_permutation_reorders_each_shell():
    layout = species_layout("sto-3g", "O")
    assert list(m_order_permutation(layout)) == [0, 1, 3, 4, 2]
    assert layout.ao_labels()[2:] == [(0, 1, 1), (0, 1, -1), (0, 1, 0)]
