"""Periodic direct fit (mlhcalc.training.direct_periodic): Wigner–Seitz targets inside the feature
cutoff, ridge fit, band energies of the prediction, and the calculator serving the fitted model.

Stand-in labels: the exact gth-szv kinetic-energy matrix T(k) and overlap S(k) of rattled Si2 cells
on the Γ-centred 2×2×2 mesh (PySCF ``pbc_intor``, < 1 s), stored under the keys of real silicon
labels (``hk_minimal``, ``sk_minimal``, ``bands_minimal``, ``kpts``, ``kpts_frac``, ``kmesh``, ``nocc``). The
2×2×2 supercell holds bonds up to ~7 bohr as unique Wigner–Seitz images, so the model's cutoff is 6 bohr
(nearest neighbours at 4.4 bohr; the second shell at 7.3 bohr is beyond it).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from ase.build import bulk
from ase.units import Hartree
from scipy.spatial.transform import Rotation

import mlhcalc.qm  # noqa: F401  (float64 JAX, PySCFAD config)
from mlhcalc.calculator import MLHamiltonian
from mlhcalc.features import FeatureHypers, systems_from_atoms
from mlhcalc.hamiltonian.blocks import decompose
from mlhcalc.hamiltonian.model import BlockModel, model_layouts
from mlhcalc.model import HamiltonianModel
from mlhcalc.qm.lattice import opposite_translation_index
from mlhcalc.structure import to_cell
from mlhcalc.training import direct, direct_periodic, metrics

MESH = (2, 2, 2)
HYPERS = FeatureHypers(species=(14,), cutoff=6.0)
SHIFT = -0.25  # hartree: the model fits T − μS and the bands get μ back


def kinetic_labelled_cell(seed: int, split: str, rattle: float = 0.05, a: float = 5.43, noise: float = 0.0):
    """``noise``: a random symmetric matrix of that size (hartree) added to the on-site blocks, like the
    ~1e-11 Ha numerical noise of PySCF's H(k)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=a)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    cell = to_cell(atoms, "gth-szv")
    kpts = cell.make_kpts(MESH)
    perturbation = noise * rng.normal(size=(8, 8)) * np.kron(np.eye(2), np.ones((4, 4)))
    hk = np.asarray(cell.pbc_intor("int1e_kin", kpts=kpts)) + (perturbation + perturbation.T)[None]
    sk = np.asarray(cell.pbc_intor("int1e_ovlp", kpts=kpts))
    bands = np.array([scipy.linalg.eigh(h, s, eigvals_only=True) for h, s in zip(hk, sk)])
    atoms.info.update(
        name=f"kinetic-{seed}", split=split, hk_minimal=hk, sk_minimal=sk, bands_minimal=bands,
        kpts=np.asarray(kpts), kpts_frac=cell.get_scaled_kpts(kpts), kmesh=np.array(MESH), nocc=4,
    )  # fmt: skip
    return atoms


@pytest.fixture(scope="module")
def fitted():
    cells = [kinetic_labelled_cell(seed, "train" if seed < 3 else "val") for seed in range(4)]
    refs = [direct_periodic.CellReference.from_atoms(atoms, overlap_shift=SHIFT) for atoms in cells]
    model = HamiltonianModel.create(
        HYPERS,
        "gth-szv",
        periodic=True,
        level_of_theory="gth-szv kinetic matrix (test)",
        pseudo="gth-pade",
        overlap_shift_ha=SHIFT,
    )
    # one small regularisation: the stand-in's val error is its cutoff floor, so a scan would pick noise
    record, _ = direct_periodic.fit(model.block_model, (cells[:3], refs[:3]), (cells[3:], refs[3:]), grid=[1e-8])
    return model, cells, refs, record


def test_shifted_wigner_seitz_target_plus_mu_overlap_reproduces_the_labelled_bands(fitted):
    _, _, refs, _ = fitted
    for ref in refs:
        assert np.abs(ref.target_t - ref.hamiltonian_t).max() > 0.01  # the shift is really applied
        bands = direct_periodic.cell_bands(ref, ref.target_t, ref.images.n_int)
        assert np.abs(bands - ref.bands).max() < 1e-10


