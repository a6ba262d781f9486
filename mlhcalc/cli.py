"""The ``mlhcalc`` command line: a thin shell over the library (nothing imports this module)."""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from importlib import metadata

import click
import numpy as np

import mlhcalc
from mlhcalc.registry import find_model, list_models, read_metadata

_DEPENDENCIES = (
    "numpy",
    "scipy",
    "torch",
    "jax",
    "jaxlib",
    "pyscf",
    "pyscfad",
    "pyscf-properties",
    "ase",
    "featomic",
    "featomic-torch",
    "metatensor-core",
    "metatensor-torch",
    "h5py",
    "click",
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _thread_settings() -> dict:
    settings = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    settings["cpu_count"] = os.cpu_count()
    try:
        import torch

        settings["torch_num_threads"] = torch.get_num_threads()
    except ImportError:
        settings["torch_num_threads"] = None
    return settings


def collect_info() -> dict:
    """Everything ``mlhcalc info`` prints, as a JSON-serialisable dict."""
    return {
        "mlhcalc": mlhcalc.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dependencies": {name: _version(name) for name in _DEPENDENCIES},
        "threads": _thread_settings(),
        "models": {name: str(path) for name, path in list_models().items()},
    }


@click.group()
@click.version_option(mlhcalc.__version__, prog_name="mlhcalc")
def main() -> None:
    """Machine-learned minimal-basis Hamiltonians: predict, train, label, spectra."""


@main.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model: str | None, as_json: bool) -> None:
    """Package, dependency and thread information, and the models found (or one MODEL's metadata)."""
    if model is not None:
        try:
            data = read_metadata(find_model(model))
        except FileNotFoundError as err:
            raise click.ClickException(str(err)) from None
        except (OSError, ValueError) as err:
            raise click.ClickException(f"cannot read the metadata of model {model!r}: {err}") from None
        click.echo(json.dumps(data, indent=2) if as_json else _format_model(model, data))
        return
    data = collect_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"mlhcalc {data['mlhcalc']}  (Python {data['python']}, {data['platform']})")
    click.echo("dependencies:")
    for name, version in data["dependencies"].items():
        click.echo(f"  {name:18s} {version or 'not installed'}")
    click.echo("threads:")
    for name, value in data["threads"].items():
        click.echo(f"  {name:18s} {value if value is not None else 'unset'}")
    click.echo("models:")
    if not data["models"]:
        click.echo("  (none found; see mlhcalc.registry for the search path)")
    for name, path in data["models"].items():
        click.echo(f"  {name:18s} {path}")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(),
    help="OUT.h5: results go to OUT.d/ (one file per structure-stage); --consolidate packs them into OUT.h5.",
)
@click.option("--level", type=click.Choice(["molecule", "silicon"]), default="molecule", show_default=True,
              help="molecule: B3LYPG STO-3G / def2-TZVP; silicon: PBE gth-szv / gth-dzvp on a k-mesh.")
@click.option("--stages", default=None, metavar="LIST",
              help="Comma-separated stages: minimal,large,large_polarizability (molecules) or minimal,large "
              "(silicon). Default: all that apply.")
@click.option("--polarizability", "polarizability_all", is_flag=True, help="CPKS polarizability for every molecule.")
@click.option("--polarizability-from-info", is_flag=True,
              help="CPKS polarizability for the molecules whose atoms.info['polarizability'] is true.")
@click.option("--kmesh", nargs=3, type=click.IntRange(min=1), default=None, metavar="N N N",
              help="Gamma-centred k-mesh for structures without atoms.info['kmesh'] (silicon).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Local worker processes (default min(2, cores); 0 = run in this process).")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="OpenMP/BLAS threads of each worker.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the tasks on this Dask distributed scheduler instead of local processes.")
@click.option("--retry-failed", is_flag=True, help="Also recompute structure-stages that failed in an earlier run.")
@click.option("--consolidate", is_flag=True, help="Afterwards pack OUT.d/ into one compressed OUT.h5.")
@click.option("--basis-large", default=None, metavar="BASIS",
              help="TESTING ONLY: replace the large basis (def2-tzvp / gth-dzvp); such labels are not reference data.")
@click.option("--basis-minimal", default=None, metavar="BASIS",
              help="Model-basis experiments: the minimal stage in BASIS (e.g. def2-svp) instead of sto-3g / gth-szv; "
              "use its own -o OUT (training: data.minimal_labels, docs/training.md).")
