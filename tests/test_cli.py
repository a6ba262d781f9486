"""`mlhcalc info` and model discovery."""

import json
from pathlib import Path

from click.testing import CliRunner

from mlhcalc.cli import main


def test_info_json_lists_versions_threads_and_models(tmp_path, monkeypatch):
    model_dir = tmp_path / "toy"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps({"basis": "sto-3g", "species": ["H", "O"]}))
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dependencies"]["pyscfad"] == "0.3.4"
    assert data["dependencies"]["torch"].startswith("2.")
    assert "OMP_NUM_THREADS" in data["threads"]
    assert data["models"]["toy"] == str(model_dir)


def test_info_text_and_one_model(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "model.json").write_text(json.dumps({"basis": "sto-3g"}))
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    runner = CliRunner()
    text = runner.invoke(main, ["info"])
    assert text.exit_code == 0 and "pyscfad" in text.output and "toy" in text.output
    one = runner.invoke(main, ["info", "toy", "--json"])
    assert one.exit_code == 0 and json.loads(one.output)["basis"] == "sto-3g"


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    result = CliRunner().invoke(main, ["info", "no-such-model"])
    assert result.exit_code != 0
    assert "no model 'no-such-model'" in result.output


def test_corrupt_model_metadata_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    monkeypatch.setenv("MLHCALC_MODELS", str(tmp_path))
    result = CliRunner().invoke(main, ["info", "broken"])
    assert result.exit_code != 0 and "cannot read the metadata" in result.output


def test_train_with_a_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("output: run\nnot_a_key: 1\n")
    result = CliRunner().invoke(main, ["train", str(config)])
    assert result.exit_code != 0
    assert "invalid training config" in result.output and "not_a_key" in result.output
    # missing data: a message naming it, for molecular and band configs alike, not a traceback
    init = Path(__file__).resolve().parents[1] / "models" / "silicon-szv"
    for text in (
        "output: run\ndata: {labels: missing.d}\n",
        f"kind: bands\nlabels: missing.d\ninit: {init}\noutput: run\n",
    ):
        config.write_text(text)
        result = CliRunner().invoke(main, ["train", str(config)])
        assert result.exit_code == 1 and "cannot train" in result.output, result.output
        assert "missing" in result.output and "Traceback" not in result.output
