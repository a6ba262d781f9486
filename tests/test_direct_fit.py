"""Metrics (mlhcalc.training.metrics) on hand-computable inputs, and the direct ridge fit of
minimal-basis Fock matrices (mlhcalc.training.direct) end to end on a few small molecules."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.linalg
import torch
from ase import Atoms, units
from ase.build import molecule

from mlhcalc.training import metrics

HA = units.Hartree


# ------------------------------------------------------------------------------------- metrics
def test_unit_constants_are_ase_ones():
    assert metrics.HARTREE_TO_EV == units.Hartree
    # 1 e·bohr = Bohr e·Å; ASE's Debye is 1 D in e·Å
    assert metrics.EBOHR_TO_DEBYE == pytest.approx(units.Bohr / units.Debye, rel=1e-15)
    assert metrics.EBOHR_TO_DEBYE == pytest.approx(2.541746, abs=2e-6)  # CODATA value of e·a0 in D


def test_core_orbital_count():
    assert metrics.n_core_orbitals([1, 1, 8]) == 1
    assert metrics.n_core_orbitals([6, 7, 8, 1, 1]) == 3
    assert metrics.n_core_orbitals([17, 1]) == 5
    assert metrics.n_core_orbitals([1, 2]) == 0


def test_orbital_energy_metrics_by_hand():
    # two structures: 2 occupied of 3 levels, and 3 occupied of 4 levels (hartree)
    ref = [np.array([-10.0, -0.5, 0.2]), np.array([-20.0, -1.0, -0.4, 0.1])]
    pred = [np.array([0.3, -10.1, -0.45]), np.array([-20.0, -0.9, -0.4, 0.3])]  # unsorted on purpose
    nocc = [2, 3]
    # occupied errors: |−10.1+10|=0.1, |−0.45+0.5|=0.05, 0, 0.1, 0 → mean 0.25/5
    assert metrics.occupied_mae_ev(pred, ref, nocc) == pytest.approx(0.05 * HA)
    # valence: drop 1 core level in the first (one O), 1 in the second (one C): 0.05, 0.1, 0
    numbers = [[8, 1, 1], [6, 1, 1, 1, 1]]
    assert metrics.valence_mae_ev(pred, ref, nocc, numbers) == pytest.approx(0.15 / 3 * HA)
    # LUMO: |0.3−0.2|=0.1, |0.3−0.1|=0.2; HOMO: 0.05, 0; gap: |0.75−0.7|=0.05, |0.7−0.5|=0.2
    assert metrics.lumo_mae_ev(pred, ref, nocc) == pytest.approx(0.15 * HA)
    assert metrics.homo_mae_ev(pred, ref, nocc) == pytest.approx(0.025 * HA)
    assert metrics.gap_mae_ev(pred, ref, nocc) == pytest.approx(0.125 * HA)
    summary = metrics.orbital_energy_metrics(pred, ref, nocc, numbers)
    assert summary["occupied_mae_ev"] == pytest.approx(0.05 * HA)
    with pytest.raises(ValueError, match="one entry per structure"):
        metrics.occupied_mae_ev(pred, ref[:1], nocc)
    with pytest.raises(ValueError, match="does not exist"):
        metrics.lumo_mae_ev(pred, ref, [3, 3])


def test_dipole_mae_in_debye():
    ref = np.zeros((2, 3))
    pred = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])  # |Δμ| = 5 and 1 e·bohr
    expected = 3.0 * units.Bohr / units.Debye
    assert metrics.dipole_mae_debye(pred, ref) == pytest.approx(expected, rel=1e-14)
    assert metrics.dipole_debye([1.0, 0, 0])[0] == pytest.approx(units.Bohr / units.Debye)


def test_polarizability_split_of_a_known_tensor():
    ref = np.diag([1.0, 2.0, 3.0])[None]  # isotropic 2, traceless part diag(−1, 0, 1)
    np.testing.assert_allclose(metrics.anisotropic_part(ref)[0], np.diag([-1.0, 0.0, 1.0]))
    assert metrics.isotropic(ref)[0] == pytest.approx(2.0)
    assert metrics.anisotropy(ref)[0] == pytest.approx(np.sqrt(3.0))  # sqrt(3/2 · 2)
    pred = ref + np.eye(3)[None]  # a pure isotropic shift of 1
    result = metrics.polarizability_metrics(pred, ref)
    assert result["mae_au"] == pytest.approx(3.0 / 9.0)
    assert result["mae_percent"] == pytest.approx(100.0 * (1.0 / 3.0) / 2.0)
    assert result["isotropic_mae_au"] == pytest.approx(1.0)
    assert result["anisotropic_mae_au"] == pytest.approx(0.0, abs=1e-15)
    assert result["anisotropy_mae_au"] == pytest.approx(0.0, abs=1e-15)
    off = ref.copy()
    off[0, 0, 1] = off[0, 1, 0] = 0.5  # traceless change only
    result = metrics.polarizability_metrics(off, ref)
    assert result["isotropic_mae_au"] == pytest.approx(0.0, abs=1e-15)
    assert result["anisotropic_mae_au"] == pytest.approx(1.0 / 9.0)


def test_fock_and_band_metrics():
    ref = [np.zeros((2, 2)), np.zeros((1, 1))]
    pred = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[3.0]])]
    assert metrics.fock_mae_ha(pred, ref) == pytest.approx(5.0 / 5.0)
    bands = np.array([[-0.5, -0.2, 0.1, 0.4], [-0.4, -0.25, 0.05, 0.3]])  # 2 k-points
    gap, vbm, cbm = metrics.band_gap(bands, 2)
    assert (vbm, cbm) == (-0.2, 0.05) and gap == pytest.approx(0.25)
    assert metrics.band_energy_mae_ev([bands + 0.01], [bands]) == pytest.approx(0.01 * HA)
    assert metrics.band_energy_mae_ev([bands + 0.01], [bands], n_bands=2) == pytest.approx(0.01 * HA)
    shifted = bands.copy()
    shifted[:, 2:] += 0.1
    assert metrics.band_gap_error_ev(shifted, bands, 2) == pytest.approx(0.1 * HA)


# ---------------------------------------------------------------------------------- direct fit
def _hf_sto3g(atoms: Atoms) -> Atoms:
    """HF/STO-3G labels in the layout of mlhcalc.reference.read (Fock from the final density)."""
    from pyscf import scf

    from mlhcalc.structure import to_mole

    mol = to_mole(atoms)
    mf = scf.RHF(mol)
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert mf.converged
    dm = mf.make_rdm1()
    fock = mf.get_fock(dm=dm)
    labelled = atoms.copy()
    labelled.info.update(
        fock_minimal=fock,
        overlap_minimal=mf.get_ovlp(),
        mo_energy_minimal=scipy.linalg.eigh(fock, mf.get_ovlp(), eigvals_only=True),
        dipole_minimal=mf.dip_moment(dm=dm, unit="AU", verbose=0),
        nocc=mol.nelectron // 2,
        dipole_origin=np.zeros(3),
    )
    return labelled


@functools.cache
def _water_set():
    """14 rattled waters (HF/STO-3G): 10 to fit, 4 held out (rattle 0.04 Å, seed 0)."""
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(14):
        atoms = molecule("H2O")
        atoms.positions += rng.normal(scale=0.04, size=atoms.positions.shape)
        structures.append(_hf_sto3g(atoms))
    return structures[:10], structures[10:]


HYPERS = dict(species=(1, 8), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)


def test_observables_agree_with_the_qm_layer():
    """The numpy observables used for scoring equal mlhcalc.qm's (MO energies, dipole, SOS α)."""
    import jax.numpy as jnp

    import mlhcalc.qm  # noqa: F401
    from mlhcalc.qm.integrals import make_template
    from mlhcalc.qm.molecular import molecule_properties
    from mlhcalc.structure import positions_bohr
    from mlhcalc.training.direct import Reference, fock_observables

    atoms = _water_set()[0][0]
    ref = Reference.from_atoms(atoms)
    mine = fock_observables(ref, ref.fock, polarizability=True)
    theirs = molecule_properties(
        make_template(atoms, "sto-3g"), jnp.asarray(positions_bohr(atoms)), jnp.asarray(ref.fock)
    )
    np.testing.assert_allclose(mine["mo_energy"], np.asarray(theirs["mo_energy"]), atol=1e-10)
    np.testing.assert_allclose(mine["dipole"], np.asarray(theirs["dipole"]), atol=1e-9)
    np.testing.assert_allclose(mine["polarizability"], np.asarray(theirs["polarizability"]), atol=1e-8)
    # and with PySCF's own labels of the reference
    np.testing.assert_allclose(mine["mo_energy"], ref.mo_energy, atol=1e-10)
    np.testing.assert_allclose(mine["dipole"], ref.dipole, atol=1e-6)


