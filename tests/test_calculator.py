"""MLHamiltonian as an ASE calculator: units against PySCF, symmetry, autodiff derivatives against
finite differences, sum rules, caching, errors, k-points, and ASE's DOS / bandgap / Infrared / Raman."""

import functools
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.units import Bohr, Debye, Hartree
from reference_matrices import kinetic_stack
from scipy.spatial.transform import Rotation

import mlhcalc.calculator as calculator_module
from mlhcalc import MLHamiltonian
from mlhcalc.calculator import PairedCalculator, StaticPolarizability, resolve_kpoints
from mlhcalc.features import FeatureHypers, systems_from_atoms
from mlhcalc.hamiltonian import fit_ridge
from mlhcalc.model import HamiltonianModel
from mlhcalc.spectra import harmonic_ir, harmonic_raman
from mlhcalc.structure import lattice_bohr, to_cell, to_mole

torch.set_num_threads(1)

WATER_HYPERS = FeatureHypers(species=(1, 8), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)
SILICON_HYPERS = FeatureHypers(species=(14,), cutoff=9.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)


def rattled_water(rng, scale=0.05):
    atoms = molecule("H2O")
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    return atoms


def rhf_fock(atoms, charge=0):
    from pyscf import scf

    mf = scf.RHF(to_mole(atoms, "sto-3g", charge))
    mf.conv_tol, mf.conv_tol_grad, mf.verbose = 1e-12, 1e-8, 0
    mf.kernel()
    return mf


@functools.cache
def water_model() -> HamiltonianModel:
    """Ridge fit to RHF/STO-3G Fock matrices of rattled waters (2 s; exactly equivariant)."""
    rng = np.random.default_rng(0)
    structures = [rattled_water(rng) for _ in range(6)]
    focks = [torch.tensor(rhf_fock(atoms).get_fock()) for atoms in structures]
    model = HamiltonianModel.create(
        WATER_HYPERS, "sto-3g", periodic=False, level_of_theory="RHF/STO-3G Fock (test)", metrics={"fock_mae_ha": 0.01}
    )
    fit_ridge(model.block_model, systems_from_atoms(structures), focks)
    return model


@functools.cache
def silicon_model() -> HamiltonianModel:
    """Periodic toy: the gth-szv kinetic matrix of rattled Si2 cells as 'Hamiltonian' (insulating on a
    3×3×3 mesh with a 9-bohr cutoff)."""
    rng = np.random.default_rng(12)
    translations = np.array([(a, b, c) for a in range(-2, 3) for b in range(-2, 3) for c in range(-2, 3)])
    train = []
    for _ in range(4):
        atoms = bulk("Si", "diamond", a=5.43)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        train.append(atoms)
    model = HamiltonianModel.create(
        SILICON_HYPERS, "gth-szv", periodic=True, level_of_theory="gth-szv kinetic matrix (test)", pseudo="gth-pade"
    )
    stacks = [kinetic_stack(atoms, translations) for atoms in train]
    fit_ridge(model.block_model, systems_from_atoms(train), stacks, translations=[translations] * len(train))
    return model


@pytest.fixture()
def water():
    atoms = rattled_water(np.random.default_rng(42), scale=0.03)
    atoms.calc = MLHamiltonian(water_model())
    return atoms


def exact_fock(monkeypatch, charge=0):
    """Make the calculator's model Hamiltonian PySCF's converged RHF Fock matrix (an exact 'model')."""
    scfs = {}

    def hamiltonians(model, atoms_list, charges=None):
        result = []
        for atoms in atoms_list:
            mf = rhf_fock(atoms, charge)
            scfs[len(scfs)] = mf
            result.append((mf.get_fock(), None))
        return result

    monkeypatch.setattr(calculator_module, "_hamiltonians", hamiltonians)
    return scfs


# ----------------------------------------------------------------------------- units and conventions