@click.option("--xc-grid", type=click.Choice(["becke", "uniform"]), default="becke", show_default=True,
              help="Periodic cells: XC quadrature grid. becke = the reference labels; uniform (cell.mesh) for cells "
              "too large for the periodic Becke partition (e.g. the 64-atom supercell; docs/data.md).")
@click.option("--scf-conv-tol", "conv_tol", type=float, default=None, metavar="HA",
              help="Periodic cells: SCF energy tolerance instead of 1e-10 Ha (large cells; recorded in the label).")
@click.option("--only", "only", default=None, metavar="I,J,...",
              help="Label only these structures of INPUT (0-based input positions), in this order. Ids stay the "
              "input positions, so a later run without --only fills in the rest.")
@click.option("--format", "input_format", default=None, help="ASE format of INPUT (default: from the file name).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def label(
    input_path: str,
    output: str,
    level: str,
    stages: str | None,
    polarizability_all: bool,
    polarizability_from_info: bool,
    kmesh: tuple | None,
    workers: int | None,
    threads_per_worker: int,
    scheduler: str | None,
    retry_failed: bool,
    consolidate: bool,
    basis_large: str | None,
    basis_minimal: str | None,
    xc_grid: str,
    conv_tol: float | None,
    only: str | None,
    input_format: str | None,
    progress: bool | None,
) -> None:
    """Compute PySCF reference labels for every structure of INPUT (any ASE-readable file, e.g. extxyz).

    Resumable: a rerun computes only the missing structure-stages. Failed structures are recorded
    (see the summary) and retried only with --retry-failed. Storage format: docs/data.md.
    """
    import ase.io

    from mlhcalc import reference

    if polarizability_all and polarizability_from_info:
        raise click.UsageError("give either --polarizability or --polarizability-from-info, not both")
    mode = "all" if polarizability_all else "info" if polarizability_from_info else "none"
    indices = None
    if only is not None:
        try:
            indices = [int(part) for part in only.split(",") if part.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {only!r}", param_hint="--only") from None
    try:
        structures = ase.io.read(input_path, index=":", format=input_format)
    except Exception as err:  # ASE raises many kinds for unreadable input
        raise click.ClickException(f"cannot read structures from {input_path}: {type(err).__name__}: {err}") from None
    if not structures:
        raise click.ClickException(f"{input_path} holds no structures")
    try:
        summary = reference.label(
            structures,
            output,
            level=level,
            stages=stages,
            polarizability=mode,
            kmesh=kmesh,
            workers=workers,
            threads_per_worker=threads_per_worker,
            scheduler=scheduler,
            retry_failed=retry_failed,
            consolidate=consolidate,
            basis_large=basis_large,
            progress=progress,
            input_file=input_path,
            xc_grid=xc_grid,
            conv_tol=conv_tol,
            only=indices,
            basis_minimal=basis_minimal,
        )
    except reference.LabelError as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: every finished structure-stage is kept in {reference.result_paths(output)[0]}; "
            "rerun the same command to continue",
            err=True,
        )
        sys.exit(130)
    click.echo(
        f"{summary.n_structures} structures: {len(summary.computed)} structure-stages computed, "
        f"{len(summary.failed)} failed, {summary.skipped_done} already done"
        + (f", {summary.skipped_failed} failed earlier (not retried; --retry-failed)" if summary.skipped_failed else "")
        + f" [{summary.wall_time:.1f} s]"
    )
    consolidated = f"  consolidated: {summary.consolidated}" if summary.consolidated else ""
    click.echo(f"results: {summary.directory}{consolidated}")
    for failure in summary.failed:
        message = str(failure.get("error") or "").splitlines()[:1]
        click.echo(
            f"  failed {failure['structure_id']} {failure['stage']}: {failure.get('error_type')}: {''.join(message)}",
            err=True,
        )


_MODEL_HEADLINE = ("basis", "species", "periodic", "level_of_theory", "metrics")


