"""The models shipped in models/: they load safely (weights only, checksum), carry the metadata the
house rules ask for and a model card, and reproduce what their cards claim on held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = sorted(p.name for p in MODELS.iterdir() if (p / "model.json").is_file())
LABELS = Path(__file__).resolve().parents[1] / "data" / "qm7like" / "labels.d"
SILICON_LABELS = Path(__file__).resolve().parents[1] / "data" / "silicon" / "primitive_labels.d"
CUBIC_LABELS = Path(__file__).resolve().parents[1] / "data" / "silicon" / "cubic_labels.d"


def test_models_are_shipped():
    expected = {"organic", "organic-v1", "organic-v2", "organic-sto3g", "organic-sto3g-scc", "organic-sto3g-scc24"}
    assert expected | {"silicon-szv", "silicon"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_metadata_and_card(name):
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.registry import find_model

    assert find_model(name) == MODELS / name
    model = HamiltonianModel.load(name)
    meta = model.metadata
    for key in ("basis", "species", "level_of_theory", "training_data_sha256", "mlhcalc_version", "hypers"):
        assert meta.get(key), (name, key)
    assert len(meta["training_data_sha256"]) == 64
    card = (MODELS / name / "README.md").read_text()
    assert "```" in card or "python " in card or "mlhcalc train" in card  # the command that made it


def test_organic_beats_plain_sto3g_orbital_energies_on_held_out_molecules():
    """The default model on the first labelled qm7like test molecules (never seen in training or
    selection): occupied-level MAE against B3LYPG/def2-TZVP below 0.5 eV and at least 4× below plain
    B3LYPG/STO-3G (version 1 measured on the 22 of its card: 0.26 eV vs 2.52 eV)."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.evaluation import baseline_metrics, evaluate

    test = [a for a in read(LABELS) if a.info.get("split") == "test" and "mo_energy_large" in a.info][:6]
    assert len(test) >= 4
    model = HamiltonianModel.load("organic")
    assert model.metadata["initial_model"]["name"] == "organic-sto3g-scc24"
    ours, plain = evaluate(model, test), baseline_metrics(test)
    assert ours["occupied_mae_ev"] < 0.5, ours
    assert ours["occupied_mae_ev"] < plain["occupied_mae_ev"] / 4, (ours, plain)
    assert np.isfinite(ours["dipole_mae_debye"])


def test_silicon_reproduces_gth_dzvp_bands_on_held_out_cells():
    """models/silicon through the ASE calculator on labelled test cells (never used for training or
    selection: two-atom cells on 4×4×4 and rattled 8-atom cells on 2×2×2), on each cell's own label
    mesh, against PBE/gth-dzvp: MAE over the valence bands and the conduction states up to CBM + 1.5 eV
    below 0.05 eV and every band-gap error below 0.1 eV (the card reports the measured values), and at
    least 4× closer than plain PBE/gth-szv where the cell has that label."""
    from mlhcalc.calculator import MLHamiltonian
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training import metrics

    model = HamiltonianModel.load("silicon")
    assert model.periodic and model.metadata["initial_model"]["name"] == "silicon-szv"
    test = [
        a for labels in (SILICON_LABELS, CUBIC_LABELS) for a in read(labels)
        if a.info.get("split") == "test" and "bands_large" in a.info
    ]  # fmt: skip
    assert len(test) >= 4 and {len(a) for a in test} == {2, 8}
    predicted, reference, plain = [], [], []
    for cell in test:
        calc = MLHamiltonian(model=model, kpts=np.asarray(cell.info["kpts_frac"]))
        atoms = cell.copy()
        atoms.info = {}
        calc.calculate(atoms, ["eigenvalues"])
        predicted.append(calc.results["eigenvalues"][0] / metrics.HARTREE_TO_EV)
        reference.append(np.sort(cell.info["bands_large"], axis=1)[:, : 4 * len(cell)])
        if "bands_minimal" in cell.info:
            plain.append((len(reference) - 1, np.asarray(cell.info["bands_minimal"])))
    nocc = [int(c.info["nocc"]) for c in test]
    window = metrics.band_window_mae_ev(predicted, reference, nocc)
    gaps = [metrics.band_gap_error_ev(p, r, n) for p, r, n in zip(predicted, reference, nocc)]
    assert window < 0.05, window
    assert max(gaps) < 0.1, gaps
    if plain:
        rows = [i for i, _ in plain]
        occupied = [nocc[i] for i in rows]
        ours = metrics.band_window_mae_ev([predicted[i] for i in rows], [reference[i] for i in rows], occupied)
        theirs = metrics.band_window_mae_ev([b for _, b in plain], [reference[i] for i in rows], occupied)
        assert ours < theirs / 4, (ours, theirs)