def test_cutoff_truncation_is_exact_beyond_the_molecule_and_zeroes_far_blocks():
    from mlhcalc.training.direct import Reference, truncate_to_cutoff

    ref = Reference.from_atoms(_water_set()[0][0])
    np.testing.assert_array_equal(truncate_to_cutoff(ref, ref.fock, 100.0), ref.fock)
    cut = truncate_to_cutoff(ref, ref.fock, 2.5)  # O–H ≈ 1.8 bohr kept, H–H ≈ 2.9 bohr dropped
    h1, h2 = np.nonzero(ref.ao_atom == 1)[0], np.nonzero(ref.ao_atom == 2)[0]
    assert (cut[np.ix_(h1, h2)] == 0).all() and (cut[np.ix_(h1, h1)] == ref.fock[np.ix_(h1, h1)]).all()


def test_solve_matches_fit_ridge():
    from mlhcalc.features import FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian import fit_ridge
    from mlhcalc.hamiltonian.model import BlockModel
    from mlhcalc.training.direct import normal_equations, solve

    train, _ = _water_set()
    focks = [a.info["fock_minimal"] for a in train]
    ours, theirs = BlockModel(FeatureHypers(**HYPERS), "sto-3g"), BlockModel(FeatureHypers(**HYPERS), "sto-3g")
    solve(ours, normal_equations(ours, train, focks, batch_size=4), 1e-6)
    fit_ridge(theirs, systems_from_atoms(train), [torch.tensor(f) for f in focks], regularization=1e-6)
    for name in theirs.weights:
        torch.testing.assert_close(ours.weights[name], theirs.weights[name], rtol=1e-8, atol=1e-10)


