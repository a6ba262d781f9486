"""HamiltonianModel: prediction symmetry, safe save/load with metadata, clear errors for bad files."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from mlhcalc.features import FeatureHypers, systems_from_atoms
from mlhcalc.hamiltonian import fit_ridge
from mlhcalc.model import HamiltonianModel, ModelFileError
from mlhcalc.structure import to_mole

HYPERS = FeatureHypers(species=(1, 8), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)


@pytest.fixture(scope="module")
def water_model():
    """Ridge fit to the exact STO-3G core Hamiltonian of rattled waters (cheap, exactly equivariant)."""
    rng = np.random.default_rng(0)
    structures, targets = [], []
    for _ in range(6):
        atoms = molecule("H2O")
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        mol = to_mole(atoms)
        structures.append(atoms)
        targets.append(mol.intor("int1e_kin") + mol.intor("int1e_nuc"))
    model = HamiltonianModel.create(HYPERS, "sto-3g", periodic=False, level_of_theory="STO-3G core H (test)")
    fit_ridge(model.block_model, systems_from_atoms(structures), [torch.tensor(t) for t in targets])
    return model


def test_prediction_is_symmetric_and_close_to_target(water_model):
    atoms = molecule("H2O")
    atoms.positions[1] += [0.02, -0.03, 0.01]
    prediction = water_model.predict(atoms)
    h = prediction.hamiltonian.detach().numpy()
    assert prediction.translations is None
    np.testing.assert_array_equal(h, h.T)
    mol = to_mole(atoms)
    assert np.abs(h - (mol.intor("int1e_kin") + mol.intor("int1e_nuc"))).max() < 5e-2  # ML accuracy, Ha


def test_save_load_round_trip_keeps_predictions_and_metadata(water_model, tmp_path):
    water_model.save(tmp_path / "toy", training_data_sha256="abc", metrics={"fock_mae_ha": 1.0})
    loaded = HamiltonianModel.load(tmp_path / "toy")
    assert loaded.basis == "sto-3g" and loaded.species == ["H", "O"] and not loaded.periodic
    assert loaded.metadata["training_data_sha256"] == "abc"
    assert loaded.metadata["level_of_theory"] == "STO-3G core H (test)"
    atoms = molecule("H2O")
    np.testing.assert_array_equal(
        loaded.predict(atoms).hamiltonian.detach().numpy(), water_model.predict(atoms).hamiltonian.detach().numpy()
    )
    meta = json.loads((tmp_path / "toy" / "model.json").read_text())
    for key in ("basis", "species", "periodic", "level_of_theory", "mlhcalc_version", "config", "format"):
        assert key in meta


def test_weights_are_loadable_with_weights_only(water_model, tmp_path):
    water_model.save(tmp_path / "toy")
    content = torch.load(tmp_path / "toy" / "weights.pt", weights_only=True)
    assert isinstance(content["state"], dict)


def test_corrupt_and_incompatible_files_are_clear_errors(water_model, tmp_path):
    directory = water_model.save(tmp_path / "toy")
    weights = directory / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="checksum"):
        HamiltonianModel.load(directory)
    meta = json.loads((directory / "model.json").read_text())
    meta.pop("weights_sha256")
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="cannot load the weights"):
        HamiltonianModel.load(directory)
    meta["format"] = 99
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="model format 99"):
        HamiltonianModel.load(directory)
    (directory / "model.json").write_text("{")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        HamiltonianModel.load(directory)
    with pytest.raises(FileNotFoundError, match="no model"):
        HamiltonianModel.load(tmp_path / "nothing-here")


def test_check_rejects_uncovered_elements_and_periodic_input(water_model):
    with pytest.raises(ValueError, match="atom 0 is C, which this model does not cover"):
        water_model.check(molecule("CH4"))
    with pytest.raises(ValueError, match="for molecules but the atoms are periodic"):
        water_model.check(_periodic_water())


def _periodic_water():
    atoms = molecule("H2O")
    atoms.cell = [6.0, 6.0, 6.0]
    atoms.pbc = True
    return atoms