def test_silicon_serves_bands_dos_and_gap_on_an_8x8x8_mesh():
    from ase.build import bulk
    from ase.calculators.calculator import PropertyNotPresent
    from ase.dft.bandgap import bandgap
    from ase.dft.dos import DOS

    from mlhcalc.calculator import MLHamiltonian

    atoms = bulk("Si", "diamond", a=5.431)
    atoms.calc = MLHamiltonian(model="silicon", kpts={"size": (8, 8, 8), "gamma": True})
    with pytest.raises(PropertyNotPresent, match="no structure computed yet"):
        atoms.calc.get_eigenvalues(kpt=0)  # ASE never tells a calculator its atoms: a clear error first
    atoms.calc.get_property("eigenvalues", atoms)
    eigenvalues = atoms.calc.get_eigenvalues(kpt=0)
    assert eigenvalues.shape == (8,)
    gap, _, _ = bandgap(atoms.calc, output=None)
    assert 0.3 < gap < 1.2  # PBE/gth-dzvp on the 4×4×4 label mesh: 0.86 eV (perfect cell)
    dos = DOS(atoms.calc, width=0.2, npts=400)
    energies, weights = dos.get_energies(), dos.get_dos()
    electrons = np.trapezoid(weights[energies < 0], energies[energies < 0])  # Fermi level at midgap = 0
    assert abs(electrons - 8.0) < 0.05  # both spins: the 8 valence electrons of Si2 (gth-pade) below midgap


def test_silicon_supercell_at_gamma_folds_the_primitive_mesh():
    """The transfer route of issue 7 (a 64-atom cell at Γ): the Γ eigenvalues of a 2×2×2 supercell of a
    rattled, strained two-atom cell are the eigenvalues of the cell itself on the Γ-centred 2×2×2 mesh
    (Bloch folding), to 1e-8 Ha. Holds only if the features, H(T) and the image sums see the same
    environments in both descriptions of the same crystal."""
    from mlhcalc.calculator import MLHamiltonian
    from mlhcalc.reference import read
    from mlhcalc.units import HARTREE_TO_EV

    cell = next(a for a in read(SILICON_LABELS) if a.info.get("rattle_sigma", 0) > 0)
    atoms = cell.copy()
    atoms.info = {}
    primitive = MLHamiltonian(model="silicon", kpts={"size": (2, 2, 2), "gamma": True})
    primitive.calculate(atoms, ["eigenvalues"])
    supercell = MLHamiltonian(model="silicon", kpts=(1, 1, 1))
    supercell.calculate(atoms.repeat((2, 2, 2)), ["eigenvalues"])
    folded = np.sort(np.asarray(primitive.results["eigenvalues"]).ravel())
    gamma = np.sort(np.asarray(supercell.results["eigenvalues"]).ravel())
    assert gamma.shape == folded.shape == (8 * 8,)
    np.testing.assert_allclose(gamma, folded, rtol=0, atol=1e-8 * HARTREE_TO_EV)  # eV


SUPERCELL_LABELS = Path(__file__).resolve().parents[1] / "data" / "silicon" / "supercell64_labels.d"
GRID_UNCERTAINTY_EV = 0.025  # uniform vs Becke XC grid on a two-atom cell: 4 meV mean, 23 meV max (docs/data.md)


def _supercell_band_metrics() -> dict[str, dict[str, float]]:
    """Band metrics (eV) of models/silicon and its start silicon-szv on the rattled 64-atom supercell at Γ
    against its PBE/gth-dzvp label (XC on the uniform grid, docs/data.md), through the ASE calculator."""
    from mlhcalc.calculator import MLHamiltonian
    from mlhcalc.reference import read
    from mlhcalc.training import metrics
    from mlhcalc.units import HARTREE_TO_EV

    (cell,) = [a for a in read(SUPERCELL_LABELS) if "bands_large" in a.info]
    assert len(cell) == 64 and cell.info["kmesh"].tolist() == [1, 1, 1] and cell.info["split"] == "transfer"
    reference = np.sort(np.asarray(cell.info["bands_large"]), axis=1)[:, : 4 * 64]
    nocc = int(cell.info["nocc"])
    assert nocc == 128
    results = {}
    for name in ("silicon", "silicon-szv"):
        calc = MLHamiltonian(model=name, kpts=(1, 1, 1))
        atoms = cell.copy()
        atoms.info = {}
        calc.calculate(atoms, ["eigenvalues"])
        predicted = np.asarray(calc.results["eigenvalues"])[0] / HARTREE_TO_EV
        assert predicted.shape == reference.shape
        results[name] = metrics.band_metrics([predicted], [reference], [nocc])
    return results


