"""`mlhcalc predict`, `mlhcalc spectrum` and `mlhcalc info MODEL` end to end with toy models."""

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from click.testing import CliRunner
from test_calculator import rattled_water, silicon_model, water_model

from mlhcalc import MLHamiltonian
from mlhcalc.cli import main
from mlhcalc.units import INVERSE_FS_TO_WAVENUMBER


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"water": str(water_model().save(root / "water")), "silicon": str(silicon_model().save(root / "silicon"))}


def waters(n, seed=0):
    rng = np.random.default_rng(seed)
    structures = [rattled_water(rng, scale=0.04) for _ in range(n)]
    for index, atoms in enumerate(structures):
        atoms.info["name"] = f"w{index}"
    return structures


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_predict_round_trip_keeps_the_mlh_keys(model_dirs, tmp_path):
    structures = waters(3)
    source, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, structures)
    result = run("predict", model_dirs["water"], source, "-o", out)
    assert result.exit_code == 0, result.output
    written = ase.io.read(out, ":")
    assert [a.info["name"] for a in written] == ["w0", "w1", "w2"]
    calc = MLHamiltonian(model_dirs["water"])
    for atoms, original in zip(written, structures):
        np.testing.assert_allclose(atoms.info["mlh_dipole"], calc.get_dipole_moment(original), atol=1e-7)
        np.testing.assert_allclose(atoms.info["mlh_polarizability"], calc.get_polarizability(original), atol=1e-7)
        np.testing.assert_allclose(atoms.info["mlh_eigenvalues"], calc.get_eigenvalues(), atol=1e-7)
        np.testing.assert_allclose(atoms.arrays["mlh_charges"], calc.get_charges(original), atol=1e-7)
        homo, lumo = calc.get_homo_lumo()
        assert atoms.info["mlh_homo"] == pytest.approx(homo) and atoms.info["mlh_lumo"] == pytest.approx(lumo)
        assert atoms.info["mlh_gap"] == pytest.approx(lumo - homo) and atoms.info["mlh_charge"] == 0
        assert atoms.calc is None
    # ≤ 3 structures: a readable summary, and always a timing summary
    assert "HOMO-LUMO gap" in result.output and "polarizability (Å³)" in result.output and "|μ|" in result.output
    assert "timing: model load" in result.output and "JAX compilation" in result.output


def test_predict_streams_batches_and_reports_steady_state_timing(model_dirs, tmp_path):
    source, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, waters(5))
    result = run(
        "predict",
        model_dirs["water"],
        source,
        "-o",
        out,
        "--batch-size",
        2,
        "--properties",
        "dipole,born_effective_charges",
    )
    assert result.exit_code == 0, result.output
    written = ase.io.read(out, ":")
    assert len(written) == 5 and "HOMO-LUMO gap" not in result.output  # no summary for > 3 structures
    assert "mlh_polarizability" not in written[0].info and "mlh_eigenvalues" not in written[0].info
    born = written[4].arrays["mlh_born_effective_charges"].reshape(3, 3, 3)
    np.testing.assert_allclose(born.sum(axis=0), 0, atol=5e-8)  # extxyz keeps 8 decimals
    assert "steady state: 3 structures" in result.output and "ms/atom" in result.output


def test_index_selects_structures(model_dirs, tmp_path):
    structures = waters(4)
    source, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, structures)
    result = run("predict", model_dirs["water"], source, "-o", out, "--index", "1:3")
    assert result.exit_code == 0, result.output
    assert [a.info["name"] for a in ase.io.read(out, ":")] == ["w1", "w2"]
    assert "structure 1:" in result.output


def test_a_failing_structure_stops_the_run_or_is_skipped(model_dirs, tmp_path):
    structures = waters(4)
    structures[2] = molecule("CH4")  # carbon: not covered by the water model
    source, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, structures)
    stopped = run("predict", model_dirs["water"], source, "-o", out, "--batch-size", 1)
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    assert "structure 2: ValueError: atom 0 is C" in stopped.output and "--skip-errors" in stopped.output
    assert [a.info["name"] for a in ase.io.read(out, ":")] == ["w0", "w1"]  # everything before it is kept
    skipped = run("predict", model_dirs["water"], source, "-o", out, "--skip-errors", "--batch-size", 3)
    assert skipped.exit_code == 0, skipped.output
    assert "skipped structure 2" in skipped.output and "wrote 3 of 4 structures" in skipped.output
    assert [a.info["name"] for a in ase.io.read(out, ":")] == ["w0", "w1", "w3"]


def test_charged_structure_is_computed_with_a_warning(model_dirs, tmp_path):
    ion = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]], info={"charge": -1})
    source, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, [ion])
    result = run("predict", model_dirs["water"], source, "-o", out)
    assert result.exit_code == 0, result.output
    assert "warning: computing a structure with total charge -1" in result.output
    (written,) = ase.io.read(out, ":")
    assert written.info["mlh_charge"] == -1 and written.arrays["mlh_charges"].sum() == pytest.approx(-1)