def test_exact_fock_reproduces_pyscf_in_ase_units(monkeypatch):
    """Eigenvalues (eV), dipole (e·Å), non-self-consistent α (Å³) and Mulliken charges (e) of PySCF's own
    Fock matrix, against PySCF's values converted with ASE's constants."""
    from pyscf.prop.polarizability.rhf import Polarizability

    scfs = exact_fock(monkeypatch)
    atoms = rattled_water(np.random.default_rng(1))
    calc = MLHamiltonian(water_model())
    eigenvalues = calc.get_property("eigenvalues", atoms)
    mf = scfs[0]
    fock, overlap = mf.get_fock(), mf.get_ovlp()
    from scipy.linalg import eigh

    np.testing.assert_allclose(eigenvalues[0, 0], eigh(fock, overlap, eigvals_only=True) * Hartree, atol=1e-8)
    dipole_debye = mf.dip_moment(unit="Debye", verbose=0)
    np.testing.assert_allclose(calc.get_dipole_moment(atoms) / Debye, dipole_debye, atol=1e-5, rtol=1e-6)
    alpha_au = Polarizability(mf).polarizability(with_cphf=False)
    np.testing.assert_allclose(calc.get_polarizability(atoms), alpha_au * Bohr**3, atol=1e-8)
    _, mulliken = mf.mulliken_pop(verbose=0)
    np.testing.assert_allclose(calc.get_charges(atoms), mulliken, atol=1e-9)
    assert eigenvalues.shape == (1, 1, 7)
    np.testing.assert_array_equal(calc.get_occupation_numbers(), [2, 2, 2, 2, 2, 0, 0])
    homo, lumo = calc.get_homo_lumo()
    assert calc.get_fermi_level() == pytest.approx(0.5 * (homo + lumo))
    np.testing.assert_array_equal(calc.get_ibz_k_points(), [[0, 0, 0]])
    np.testing.assert_array_equal(calc.get_k_point_weights(), [1.0])


def test_charged_molecule_warns_and_takes_the_dipole_about_the_centre_of_mass(monkeypatch):
    scfs = exact_fock(monkeypatch, charge=-1)
    atoms = Atoms("OH", positions=[[0, 0, 0.1], [0.2, 0.1, 1.05]])
    atoms.info["charge"] = -1
    calc = MLHamiltonian(water_model())
    with pytest.warns(UserWarning, match="neutral molecules only"):
        dipole = calc.get_dipole_moment(atoms)
    centre = atoms.get_center_of_mass() / Bohr
    expected = scfs[0].dip_moment(unit="AU", origin=centre, verbose=0) * Bohr
    np.testing.assert_allclose(dipole, expected, atol=1e-8)
    assert calc.get_charges(atoms).sum() == pytest.approx(-1, abs=1e-10)


def test_born_charges_of_an_ion_obey_the_sum_rule_with_the_origin_fixed():
    atoms = Atoms("OH", positions=[[0, 0, 0.1], [0.2, 0.1, 1.05]])
    calc = MLHamiltonian(water_model(), charge=-1)
    with pytest.warns(UserWarning):
        born = calc.get_property("born_effective_charges", atoms)
    np.testing.assert_allclose(born.sum(axis=0), -np.eye(3), atol=1e-9)


def test_calculator_charge_overrides_atoms_info_and_info_change_invalidates():
    atoms = Atoms("OH", positions=[[0, 0, 0.1], [0.2, 0.1, 1.05]])
    atoms.info["charge"] = 1  # 8 electrons
    calc = MLHamiltonian(water_model(), charge=-1)  # 10 electrons
    with pytest.warns(UserWarning):
        assert calc.get_charges(atoms).sum() == pytest.approx(-1, abs=1e-10)
    calc = MLHamiltonian(water_model())
    with pytest.warns(UserWarning):
        assert calc.get_charges(atoms).sum() == pytest.approx(1, abs=1e-10)
        atoms.info["charge"] = -1
        assert calc.get_charges(atoms).sum() == pytest.approx(-1, abs=1e-10)


def test_numpy_padding_equals_the_qm_layers_pad_system():
    from mlhcalc.qm.eigen import aufbau_occupations
    from mlhcalc.qm.molecular import pad_system

    mol = to_mole(molecule("H2O"))
    arrays = (mol.intor("int1e_kin"), mol.intor("int1e_ovlp"), mol.intor("int1e_r", comp=3), aufbau_occupations(10, 7))
    ours = calculator_module._MolecularQM.pad(16, *arrays)
    for mine, reference in zip(ours, pad_system(16, *arrays)):
        np.testing.assert_array_equal(mine, np.asarray(reference))