@pytest.fixture(scope="module")
def supercell_metrics():
    return _supercell_band_metrics()


def test_silicon_transfers_to_the_rattled_64_atom_supercell_window(supercell_metrics):
    """Issue 7's transfer test: models/silicon, trained on two-atom cells (4×4×4) and rattled 8-atom cells
    (2×2×2), on the rattled 64-atom supercell at Γ. The window MAE (valence + conduction to CBM_ref +
    1.5 eV) stays within the issue's 50 meV plus the label's own grid uncertainty, and at least 3× closer
    than the direct fit silicon-szv it started from. Measured values: models/silicon/README.md."""
    ours, start = supercell_metrics["silicon"], supercell_metrics["silicon-szv"]
    assert ours["window_mae_ev"] < 0.050 + GRID_UNCERTAINTY_EV, supercell_metrics
    assert ours["valence_mae_ev"] < 0.050 + GRID_UNCERTAINTY_EV, supercell_metrics
    assert ours["window_mae_ev"] < start["window_mae_ev"] / 3, supercell_metrics


def test_silicon_64_atom_supercell_gap_within_target(supercell_metrics):
    """The supercell's band gap within issue 7's 50 meV plus the grid uncertainty. A model trained on
    two-atom cells only missed it (0.164 eV: its CBM came 0.21 eV too low, models/silicon/README.md)."""
    assert supercell_metrics["silicon"]["gap_mae_ev"] < 0.050 + GRID_UNCERTAINTY_EV, supercell_metrics


def test_organic_sto3g_scc_beats_the_plain_direct_fit_on_held_out_molecules():
    """models/organic-sto3g-scc through HamiltonianModel.predict (self-consistent charges solved at
    prediction time) on the first 10 qm7like test molecules, against their B3LYPG/STO-3G labels:
    occupied-level MAE below 0.2 eV and dipole MAE below 0.35 D (the card: 0.110 eV, 0.164 D on all
    136), each below the plain direct fit's on the same molecules (measured when written: 0.099 vs
    0.210 eV, 0.175 vs 0.902 D)."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.direct import Reference, score

    test = [a for a in read(LABELS) if a.info.get("split") == "test" and "fock_minimal" in a.info][:10]
    refs = [Reference.from_atoms(a) for a in test]
    results = {}
    for name in ("organic-sto3g-scc", "organic-sto3g"):
        model = HamiltonianModel.load(name)
        results[name] = score(refs, [model.predict(a).hamiltonian.detach().numpy() for a in test])
    scc, plain = results["organic-sto3g-scc"], results["organic-sto3g"]
    assert scc["occupied_mae_ev"] < 0.2 and scc["dipole_mae_debye"] < 0.35, scc
    assert scc["occupied_mae_ev"] < plain["occupied_mae_ev"], results
    assert scc["dipole_mae_debye"] < plain["dipole_mae_debye"], results


def test_organic_beats_versions_1_and_2_and_plain_sto3g():
    """models/organic (version 3: self-consistent charges, all 803 train labels) on the first 10
    labelled qm7like test molecules, against B3LYPG/def2-TZVP: occupied-level MAE below 0.15 eV and
    dipole MAE below 0.15 D, both below version 2's (models/organic-v2, 181 train structures) and
    version 1's, and the dipole below plain B3LYPG/STO-3G's. Measured when written: 0.101 eV and
    0.105 D, against 0.134 eV / 0.169 D for version 2, 0.258 eV / 0.456 D for version 1 and 0.520 D
    for plain STO-3G."""
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.reference import read
    from mlhcalc.training.evaluation import baseline_metrics, evaluate

    test = [a for a in read(LABELS) if a.info.get("split") == "test" and "mo_energy_large" in a.info][:10]
    assert len(test) == 10
    model = HamiltonianModel.load("organic")
    assert model.block_model.electrostatics == "scc"
    ours, plain = evaluate(model, test), baseline_metrics(test)
    older = {name: evaluate(HamiltonianModel.load(name), test) for name in ("organic-v2", "organic-v1")}
    assert ours["occupied_mae_ev"] < 0.15 and ours["dipole_mae_debye"] < 0.15, ours
    for name, theirs in older.items():
        assert ours["occupied_mae_ev"] < theirs["occupied_mae_ev"], (name, ours, theirs)
        assert ours["dipole_mae_debye"] < theirs["dipole_mae_debye"], (name, ours, theirs)
    assert ours["dipole_mae_debye"] < plain["dipole_mae_debye"], (ours, plain)