def test_direct_fit_end_to_end_on_rattled_water():
    """Fit 10 waters, per-head regularisation chosen on 2 of the held-out ones, scored on the other 2.

    Bounds: held-out occupied MO MAE < 0.03 eV, dipole MAE < 0.01 D, Fock MAE < 5e-4 Ha (measured
    when written: 0.0052 eV, 0.0021 D, 4.9e-5 Ha; the assertion message prints the numbers)."""
    from mlhcalc.features import FeatureHypers
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.training.direct import (
        Reference,
        log_grid,
        normal_equations,
        predict_focks,
        resolve_regularization,
        score,
        select_regularization,
        solve,
        validation_sse,
    )

    train, held_out = _water_set()
    val, test = held_out[:2], held_out[2:]
    model = HamiltonianModel.create(FeatureHypers(**HYPERS), "sto-3g", periodic=False, level_of_theory="HF/STO-3G")
    block = model.block_model
    normal = normal_equations(block, train, [a.info["fock_minimal"] for a in train])
    normal_val = normal_equations(block, val, [a.info["fock_minimal"] for a in val])
    grid = log_grid(-10, -2)
    sse = validation_sse(block, normal, normal_val, grid)
    chosen = resolve_regularization(block, select_regularization(sse, grid, default=1e-6))
    for name, errors in sse.items():
        assert errors[grid.index(chosen[name])] == errors.min()
    empty = solve(block, normal, chosen)  # heads without training rows: only O–O pairs (none in water)
    assert empty and all(name.startswith("same_species_8_8") for name in empty)
    result = score([Reference.from_atoms(a) for a in test], predict_focks(block, test))
    message = str(result)
    assert result["occupied_mae_ev"] < 0.03, message
    assert result["dipole_mae_debye"] < 0.01, message
    assert result["fock_mae_ha"] < 5e-4, message
    # the bound is not trivially met: 1 % off the reference Fock is already far worse
    scaled = score([Reference.from_atoms(a) for a in test], [0.99 * a.info["fock_minimal"] for a in test])
    assert scaled["occupied_mae_ev"] > 0.1


def test_normal_equations_are_additive_and_lowdin_round_trip():
    from mlhcalc.features import FeatureHypers
    from mlhcalc.hamiltonian.model import BlockModel
    from mlhcalc.training.direct import Reference, add_normal_equations, from_lowdin, normal_equations, to_lowdin

    train, _ = _water_set()
    focks = [a.info["fock_minimal"] for a in train]
    block = BlockModel(FeatureHypers(**HYPERS), "sto-3g")
    whole = normal_equations(block, train, focks, batch_size=16)
    parts = add_normal_equations(
        normal_equations(block, train[:3], focks[:3]), normal_equations(block, train[3:], focks[3:])
    )
    assert whole.keys() == parts.keys()
    for name in whole:
        for a, b in zip(whole[name], parts[name]):
            torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-12, atol=1e-10)
    ref = Reference.from_atoms(train[0])
    lowdin = to_lowdin(ref, ref.fock)
    np.testing.assert_allclose(from_lowdin(ref, lowdin), ref.fock, atol=1e-12)
    # same spectrum as the generalised problem (F, S)
    np.testing.assert_allclose(np.linalg.eigvalsh(lowdin), ref.mo_energy, atol=1e-10)