# ----------------------------------------------------------------------------- symmetry


def test_dipole_rotates_as_a_vector_and_polarizability_as_a_tensor(water):
    rotation = Rotation.from_euler("zyx", [0.7, -1.1, 2.3]).as_matrix()
    dipole, alpha = water.get_dipole_moment(), water.calc.get_polarizability()
    eigenvalues = water.calc.get_eigenvalues()
    turned = water.copy()
    turned.positions = water.positions @ rotation.T + [1.0, -2.0, 0.5]  # neutral: origin-independent
    calc = MLHamiltonian(water_model())
    np.testing.assert_allclose(calc.get_dipole_moment(turned), rotation @ dipole, atol=1e-8 * np.linalg.norm(dipole))
    scale = np.abs(alpha).max()
    np.testing.assert_allclose(calc.get_polarizability(turned), rotation @ alpha @ rotation.T, atol=1e-8 * scale)
    np.testing.assert_allclose(calc.get_eigenvalues(), eigenvalues, atol=1e-8)


# ----------------------------------------------------------------------------- derivatives


def test_autodiff_derivatives_equal_central_finite_differences(water):
    born = water.calc.get_born_effective_charges(water)
    d_alpha = water.calc.get_polarizability_derivatives(water)
    assert born.shape == (3, 3, 3) and d_alpha.shape == (3, 3, 3, 3)
    np.testing.assert_array_equal(water.calc.get_dipole_derivatives(), born)
    step = 1e-4  # Å
    probe, calc = water.copy(), MLHamiltonian(water_model())
    numeric_born, numeric_alpha = np.zeros_like(born), np.zeros_like(d_alpha)
    for a in range(3):
        for j in range(3):
            values = []
            for sign in (1, -1):
                probe.positions[a, j] = water.positions[a, j] + sign * step
                values.append((calc.get_dipole_moment(probe), calc.get_polarizability(probe)))
            probe.positions[a, j] = water.positions[a, j]
            numeric_born[a, :, j] = (values[0][0] - values[1][0]) / (2 * step)
            numeric_alpha[a, :, :, j] = (values[0][1] - values[1][1]) / (2 * step)
    # Z* ~ 0.1-0.6 e and dα/dR ~ 1 Å²: an index or sign error would be off by that much
    np.testing.assert_allclose(born, numeric_born, atol=1e-6)
    np.testing.assert_allclose(d_alpha, numeric_alpha, atol=1e-6)
    np.testing.assert_allclose(born.sum(axis=0), np.zeros((3, 3)), atol=1e-10)  # acoustic sum rule, q = 0
    np.testing.assert_allclose(d_alpha.sum(axis=0), np.zeros((3, 3, 3)), atol=1e-10)  # α is translation invariant


# ----------------------------------------------------------------------------- ASE protocol


def test_results_are_cached_until_the_atoms_change(water, monkeypatch):
    calls = []
    original = calculator_module._hamiltonians

    def counting(model, atoms_list, charges=None):
        calls.append(len(atoms_list))
        return original(model, atoms_list, charges)

    monkeypatch.setattr(calculator_module, "_hamiltonians", counting)
    calc = water.calc
    water.get_dipole_moment()
    calc.get_polarizability(water)
    water.get_charges()
    calc.get_eigenvalues()
    assert calls == [1]
    assert "born_effective_charges" not in calc.results and "polarizability_derivatives" not in calc.results
    water.positions[0, 0] += 0.01
    water.get_dipole_moment()
    assert calls == [1, 1]
    water.get_dipole_moment()
    assert calls == [1, 1]
    # a direct calculate() with other atoms recomputes instead of keeping the last results
    moved = water.copy()
    moved.positions[1, 2] += 0.05
    calc.calculate(moved, ["dipole"])
    assert calls == [1, 1, 1]
    dipole_moved = calc.results["dipole"].copy()
    assert np.abs(dipole_moved - water.get_dipole_moment()).max() > 1e-4  # water: recomputed again
    assert calls == [1, 1, 1, 1]
    calc.calculate(moved, ["dipole"])
    calc.calculate(moved, ["dipole"])  # the same atoms: cached
    assert calls == [1, 1, 1, 1, 1]
    np.testing.assert_array_equal(calc.results["dipole"], dipole_moved)