@main.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(exists=True, dir_okay=False))
@click.option("--restart", is_flag=True, help="Ignore an existing checkpoint and start again (default: resume).")
def train(config_path: str, restart: bool) -> None:
    """Train a model on large-basis observables through the QM layer (see docs/training.md).

    Molecular configs train on MO energies, dipoles and polarizabilities; a config with
    ``kind: bands`` trains a periodic model on band energies (docs/periodic.md).

    A rerun of the same CONFIG resumes from its last checkpoint; Ctrl-C saves one first."""
    from mlhcalc.training.bands import is_band_config, train_bands_from_config
    from mlhcalc.training.config import ConfigError
    from mlhcalc.training.trainer import TrainingInterrupted, train_from_config

    run = train_bands_from_config if is_band_config(config_path) else train_from_config
    try:
        model_dir = run(config_path, resume=not restart)
    except ConfigError as err:
        raise click.ClickException(f"invalid training config {config_path}: {err}") from None
    except (ValueError, FileNotFoundError) as err:  # the data or starting model it names (a corrupt model file too)
        raise click.ClickException(f"cannot train {config_path}: {err}") from None
    except TrainingInterrupted as err:
        click.echo(f"interrupted: {err}", err=True)
        sys.exit(130)
    click.echo(f"model written to {model_dir}")


