"""Long-range features and self-consistent-charge (SCC) electrostatics (molecules)."""

import numpy as np
import pytest
import scipy.linalg
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from equivariance import assert_equivariant, real_spherical_harmonics
from test_direct_fit import _hf_sto3g, _water_set

from mlhcalc.features import EquivariantFeatures, FeatureHypers, Irrep, atom_tensormap, systems_from_atoms
from mlhcalc.hamiltonian.electrostatics import (
    HUBBARD_U,
    SCCNotConverged,
    gamma_matrix,
    mulliken_charges,
    scc_term,
    solve_scc,
)

torch.set_num_threads(1)

WIDTHS = (1.0, 4.0)
LONG = FeatureHypers(
    species=(1, 6, 8), cutoff=4.0, max_radial=2, max_angular=2, channels=3, pair_channels=2, long_range_widths=WIDTHS
)


def test_long_range_features_by_hand():
    """Beyond the cutoff the density columns vanish but the long-range ones are the closed form
    scale · Y_λ(r̂) a^(λ+1) r^λ / (r² + a²)^(λ+1/2) of the other atom, per species and width."""
    direction = np.array([0.2, 0.9, -0.4])
    direction /= np.linalg.norm(direction)
    r_bohr = 9.0  # far outside the 4-bohr cutoff
    dimer = Atoms("CO", positions=[[0, 0, 0], r_bohr * units.Bohr * direction])
    module = EquivariantFeatures(LONG)
    features = module(systems_from_atoms(dimer))
    alone = module(systems_from_atoms(Atoms("C")))
    for lam in range(3):
        rows = features.atom_properties[Irrep(lam, 1)]
        long = rows[:, 0] == 0
        assert long.sum() == len(LONG.species) * len(WIDTHS)
        values = features.atom[Irrep(lam, 1)][0].detach().numpy()  # atom 0 (C) sees O (species index 2)
        # inside the cutoff the carbon sees only itself: its density columns are those of a lone atom
        lone = alone.atom[Irrep(lam, 1)][0].detach().numpy()
        assert np.abs(values[:, ~long] - lone[:, ~long]).max() < 1e-12 and np.abs(lone[:, long]).max() == 0
        harmonic = real_spherical_harmonics(lam, direction[None])[0]
        harmonic = harmonic / np.abs(harmonic).max()
        for channel, (species_index, width_index) in enumerate(np.ndindex(len(LONG.species), len(WIDTHS))):
            column = values[:, np.nonzero(long)[0][channel]]
            if species_index != 2:
                assert np.abs(column).max() == 0
                continue
            a = WIDTHS[width_index]
            radial = LONG.long_range_scale * a ** (lam + 1) * r_bohr**lam / (r_bohr**2 + a**2) ** (lam + 0.5)
            ratio = column @ harmonic / (harmonic @ harmonic)  # the harmonic's normalisation is a convention
            np.testing.assert_allclose(column, ratio * harmonic, atol=1e-14)
            if lam == 0:
                assert ratio == pytest.approx(radial, rel=1e-12)
            else:
                assert abs(ratio) > 0.1 * radial


def test_long_range_features_are_equivariant_and_differentiable():
    module = EquivariantFeatures(LONG)
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    assert_equivariant(
        lambda a: atom_tensormap(module(systems_from_atoms(a))),
        atoms,
        rtol=1e-10,
        checks=("rotation", "improper", "translation", "permutation"),
    )
    (system,) = systems_from_atoms(atoms, positions_requires_grad=True)
    features = module([system])
    total = sum(block[..., -len(WIDTHS) * 3 :].pow(2).sum() for block in features.atom.values())
    (gradient,) = torch.autograd.grad(total, system.positions)
    assert torch.isfinite(gradient).all() and gradient.abs().max() > 0


def test_long_range_features_refuse_periodic_cells_and_bad_widths():
    module = EquivariantFeatures(FeatureHypers(species=(14,), cutoff=4.0, long_range_widths=(2.0,)))
    with pytest.raises(ValueError, match="molecules only"):
        module(systems_from_atoms(bulk("Si", "diamond", a=5.43)))
    with pytest.raises(ValueError, match="long_range_widths"):
        FeatureHypers(long_range_widths=(1.0, -2.0))