def test_targets_are_the_wigner_seitz_blocks_of_the_pairs_inside_the_cutoff(fitted):
    _, cells, refs, _ = fitted
    atoms, ref = cells[0], refs[0]
    truncated = direct_periodic.truncated_reference(BlockModel(HYPERS, "gth-szv"), atoms, ref)
    for t, shift in enumerate(ref.images.translations_bohr):
        for i in range(2):
            for j in range(2):
                bond = np.linalg.norm(ref.positions[j] + shift - ref.positions[i])
                block = np.s_[t, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                expected = ref.target_t[block] if bond < HYPERS.cutoff else 0.0
                np.testing.assert_allclose(truncated[block], expected, atol=1e-14)
    # beyond the supercell's unique images the targets would be shares of blocks: refused
    with pytest.raises(ValueError, match="not unique Wigner–Seitz images"):
        direct_periodic.truncated_reference(BlockModel(FeatureHypers(species=(14,), cutoff=8.0), "gth-szv"), atoms, ref)


def test_fit_reproduces_its_training_targets(fitted):
    model, cells, refs, _ = fitted
    predictions = direct_periodic.predict_real_space(model.block_model, cells[:3])
    for atoms, ref, (n_int, hamiltonian_t) in zip(cells, refs, predictions):
        target = direct_periodic.truncated_reference(model.block_model, atoms, ref)
        rows = direct_periodic.translation_rows(n_int, ref.images.n_int)
        assert np.abs(np.delete(target, rows, axis=0)).max(initial=0.0) == 0.0  # nothing outside the model's T
        # kinetic blocks reach ~0.5 Ha; measured max error 5e-7 Ha
        assert np.abs(hamiltonian_t - target[rows]).max() < 1e-5
        floor = direct_periodic.cell_bands(ref, target, ref.images.n_int)
        bands = direct_periodic.cell_bands(ref, hamiltonian_t, n_int)
        assert np.abs(bands - floor).max() * Hartree < 1e-3  # measured max 1e-4 eV


def test_predicted_real_space_hamiltonian_obeys_h_minus_t_transposed(fitted):
    model = fitted[0]
    ((n_int, hamiltonian_t),) = direct_periodic.predict_real_space(model.block_model, [kinetic_labelled_cell(9, "")])
    partner = opposite_translation_index(n_int)
    assert np.abs(hamiltonian_t[partner] - hamiltonian_t.transpose(0, 2, 1)).max() < 1e-12
    assert np.abs(hamiltonian_t).max() > 0.1


def test_band_energies_are_invariant_under_rotations_of_the_cell(fitted):
    model = fitted[0]
    atoms = kinetic_labelled_cell(10, "")
    kfrac = np.array([[0, 0, 0], [0.5, 0, 0.5], [0.25, 0.5, 0.125], [0.3, -0.2, 0.1]])
    bands = MLHamiltonian(model, kpts=kfrac).get_property("eigenvalues", atoms)
    for rotation in (Rotation.random(random_state=3).as_matrix(), -Rotation.random(random_state=4).as_matrix()):
        rotated = atoms.copy()
        rotated.set_cell(atoms.cell.array @ rotation.T)
        rotated.positions = atoms.positions @ rotation.T
        rotated_bands = MLHamiltonian(model, kpts=kfrac).get_property("eigenvalues", rotated)
        assert np.abs(rotated_bands - bands).max() / Hartree < 1e-9
    assert np.ptp(bands) > 1.0  # not a trivial (constant) spectrum


def test_calculator_gives_the_band_energies_of_the_fit_evaluation(fitted, tmp_path):
    model, cells, refs, record = fitted
    model.save(tmp_path / "silicon-test")
    calc = MLHamiltonian(model=str(tmp_path / "silicon-test"), kpts={"size": MESH, "gamma": True})
    ((n_int, hamiltonian_t),) = direct_periodic.predict_real_space(model.block_model, cells[3:])
    expected = direct_periodic.cell_bands(refs[3], hamiltonian_t, n_int)
    bands = calc.get_property("eigenvalues", cells[3])[0] / Hartree
    order = direct_periodic.kpoint_order(calc.get_ibz_k_points(), cells[3].info["kpts_frac"])
    np.testing.assert_allclose(bands[order], expected, atol=1e-8)  # label S(k) vs the calculator's S(T) images
    assert record["val"]["band_mae_ev"] == pytest.approx(metrics.band_energy_mae_ev([expected], [refs[3].bands]))


def test_leave_one_cell_out_errors_equal_explicit_refits(fitted):
    """direct.cross_validation_sse (closed form, subtracting one cell's normal equations) against fitting
    the other cells and comparing the held-out cell's coupled blocks."""
    _, cells, refs, _ = fitted
    model = BlockModel(HYPERS, "gth-szv")
    folds = [direct_periodic.normal_equations(model, [atoms], [ref]) for atoms, ref in zip(cells[:3], refs[:3])]
    closed_form = sum(errors[0] for errors in direct.cross_validation_sse(model, folds, [1e-6]).values())
    explicit = 0.0
    for k in range(3):
        direct.solve(model, direct.add_normal_equations(*(f for i, f in enumerate(folds) if i != k)), 1e-6)
        systems = systems_from_atoms([cells[k]])
        with torch.no_grad():
            features = model.features(systems)
            (layout,) = model_layouts(features, systems, model.basis, [refs[k].images.n_int])
            target = decompose(torch.tensor(refs[k].target_t), layout)
            explicit += sum(float(((p - t) ** 2).sum()) for p, t in zip(model.coupled(features, layout), target))
    assert closed_form == pytest.approx(explicit, rel=1e-8)
    assert explicit > 1e-8


def test_fit_on_symmetric_cells_only_stays_bounded_on_a_distorted_cell():
    """Perfect diamond sites have λ ≥ 1 on-site features that vanish up to round-off (Σx² ~ 1e-32): those
    heads must keep zero weights instead of turning the noise into huge ones (4e5 Ha on a rattled cell)."""
    cells = [kinetic_labelled_cell(0, "train", rattle=0.0, a=a, noise=1e-10) for a in (5.35, 5.43, 5.51)]
    refs = [direct_periodic.CellReference.from_atoms(atoms) for atoms in cells]
    model = BlockModel(HYPERS, "gth-szv")
    direct_periodic.fit(model, (cells[:2], refs[:2]), (cells[2:], refs[2:]), grid=[1e-8])
    for name in ("on_site_14_14_type0_l1_s1", "on_site_14_14_type0_l2_s1"):
        assert float(model.weights[name].detach().abs().max()) == 0.0
    ((_, hamiltonian_t),) = direct_periodic.predict_real_space(model, [kinetic_labelled_cell(5, "")])
    assert np.abs(hamiltonian_t).max() < 2.0  # kinetic elements reach ~0.5 Ha


def test_band_window_metric_selects_valence_and_low_conduction_states():
    reference = np.array([[-1.0, 0.0, 1.0, 2.6], [-1.5, -0.5, 1.2, 3.0]]) / Hartree  # CBM 1.0 eV, window ≤ 2.5 eV
    predicted = reference + np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]) / Hartree
    window = metrics.band_window_mae_ev([predicted], [reference], n_valence=2, window_ev=1.5)
    assert window == pytest.approx(np.mean([0.1, 0.2, 0.5, 0.6, 0.3, 0.7]))
    conduction = metrics.band_window_mae_ev([predicted], [reference], 2, window_ev=1.5, valence=False)
    assert conduction == pytest.approx(0.5)
    assert metrics.band_window_mae_ev([predicted], [reference], 2, window_ev=None) == pytest.approx(0.35)


def test_silicon_benchmark_reproduces_the_band_target_on_the_committed_labels(capsys):
    """benchmarks/direct_fit_silicon.py end to end on the first 13 committed primitive cells (~20 s): it
    reads gth-szv labels (not the molecular default basis) and its test band MAE stays within the issue's
    0.1 eV target (docs/direct_fit.md reports 0.038 eV for this snapshot)."""
    root = Path(__file__).resolve().parent.parent
    labels = root / "data" / "silicon" / "primitive_labels.d"
    if not labels.is_dir():
        pytest.skip("no committed silicon labels")
    benchmarks = str(root / "benchmarks")
    sys.path.insert(0, benchmarks)  # the script imports its molecular sibling direct_fit
    try:
        script = f"{benchmarks}/direct_fit_silicon.py"
        spec = importlib.util.spec_from_file_location("direct_fit_silicon_under_test", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(["--labels", str(labels), "--first", "13"])
    finally:
        sys.path.remove(benchmarks)
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("| band energies MAE, all gth-szv bands")]
    test_mae = float(row.split("|")[2])
    assert test_mae <= 0.1, row