def _format_model(name: str, data: dict) -> str:
    """The model card essentials first (basis, species, level of theory, metrics), then the rest."""
    lines = [f"model {name}"]
    for key in _MODEL_HEADLINE:
        value = data.get(key, "(not recorded)")
        if key == "metrics" and isinstance(value, dict):
            lines.append("  metrics")
            lines += [f"    {metric:20s} {json.dumps(number)}" for metric, number in value.items()]
            continue
        text = ", ".join(map(str, value)) if key == "species" and isinstance(value, list) else str(value)
        lines.append(f"  {key:22s} {text}")
    for key, value in data.items():
        if key in _MODEL_HEADLINE:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        lines.append(f"  {key:22s} {text}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- predict

_PREDICT_PROPERTIES = (
    "eigenvalues",
    "dipole",
    "polarizability",
    "charges",
    "born_effective_charges",
    "polarizability_derivatives",
)
_PERIODIC_PROPERTIES = ("eigenvalues", "charges", "polarizability", "dielectric_tensor")
_DEFAULT_PROPERTIES = {False: "eigenvalues,dipole,polarizability,charges", True: "eigenvalues,charges"}
# computed per structure by the calculator (not by the batched electronic_results)
_PER_STRUCTURE = {
    False: ("born_effective_charges", "polarizability_derivatives"),
    True: ("polarizability", "dielectric_tensor"),
}


def _parse_properties(text: str | None, periodic: bool) -> list[str]:
    names = [p.strip() for p in (text or _DEFAULT_PROPERTIES[periodic]).split(",") if p.strip()]
    allowed = _PERIODIC_PROPERTIES if periodic else _PREDICT_PROPERTIES
    for name in names:
        if name not in allowed:
            kind = "periodic" if periodic else "molecular"
            raise click.UsageError(
                f"--properties: {name!r} is not available for a {kind} model (choose from {', '.join(allowed)})"
            )
    return names


def store_results(atoms, results: dict, properties: list[str], model_name: str, charge: int) -> None:
    """Write the ``mlh_`` keys of ``results`` (ASE units) into ``atoms.info`` / ``atoms.arrays``."""
    info = atoms.info
    info["mlh_model"] = model_name
    info["mlh_charge"] = int(charge)
    if "eigenvalues" in properties:
        eigenvalues = results["eigenvalues"][0]  # (nk, nbands)
        occupied = results["occupations"][0] > 0
        periodic = bool(atoms.pbc.any())
        info["mlh_eigenvalues"] = eigenvalues if periodic else eigenvalues[0]
        if periodic:
            info["mlh_kpts"] = results["ibz_kpoints"]
        homo = float(eigenvalues[occupied].max())
        lumo = float(eigenvalues[~occupied].min()) if (~occupied).any() else float("nan")
        info.update(mlh_homo=homo, mlh_lumo=lumo, mlh_gap=lumo - homo, mlh_fermi_level=float(results["fermi_level"]))
    if "dipole" in properties:
        info["mlh_dipole"] = np.asarray(results["dipole"])
    if "polarizability" in properties:
        info["mlh_polarizability"] = np.asarray(results["polarizability"])  # Å³ (per cell if periodic)
    if "dielectric_tensor" in properties:
        info["mlh_dielectric_tensor"] = np.asarray(results["dielectric_tensor"])
    if "charges" in properties:
        atoms.arrays["mlh_charges"] = np.asarray(results["charges"], dtype=float)
    if "born_effective_charges" in properties:
        atoms.arrays["mlh_born_effective_charges"] = results["born_effective_charges"].reshape(len(atoms), 9)
    if "polarizability_derivatives" in properties:
        atoms.arrays["mlh_polarizability_derivatives"] = results["polarizability_derivatives"].reshape(len(atoms), 27)


def _orbital_line(levels: np.ndarray, n_occupied: int) -> str:
    names = [f"HOMO-{n_occupied - 1 - i}" if i < n_occupied - 1 else "HOMO" for i in range(n_occupied)]
    names += ["LUMO" if i == 0 else f"LUMO+{i}" for i in range(len(levels) - n_occupied)]
    occupied = [f"{names[k]} {levels[k]:.3f}" for k in range(max(0, n_occupied - 4), n_occupied)]
    virtual = [f"{names[k]} {levels[k]:.3f}" for k in range(n_occupied, min(len(levels), n_occupied + 3))]
    return "  orbital energies (eV): " + "  ".join(occupied) + " | " + "  ".join(virtual)


def summary_lines(label: str, atoms) -> list[str]:
    """A short readable account of one predicted structure (orbital energies near the gap, dipole, α)."""
    from mlhcalc.units import E_ANGSTROM_TO_DEBYE

    info = atoms.info
    lines = [f"{label}: {atoms.get_chemical_formula()} ({len(atoms)} atoms, charge {info['mlh_charge']})"]
    if "mlh_eigenvalues" in info and not atoms.pbc.any():
        levels = np.asarray(info["mlh_eigenvalues"])
        lines.append(_orbital_line(levels, int((levels <= info["mlh_homo"]).sum())))
        lines.append(f"  HOMO-LUMO gap {info['mlh_gap']:.3f} eV")
    elif "mlh_eigenvalues" in info:
        lines.append(
            f"  {len(info['mlh_kpts'])} k-points: VBM {info['mlh_homo']:.3f} eV, CBM {info['mlh_lumo']:.3f} eV, "
            f"gap {info['mlh_gap']:.3f} eV, Fermi level {info['mlh_fermi_level']:.3f} eV"
        )
    if "mlh_dipole" in info:
        mu = info["mlh_dipole"]
        debye = np.linalg.norm(mu) * E_ANGSTROM_TO_DEBYE
        lines.append(f"  dipole (e·Å) [{mu[0]:.4f} {mu[1]:.4f} {mu[2]:.4f}]  |μ| = {debye:.3f} D")
    if "mlh_polarizability" in info:
        alpha = info["mlh_polarizability"]
        rows = " ".join("[" + " ".join(f"{v:.3f}" for v in row) + "]" for row in alpha)
        per_cell = " per cell" if atoms.pbc.any() else ""
        lines.append(f"  polarizability{per_cell} (Å³) [{rows}]  isotropic {np.trace(alpha) / 3:.3f} Å³")
    if "mlh_dielectric_tensor" in info:
        eps = info["mlh_dielectric_tensor"]
        lines.append(f"  dielectric tensor ε∞ diagonal [{eps[0, 0]:.3f} {eps[1, 1]:.3f} {eps[2, 2]:.3f}]")
    if "mlh_charges" in atoms.arrays:
        charges = " ".join(f"{s}{q:+.3f}" for s, q in zip(atoms.get_chemical_symbols(), atoms.arrays["mlh_charges"]))
        lines.append(f"  Mulliken charges (e) {charges}")
    return lines


class _PredictRun:
    """One `mlhcalc predict`: computes batches, appends them to the output, keeps failures and timings."""

    def __init__(self, model, model_name, properties, kpoints, charge, output, skip_errors, selection):
        from mlhcalc.calculator import MLHamiltonian

        self.model, self.model_name, self.properties = model, model_name, properties
        self.kpoints, self.charge, self.output, self.skip_errors = kpoints, charge, output, skip_errors
        self.selection = selection
        self.per_structure = [name for name in properties if name in _PER_STRUCTURE[bool(model.periodic)]]
        self.calc = MLHamiltonian(model, charge=charge, kpts=kpoints) if self.per_structure else None
        self.n_written = self.n_steady = self.n_steady_atoms = 0
        self.failures: list[tuple[str, str]] = []
        self.shown: list = []  # (label, atoms) of the first few, for the readable summary
        self.seconds = {"first_batch": 0.0, "first_compile": 0.0, "steady": 0.0, "later_compile": 0.0}

    def label(self, position: int) -> str:
        index = self.selection
        if isinstance(index, slice) and (index.start or 0) >= 0 and (index.step or 1) > 0:
            return f"structure {(index.start or 0) + (index.step or 1) * position}"
        return f"selected structure {position}"

    def _compute(self, batch: list) -> list:
        from mlhcalc.calculator import electronic_results

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            results = electronic_results(self.model, batch, kpts=self.kpoints, charge=self.charge)
            for position, (atoms, result) in enumerate(zip(batch, results)):
                if isinstance(result, Exception) or not self.per_structure:
                    continue
                try:
                    for name in self.per_structure:
                        result[name] = self.calc.get_property(name, atoms.copy())
                except Exception as err:  # noqa: BLE001 - reported per structure
                    results[position] = err
        for message in sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)}):
            click.echo(f"warning: {message}", err=True)
        return results

    def run_batch(self, batch: list, offset: int) -> None:
        import time

        from mlhcalc.calculator import qm_compile_seconds

        compiled_before, start = qm_compile_seconds(), time.perf_counter()
        good = []
        for position, (atoms, result) in enumerate(zip(batch, self._compute(batch))):
            where = self.label(offset + position)
            if isinstance(result, Exception):
                message = f"{type(result).__name__}: {result}"
                if not self.skip_errors:
                    self._append(good)
                    raise click.ClickException(
                        f"{where}: {message}\n{self.n_written} structures before it are in {self.output}; fix the "
                        "input, select structures with --index, or skip failing ones with --skip-errors"
                    )
                self.failures.append((where, message))
                click.echo(f"skipped {where}: {message}", err=True)
                continue
            total_charge = self.model.check(atoms, self.charge)
            store_results(atoms, result, self.properties, self.model_name, total_charge)
            good.append(atoms)
            if len(self.shown) < 4:
                self.shown.append((where, atoms))
        self._append(good)
        elapsed, compiled = time.perf_counter() - start, qm_compile_seconds() - compiled_before
        if offset == 0:
            self.seconds["first_batch"] += elapsed
            self.seconds["first_compile"] += compiled
        else:
            self.seconds["steady"] += elapsed - compiled
            self.seconds["later_compile"] += compiled
            self.n_steady += len(good)
            self.n_steady_atoms += sum(len(atoms) for atoms in good)

    def _append(self, structures: list) -> None:
        import ase.io

        if structures:
            ase.io.write(self.output, structures, format="extxyz", append=True)
            self.n_written += len(structures)

    def timing_lines(self, load_seconds: float, first_batch_size: int) -> list[str]:
        s = self.seconds
        lines = [
            f"timing: model load {load_seconds:.2f} s; first batch ({first_batch_size} structures) "
            f"{s['first_batch']:.2f} s, of which JAX compilation {s['first_compile']:.2f} s"
        ]
        if self.n_steady:
            per_structure = s["steady"] / self.n_steady
            excluded = f"; compiling new size buckets took {s['later_compile']:.2f} s (excluded)"
            lines.append(
                f"steady state: {self.n_steady} structures in {s['steady']:.2f} s = {1e3 * per_structure:.1f} "
                f"ms/structure, {1e3 * s['steady'] / self.n_steady_atoms:.2f} ms/atom "
                f"({1 / per_structure:.1f} structures/s)" + (excluded if s["later_compile"] else "")
            )
        return lines


