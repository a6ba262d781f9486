"""mlhcalc.reference and `mlhcalc label`: labels equal direct PySCF, resumable, failures recorded, Dask path.

Tiny systems only (H2, H2O, a 2-atom Si cell on a 1×1×1 mesh). The silicon run uses the testing
override ``--basis-large gth-szv`` (gth-dzvp is too slow for CI); the stored large-stage bands then
come from an independent PySCF KRKS run at the same level as the minimal stage, which checks the
stored H(k)/S(k) against PySCF's own band energies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np
import pytest
import scipy.linalg
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import write
from ase.units import Bohr
from click.testing import CliRunner

from mlhcalc.cli import main
from mlhcalc.reference import FORMAT_VERSION, LabelError, consolidate, label, read, read_failures
from mlhcalc.reference.compute import parse_kmesh
from mlhcalc.reference.worker import run_task
from mlhcalc.structure import to_cell, to_mole
from mlhcalc.units import HARTREE_TO_EV

MO_TOL = 1e-6  # Ha
DIPOLE_TOL = 1e-5  # a.u.


def _molecules() -> list[Atoms]:
    h2 = molecule("H2")
    h2.info.update(name="h2", polarizability=True, split="train", parent="none")
    water = molecule("H2O")
    water.positions += [0.3, -0.2, 0.1]  # off the origin: the dipole origin matters
    water.info.update(name="water", smiles="O", polarizability=False, split="test")
    broken = molecule("H2O")
    broken.positions[1] = broken.positions[0] + 0.01
    broken.info.update(name="broken")
    return [h2, water, broken]


def _invoke(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def molecule_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("label-molecules")
    write(root / "mols.xyz", _molecules(), format="extxyz")
    out = root / "out.h5"
    args = ["label", str(root / "mols.xyz"), "-o", str(out), "--polarizability-from-info", "--consolidate"]
    result = _invoke([*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    return root, out, result


def _sto3g(atoms):
    from pyscf import dft

    mf = dft.RKS(to_mole(atoms, "sto-3g"), xc="b3lypg")
    mf.conv_tol, mf.conv_tol_grad, mf.verbose = 1e-12, 1e-8, 0
    mf.kernel()
    return mf


def _tzvp(atoms, basis="def2-tzvp"):
    from pyscf import dft

    mf = dft.RKS(to_mole(atoms, basis), xc="b3lypg").density_fit(auxbasis="def2-universal-jkfit")
    mf.conv_tol, mf.verbose = 1e-10, 0
    mf.kernel()
    return mf


def _cpks(mf):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyscf.prop.polarizability.rks import Polarizability
    return Polarizability(mf).polarizability()


def test_molecule_labels_match_direct_pyscf(molecule_run):
    _, out, _ = molecule_run
    h2, water = read(out)
    reference = _molecules()

    mf = _sto3g(reference[1])
    fock = mf.get_fock(dm=mf.make_rdm1())
    np.testing.assert_allclose(water.info["overlap_minimal"], mf.get_ovlp(), atol=1e-12)
    np.testing.assert_allclose(water.info["fock_minimal"], fock, atol=1e-7)
    np.testing.assert_allclose(
        water.info["mo_energy_minimal"], scipy.linalg.eigh(fock, mf.get_ovlp(), eigvals_only=True), atol=MO_TOL
    )
    np.testing.assert_allclose(water.info["dipole_minimal"], mf.dip_moment(unit="AU", verbose=0), atol=DIPOLE_TOL)
    assert water.info["energy_minimal"] == pytest.approx(mf.e_tot, abs=1e-8)
    assert water.info["nocc"] == 5

    mf = _tzvp(reference[1])
    np.testing.assert_allclose(water.info["mo_energy_large"], mf.mo_energy, atol=MO_TOL)
    np.testing.assert_allclose(water.info["dipole_large"], mf.dip_moment(unit="AU", verbose=0), atol=DIPOLE_TOL)
    assert water.info["energy_large"] == pytest.approx(mf.e_tot, abs=1e-8)
    assert "polarizability_large" not in water.info and "polarizability_minimal" not in water.info

    mf = _tzvp(reference[0])
    np.testing.assert_allclose(h2.info["mo_energy_large"], mf.mo_energy, atol=MO_TOL)
    np.testing.assert_allclose(h2.info["polarizability_large"], _cpks(mf), atol=1e-4)
    np.testing.assert_allclose(h2.info["polarizability_minimal"], _cpks(_sto3g(reference[0])), atol=1e-5)
    alpha = h2.info["polarizability_large"]
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(alpha) > 0)


def test_read_round_trip_keys_units_and_metadata(molecule_run):
    _, out, result = molecule_run
    directory = out.with_suffix(".d")
    from_file, from_directory = read(out), read(directory)
    assert [a.info["structure_id"] for a in from_file] == ["000000", "000001"]
    for a, b, original in zip(from_file, from_directory, _molecules()):
        np.testing.assert_allclose(a.positions, original.positions, atol=1e-10)  # Å
        np.testing.assert_allclose(b.positions, original.positions, atol=1e-10)
        assert not a.pbc.any()
        for key, value in original.info.items():  # input metadata copied through
            assert a.info[key] == value
        assert set(a.info) == set(b.info)
        for key in ("mo_energy_minimal", "fock_minimal", "overlap_minimal", "mo_energy_large", "dipole_large"):
            np.testing.assert_array_equal(a.info[key], b.info[key])
            assert a.info[key].dtype == np.float64
    h2, water = from_file
    assert h2.info["stages"] == ["minimal", "large", "large_polarizability"]
    assert water.info["stages"] == ["minimal", "large"]
    for key in ("mo_energy_large", "nocc", "dipole_large", "energy_large", "mo_energy_minimal", "fock_minimal"):
        assert key in water.info
    assert water.info["fock_minimal"].shape == (7, 7) and water.info["mo_energy_large"].shape == (43,)
    with h5py.File(out, "r") as root:
        assert root.attrs["format_version"] == FORMAT_VERSION
        group = root["structures/000001"]
        assert group["positions"].attrs["unit"] == "bohr"
        np.testing.assert_allclose(group["positions"][()] * Bohr, _molecules()[1].positions, atol=1e-12)
        assert group["minimal/fock"].attrs["unit"] == "hartree"
        assert group["minimal/fock"].compression == "gzip"
        assert group["large/dipole"].attrs["unit"] == "e*bohr"
        assert group["minimal"].attrs["xc"] == "b3lypg"
        assert group["large"].attrs["basis"] == "def2-tzvp"
        assert group["large"].attrs["auxbasis"] == "def2-universal-jkfit"
        assert group["large"].attrs["conv_tol"] == 1e-10
        assert group["large"].attrs["pyscf_version"]
        assert group["large"].attrs["wall_time"] > 0
        assert group["large"].attrs["threads"] == 1
        assert "polarizability" in root["structures/000000/large_polarizability"]
        # both large-basis stages of h2 were due: one task, one SCF, the CPKS reusing it
        alpha_attrs = root["structures/000000/large_polarizability"].attrs
        assert alpha_attrs["scf_shared_with_stage"] == "large"
        assert alpha_attrs["wall_time"] > root["structures/000000/large"].attrs["wall_time"]
        assert alpha_attrs["scf_cycles"] == root["structures/000000/large"].attrs["scf_cycles"]
    provenance = read(out, provenance=True)[1].info["provenance"]
    assert provenance["large"]["grid_level"] == 3


def test_bad_structure_recorded_not_retried_unless_asked(molecule_run):
    root, out, result = molecule_run
    assert "failed 000002 minimal: ValueError: atoms 0 and 1" in result.output
    failures = read_failures(out)
    assert {(f["structure_id"], f["stage"]) for f in failures} == {("000002", "minimal"), ("000002", "large")}
    assert all(f["index"] == 2 and f["name"] == "broken" and "Å apart" in f["error"] for f in failures)
    work = root / "retry"
    shutil.copytree(out.with_suffix(".d"), work / "out.d")
    args = ["label", str(root / "mols.xyz"), "-o", str(work / "out.h5"), "--polarizability-from-info", "--workers", "0"]
    rerun = _invoke(args)
    assert "0 structure-stages computed, 0 failed, 5 already done, 2 failed earlier" in rerun.output
    rerun = _invoke([*args, "--retry-failed"])
    assert "0 structure-stages computed, 2 failed, 5 already done" in rerun.output


def test_rerun_recomputes_only_missing_structure_stage(molecule_run):
    root, out, _ = molecule_run
    work = root / "resume"
    shutil.copytree(out.with_suffix(".d"), work / "out.d")
    removed = work / "out.d" / "000001.minimal.h5"
    removed.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (work / "out.d").glob("*.h5")}
    args = ["label", str(root / "mols.xyz"), "-o", str(work / "out.h5"), "--polarizability-from-info"]
    result = _invoke([*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "3 structures: 1 structure-stages computed, 0 failed, 4 already done" in result.output
    assert removed.exists()
    after = {p.name: p.stat().st_mtime_ns for p in (work / "out.d").glob("*.h5")}
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing else rewritten
    labelled = read(work / "out.d")
    assert [a.info["structure_id"] for a in labelled] == ["000000", "000001"]
    np.testing.assert_allclose(labelled[1].info["fock_minimal"], read(out)[1].info["fock_minimal"], atol=1e-9)


def failing_task(task):
    """Stands in for run_task in a worker: raises for the water molecule (as a crash would)."""
    if task.structure_id == "000001":
        raise RuntimeError("injected worker failure")
    return run_task(task)


def dying_task(task):
    """Stands in for run_task: the worker process dies (as if killed) on the water molecule."""
    if task.structure_id == "000001":
        os._exit(3)
    return run_task(task)


def test_worker_exception_and_death_are_recorded_others_fine(tmp_path):
    structures = _molecules()[:2]
    summary = label(structures, tmp_path / "a.h5", stages="minimal", workers=1, task_function=failing_task)
    assert summary.computed == [("000000", "minimal")]
    (failure,) = summary.failed
    assert (failure["structure_id"], failure["stage"], failure["error_type"]) == ("000001", "minimal", "RuntimeError")
    assert "injected worker failure" in failure["error"] and "failing_task" in failure["traceback"]
    assert read_failures(tmp_path / "a.d")[0]["error"] == "injected worker failure"
    assert [a.info["structure_id"] for a in read(tmp_path / "a.d")] == ["000000"]
    again = label(structures, tmp_path / "a.h5", stages="minimal", workers=0)
    assert again.n_tasks == 0 and again.skipped_failed == 1 and again.skipped_done == 1
    again = label(structures, tmp_path / "a.h5", stages="minimal", workers=0, retry_failed=True)
    assert again.computed == [("000001", "minimal")] and not read_failures(tmp_path / "a.d")

    summary = label(structures, tmp_path / "b.h5", stages="minimal", workers=2, task_function=dying_task)
    assert summary.computed == [("000000", "minimal")]
    (failure,) = summary.failed
    assert failure["structure_id"] == "000001" and "worker process died 2 times" in failure["error"]


def test_dask_local_cluster_same_labels(molecule_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, out, _ = molecule_run
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        args = ["label", str(root / "mols.xyz"), "-o", str(tmp_path / "dask.h5"), "--stages", "minimal"]
        result = _invoke([*args, "--scheduler", cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    assert "2 structure-stages computed, 1 failed" in result.output
    local, remote = read(out), read(tmp_path / "dask.d")
    assert len(remote) == 2
    for a, b in zip(local, remote):
        np.testing.assert_allclose(b.info["mo_energy_minimal"], a.info["mo_energy_minimal"], atol=1e-9)
        np.testing.assert_allclose(b.info["dipole_minimal"], a.info["dipole_minimal"], atol=1e-8)


def test_silicon_cell_labels(tmp_path):
    si = bulk("Si", "diamond", a=5.43)
    si.info.update(name="si2", kmesh="1 1 1")
    write(tmp_path / "si.xyz", [si], format="extxyz")
    args = ["label", str(tmp_path / "si.xyz"), "-o", str(tmp_path / "si.h5"), "--level", "silicon"]
    result = _invoke([*args, "--basis-large", "gth-szv", "--workers", "0", "--consolidate"])
    assert result.exit_code == 0, result.output
    assert "2 structure-stages computed, 0 failed" in result.output
    (cell,) = read(tmp_path / "si.h5")
    np.testing.assert_allclose(cell.cell[:], si.cell[:], atol=1e-10)
    np.testing.assert_allclose(cell.positions, si.positions, atol=1e-10)
    assert cell.pbc.all() and cell.info["name"] == "si2"
    hk, sk = cell.info["hk_minimal"], cell.info["sk_minimal"]
    assert hk.shape == sk.shape == (1, 8, 8) and hk.dtype == np.complex128
    np.testing.assert_allclose(hk, hk.conj().transpose(0, 2, 1), atol=1e-12)
    bands = np.stack([scipy.linalg.eigh(h, s, eigvals_only=True) for h, s in zip(hk, sk)])
    np.testing.assert_allclose(cell.info["bands_minimal"], bands, atol=1e-10)
    # an independent PySCF KRKS/gth-szv run (the large stage with the basis override) gives the same bands
    np.testing.assert_allclose(cell.info["bands_large"], cell.info["bands_minimal"], atol=MO_TOL)
    assert cell.info["nocc"] == 4
    assert cell.info["vbm_minimal"] == pytest.approx(bands[:, 3].max(), abs=1e-12)
    assert cell.info["cbm_minimal"] == pytest.approx(bands[:, 4].min(), abs=1e-12)
    assert cell.info["fermi_level_large"] == pytest.approx(cell.info["vbm_large"])
    np.testing.assert_array_equal(cell.info["kmesh"], [1, 1, 1])
    np.testing.assert_allclose(cell.info["kpts_frac"], np.zeros((1, 3)))
    reference_cell = to_cell(si, "gth-szv")
    np.testing.assert_allclose(cell.info["sk_minimal"][0], reference_cell.pbc_intor("int1e_ovlp"), atol=1e-10)
    kpts = reference_cell.make_kpts([2, 2, 2])  # the Cartesian convention of the stored kpts
    frac = reference_cell.get_scaled_kpts(kpts)
    np.testing.assert_allclose(2 * np.pi * frac @ np.linalg.inv(reference_cell.lattice_vectors()).T, kpts, atol=1e-12)
    with h5py.File(tmp_path / "si.h5", "r") as root:
        group = root["structures/000000"]
        assert group["cell"].attrs["unit"] == "bohr"
        assert group["minimal"].attrs["pseudo"] == "gth-pade" and group["minimal"].attrs["xc"] == "pbe"
        assert group["large"].attrs["basis"] == "gth-szv"  # the testing override is recorded
        assert group["minimal/kpts"].attrs["unit"] == "1/bohr"


def test_uniform_xc_grid_is_an_option_recorded_with_the_label(tmp_path):
    """``--xc-grid uniform`` (for cells too large for the periodic Becke partition) integrates the XC on
    the ``cell.mesh`` grid: recorded in the label's attributes, and bands that differ from the Becke-grid
    run of the same cell by a quadrature difference (nonzero, well below 0.1 eV), not by a different
    calculation. An unknown grid is refused before anything runs. The uniform run also takes
    ``--scf-conv-tol 1e-8`` (what large cells use), recorded beside the reference's 1e-10; a tolerance
    for molecules, or a loose one, is refused."""
    si = bulk("Si", "diamond", a=5.43)
    si.info.update(name="si2", kmesh="1 1 1")
    write(tmp_path / "si.xyz", [si], format="extxyz")
    bands = {}
    for grid in ("becke", "uniform"):
        out = tmp_path / f"{grid}.h5"
        args = ["label", str(tmp_path / "si.xyz"), "-o", str(out), "--level", "silicon", "--stages", "large"]
        tolerance = ["--scf-conv-tol", "1e-8"] if grid == "uniform" else []
        result = _invoke([*args, "--basis-large", "gth-szv", "--workers", "0", "--xc-grid", grid, *tolerance])
        assert result.exit_code == 0, result.output
        (cell,) = read(tmp_path / f"{grid}.d")
        bands[grid] = cell.info["bands_large"]
        with h5py.File(next((tmp_path / f"{grid}.d").glob("000000.large.h5")), "r") as root:
            attrs = dict(root["structures/000000/large"].attrs)
        assert attrs["grid"] == {"becke": "BeckeGrids", "uniform": "UniformGrids"}[grid]
        assert attrs["conv_tol"] == {"becke": 1e-10, "uniform": 1e-8}[grid]
        assert attrs["converged"]
    difference = np.abs(bands["uniform"] - bands["becke"]).max()
    assert 1e-7 < difference < 0.1 / HARTREE_TO_EV, difference
    with pytest.raises(LabelError, match="xc_grid"):
        label([si], tmp_path / "bad.h5", level="silicon", xc_grid="lebedev", workers=0)
    with pytest.raises(LabelError, match="periodic labels"):
        label([molecule("H2O")], tmp_path / "bad.h5", level="molecule", conv_tol=1e-8, workers=0)
    with pytest.raises(LabelError, match=r"\(0, 1e-6\]"):
        label([si], tmp_path / "bad.h5", level="silicon", conv_tol=1e-3, workers=0)


def test_interrupted_periodic_scf_resumes_from_its_scratch(tmp_path, monkeypatch):
    """A cell whose SCF stops early keeps its density-fitting integrals and last SCF cycle in the scratch
    directory; the next attempt reuses both, converges to the same bands as a fresh run, and cleans up."""
    from pyscf.pbc import dft as pbcdft

    from mlhcalc.reference import compute

    monkeypatch.setenv("MLHCALC_SCRATCH", str(tmp_path / "scratch"))
    si = bulk("Si", "diamond", a=5.43)
    si.positions[1] += [0.05, -0.03, 0.02]
    fresh, fresh_attrs = compute.silicon_stage(si, 0, (1, 1, 1), "gth-szv", False)
    assert not fresh_attrs["resumed_from_scratch"]
    scratch = compute.scf_scratch(si, "gth-szv", (1, 1, 1))
    assert not scratch.exists()  # removed after success

    # killed before the first cycle: PySCF has written the cell, but no SCF record, into the checkpoint,
    # and the integrals file is partial (no completion marker)
    from pyscf.pbc.lib.chkfile import save_cell

    scratch.mkdir(parents=True)
    save_cell(to_cell(si, "gth-szv"), str(scratch / "scf.chk"))
    (scratch / "cderi.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated by a kill")
    early, early_attrs = compute.silicon_stage(si, 0, (1, 1, 1), "gth-szv", False)
    assert not early_attrs["resumed_from_scratch"] and not scratch.exists()
    np.testing.assert_allclose(early["bands"][0], fresh["bands"][0], rtol=0, atol=MO_TOL)

    krks = pbcdft.KRKS

    def stopping_early(*args, **kwargs):
        mf = krks(*args, **kwargs)
        mf.max_cycle = 2
        return mf

    monkeypatch.setattr(pbcdft, "KRKS", stopping_early)
    with pytest.raises(compute.SCFNotConverged):
        compute.silicon_stage(si, 0, (1, 1, 1), "gth-szv", False)
    assert (scratch / "cderi.complete").is_file() and (scratch / "scf.chk").is_file()
    assert (scratch / "hcore.npy").is_file()
    monkeypatch.setattr(pbcdft, "KRKS", krks)
    resumed, attrs = compute.silicon_stage(si, 0, (1, 1, 1), "gth-szv", False)
    assert attrs["resumed_from_scratch"]
    np.testing.assert_allclose(resumed["bands"][0], fresh["bands"][0], rtol=0, atol=MO_TOL)
    assert attrs["scf_cycles"] <= fresh_attrs["scf_cycles"]
    assert not scratch.exists()


def test_unreadable_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.xyz"
    bad.write_text("this is not\nan xyz file\n")
    result = CliRunner().invoke(main, ["label", str(bad), "-o", str(tmp_path / "x.h5")])
    assert result.exit_code != 0
    assert "cannot read structures from" in result.output
    result = CliRunner().invoke(main, ["label", str(tmp_path / "missing.xyz"), "-o", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_changed_input_or_level_refused(tmp_path):
    h2 = molecule("H2")
    label([h2], tmp_path / "o.h5", stages="minimal", workers=0)
    moved = h2.copy()
    moved.positions[0, 2] += 0.05
    with pytest.raises(LabelError, match="different structure"):
        label([moved], tmp_path / "o.h5", stages="minimal", workers=0)
    with pytest.raises(LabelError, match="--level molecule"):
        label([bulk("Si", "diamond", a=5.43)], tmp_path / "o.h5", level="silicon", workers=0)
    with pytest.raises(LabelError, match="unknown stage"):
        label([h2], tmp_path / "o.h5", stages="minimal,huge", workers=0)
    from mlhcalc.reference.storage import lock_directory

    with lock_directory(tmp_path / "o.d"), pytest.raises(LabelError, match="in use by another labelling run"):
        label([h2], tmp_path / "o.h5", stages="minimal", workers=0)
    path = consolidate(tmp_path / "o.d")
    assert path == tmp_path / "o.h5" and len(read(path)) == 1


def test_only_labels_the_chosen_structures_in_the_given_order(tmp_path):
    structures = [molecule(name) for name in ("H2", "HF", "LiH")]
    write(tmp_path / "three.xyz", structures, format="extxyz")
    first = label(tmp_path / "three.xyz", tmp_path / "o.h5", stages="minimal", workers=0, only=[2, 0])
    assert first.computed == [("000002", "minimal"), ("000000", "minimal")]  # ids are input positions
    assert [a.get_chemical_formula() for a in read(tmp_path / "o.d")] == ["H2", "HLi"]
    rest = _invoke(["label", str(tmp_path / "three.xyz"), "-o", str(tmp_path / "o.h5"), "--stages", "minimal",
                    "--workers", "0"])
    assert rest.exit_code == 0 and "1 structure-stages computed" in rest.output and "2 already done" in rest.output
    for only, message in (("3", "outside the input's 3 structures"), ("1,1", "repeated"), ("a,1", "comma-separated"),
                          (",", "no indices given")):  # fmt: skip
        result = CliRunner().invoke(
            main, ["label", str(tmp_path / "three.xyz"), "-o", str(tmp_path / "x.h5"), "--only", only]
        )
        assert result.exit_code != 0 and message in result.output, result.output


def test_minimal_stage_recomputed_when_polarizability_is_asked_later(tmp_path):
    h2 = molecule("H2")
    first = label([h2], tmp_path / "p.h5", stages="minimal", workers=0)
    assert first.computed == [("000000", "minimal")]
    assert "polarizability_minimal" not in read(tmp_path / "p.d")[0].info
    second = label([h2], tmp_path / "p.h5", stages="minimal", polarizability="all", workers=0)
    assert second.computed == [("000000", "minimal")]
    assert read(tmp_path / "p.d")[0].info["polarizability_minimal"].shape == (3, 3)
    third = label([h2], tmp_path / "p.h5", stages="minimal", polarizability="all", workers=0)
    assert third.n_tasks == 0 and third.skipped_done == 1


def test_parse_kmesh():
    assert parse_kmesh("4 4 4") == (4, 4, 4)
    assert parse_kmesh(np.array([2, 2, 2])) == (2, 2, 2)
    assert parse_kmesh("3x3x1") == (3, 3, 1)
    for bad in ("4 4", "0 1 1", "a b c", [1.5, 1, 1]):
        with pytest.raises(ValueError):
            parse_kmesh(bad)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_run_resumes_each_structure_once(tmp_path):
    structures = [molecule(name) for name in ("H2O", "NH3", "CH4", "H2", "HF", "C2H2")]
    write(tmp_path / "six.xyz", structures, format="extxyz")
    directory = tmp_path / "six.d"
    command = [sys.executable, "-m", "mlhcalc.cli", "label", str(tmp_path / "six.xyz"), "-o", str(tmp_path / "six.h5")]
    command += ["--stages", "minimal", "--workers", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def start_and_stop(sig):
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,  # a background shell may have set SIGINT to ignored
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(directory.glob("*.minimal.h5"))) >= 1:
                break
            time.sleep(0.05)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
        return process.returncode, stderr

    code, stderr = start_and_stop(signal.SIGINT)
    assert code == 130 and "rerun the same command to continue" in stderr
    assert 1 <= len(list(directory.glob("*.minimal.h5"))) < 6
    start_and_stop(signal.SIGKILL)
    orphan = directory / ".000005.minimal.h5.tmp-99999"  # what a kill in the middle of a write leaves
    orphan.write_bytes(b"\x89HDF\r\n truncated")
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert "6 structures:" in final.stdout and ", 0 failed" in final.stdout
    assert sorted(p.name for p in directory.glob("*.h5")) == [f"{i:06d}.minimal.h5" for i in range(6)]
    assert not list(directory.glob(".*.tmp-*"))  # orphans of the killed run are removed by the next run
    labelled = read(directory)
    assert [a.info["structure_id"] for a in labelled] == [f"{i:06d}" for i in range(6)]
    assert [a.get_chemical_formula() for a in labelled] == [a.get_chemical_formula() for a in structures]


def test_failed_cpks_keeps_the_joint_scf_labels(tmp_path, monkeypatch):
    """A joint large + polarizability task whose CPKS fails still records the SCF labels; only the
    polarizability stage is a failure (and is the only stage a --retry-failed run recomputes)."""
    import mlhcalc.reference.compute as compute

    def broken_cpks(mf, level):
        raise RuntimeError("CPKS did not converge (injected)")

    monkeypatch.setattr(compute, "_cpks", broken_cpks)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    out = tmp_path / "h2.h5"
    kwargs = dict(stages="large,large_polarizability", polarizability="all", workers=0, basis_large="sto-3g")
    summary = label([h2], out, **kwargs)
    assert summary.computed == [("000000", "large")]
    assert [(f["stage"], f["error_type"]) for f in summary.failed] == [("large_polarizability", "RuntimeError")]
    (atoms,) = read(out.with_suffix(".d"))
    assert "mo_energy_large" in atoms.info and "polarizability_large" not in atoms.info
    monkeypatch.undo()
    summary = label([h2], out, retry_failed=True, **kwargs)
    assert summary.computed == [("000000", "large_polarizability")] and not summary.failed
    (atoms,) = read(out.with_suffix(".d"))
    alpha = atoms.info["polarizability_large"]
    # H2 in STO-3G: only the bond axis responds (no perpendicular virtual orbitals)
    assert alpha.shape == (3, 3) and alpha[2, 2] > 1.0 and np.allclose(alpha[:2], 0, atol=1e-8)


def test_minimal_stage_in_a_model_basis_matches_pyscf_and_is_checked_on_rerun(tmp_path):
    """--basis-minimal (the model-basis experiment): the minimal stage in 6-31G*, equal to direct
    PySCF at the level's settings; a rerun asking for the default STO-3G on that output is refused."""
    from pyscf import dft

    water = molecule("H2O")
    write(tmp_path / "w.xyz", [water], format="extxyz")
    result = _invoke(["label", str(tmp_path / "w.xyz"), "-o", str(tmp_path / "w.h5"), "--stages", "minimal",
                      "--workers", "0", "--basis-minimal", "6-31g*"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (atoms,) = read(tmp_path / "w.d", provenance=True)
    assert atoms.info["provenance"]["minimal"]["basis"] == "6-31g*"
    mf = dft.RKS(to_mole(water, "6-31g*"), xc="b3lypg")
    mf.conv_tol, mf.conv_tol_grad, mf.verbose = 1e-12, 1e-8, 0
    mf.kernel()
    assert atoms.info["fock_minimal"].shape == (mf.mol.nao, mf.mol.nao) == (18, 18)  # 3s2p1d on O, 2s on H
    assert np.abs(atoms.info["mo_energy_minimal"] - mf.mo_energy).max() < MO_TOL
    assert np.abs(atoms.info["overlap_minimal"] - mf.get_ovlp()).max() < 1e-12
    with pytest.raises(LabelError, match="computed in basis '6-31g\\*'"):
        label(tmp_path / "w.xyz", tmp_path / "w.h5", stages="minimal", workers=0)


def test_an_occupation_oscillating_between_kpoints_switches_to_the_same_bands_at_every_kpoint(
    tmp_path, monkeypatch
):
    """When the aufbau occupation keeps moving electrons back and forth between k-points (seen in five
    gth-dzvp cells whose VBM and CBM are meV apart), the SCF stops that attempt after
    OCCUPATION_FLIPS_LIMIT such cycles and fills the lowest nocc bands at every k-point. For an insulator
    that is the aufbau solution, so the bands and energy must equal a normal run's."""
    from pyscf.pbc import dft as pbcdft

    from mlhcalc.reference import compute

    monkeypatch.setenv("MLHCALC_SCRATCH", str(tmp_path / "scratch"))
    si = bulk("Si", "diamond", a=5.43)
    si.positions[1] += [0.05, -0.03, 0.02]
    fresh, fresh_attrs = compute.silicon_stage(si, 0, (2, 1, 1), "gth-szv", False)
    assert fresh_attrs["occupation"] == "aufbau over all k-points" and fresh_attrs["occupation_flips"] == 0

    krks = pbcdft.KRKS

    def oscillating(*args, **kwargs):
        mf = krks(*args, **kwargs)
        aufbau, calls = mf.get_occ, [0]

        def get_occ(mo_energy_kpts=None, mo_coeff_kpts=None):
            occ = [np.array(o) for o in aufbau(mo_energy_kpts, mo_coeff_kpts)]
            calls[0] += 1
            source, target = (0, 1) if calls[0] % 2 else (1, 0)  # a pair hops between the two k-points
            occ[source][np.flatnonzero(occ[source])[-1]] = 0.0
            occ[target][np.flatnonzero(occ[target] == 0)[0]] = 2.0
            return occ

        mf.get_occ = get_occ
        return mf

    monkeypatch.setattr(pbcdft, "KRKS", oscillating)
    fixed, attrs = compute.silicon_stage(si, 0, (2, 1, 1), "gth-szv", False)
    assert attrs["occupation_flips"] == compute.OCCUPATION_FLIPS_LIMIT
    assert attrs["occupation"].startswith("the lowest 4 bands at every k-point") and attrs["scf_attempts"] == 2
    np.testing.assert_allclose(fixed["bands"][0], fresh["bands"][0], rtol=0, atol=MO_TOL)
    assert abs(float(fixed["energy"][0]) - float(fresh["energy"][0])) < 1e-8
    assert float(fixed["vbm"][0]) == pytest.approx(float(fresh["vbm"][0]), abs=MO_TOL)


def test_the_occupation_watch_stops_oscillations_only():
    """A stable aufbau occupation, the same at every k-point or not (most gth-dzvp cells converge with 3 or 5
    bands at some k-points), is never stopped; one that moves electrons between k-points cycle after cycle
    is, after OCCUPATION_FLIPS_LIMIT such cycles."""
    from mlhcalc.reference import compute

    def envs(cycle, counts):
        occ = [np.array([2.0] * n + [0.0] * (8 - n)) for n in counts]
        return {"cycle": cycle, "mo_occ": occ, "mo_coeff": None, "mo_energy": None}

    stable = compute._KpointOccupationWatch()
    for cycle, counts in enumerate([(4, 4, 4)] * 2 + [(3, 5, 4)] * 40):  # one move, then a stable semimetal
        stable(envs(cycle, counts))
    assert stable.flips == [2] and not stable.stopped
    insulator = compute._KpointOccupationWatch()
    for cycle in range(40):
        insulator(envs(cycle, (4, 4, 4)))
    assert insulator.flips == [] and not insulator.stopped

    oscillating = compute._KpointOccupationWatch()
    with pytest.raises(compute._OccupationOscillates):
        for cycle in range(40):
            oscillating(envs(cycle, (3, 5, 4) if cycle % 2 else (4, 4, 4)))
    assert oscillating.stopped and len(oscillating.flips) == compute.OCCUPATION_FLIPS_LIMIT
    assert oscillating.flips[-1] == compute.OCCUPATION_FLIPS_LIMIT  # from cycle 1 on, every cycle moved


def test_fixed_occupation_fills_the_same_number_of_bands_at_every_kpoint():
    from mlhcalc.reference.compute import fixed_occupation_per_kpoint

    energies = [np.array([0.3, -1.0, 0.1, 0.2]), np.array([-2.0, -1.5, 0.05, 0.0])]
    occ = fixed_occupation_per_kpoint(2)(energies)
    np.testing.assert_array_equal(occ[0], [0, 2, 2, 0])
    np.testing.assert_array_equal(occ[1], [2, 2, 0, 0])