def test_periodic_kpts_and_gamma(model_dirs, tmp_path):
    source, out = tmp_path / "si.extxyz", tmp_path / "out.extxyz"
    ase.io.write(source, [bulk("Si", "diamond", a=5.43)])
    result = run("predict", model_dirs["silicon"], source, "-o", out, "--kpts", 2, 2, 2, "--gamma")
    assert result.exit_code == 0, result.output
    (written,) = ase.io.read(out, ":")
    kpts = written.info["mlh_kpts"]
    assert kpts.shape == (8, 3) and (np.abs(kpts).sum(axis=1) == 0).any()
    assert written.info["mlh_eigenvalues"].shape == (8, 8)
    assert written.info["mlh_lumo"] - written.info["mlh_homo"] == pytest.approx(written.info["mlh_gap"])
    assert "k-points: VBM" in result.output
    monkhorst_pack = run("predict", model_dirs["silicon"], source, "-o", out, "--kpts", 2, 2, 2)
    assert monkhorst_pack.exit_code == 0
    assert not (np.abs(ase.io.read(out).info["mlh_kpts"]).sum(axis=1) == 0).any()
    response = run(
        "predict", model_dirs["silicon"], source, "-o", out, "--kpts", 3, 3, 3, "--gamma",
        "--properties", "eigenvalues,polarizability,dielectric_tensor",
    )  # fmt: skip
    assert response.exit_code == 0, response.output
    (written,) = ase.io.read(out, ":")
    from mlhcalc.calculator import MLHamiltonian

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = MLHamiltonian(model_dirs["silicon"], kpts={"size": (3, 3, 3), "gamma": True})
    for key, name in (("mlh_dielectric_tensor", "dielectric_tensor"), ("mlh_polarizability", "polarizability")):
        np.testing.assert_allclose(written.info[key], atoms.calc.get_property(name, atoms), rtol=1e-10)
    eps = written.info["mlh_dielectric_tensor"]  # cubic crystal: isotropic
    np.testing.assert_allclose(eps, eps[0, 0] * np.eye(3), atol=1e-8 * eps[0, 0])
    assert eps[0, 0] > 1 and "dielectric tensor" in response.output
    wrong = run("predict", model_dirs["silicon"], source, "-o", out, "--properties", "dipole")
    assert wrong.exit_code == 2 and "not available for a periodic model" in wrong.output
    boxed_water = molecule("H2O", cell=[6.0] * 3, pbc=True)
    ase.io.write(source, [boxed_water])
    molecular = run("predict", model_dirs["water"], source, "-o", out)
    assert molecular.exit_code == 1 and "for molecules but the atoms are periodic" in molecular.output


def test_missing_and_corrupt_models_are_clean_errors(model_dirs, tmp_path, monkeypatch):
    source = tmp_path / "in.extxyz"
    ase.io.write(source, waters(1))
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    missing = run("predict", "no-such-model", source, "-o", tmp_path / "out.extxyz")
    assert missing.exit_code == 1 and "no model 'no-such-model'" in missing.output and "Traceback" not in missing.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{")
    corrupt = run("predict", broken, source, "-o", tmp_path / "out.extxyz")
    assert corrupt.exit_code == 1 and "not valid JSON" in corrupt.output


def test_info_shows_the_model_card_essentials(model_dirs):
    result = run("info", model_dirs["water"])
    assert result.exit_code == 0, result.output
    for text in ("basis", "sto-3g", "species", "H, O", "level_of_theory", "RHF/STO-3G", "metrics", "fock_mae_ha"):
        assert text in result.output


def test_spectrum_from_a_predict_trajectory(tmp_path):
    dt, n = 0.5, 2000
    t = np.arange(n) * dt
    frames = []
    for step in range(n):
        atoms = molecule("H2O")
        phase = 2 * np.pi * t[step] / INVERSE_FS_TO_WAVENUMBER
        atoms.info["mlh_dipole"] = np.array([np.cos(1600 * phase), 0.0, 0.5 * np.cos(3700 * phase)])
        atoms.info["mlh_polarizability"] = np.eye(3) * (1 + 0.1 * np.cos(3650 * phase))
        frames.append(atoms)
    trajectory = tmp_path / "md.extxyz"
    ase.io.write(trajectory, frames)
    result = run("spectrum", "ir", trajectory, "--dt", dt, "-o", tmp_path / "ir")
    assert result.exit_code == 0, result.output
    table = np.loadtxt(tmp_path / "ir.csv", delimiter=",", skiprows=1)
    header = (tmp_path / "ir.csv").read_text().splitlines()[0]
    assert header.startswith("wavenumber_cm-1,intensity")
    strongest = table[np.argmax(table[:, 1]), 0]
    assert strongest == pytest.approx(3700, abs=20) or strongest == pytest.approx(1600, abs=20)
    assert (tmp_path / "ir.png").stat().st_size > 1000
    raman = run("spectrum", "raman", trajectory, "--dt", dt, "-o", tmp_path / "raman", "--temperature", 300)
    assert raman.exit_code == 0, raman.output
    table = np.loadtxt(tmp_path / "raman.csv", delimiter=",", skiprows=1)
    assert table.shape[1] == 4 and table[np.argmax(table[:, 1]), 0] == pytest.approx(3650, abs=20)
    np.testing.assert_allclose(table[:, 3], 0.0, atol=1e-12)  # isotropic α(t): no anisotropic part
    missing = run("spectrum", "ir", tmp_path / "plain.extxyz", "--dt", dt, "-o", tmp_path / "x")
    assert missing.exit_code == 2  # click: the file does not exist
    ase.io.write(tmp_path / "plain.extxyz", [molecule("H2O")] * 10)
    no_keys = run("spectrum", "ir", tmp_path / "plain.extxyz", "--dt", dt, "-o", tmp_path / "x")
    assert no_keys.exit_code == 1 and "has no mlh_dipole" in no_keys.output and "mlhcalc predict" in no_keys.output


def test_info_json_of_a_saved_toy_model(model_dirs):
    result = run("info", model_dirs["silicon"], "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["periodic"] is True