def test_gamma_is_hubbard_on_site_and_coulomb_far_away():
    numbers = np.array([8, 1])
    near = gamma_matrix(numbers, np.array([[0.0, 0, 0], [0, 0, 1.8]]))
    assert near[0, 0] == pytest.approx(HUBBARD_U[8], rel=1e-14) and near[1, 1] == pytest.approx(HUBBARD_U[1], rel=1e-14)
    assert near[0, 1] == near[1, 0] < min(HUBBARD_U[8], HUBBARD_U[1])
    far = gamma_matrix(numbers, np.array([[0.0, 0, 0], [0, 0, 1000.0]]))
    assert far[0, 1] == pytest.approx(1e-3, rel=1e-5)
    with pytest.raises(ValueError, match=r"Hubbard U for atomic number\(s\) \[16\]"):
        gamma_matrix(np.array([16, 1]), np.zeros((2, 3)))


def _pieces(atoms):
    from mlhcalc.training.direct import Reference

    ref = Reference.from_atoms(atoms)
    return ref, gamma_matrix(ref.numbers, ref.positions)


def test_mulliken_charges_of_the_aufbau_density_equal_pyscf():
    """The charges the SCC loop uses equal PySCF's Mulliken analysis of the aufbau density of the same
    Fock matrix (PySCF's own eigensolver, occupations and population code) to 1e-10 e."""
    from pyscf import scf

    from mlhcalc.structure import ao_atom_map, to_mole

    mol = to_mole(molecule("CH3CHO"))
    mf = scf.RHF(mol)
    mf.kernel()
    fock, overlap = mf.get_fock(), mf.get_ovlp()
    mo_energy, mo_coeff = mf.eig(fock, overlap)
    _, expected = mf.mulliken_pop(dm=mf.make_rdm1(mo_coeff, mf.get_occ(mo_energy, mo_coeff)), verbose=0)
    charges = mulliken_charges(fock, overlap, mol.nelectron // 2, ao_atom_map(mol), mol.atom_charges())
    assert np.abs(charges - expected).max() < 1e-10 and np.abs(expected).max() > 0.1


def test_scc_recovers_the_reference_from_its_learned_part():
    """The fixed point of H_ML + H_es(q(H)), with H_ML = F − H_es(q_F), is F itself (≤ 1e-8 Ha),
    started from zero charges."""
    from mlhcalc.training.direct import from_scc, to_scc_target

    atoms = _hf_sto3g(molecule("HCOOH"))
    ref, gamma = _pieces(atoms)
    charges = mulliken_charges(ref.fock, ref.overlap, ref.nocc, ref.ao_atom, ref.numbers)
    assert abs(charges.sum()) < 1e-10 and np.abs(charges).max() > 0.1  # neutral, polar
    learned = to_scc_target(ref, ref.fock)
    assert np.abs(learned - ref.fock).max() > 1e-3  # the term is not negligible
    hamiltonian, q, iterations = solve_scc(
        learned, ref.overlap, gamma, ref.ao_atom, ref.numbers, ref.nocc, tolerance=1e-11
    )
    assert np.abs(hamiltonian - ref.fock).max() < 1e-8
    assert np.abs(q - charges).max() < 1e-9 and iterations > 3
    assert np.abs(from_scc(ref, learned) - ref.fock).max() < 1e-6  # default tolerance 1e-8 e
    np.testing.assert_allclose(scc_term(q, gamma, ref.overlap, ref.ao_atom), ref.fock - learned, atol=1e-8)
    with pytest.raises(SCCNotConverged, match="not converged after 2 iterations"):  # 1 Anderson + 1 linear
        solve_scc(learned, ref.overlap, gamma, ref.ao_atom, ref.numbers, ref.nocc, max_iterations=2)
    _, _, steps = solve_scc(
        learned, ref.overlap, gamma, ref.ao_atom, ref.numbers, ref.nocc, max_iterations=2, strict=False
    )
    assert steps == 2


def test_scc_model_fits_saves_and_predicts_self_consistently(tmp_path):
    """A direct fit with electrostatics='scc' on rattled water: held-out errors within the plain
    fit's bounds, a saved/loaded model that keeps the option, and a predicted H whose electrostatic
    term is that of its own Mulliken charges; the calculator returns the same levels, and its Born
    charges and dα/dR equal central differences."""
    from mlhcalc.calculator import MLHamiltonian
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.training.direct import (
        Reference,
        from_scc,
        normal_equations,
        predict_focks,
        score,
        solve,
        to_scc_target,
    )

    train, held_out = _water_set()
    hypers = FeatureHypers(
        species=(1, 8), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2, long_range_widths=(2.0,)
    )
    model = HamiltonianModel.create(hypers, "sto-3g", periodic=False, level_of_theory="HF/STO-3G", electrostatics="scc")
    refs = [Reference.from_atoms(a) for a in train]
    solve(model.block_model, normal_equations(model.block_model, train, [to_scc_target(r, r.fock) for r in refs]), 1e-8)
    test_refs = [Reference.from_atoms(a) for a in held_out]
    focks = [from_scc(r, f) for r, f in zip(test_refs, predict_focks(model.block_model, held_out))]
    result = score(test_refs, focks)
    assert result["occupied_mae_ev"] < 0.03 and result["dipole_mae_debye"] < 0.01, str(result)

    model.save(tmp_path / "scc")
    loaded = HamiltonianModel.load(tmp_path / "scc")
    assert loaded.block_model.electrostatics == "scc" and loaded.block_model.features.hypers.long_range_widths == (2.0,)
    atoms = held_out[0]
    hamiltonian = loaded.predict(atoms).hamiltonian.numpy()
    np.testing.assert_allclose(hamiltonian, focks[0], atol=1e-7)
    ref, gamma = _pieces(atoms)
    learned = predict_focks(loaded.block_model, [atoms])[0]
    q = mulliken_charges(hamiltonian, ref.overlap, ref.nocc, ref.ao_atom, ref.numbers)
    np.testing.assert_allclose(hamiltonian - learned, scc_term(q, gamma, ref.overlap, ref.ao_atom), atol=1e-8)

    calc_atoms = Atoms(atoms.numbers, atoms.positions)
    calc_atoms.calc = MLHamiltonian(model=str(tmp_path / "scc"))
    levels = np.sort(np.ravel(calc_atoms.calc.get_property("eigenvalues", calc_atoms)))  # eV
    np.testing.assert_allclose(levels, scipy.linalg.eigvalsh(hamiltonian, ref.overlap) * units.Hartree, atol=1e-6)

    # position derivatives through the self-consistent charges (S(R), γ(R), implicit q*), against
    # central differences of the calculator's own dipole and α (SCC solved to 1e-10 e)
    born = calc_atoms.calc.get_born_effective_charges(calc_atoms)
    d_alpha = calc_atoms.calc.get_polarizability_derivatives(calc_atoms)
    step, probe, numeric = 1e-4, calc_atoms.copy(), np.zeros_like(born)
    numeric_alpha = np.zeros_like(d_alpha)
    probe.calc = MLHamiltonian(model=str(tmp_path / "scc"))
    for a in range(len(probe)):
        for j in range(3):
            values = []
            for sign in (1, -1):
                probe.positions[a, j] = calc_atoms.positions[a, j] + sign * step
                values.append((probe.get_dipole_moment(), probe.calc.get_polarizability(probe)))
            probe.positions[a, j] = calc_atoms.positions[a, j]
            numeric[a, :, j] = (values[0][0] - values[1][0]) / (2 * step)
            numeric_alpha[a, :, :, j] = (values[0][1] - values[1][1]) / (2 * step)
    np.testing.assert_allclose(born, numeric, atol=1e-5)
    np.testing.assert_allclose(d_alpha, numeric_alpha, atol=1e-5)
    np.testing.assert_allclose(born.sum(axis=0), np.zeros((3, 3)), atol=1e-8)  # acoustic sum rule


def _finite_difference(function, h, direction, step=1e-5):
    return (function(h + step * direction) - function(h - step * direction)) / (2 * step)


def test_aufbau_density_gradient_matches_finite_differences():
    from mlhcalc.hamiltonian.electrostatics import aufbau_density

    ref, _ = _pieces(_hf_sto3g(molecule("CH4")))  # degenerate occupied levels (t2): the backward must cope
    rng = np.random.default_rng(1)
    weights = torch.from_numpy(rng.normal(size=ref.fock.shape))
    direction = rng.normal(size=ref.fock.shape)
    direction = torch.from_numpy(direction + direction.T)
    overlap = torch.from_numpy(ref.overlap)

    def loss(h):
        return float((aufbau_density(h, overlap, ref.nocc) * weights).sum())

    h = torch.from_numpy(ref.fock).requires_grad_(True)
    (aufbau_density(h, overlap, ref.nocc) * weights).sum().backward()
    analytic = float((h.grad * direction).sum())
    numeric = _finite_difference(loss, torch.from_numpy(ref.fock), direction)
    assert torch.isfinite(h.grad).all()
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_scc_hamiltonian_gradient_is_the_self_consistent_one():
    """d/dH_ML of a function of the self-consistent H, from the implicit-function derivative, against finite
    differences of the converged solution (tight SCC); the value is the self-consistent H."""
    from mlhcalc.hamiltonian.electrostatics import scc_hamiltonian
    from mlhcalc.training.direct import to_scc_target

    atoms = _hf_sto3g(molecule("HCOOH"))
    ref, gamma = _pieces(atoms)
    learned = to_scc_target(ref, ref.fock)
    rng = np.random.default_rng(2)
    weights = torch.from_numpy(rng.normal(size=ref.fock.shape))
    direction = rng.normal(size=ref.fock.shape)
    direction = torch.from_numpy(direction + direction.T)
    args = (ref.overlap, gamma, ref.ao_atom, ref.numbers, ref.nocc)

    def loss(h):
        full, _, _ = solve_scc(h.numpy(), *args, tolerance=1e-12)
        return float((torch.from_numpy(full) * weights).sum())

    h = torch.from_numpy(learned).requires_grad_(True)
    full, _ = scc_hamiltonian(h, *args)
    assert float((full.detach() - torch.from_numpy(ref.fock)).abs().max()) < 1e-6
    (full * weights).sum().backward()
    analytic = float((h.grad * direction).sum())
    numeric = _finite_difference(loss, torch.from_numpy(learned), direction)
    assert analytic == pytest.approx(numeric, rel=1e-7)
    # the charge response matters: without it (charges frozen) the derivative is different
    frozen = float((weights * direction).sum())
    assert abs(frozen - numeric) > 1e-3 * abs(numeric)


def test_overlap_and_density_derivatives_with_respect_to_the_overlap_and_positions():
    """dS/dR from <∇μ|ν> and the S-dependence of the aufbau density, against central differences."""
    from mlhcalc.hamiltonian.electrostatics import aufbau_density, overlap_of_positions
    from mlhcalc.structure import positions_bohr, to_mole

    atoms = molecule("H2CO")
    atoms.positions += np.random.default_rng(3).normal(scale=0.05, size=atoms.positions.shape)
    rng = np.random.default_rng(4)
    mol = to_mole(atoms)
    weights = torch.from_numpy(rng.normal(size=(mol.nao_nr(),) * 2))
    positions = torch.from_numpy(positions_bohr(atoms)).requires_grad_(True)
    (overlap_of_positions(positions, mol) * weights).sum().backward()
    shift = rng.normal(size=positions.shape)
    numeric = []
    for sign in (1, -1):
        moved = mol.set_geom_(positions.detach().numpy() + sign * 1e-5 * shift, unit="Bohr", inplace=False)
        numeric.append(float((torch.from_numpy(moved.intor("int1e_ovlp")) * weights).sum()))
    assert float((positions.grad * torch.from_numpy(shift)).sum()) == pytest.approx(
        (numeric[0] - numeric[1]) / 2e-5, rel=1e-7
    )

    ref, _ = _pieces(_hf_sto3g(molecule("CH4")))
    direction = rng.normal(size=ref.overlap.shape)
    direction = torch.from_numpy(0.01 * (direction + direction.T))
    overlap = torch.from_numpy(ref.overlap).requires_grad_(True)
    (aufbau_density(torch.from_numpy(ref.fock), overlap, ref.nocc) * weights[:9, :9]).sum().backward()

    def loss(s):
        return float((aufbau_density(torch.from_numpy(ref.fock), s, ref.nocc) * weights[:9, :9]).sum())

    numeric = _finite_difference(loss, torch.from_numpy(ref.overlap), direction, step=1e-4)
    assert float((overlap.grad * direction).sum()) == pytest.approx(numeric, rel=1e-6)