@main.command()
@click.argument("model")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output extxyz (overwritten; appended batch by batch).")
@click.option("--properties", default=None, metavar="LIST",
              help="Comma-separated, from eigenvalues,dipole,polarizability,charges,born_effective_charges,"
              "polarizability_derivatives (periodic models: eigenvalues,charges,polarizability,dielectric_tensor; "
              "the last two need a full k-mesh). Default: eigenvalues,dipole,polarizability,charges "
              "(periodic models: eigenvalues,charges).")
@click.option("--index", default=":", show_default=True, help="Which structures of INPUT (ASE index syntax).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Structures per model call (features are computed for a batch at once; 8-16 is fastest).")
@click.option("--kpts", nargs=3, type=click.IntRange(min=1), default=None, metavar="N N N",
              help="k-mesh of periodic models: Monkhorst-Pack (misses Γ for even N) unless --gamma.")
@click.option("--gamma", is_flag=True, help="Γ-centred k-mesh (with --kpts).")
@click.option("--charge", type=int, default=None,
              help="Total charge of every structure (default: info['charge'], else 0).")
@click.option("--skip-errors", is_flag=True, help="Report failing structures and go on with the others.")
@click.option("--format", "input_format", default=None, help="ASE format of INPUT (default: from the file name).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def predict(
    model: str,
    input_path: str,
    output: str,
    properties: str | None,
    index: str,
    batch_size: int,
    kpts: tuple | None,
    gamma: bool,
    charge: int | None,
    skip_errors: bool,
    input_format: str | None,
    progress: bool | None,
) -> None:
    """Electronic properties of every structure of INPUT (any ASE-readable file) with MODEL (a name
    or a model directory).

    OUT is extxyz with the results under the prefix mlh_ (atoms.info: mlh_eigenvalues, mlh_homo,
    mlh_lumo, mlh_gap, mlh_fermi_level, mlh_dipole, mlh_polarizability; atoms.arrays: mlh_charges,
    ...), in eV, Å, e·Å, Å³ and e. OUT is written batch by batch: an interrupted run keeps every
    finished batch. Reference: docs/cli.md.
    """
    import time

    import ase.io
    from ase.io.formats import string2index
    from tqdm import tqdm

    from mlhcalc.memory import keep_freed_memory
    from mlhcalc.model import HamiltonianModel, ModelFileError

    keep_freed_memory()  # every structure reuses the freed feature memory (mlhcalc/memory.py)
    start = time.perf_counter()
    try:
        hamiltonian_model = HamiltonianModel.load(model)
    except (FileNotFoundError, ModelFileError) as err:
        raise click.ClickException(str(err)) from None
    load_seconds = time.perf_counter() - start
    names = _parse_properties(properties, hamiltonian_model.periodic)
    if gamma and kpts is None:
        raise click.UsageError("--gamma needs --kpts N N N")
    if kpts is not None and not hamiltonian_model.periodic:
        raise click.UsageError(f"--kpts applies to periodic models; {model!r} is a molecular model")
    kpoints = None if kpts is None else ({"size": tuple(kpts), "gamma": True} if gamma else tuple(kpts))
    try:
        selection = string2index(index)
    except ValueError:
        raise click.UsageError(f"--index {index!r} is not an ASE index (e.g. ':', '5', '10:20', '::2')") from None
    run = _PredictRun(hamiltonian_model, model, names, kpoints, charge, output, skip_errors, selection)
    open(output, "w").close()  # a fresh file; batches are appended

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(unit="structure", disable=not show, file=sys.stderr)
    n_seen, batch = 0, []
    try:
        structures = ase.io.iread(input_path, index=selection, format=input_format)
        while True:
            try:
                atoms = next(structures, None)
            except Exception as err:  # ASE raises many kinds for unreadable input
                run.run_batch(batch, n_seen - len(batch))
                raise click.ClickException(
                    f"cannot read {input_path} after {n_seen} structures ({type(err).__name__}: {err}); "
                    f"{run.n_written} structures are in {output}"
                ) from None
            if atoms is not None:
                batch.append(atoms)
                n_seen += 1
            if batch and (atoms is None or len(batch) == batch_size):
                run.run_batch(batch, n_seen - len(batch))
                bar.update(len(batch))
                batch = []
            if atoms is None:
                break
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"interrupted: the {run.n_written} structures of the finished batches are in {output}", err=True)
        sys.exit(130)
    bar.close()
    if n_seen == 0:
        raise click.ClickException(f"{input_path} (index {index!r}) holds no structures")
    if n_seen <= 3:
        for where, atoms in run.shown:
            click.echo("\n".join(summary_lines(where, atoms)))
    skipped = f" ({len(run.failures)} skipped)" if run.failures else ""
    click.echo(f"wrote {run.n_written} of {n_seen} structures to {output}{skipped}")
    for where, message in run.failures:
        click.echo(f"  failed {where}: {message}", err=True)
    for line in run.timing_lines(load_seconds, min(batch_size, n_seen)):
        click.echo(line)