def test_energy_and_forces_point_to_a_force_calculator(water):
    for getter in (water.get_potential_energy, water.get_forces, water.get_stress):
        with pytest.raises(PropertyNotImplementedError, match="PairedCalculator"):
            getter()


def test_model_can_be_given_by_directory(tmp_path):
    water_model().save(tmp_path / "toy")
    atoms = molecule("H2O")
    expected = MLHamiltonian(water_model()).get_dipole_moment(atoms)
    np.testing.assert_allclose(MLHamiltonian(str(tmp_path / "toy")).get_dipole_moment(atoms), expected, atol=1e-12)


@pytest.mark.parametrize(
    ("atoms", "match"),
    [
        (molecule("CH4"), "atom 0 is C, which this model does not cover"),
        (Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]), "odd electron counts"),
        (Atoms("H2O", positions=[[0, 0, 0], [0, 0.76, 0.59], [0, -0.76, 0.59]], info={"spin": 2}), "closed-shell"),
        (Atoms("H2O", positions=[[0, 0, 0], [0, 0.76, 0.59], [0, -0.76, 0.59]], cell=[6] * 3, pbc=True), "periodic"),
    ],
)
def test_unsupported_input_is_a_clear_error(atoms, match):
    with pytest.raises(ValueError, match=match):
        MLHamiltonian(water_model()).get_dipole_moment(atoms)


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no model 'nonexistent'"):
        MLHamiltonian("nonexistent")


# ----------------------------------------------------------------------------- periodic


def test_periodic_bands_equal_the_bloch_sum_with_pyscf_overlaps():
    """Independent route: H(k) = Σ_T e^{ik·T} H(T) by hand from the model's H(T), S(k) from PySCF's
    lattice-summed pbc_intor, k from PySCF's get_abs_kpts."""
    from scipy.linalg import eigh

    model = silicon_model()
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.03, -0.02, 0.01]
    kfrac = np.array([[0, 0, 0], [0.5, 0, 0], [0.25, 0.5, 0.125]])
    calc = MLHamiltonian(model, kpts=kfrac)
    bands = calc.get_property("eigenvalues", atoms)
    prediction = model.predict(atoms)
    cell = to_cell(atoms, "gth-szv")
    kpts = cell.get_abs_kpts(kfrac)
    translations = prediction.translations @ lattice_bohr(atoms)
    h_t = prediction.hamiltonian.detach().numpy()
    overlap_k = cell.pbc_intor("int1e_ovlp", kpts=kpts)
    for k, kpt in enumerate(kpts):
        h_k = np.einsum("t,tij->ij", np.exp(1j * translations @ kpt), h_t)
        np.testing.assert_allclose(bands[0, k], eigh(h_k, overlap_k[k], eigvals_only=True) * Hartree, atol=1e-7)
    assert bands.shape == (1, 3, 8)
    assert calc.get_charges(atoms).sum() == pytest.approx(0, abs=1e-8)


