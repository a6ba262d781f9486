"""The helpers of ``benchmarks/run.py`` on tiny inputs: tables, power-law fit, scaling structures, the
accuracy wrapper around ``evaluation.score`` (full, valence-only and orbital-free methods), memory
measurement, figures and summary. No timing assertions."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

from mlhcalc.training.metrics import HARTREE_TO_EV, n_core_orbitals

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_run_under_test", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def labelled(name: str, seed: int):
    """A molecule with made-up def2-TZVP labels (hartree, e·bohr, a.u.)."""
    atoms = molecule(name)
    rng = np.random.default_rng(seed)
    nocc = int(atoms.get_atomic_numbers().sum()) // 2
    atoms.info.update(
        nocc=nocc,
        mo_energy_large=np.sort(rng.uniform(-20.0, 1.0, nocc + 12)),
        dipole_large=rng.normal(size=3),
        polarizability_large=np.diag(rng.uniform(5.0, 15.0, 3)),
    )
    return atoms


def test_table_cells(bench):
    assert bench.fmt(None) == "–" and bench.fmt(float("nan")) == "–" and bench.fmt(np.int64(7)) == "7"
    assert bench.fmt(0.12345) == "0.123" and bench.fmt(151234.5) == "151234" and bench.fmt("n/a") == "n/a"
    lines = bench.markdown_table(["a", "b"], [[1, None], [2.5, "x"]]).splitlines()
    assert lines == ["| a | b |", "|---|---|", "| 1 | – |", "| 2.500 | x |"]


def test_power_law_exponent(bench):
    sizes = np.array([5, 10, 30, 60, 120, 300])
    times = 1e-3 * sizes**2.5
    times[:2] = 1e-2  # overhead-dominated small sizes, excluded by min_size
    assert bench.fit_power_law(sizes, times, min_size=25) == pytest.approx(2.5, abs=1e-9)
    assert bench.fit_power_law(sizes, times, min_size=200) is None  # one point only


@pytest.mark.parametrize("n_carbon", [1, 2, 5, 33])
def test_alkanes_are_saturated_chains(bench, n_carbon):
    atoms = bench.alkane(n_carbon)
    assert atoms.get_chemical_formula(mode="hill") == (f"C{n_carbon}H{2 * n_carbon + 2}" if n_carbon > 1 else "CH4")
    distances = atoms.get_all_distances() + 10.0 * np.eye(len(atoms))
    carbons = atoms.numbers == 6
    for index in np.flatnonzero(atoms.numbers == 1):  # every H bonded to exactly one C at ~1.09 Å
        assert np.sum(distances[index, carbons] < 1.2) == 1
    assert distances.min() > 1.05


@pytest.mark.parametrize("n_carbon", [2, 6, 20])
def test_polyenes_have_one_h_per_inner_carbon(bench, n_carbon):
    atoms = bench.polyene(n_carbon)
    assert atoms.get_chemical_formula(mode="hill") == f"C{n_carbon}H{n_carbon + 2}"
    assert np.ptp(atoms.positions[:, 2]) == pytest.approx(0.0)  # planar
    assert (atoms.get_all_distances() + 10.0 * np.eye(len(atoms))).min() > 1.05
    with pytest.raises(ValueError):
        bench.polyene(5)


def test_accuracy_of_full_valence_only_and_orbital_free_methods(bench):
    atoms_list = [labelled("H2O", 0), labelled("CH3OH", 1)]
    refs = [a.info["mo_energy_large"] for a in atoms_list]
    exact = bench.MethodResult(
        "exact",
        refs,
        [a.info["dipole_large"] for a in atoms_list],
        [a.info["polarizability_large"] for a in atoms_list],
    )
    scores = bench.accuracy(exact, atoms_list)
    assert scores["n_structures"] == 2 and scores["alpha_n_structures"] == 2
    assert scores["occupied_mae_ev"] == 0.0 and scores["dipole_mae_debye"] == 0.0 and scores["alpha_mae_au"] == 0.0

    shifted = bench.MethodResult("shifted", [r + 0.1 for r in refs], None, None)
    scores = bench.accuracy(shifted, atoms_list)
    assert scores["occupied_mae_ev"] == pytest.approx(0.1 * HARTREE_TO_EV)
    assert scores["dipole_n_structures"] == 0 and "dipole_mae_debye" not in scores

    # valence-only levels (no core orbitals), shifted by 0.05 Ha: valence metrics only
    valence = [r[n_core_orbitals(a.numbers) :] + 0.05 for r, a in zip(refs, atoms_list)]
    scores = bench.accuracy(bench.MethodResult("xtb-like", valence, None, None, valence_only=True), atoms_list)
    assert "occupied_mae_ev" not in scores
    for key in ("valence_mae_ev", "homo_mae_ev", "lumo_mae_ev"):
        assert scores[key] == pytest.approx(0.05 * HARTREE_TO_EV)
    assert scores["gap_mae_ev"] == pytest.approx(0.0, abs=1e-12)

    # no orbital energies, dipole of one structure missing
    surrogate = bench.MethodResult("surrogate", None, [np.zeros(3), None], None)
    scores = bench.accuracy(surrogate, atoms_list)
    assert "valence_mae_ev" not in scores and "n_structures" not in scores
    assert scores["dipole_n_structures"] == 1
    assert scores["dipole_mae_debye"] == pytest.approx(
        np.linalg.norm(atoms_list[0].info["dipole_large"]) * 2.541746, rel=1e-5
    )


def test_peak_memory_sees_a_large_allocation(bench):
    if not bench._reset_peak_memory():
        pytest.skip("no /proc/self/clear_refs here")
    timing, total = bench.measure(lambda: float(np.ones(64 * 2**20 // 8).sum()), memory=True)
    assert total == 64 * 2**20 // 8
    assert timing.delta_mb > 48.0  # 64 MB of touched pages


def test_figures_and_summary(bench, tmp_path):
    results = {
        "date": "today",
        "accuracy": {
            "qm7like test": {
                "mlhcalc toy": {"n_structures": 3, "valence_mae_ev": 0.2, "gap_mae_ev": 0.3, "dipole_n_structures": 3},
                "GFN2-xTB": {
                    "n_structures": 3,
                    "valence_mae_ev": 2.0,
                    "dipole_mae_debye": 0.3,
                    "dipole_n_structures": 3,
                },
            }
        },
        "timing": {
            bench.REFERENCE_ALPHA: {"wall_s": 100.0, "speedup_scf_alpha": 1.0},
            bench.model_timing("mlhcalc toy"): {"wall_s": 0.05, "speedup_scf_alpha": 2000.0},
        },
        "scaling": {
            "series": {
                "toy: alkane": [
                    {"atoms": n, "wall_s": 1e-4 * n**1.5, "delta_mb": n, "peak_mb": 500.0 + n} for n in (5, 50, 300)
                ]
            },
            "exponents": {"toy: alkane": {"time": 1.5, "memory": 1.0}},
        },
    }
    written = bench.plots(bench.MODES["quick"], results, tmp_path)
    assert sorted(p.name for p in written) == ["quick_accuracy.png", "quick_scaling.png", "quick_timing.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    summary = bench.summary_markdown(bench.MODES["quick"], results, 61.0)
    assert (
        "Mode **quick**" in summary
        and "| mlhcalc toy | – | 0.200 (3) | 0.300 (3) | – | – | 50.000 | – | 2000 |" in summary
    )
    assert "time ∝ N^1.50" in summary and "smoke test" in summary


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
def test_xtb_finite_field_polarizability_of_water(bench):
    """GFN2-xTB water (in the yz plane): α symmetric, in-plane components positive, the out-of-plane one
    near zero (a minimal valence basis cannot respond out of plane); dipole along z."""
    props = bench.xtb_properties(molecule("H2O"))
    alpha = props["polarizability"]
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-12)
    assert alpha[1, 1] > 1.0 and alpha[2, 2] > 1.0 and abs(alpha[0, 0]) < 0.1
    assert abs(props["dipole"][2]) > 0.5 and np.abs(props["dipole"][:2]).max() < 1e-8
    assert len(props["mo_energy"]) == 6  # O 2s 2p, H 1s ×2