# ----------------------------------------------------------------------------- spectrum


@main.command()
@click.argument("kind", type=click.Choice(["ir", "raman"]))
@click.argument("trajectory", type=click.Path(exists=True, dir_okay=False))
@click.option("--dt", "dt_fs", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Time between frames in fs.")
@click.option("-o", "--output", "prefix", required=True, help="Writes PREFIX.csv and PREFIX.png.")
@click.option("--index", default=":", show_default=True, help="Frames to use (ASE index syntax).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Raman only: Stokes line shape with the harmonic quantum correction at this temperature (K). "
              "(IR absorption from MD needs no factor: see docs/spectra.md.)")
@click.option("--max-lag", type=click.IntRange(min=8), default=None,
              help="Longest correlation lag in frames (default: all; shorter = smoother).")
@click.option("--window", type=click.Choice(["hann", "none"]), default="hann", show_default=True)
@click.option("--xmax", type=float, default=4000.0, show_default=True,
              help="Upper wavenumber (cm⁻¹) of the table and the plot.")
def spectrum(kind, trajectory, dt_fs, prefix, index, temperature, max_lag, window, xmax) -> None:
    """IR or Raman spectrum from the mlh_dipole / mlh_polarizability of an MD TRAJECTORY written by
    `mlhcalc predict` (frames equally spaced by --dt fs). See docs/spectra.md."""
    import ase.io

    from mlhcalc import spectra

    key = "mlh_dipole" if kind == "ir" else "mlh_polarizability"
    needs = "dipole" if kind == "ir" else "polarizability"
    try:
        frames = ase.io.read(trajectory, index=index)
    except Exception as err:  # ASE raises many kinds for unreadable input
        raise click.ClickException(f"cannot read {trajectory}: {type(err).__name__}: {err}") from None
    frames = frames if isinstance(frames, list) else [frames]
    series = []
    for number, atoms in enumerate(frames):
        if key not in atoms.info:
            raise click.ClickException(
                f"frame {number} of {trajectory} has no {key}: run `mlhcalc predict MODEL {trajectory} -o OUT.extxyz "
                f"--properties {needs}` and use OUT.extxyz"
            )
        series.append(np.asarray(atoms.info[key], dtype=float).reshape(-1))
    if len(series) < 8:
        raise click.ClickException(f"{len(series)} frames: a spectrum needs at least 8 (more than 1000 is typical)")
    data = np.array(series)
    if temperature is not None and kind == "ir":
        raise click.UsageError(
            "--temperature applies to Raman: the IR absorption from classical MD, FT<dμ/dt·dμ/dt>, already equals "
            "the harmonic quantum-corrected one (docs/spectra.md)"
        )
    kwargs = dict(window=None if window == "none" else window, max_lag=max_lag)
    try:
        if kind == "ir":
            result = spectra.ir(data, dt_fs, **kwargs)
        else:
            result = spectra.raman(data, dt_fs, temperature=temperature, **kwargs)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    keep = result.wavenumber <= xmax
    columns, table = result.table()
    np.savetxt(f"{prefix}.csv", table[keep], delimiter=",", header=",".join(columns), comments="")
    written = [f"{prefix}.csv"]
    try:
        _plot_spectrum(result, keep, kind, f"{prefix}.png", dt_fs, len(series))
        written.append(f"{prefix}.png")
    except ImportError:
        click.echo("matplotlib is not installed: no PNG written (pip install matplotlib)", err=True)
    resolution = spectra.INVERSE_FS_TO_WAVENUMBER / (dt_fs * (max_lag or len(series)))
    click.echo(f"{kind} spectrum of {len(series)} frames (dt {dt_fs} fs, resolution ~{resolution:.1f} cm⁻¹): "
               + ", ".join(written))


def _plot_spectrum(result, keep, kind: str, path: str, dt_fs: float, n_frames: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    scale = result.intensity[keep].max() or 1.0
    ax.plot(result.wavenumber[keep], result.intensity[keep] / scale, color="k", lw=1.2, label="total")
    for name, values in result.components.items():
        ax.plot(result.wavenumber[keep], values[keep] / scale, lw=0.9, label=name)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("intensity (normalised)")
    ax.set_title(f"{'IR' if kind == 'ir' else 'Raman'} from {n_frames} MD frames, dt = {dt_fs} fs")
    if result.components:
        ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