def test_kpoint_forms_follow_ase_conventions():
    atoms = bulk("Si", "diamond", a=5.43)
    has_gamma = lambda k: bool((np.abs(k).sum(axis=1) < 1e-12).any())  # noqa: E731
    monkhorst_pack = resolve_kpoints((2, 2, 2), atoms)
    assert len(monkhorst_pack) == 8 and not has_gamma(monkhorst_pack)
    np.testing.assert_array_equal(resolve_kpoints(np.array([2, 2, 2]), atoms), monkhorst_pack)
    gamma_centred = resolve_kpoints({"size": (2, 2, 2), "gamma": True}, atoms)
    assert len(gamma_centred) == 8 and has_gamma(gamma_centred)
    path = atoms.cell.bandpath("GXL", npoints=15)
    np.testing.assert_array_equal(resolve_kpoints(path, atoms), path.kpts)
    np.testing.assert_array_equal(resolve_kpoints([[0, 0, 0], [0.5, 0.5, 0.5]], atoms), [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="cannot read kpts"):
        resolve_kpoints("many", atoms)
    calc = MLHamiltonian(silicon_model(), kpts=path)
    calc.get_property("eigenvalues", atoms)
    np.testing.assert_allclose(calc.get_k_point_weights(), np.full(15, 1 / 15))
    assert calc.band_structure().energies.shape == (1, 15, 8)


def test_dos_bandgap_and_fermi_level_work_through_ase():
    from ase.dft.bandgap import bandgap
    from ase.dft.dos import DOS

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = MLHamiltonian(silicon_model(), kpts={"size": (3, 3, 3), "gamma": True})
    calc = atoms.calc
    calc.get_property("eigenvalues", atoms)
    vbm, cbm = calc.get_homo_lumo()
    assert cbm > vbm  # the toy is an insulator on this mesh
    gap, valence, conduction = bandgap(calc, output=None)
    assert gap == pytest.approx(cbm - vbm, abs=1e-10)
    assert vbm < calc.get_fermi_level() < cbm
    dos = DOS(calc, width=0.1, npts=4001)
    spacing = dos.get_energies()[1] - dos.get_energies()[0]
    assert dos.get_dos().sum() * spacing == pytest.approx(2 * 8, rel=1e-3)  # 2 spins × 8 bands
    energies, own = calc.get_dos(width=0.05, npts=8001)
    below = energies < calc.get_fermi_level()
    electrons = own[below].sum() * (energies[1] - energies[0])
    assert electrons == pytest.approx(8.0, abs=0.02)  # 8 valence electrons in Si2 (gth-pade)
    for name in ("dipole", "born_effective_charges"):
        with pytest.raises(PropertyNotImplementedError, match="Berry-phase"):
            calc.get_property(name, atoms)


def test_molecule_given_to_a_periodic_model_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a 3D-periodic cell"):
        MLHamiltonian(silicon_model()).get_property("eigenvalues", Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]]))


def test_periodic_polarizability_and_dielectric_tensor_are_the_qm_layers_in_ase_units():
    """α per cell (Å³) = mlhcalc.qm.periodic_response on the model's H(T) × Bohr³; ε∞ = 1 + 4π α/V with α
    and V both in Å³; computed only when asked, then cached; symmetric positive definite (a rattled cell)."""
    from mlhcalc.qm.lattice import kpts_cartesian, lattice_translations, overlap_cutoff_bohr
    from mlhcalc.qm.periodic import overlap_images
    from mlhcalc.qm.periodic_response import cell_polarizability, position_images
    from mlhcalc.structure import positions_bohr

    model = silicon_model()
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.04, -0.02, 0.03]
    calc = MLHamiltonian(model, kpts={"size": (3, 3, 3), "gamma": True})
    calc.get_property("eigenvalues", atoms)
    assert "polarizability" not in calc.results and "dielectric_tensor" not in calc.results
    alpha = calc.get_polarizability(atoms)
    assert "dielectric_tensor" in calc.results  # one response calculation gives both
    epsilon = calc.get_dielectric_tensor()

    prediction = model.predict(atoms)
    cell, lattice = to_cell(atoms, "gth-szv"), lattice_bohr(atoms)
    _, translations = lattice_translations(lattice, positions_bohr(atoms), overlap_cutoff_bohr(cell))
    alpha_au = cell_polarizability(
        prediction.hamiltonian.detach().numpy(),
        prediction.translations @ lattice,
        overlap_images(cell, translations),
        position_images(cell, translations),
        translations,
        kpts_cartesian(resolve_kpoints({"size": (3, 3, 3), "gamma": True}, atoms), lattice),
        8,
    )
    np.testing.assert_allclose(alpha, np.asarray(alpha_au) * Bohr**3, rtol=1e-10)
    np.testing.assert_allclose(epsilon, np.eye(3) + 4 * np.pi * alpha / atoms.get_volume(), rtol=1e-10)
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-12)
    assert np.linalg.eigvalsh(alpha).min() > 0 and np.linalg.eigvalsh(epsilon).min() > 1
    cached = calc.results["polarizability"]
    calc.get_polarizability(atoms)
    assert calc.results["polarizability"] is cached  # not recomputed until the atoms change


def test_periodic_response_needs_a_uniform_mesh_and_a_cell():
    atoms = bulk("Si", "diamond", a=5.43)
    for kpts in (atoms.cell.bandpath("GXL", npoints=10), [[0, 0, 0], [0.5, 0, 0], [0.25, 0.5, 0]]):
        with pytest.raises(ValueError, match="full uniform k-mesh"):
            MLHamiltonian(silicon_model(), kpts=kpts).get_dielectric_tensor(atoms)
    monkhorst_pack = MLHamiltonian(silicon_model(), kpts=(2, 2, 2)).get_dielectric_tensor(atoms)  # shifted mesh: fine
    assert monkhorst_pack[0, 0] > 1
    with pytest.raises(PropertyNotImplementedError, match="periodic cell"):
        MLHamiltonian(water_model()).get_property("dielectric_tensor", molecule("H2O"))


# ----------------------------------------------------------------------------- vibrational spectra


class HarmonicSprings(Calculator):
    """E = ½ k Σ_{i<j} (r_ij − r0_ij)²: a cheap force field with the reference geometry as minimum."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference: Atoms, k: float = 40.0):
        super().__init__()
        self.r0 = reference.get_all_distances()
        self.k = k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        vectors = self.atoms.positions[None, :, :] - self.atoms.positions[:, None, :]  # r_j - r_i
        distances = np.linalg.norm(vectors, axis=-1) + np.eye(len(self.atoms))
        stretch = np.triu(distances - self.r0 - np.eye(len(self.atoms)), 1)
        self.results["energy"] = 0.5 * self.k * (stretch**2).sum()
        pull = self.k * (stretch + stretch.T)[:, :, None] * vectors / distances[:, :, None]
        self.results["forces"] = pull.sum(axis=1)


def test_ase_infrared_with_a_paired_calculator_agrees_with_autodiff_intensities(water, tmp_path):
    from ase.vibrations import Infrared

    electronic = water.calc
    water.calc = PairedCalculator(forces=HarmonicSprings(water), electronic=electronic)
    infrared = Infrared(water, name=str(tmp_path / "ir"), delta=0.005)
    infrared.run()
    wavenumbers = infrared.get_frequencies().real
    hessian = infrared.get_vibrations().get_hessian_2d()
    ours, intensities = harmonic_ir(hessian, water.get_masses(), electronic.get_dipole_derivatives(water))
    modes = wavenumbers > 100  # the 3 vibrations; the 6 rigid-body modes are ~0
    assert modes.sum() == 3
    np.testing.assert_allclose(ours[modes], wavenumbers[modes], rtol=1e-9)
    # finite differences of step δ are off by O(δ²) ~ 1e-4 relative; a unit slip would be a factor
    scale = infrared.intensities[modes].max()
    np.testing.assert_allclose(intensities[modes], infrared.intensities[modes], rtol=1e-3, atol=1e-4 * scale)
    assert water.calc.get_polarizability().shape == (3, 3)  # delegated to the electronic calculator


def test_ase_static_raman_with_the_polarizability_adapter_agrees_with_autodiff_activities(water, tmp_path):
    from ase.vibrations.placzek import PlaczekStatic
    from ase.vibrations.raman import StaticRamanCalculator

    electronic = water.calc
    water.calc = PairedCalculator(forces=HarmonicSprings(water), electronic=electronic)
    name = str(tmp_path / "raman")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StaticRamanCalculator(water, StaticPolarizability, exkwargs={"calc": electronic}, name=name, delta=0.005).run()
        placzek = PlaczekStatic(water, name=name, delta=0.005)  # its own Vibrations needs the same step
        activities_ase = placzek.get_absolute_intensities()
        wavenumbers = placzek.get_energies().real / 1.239841984e-4  # eV → cm⁻¹
    hessian = placzek.vibrations.get_vibrations().get_hessian_2d()
    ours, activities = harmonic_raman(hessian, water.get_masses(), electronic.get_polarizability_derivatives(water))
    modes = wavenumbers > 100
    np.testing.assert_allclose(ours[modes], wavenumbers[modes], rtol=1e-5)
    np.testing.assert_allclose(activities[modes], activities_ase[modes], rtol=1e-3, atol=1e-4 * activities.max())
