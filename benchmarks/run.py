"""Side-by-side benchmark: mlhcalc against what a user would pick instead, measured in one run.

On held-out structures (``data/qm7like`` test split, ``data/larger``, silicon test cells), against the
reference (B3LYPG/def2-TZVP for molecules, PBE/gth-dzvp for silicon; ``mlhcalc.reference``):

- accuracy (the metrics of ``mlhcalc.training.metrics``, REFERENCE.md "Metrics"): occupied MO
  energies, valence, HOMO, LUMO, HOMO–LUMO gap, dipole, polarizability, band energies and gap; for
  every installed mlhcalc model (``mlhcalc.registry``), plain B3LYPG/STO-3G (the stored ``minimal``
  labels; gth-szv for silicon), GFN2-xTB (tblite: orbital energies, dipole, finite-field α) and the
  direct surrogate (``mlhcalc.training.surrogate``, fitted on the train split inside the run);
- time per structure of each method and of the reference calculation itself on the same molecules,
  and the speed-up ratios;
- scaling of mlhcalc prediction time and peak memory with size (alkanes, polyenes: 5–300 atoms;
  silicon cells 2–512 atoms when a periodic model is installed), with fitted exponents.

    python benchmarks/run.py --quick    # < 10 min on 2 shared cores
    python benchmarks/run.py --full     # every labelled structure, more timings and sizes

Writes ``benchmarks/results/<mode>.md`` (all tables), ``<mode>.json`` (raw numbers),
``<mode>_{accuracy,timing,scaling}.png`` and ``summary.md`` (short table, names the mode); prints the
tables as it goes. Only structures that carry the needed reference labels enter a metric (labelling
runs in the background), and every table states N. Threads are capped to one (shared machine).
docs/benchmarks.md explains every choice.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("PYSCFAD_HOME", os.path.join(os.path.expanduser("~"), ".cache", "mlhcalc-pyscfad"))

import argparse  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
QM7LIKE_STRUCTURES = REPO / "data" / "qm7like" / "structures.extxyz"
MOLECULE_SETS = {  # name: (labels directory, split that is held out)
    "qm7like test": (REPO / "data" / "qm7like" / "labels.d", "test"),
    "larger": (REPO / "data" / "larger" / "labels.d", "larger"),
}
SURROGATE_LABELS = REPO / "data" / "qm7like" / "labels.d"
SILICON_SETS = {  # name: (structures, labels directory); the held-out cells are split 'test' / 'transfer'
    "silicon primitive": (REPO / "data/silicon/primitive.extxyz", REPO / "data/silicon/primitive_labels.d"),
    "silicon cubic": (REPO / "data/silicon/cubic.extxyz", REPO / "data/silicon/cubic_labels.d"),
    "silicon 64-atom": (REPO / "data/silicon/supercell64.extxyz", REPO / "data/silicon/supercell64_labels.d"),
}
SILICON_HELD_OUT = ("test", "transfer")
EXPECTED_MODELS = ("organic", "organic-sto3g", "silicon")
"""Models the benchmark looks for by name; any other installed model is benchmarked too."""

XTB_FIELD_AU = 1.0e-3  # finite-field step (a.u. of field); α from central differences of the dipole
XTB_ACCURACY = 0.01  # tblite SCC accuracy (default 1.0; smaller is tighter) so that Δμ/2h is converged
SURROGATE_MIN_VAL = 5  # fewer labelled val structures than this: fixed regularisation (below)
SURROGATE_FIXED_REG = {"dipole": 1e-1, "alpha": (3.2e-3, 3.2e-2)}  # chosen on val in docs/surrogate.md
SURROGATE_MIN_TRAIN = 5
SCALING_FIT_MIN_ATOMS = 25  # exponents are fitted above this size (below, fixed overheads dominate)

# rows of the timing table; TIMING_OF names the row that gives a method's full output (ε, μ, α)
REFERENCE_SCF = "B3LYPG/def2-TZVP SCF (reference)"
REFERENCE_ALPHA = "B3LYPG/def2-TZVP SCF + CPKS α (reference)"
STO3G_SCF = "B3LYPG/STO-3G SCF"
STO3G_ALPHA = "B3LYPG/STO-3G SCF + CPKS α"
XTB_SINGLE = "GFN2-xTB single point (ε, μ)"
XTB_ALPHA = "GFN2-xTB + finite-field α (7 single points)"
SURROGATE_TIMING = "direct surrogate (μ, α)"
TIMING_OF = {"B3LYPG/STO-3G": STO3G_ALPHA, "GFN2-xTB": XTB_ALPHA, "direct surrogate": SURROGATE_TIMING}
TIMING_WITHOUT_ALPHA = {"B3LYPG/STO-3G": STO3G_SCF, "GFN2-xTB": XTB_SINGLE}  # rows giving ε and μ only
SMALL_N = 20  # below this many structures an accuracy table is flagged as a smoke test


def model_timing(method: str) -> str:
    return f"{method} (ε, μ, α; one structure per call)"


@dataclass(frozen=True)
class Mode:
    name: str
    max_structures: int | None  # per evaluation set: the first N labelled held-out structures (None: all)
    reference_atoms: tuple[int, ...]  # atom counts of the test molecules whose reference is timed
    alkanes: tuple[int, ...]  # carbon counts of the scaling series
    polyenes: tuple[int, ...]
    silicon_repeats: tuple[tuple[str, tuple[int, int, int]], ...]  # (cell, repeat) of the silicon series
    repeats: int  # warm repetitions of a cheap timing (the fastest is kept)
    time_silicon_reference: bool


MODES = {
    "quick": Mode(
        name="quick",
        max_structures=60,
        reference_atoms=(7,),
        alkanes=(1, 3, 8, 16, 33, 66, 99),
        polyenes=(),
        silicon_repeats=(("primitive", (1, 1, 1)), ("cubic", (1, 1, 1)), ("cubic", (2, 2, 2)), ("cubic", (3, 3, 3))),
        repeats=2,
        time_silicon_reference=False,
    ),
    "full": Mode(
        name="full",
        max_structures=None,
        reference_atoms=(7, 10, 13),
        alkanes=(1, 2, 4, 8, 16, 25, 33, 50, 66, 83, 99),
        polyenes=(2, 4, 8, 16, 32, 50, 74, 100, 148),
        silicon_repeats=(
            ("primitive", (1, 1, 1)),
            ("cubic", (1, 1, 1)),
            ("cubic", (1, 1, 2)),
            ("cubic", (2, 2, 2)),
            ("cubic", (3, 3, 3)),
            ("cubic", (4, 4, 4)),
        ),
        repeats=3,
        time_silicon_reference=True,
    ),
}


# ----------------------------------------------------------------------------------- formatting
def fmt(value, digits: int = 3) -> str:
    """A table cell: '–' for a missing or non-finite number, integers as they are."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return str(int(value))
    if not np.isfinite(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if value and abs(value) < 1e-3 else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    body = ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *body])


class Report:
    """Markdown sections, printed as they are made and written at the end."""

    def __init__(self):
        self.parts: list[str] = []

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.parts.append(text)

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence], notes: Sequence[str] = ()) -> None:
        self.add(f"\n### {title}\n")
        self.add(markdown_table(header, rows) if rows else "_no rows: nothing to compare yet_")
        for note in notes:
            self.add(f"\n{note}")

    def text(self) -> str:
        return "\n".join(self.parts) + "\n"


def fit_power_law(sizes: Sequence[float], values: Sequence[float], min_size: float = 0.0) -> float | None:
    """Exponent p of values ∝ sizes^p: least squares in log–log over sizes ≥ ``min_size`` (None if < 2 points)."""
    points = [(s, v) for s, v in zip(sizes, values) if s >= min_size and v is not None and v > 0]
    if len(points) < 2:
        return None
    logs = np.log(np.asarray(points, dtype=float))
    return float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])


# ----------------------------------------------------------------------------------- timing, memory
@dataclass
class Timing:
    wall: float  # s, steady state (fastest warm call; the only call for expensive ones)
    cpu: float  # s, CPU time of this process over the same call
    first: float | None = None  # s, the first (cold) call: compilation, warm-up
    peak_mb: float | None = None  # peak resident memory of the process during the steady call
    delta_mb: float | None = None  # that peak minus the resident memory just before the call


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    """Hand freed heap pages back to the system (glibc), so that the next call's RSS growth is its own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(function: Callable[[], object], repeats: int = 0, memory: bool = False) -> tuple[Timing, object]:
    """Time ``function``: one call if ``repeats`` is 0, else a cold call and the fastest of ``repeats``
    warm calls (with the peak resident memory of the fastest call if ``memory``)."""

    def once():
        if memory:
            _release_free_memory()
        before = _status_mb("VmRSS") if memory else None
        tracked = memory and _reset_peak_memory()
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = _status_mb("VmHWM") if tracked else None
        delta = None if peak is None or before is None else peak - before
        return Timing(wall, cpu, peak_mb=peak, delta_mb=delta), result

    timing, result = once()
    if repeats:
        first = timing.wall
        timing = min((once()[0] for _ in range(repeats)), key=lambda t: t.wall)
        timing.first = first
    return timing, result


# ----------------------------------------------------------------------------------- data
@functools.cache
def read_labels(directory: Path) -> tuple:
    """``mlhcalc.reference.read`` of a labels directory (read once per run; empty if it does not exist)."""
    from mlhcalc.reference import read

    if not Path(directory).exists():
        return ()
    return tuple(read(directory))


def held_out(structures: list, split: str, key: str, limit: int | None) -> list:
    """The first ``limit`` structures of ``split`` that carry the label ``key``."""
    chosen = [a for a in structures if a.info.get("split") == split and key in a.info]
    return chosen if limit is None else chosen[:limit]


def reference_molecules(atom_counts: Sequence[int]) -> list:
    """One qm7like test molecule per requested size (the first of exactly that many atoms, else the closest)."""
    import ase.io

    test = [a for a in ase.io.read(QM7LIKE_STRUCTURES, index=":") if a.info.get("split") == "test"]
    return [min(test, key=lambda a: abs(len(a) - count)) for count in atom_counts]


def alkane(n_carbon: int):
    """All-trans n-alkane CnH2n+2 (C–C 1.54 Å, C–H 1.09 Å, tetrahedral angles), in the xy plane."""
    from ase import Atoms
    from ase.build import molecule

    if n_carbon == 1:
        return molecule("CH4")
    half = np.radians(109.47) / 2
    step = np.array([1.54 * np.sin(half), 1.54 * np.cos(half), 0.0])
    carbons = np.array([[i * step[0], (i % 2) * step[1], 0.0] for i in range(n_carbon)])
    h_angle = np.radians(109.47) / 2
    positions, symbols = list(carbons), ["C"] * n_carbon
    for i, c in enumerate(carbons):
        outward = np.array([0.0, 1.0 if i % 2 else -1.0, 0.0])
        for side in (1.0, -1.0):
            direction = np.cos(h_angle) * outward + np.sin(h_angle) * np.array([0.0, 0.0, side])
            positions.append(c + 1.09 * direction)
            symbols.append("H")
    for end, inner in ((0, 1), (n_carbon - 1, n_carbon - 2)):  # the terminal H where the next carbon would be
        mirror = carbons[end] + (carbons[end] - carbons[inner]) * np.array([1.0, -1.0, 0.0])
        bond = mirror - carbons[end]
        positions.append(carbons[end] + 1.09 * bond / np.linalg.norm(bond))
        symbols.append("H")
    return Atoms(symbols, positions=positions)


def polyene(n_carbon: int):
    """All-trans polyene CnHn+2 (n even; C–C 1.40 Å, C–H 1.08 Å, 120° angles), in the xy plane."""
    from ase import Atoms

    if n_carbon < 2 or n_carbon % 2:
        raise ValueError("a closed-shell polyene needs an even number of carbons ≥ 2")
    step = np.array([1.40 * np.sin(np.radians(60)), 1.40 * np.cos(np.radians(60)), 0.0])
    carbons = np.array([[i * step[0], (i % 2) * step[1], 0.0] for i in range(n_carbon)])
    positions, symbols = list(carbons), ["C"] * n_carbon

    def rotate(vector, degrees):
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1], 0.0])

    for i, c in enumerate(carbons):
        neighbours = [carbons[j] - c for j in (i - 1, i + 1) if 0 <= j < n_carbon]
        units = [v / np.linalg.norm(v) for v in neighbours]
        if len(units) == 2:
            directions = [-(units[0] + units[1]) / np.linalg.norm(units[0] + units[1])]
        else:  # terminal CH2: ±120° from the only C–C bond
            directions = [rotate(units[0], 120.0), rotate(units[0], -120.0)]
        for direction in directions:
            positions.append(c + 1.08 * direction)
            symbols.append("H")
    return Atoms(symbols, positions=positions)


def silicon_cell(kind: str, repeat: tuple[int, int, int]):
    from ase.build import bulk

    cell = bulk("Si", "diamond", a=5.431, cubic=(kind == "cubic"))
    return cell.repeat(repeat)


# ----------------------------------------------------------------------------------- methods
@dataclass
class MethodResult:
    """One method's predictions on one set (atomic units, per structure, None where it has none)."""

    method: str
    mo_energy: list | None  # hartree, ascending; None: the method gives no orbital energies
    dipole: list | None  # e·bohr
    polarizability: list | None  # a.u.
    valence_only: bool = False  # orbital energies start at the valence (GFN2-xTB has no core levels)
    seconds: float | None = None  # steady-state wall seconds per structure over the set
    n_timed: int = 0
    notes: list[str] = field(default_factory=list)


def _ase_to_au(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from mlhcalc import units

    return (
        np.asarray(result["eigenvalues"])[0, 0] / units.HARTREE_TO_EV,
        np.asarray(result["dipole"]) / units.DIPOLE_AU_TO_E_ANGSTROM,
        np.asarray(result["polarizability"]) / units.POLARIZABILITY_AU_TO_ANGSTROM3,
    )


def model_predictions(name: str, model, atoms_list: list) -> MethodResult:
    """``mlhcalc.calculator.electronic_results`` (the path of ``MLHamiltonian`` and ``mlhcalc predict``)
    over the set: a cold pass (compilation), then a timed warm pass."""
    from mlhcalc.calculator import electronic_results

    def run():
        return electronic_results(model, atoms_list, warn_charged=False)

    timing, results = measure(run, repeats=1)
    out = MethodResult(f"mlhcalc {name}", [], [], [])
    for atoms, result in zip(atoms_list, results):
        if isinstance(result, Exception):
            out.notes.append(f"{atoms.info.get('name', atoms.get_chemical_formula())}: {result}")
            out.mo_energy.append(None)
            out.dipole.append(None)
            out.polarizability.append(None)
            continue
        mo, dipole, alpha = _ase_to_au(result)
        out.mo_energy.append(mo)
        out.dipole.append(dipole)
        out.polarizability.append(alpha)
    out.seconds, out.n_timed = timing.wall / len(atoms_list), len(atoms_list)
    out.notes.append(f"first pass (JAX compilation included) {timing.first:.1f} s for {len(atoms_list)} structures")
    return out


def minimal_labels(atoms_list: list) -> MethodResult:
    """Plain B3LYPG/STO-3G: the stored ``minimal`` labels (CPKS α where labelled)."""
    info = [a.info for a in atoms_list]
    return MethodResult(
        "B3LYPG/STO-3G",
        [i.get("mo_energy_minimal") for i in info],
        [i.get("dipole_minimal") for i in info],
        [i.get("polarizability_minimal") for i in info],
    )


def xtb_available() -> bool:
    return importlib.util.find_spec("tblite") is not None


def xtb_properties(atoms, polarizability: bool = True, field_au: float = XTB_FIELD_AU) -> dict:
    """GFN2-xTB (tblite): valence orbital energies (hartree), dipole (e·bohr, about the labels' origin)
    and, by central finite differences of the dipole in a uniform field ±h along x, y, z, α (a.u.)."""
    from tblite import library
    from tblite.interface import Calculator

    from mlhcalc.structure import dipole_origin, positions_bohr, resolve_charge

    numbers, positions, charge = atoms.get_atomic_numbers(), positions_bohr(atoms), resolve_charge(atoms)
    origin = dipole_origin(atoms, charge)

    def dipole_in_field(field=None):
        calc = Calculator("GFN2-xTB", numbers, positions, charge=float(charge))
        calc.set("verbosity", 0)
        calc.set("accuracy", XTB_ACCURACY)
        if field is not None:
            # tblite 0.8 hands the numpy array to a C API that wants double* (REFERENCE.md): pass a buffer
            values = np.ascontiguousarray(field, dtype=float)
            calc.add("electric-field", library.ffi.from_buffer("double[]", values))
        result = calc.singlepoint()
        return result, np.asarray(result.get("dipole")) - charge * origin

    result, dipole = dipole_in_field()
    out = {"mo_energy": np.sort(np.asarray(result.get("orbital-energies")).ravel()), "dipole": dipole}
    if polarizability:
        alpha = np.zeros((3, 3))
        for axis in range(3):
            step = np.zeros(3)
            step[axis] = field_au
            alpha[:, axis] = (dipole_in_field(step)[1] - dipole_in_field(-step)[1]) / (2.0 * field_au)
        out["polarizability"] = 0.5 * (alpha + alpha.T)
    return out


def xtb_predictions(atoms_list: list) -> MethodResult:
    out = MethodResult("GFN2-xTB", [], [], [], valence_only=True)
    start = time.perf_counter()
    for atoms in atoms_list:
        try:
            props = xtb_properties(atoms)
        except Exception as err:  # noqa: BLE001 - an SCC failure costs one structure, not the run
            out.notes.append(f"{atoms.info.get('name', atoms.get_chemical_formula())}: {type(err).__name__}: {err}")
            props = {}
        out.mo_energy.append(props.get("mo_energy"))
        out.dipole.append(props.get("dipole"))
        out.polarizability.append(props.get("polarizability"))
    out.seconds, out.n_timed = (time.perf_counter() - start) / len(atoms_list), len(atoms_list)
    return out


@dataclass
class Surrogates:
    features: object  # EquivariantFeatures
    dipole: object | None
    alpha: object | None
    notes: list[str]

    def predict(self, atoms_list: list) -> dict:
        from mlhcalc.training.surrogate import structure_features

        feats = structure_features(atoms_list, calculator=self.features)
        return {
            "dipole": None if self.dipole is None else self.dipole.predict(feats),
            "polarizability": None if self.alpha is None else self.alpha.predict(feats),
        }


def fit_surrogates(labelled: list) -> Surrogates:
    """Direct surrogates (``kind="both"`` dipole, λ0 ⊕ λ2 polarizability) fitted to the def2-TZVP labels
    of the qm7like train split; regularisation chosen on val when it has enough labels."""
    from mlhcalc.features import EquivariantFeatures, FeatureHypers
    from mlhcalc.training.surrogate import SPECIES, DipoleSurrogate, PolarizabilitySurrogate, structure_features

    hypers = FeatureHypers(species=SPECIES)
    calculator = EquivariantFeatures(hypers)
    out = Surrogates(calculator, None, None, [])
    for target, key in (("dipole", "dipole_large"), ("alpha", "polarizability_large")):
        train = [a for a in labelled if a.info.get("split") == "train" and key in a.info]
        val = [a for a in labelled if a.info.get("split") == "val" and key in a.info]
        if len(train) < SURROGATE_MIN_TRAIN:
            out.notes.append(f"surrogate {target}: {len(train)} train structures with `{key}`: not fitted")
            continue
        y_train = np.array([a.info[key] for a in train], dtype=float)
        x_train = structure_features(train, calculator=calculator)
        model = DipoleSurrogate(kind="both", hypers=hypers) if target == "dipole" else PolarizabilitySurrogate(hypers)
        if len(val) >= SURROGATE_MIN_VAL:
            y_val = np.array([a.info[key] for a in val], dtype=float)
            model.fit(x_train, y_train, structure_features(val, calculator=calculator), y_val)
            how = f"chosen on {len(val)} val structures"
        else:
            model.fit(x_train, y_train, regularization=SURROGATE_FIXED_REG[target])
            how = f"fixed (only {len(val)} labelled val structures), the value docs/surrogate.md chose on val"
        out.notes.append(
            f"surrogate {target}: fitted to `{key}` of {len(train)} train structures, "
            f"regularisation {model.regularization} {how}"
        )
        setattr(out, target, model)
    return out


def surrogate_predictions(surrogates: Surrogates, atoms_list: list) -> MethodResult | None:
    if surrogates.dipole is None and surrogates.alpha is None:
        return None
    timing, predicted = measure(partial(surrogates.predict, atoms_list))
    dipole, alpha = predicted["dipole"], predicted["polarizability"]
    return MethodResult(
        "direct surrogate",
        None,
        None if dipole is None else list(dipole),
        None if alpha is None else list(alpha),
        seconds=timing.wall / len(atoms_list),
        n_timed=len(atoms_list),
    )


# ----------------------------------------------------------------------------------- accuracy
def accuracy(result: MethodResult, atoms_list: list) -> dict:
    """The metrics of ``mlhcalc.training.evaluation.score`` against the def2-TZVP labels of ``atoms_list``
    (every structure has ``mo_energy_large``); structures the method has no value for are left out."""
    from mlhcalc.training.evaluation import score
    from mlhcalc.training.metrics import n_core_orbitals

    rows = list(range(len(atoms_list)))
    if result.mo_energy is not None:
        rows = [k for k in rows if result.mo_energy[k] is not None]
    if not rows:
        return {"n_structures": 0}
    refs = [np.sort(np.asarray(atoms_list[k].info["mo_energy_large"], dtype=float)) for k in rows]
    numbers = [atoms_list[k].get_atomic_numbers() for k in rows]
    if result.mo_energy is None:
        mo_energy = refs  # score() always scores orbitals: a placeholder, its orbital keys are dropped below
    elif result.valence_only:  # put the reference core levels under the valence levels; only valence metrics kept
        mo_energy = [
            np.concatenate([ref[: n_core_orbitals(z)], np.asarray(result.mo_energy[k])])
            for k, ref, z in zip(rows, refs, numbers)
        ]
    else:
        mo_energy = [np.asarray(result.mo_energy[k]) for k in rows]

    def pick(values):
        return None if values is None else [values[k] for k in rows]

    metrics = score(
        mo_energy,
        pick(result.dipole),
        pick(result.polarizability),
        refs,
        [atoms_list[k].info.get("dipole_large") for k in rows],
        [atoms_list[k].info.get("polarizability_large") for k in rows],
        [int(atoms_list[k].info["nocc"]) for k in rows],
        numbers,
    )
    dropped = ("occupied_mae_ev", "valence_mae_ev", "homo_mae_ev", "lumo_mae_ev", "gap_mae_ev", "n_structures")
    if result.mo_energy is None:
        metrics = {k: v for k, v in metrics.items() if k not in dropped}
    elif result.valence_only:
        metrics.pop("occupied_mae_ev")
    return metrics


def alpha_by_shape(result: MethodResult, atoms_list: list, is_planar: Callable) -> dict[str, dict]:
    """Polarizability metrics of planar and non-planar molecules separately (REFERENCE.md)."""
    out = {}
    for label, planar in (("planar", True), ("non-planar", False)):
        rows = [k for k, a in enumerate(atoms_list) if bool(is_planar(a)) == planar]
        if rows and result.polarizability is not None:
            subset = MethodResult(
                result.method,
                None,
                None,
                [result.polarizability[k] for k in rows],
            )
            metrics = accuracy(subset, [atoms_list[k] for k in rows])
            if metrics.get("alpha_n_structures"):
                out[label] = metrics
    return out


# ----------------------------------------------------------------------------------- molecules
def molecule_section(report: Report, mode: Mode, models: dict, results: dict) -> tuple[dict, Surrogates | None]:
    """Accuracy tables of every method on every molecular set; returns ({set: {method: MethodResult}}, the
    fitted surrogates)."""
    from mlhcalc.structure import is_planar

    labelled = {}
    for set_name, (directory, split) in MOLECULE_SETS.items():
        structures = read_labels(directory)
        chosen = held_out(structures, split, "mo_energy_large", mode.max_structures)
        report.add(
            f"- {set_name}: {len(structures)} structures with any label in `{_shown(directory)}`, "
            f"{sum(a.info.get('split') == split and 'mo_energy_large' in a.info for a in structures)} held-out "
            f"with def2-TZVP MO energies/dipoles, "
            f"{sum(a.info.get('split') == split and 'polarizability_large' in a.info for a in structures)} with the "
            f"def2-TZVP CPKS α; used: {len(chosen)}"
            + (f" (fewer than {SMALL_N}: its accuracy rows are a smoke test)" if 0 < len(chosen) < SMALL_N else "")
            + (" (skipped)" if not chosen else "")
        )
        labelled[set_name] = chosen

    qm7like_all = read_labels(SURROGATE_LABELS)
    surrogates = fit_surrogates(qm7like_all) if qm7like_all else None
    for note in surrogates.notes if surrogates else ["surrogate: no qm7like labels"]:
        report.add(f"- {note}")

    per_set: dict[str, dict[str, MethodResult]] = {}
    for set_name, atoms_list in labelled.items():
        if not atoms_list:
            continue
        methods: dict[str, MethodResult] = {}
        for name, model in models.items():
            if not model.periodic:
                methods[f"mlhcalc {name}"] = model_predictions(name, model, atoms_list)
        methods["B3LYPG/STO-3G"] = minimal_labels(atoms_list)
        if xtb_available():
            methods["GFN2-xTB"] = xtb_predictions(atoms_list)
        if surrogates is not None:
            surrogate = surrogate_predictions(surrogates, atoms_list)
            if surrogate is not None:
                methods["direct surrogate"] = surrogate
        per_set[set_name] = methods

    orbital_rows, dipole_rows, alpha_rows = [], [], []
    store = results.setdefault("accuracy", {})
    for set_name, methods in per_set.items():
        atoms_list = labelled[set_name]
        for method, result in methods.items():
            metrics = accuracy(result, atoms_list)
            store.setdefault(set_name, {})[method] = metrics
            if result.mo_energy is not None:
                orbital_rows.append(
                    [set_name, method, metrics.get("n_structures", 0)]
                    + [
                        metrics.get(key, "n/a (no core levels)" if result.valence_only else None)
                        for key in ("occupied_mae_ev", "valence_mae_ev", "homo_mae_ev", "lumo_mae_ev", "gap_mae_ev")
                    ]
                )
            if result.dipole is not None:
                dipole_rows.append(
                    [set_name, method, metrics.get("dipole_n_structures", 0), metrics.get("dipole_mae_debye")]
                )
            if result.polarizability is not None:
                shapes = alpha_by_shape(result, atoms_list, is_planar)
                for label, values in [("all", metrics), *shapes.items()]:
                    if values.get("alpha_n_structures"):
                        alpha_rows.append(
                            [set_name, method, label, values["alpha_n_structures"]]
                            + [
                                values.get(f"alpha_{k}")
                                for k in ("mae_au", "mae_percent", "isotropic_mae_percent", "anisotropic_mae_au")
                            ]
                        )
                if not metrics.get("alpha_n_structures"):
                    alpha_rows.append([set_name, method, "all", 0, None, None, None, None])
            for note in result.notes:
                report.add(f"- {method} on {set_name}: {note}")

    report.table(
        "Orbital energies against B3LYPG/def2-TZVP (MAE, eV)",
        ["set", "method", "N", "occupied (core incl.)", "valence occupied", "HOMO", "LUMO", "HOMO–LUMO gap"],
        orbital_rows,
        [
            "Levels matched by index after sorting (occupied 0…nocc−1, LUMO = level nocc). GFN2-xTB has a "
            "valence-only basis: its levels are matched to the reference valence levels (the n_core lowest "
            "reference levels are excluded, as in `valence_mae_ev`)."
        ],
    )
    report.table(
        "Dipole against B3LYPG/def2-TZVP",
        ["set", "method", "N", "mean |Δμ| (D)"],
        dipole_rows,
    )
    report.table(
        "Polarizability against B3LYPG/def2-TZVP CPKS",
        ["set", "method", "molecules", "N", "MAE (a.u.)", "MAE / mean iso (%)", "iso MAE (%)", "aniso-part MAE (a.u.)"],
        alpha_rows,
        [
            "mlhcalc α: sum over states of the model Hamiltonian (not self-consistent); STO-3G: CPKS in STO-3G "
            "where labelled; GFN2-xTB: central finite differences of the SCC dipole in a field of "
            f"±{XTB_FIELD_AU:g} a.u.; surrogate: linear λ0 ⊕ λ2 model. Planar = every atom within 0.05 Å "
            "of the best plane (benchmarks/surrogate.py); a minimal basis cannot respond out of plane there."
        ],
    )
    return per_set, surrogates


def silicon_section(report: Report, models: dict, results: dict) -> dict:
    """Band-energy accuracy on the held-out silicon cells: plain gth-szv labels and periodic models."""
    from mlhcalc.calculator import electronic_results
    from mlhcalc.training import metrics as m

    rows, timings = [], {}
    periodic = {name: model for name, model in models.items() if model.periodic}
    for set_name, (_, directory) in SILICON_SETS.items():
        cells = [
            a for a in read_labels(directory) if a.info.get("split") in SILICON_HELD_OUT and "bands_large" in a.info
        ]
        if not cells:
            report.add(f"- {set_name}: no held-out cell has PBE/gth-dzvp labels yet: skipped")
            continue
        candidates = {"PBE/gth-szv": [a.info.get("bands_minimal") for a in cells]}
        for name, model in periodic.items():
            predicted = []
            start = time.perf_counter()
            for atoms in cells:
                (result,) = electronic_results(model, [atoms], kpts=np.asarray(atoms.info["kpts_frac"]))
                predicted.append(
                    None if isinstance(result, Exception) else np.asarray(result["eigenvalues"])[0] / m.HARTREE_TO_EV
                )
            timings[f"mlhcalc {name} ({set_name})"] = (time.perf_counter() - start) / len(cells)
            candidates[f"mlhcalc {name}"] = predicted
        for method, bands in candidates.items():
            pairs = [(b, a) for b, a in zip(bands, cells) if b is not None]
            if not pairs:
                rows.append([set_name, method, 0, None, None])
                continue
            mae = m.band_energy_mae_ev([b for b, _ in pairs], [a.info["bands_large"] for _, a in pairs])
            gap = float(np.mean([m.band_gap_error_ev(b, a.info["bands_large"], int(a.info["nocc"])) for b, a in pairs]))
            rows.append([set_name, method, len(pairs), mae, gap])
            results.setdefault("bands", {}).setdefault(set_name, {})[method] = {
                "n": len(pairs),
                "mae_ev": mae,
                "gap_ev": gap,
            }
    if not periodic:
        report.add("- no periodic (silicon) model installed: only plain gth-szv is compared, where labelled")
    report.table(
        "Band energies against PBE/gth-dzvp (silicon, reference k-mesh)",
        ["set", "method", "N cells", "band MAE (eV, all common bands, no alignment)", "|Δ band gap| (eV)"],
        rows,
    )
    return timings


# ----------------------------------------------------------------------------------- timing
def timing_section(
    report: Report, mode: Mode, models: dict, surrogates: Surrogates | None, per_set: dict, results: dict
):
    """Every method on the same molecules as the timed reference calculation, and speed-ups."""
    from mlhcalc.calculator import electronic_results
    from mlhcalc.reference.compute import SCFNotConverged, molecule_large_polarizability, molecule_minimal
    from mlhcalc.structure import resolve_charge

    molecules = reference_molecules(mode.reference_atoms)
    names = ", ".join(f"{a.get_chemical_formula()} ({len(a)} atoms, {a.info.get('smiles', '')})" for a in molecules)
    report.add(f"Timed molecules (qm7like test split): {names}")
    rows: dict[str, list[Timing]] = {}

    def add(method, timing):
        rows.setdefault(method, []).append(timing)

    for atoms in molecules:
        charge = resolve_charge(atoms)
        for calculation, with_alpha, scf_only in (
            (partial(molecule_large_polarizability, atoms, charge), REFERENCE_ALPHA, REFERENCE_SCF),
            (partial(molecule_minimal, atoms, charge, polarizability=True), STO3G_ALPHA, STO3G_SCF),
        ):
            try:
                timing, (_, attrs) = measure(calculation)
            except SCFNotConverged as err:
                report.add(f"- {with_alpha}, {atoms.get_chemical_formula()}: {err}; not timed")
                continue
            add(with_alpha, timing)
            add(scf_only, Timing(timing.wall - float(attrs["polarizability_wall_time"]), float("nan")))
        if xtb_available():
            add(XTB_SINGLE, measure(partial(xtb_properties, atoms, False), mode.repeats)[0])
            add(XTB_ALPHA, measure(partial(xtb_properties, atoms), mode.repeats)[0])
        if surrogates is not None and (surrogates.dipole is not None or surrogates.alpha is not None):
            add(SURROGATE_TIMING, measure(partial(surrogates.predict, [atoms]), mode.repeats)[0])
        for name, model in models.items():
            if not model.periodic:
                timing = measure(partial(electronic_results, model, [atoms]), mode.repeats)[0]
                add(model_timing(f"mlhcalc {name}"), timing)

    reference = np.mean([t.wall for t in rows.get(REFERENCE_SCF, [])] or [np.nan])
    reference_alpha = np.mean([t.wall for t in rows.get(REFERENCE_ALPHA, [])] or [np.nan])
    table, store = [], results.setdefault("timing", {})
    for method, timings in rows.items():
        wall = float(np.mean([t.wall for t in timings]))
        cpu = float(np.mean([t.cpu for t in timings]))
        first = [t.first for t in timings if t.first is not None]
        store[method] = {"wall_s": wall, "cpu_s": cpu, "first_s": float(np.mean(first)) if first else None}
        table.append(
            [
                method,
                len(timings),
                1e3 * wall,
                1e3 * cpu if np.isfinite(cpu) else None,
                1e3 * float(np.mean(first)) if first else None,
                reference / wall,
                reference_alpha / wall,
            ]
        )
        store[method].update(speedup_scf=reference / wall, speedup_scf_alpha=reference_alpha / wall)
    report.table(
        "Time per molecule, same molecules, this run",
        [
            "method",
            "molecules",
            "wall ms (steady)",
            "CPU ms",
            "first call ms",
            "speed-up vs def2-TZVP SCF",
            "speed-up vs def2-TZVP SCF + α",
        ],
        table,
        [
            "Wall time on a shared 2-core machine, one thread per method; cheap methods: fastest of "
            f"{mode.repeats} warm calls after a cold one (the cold call, with JAX compilation, is 'first call'). "
            "The reference and STO-3G runs are single calls of `mlhcalc.reference.compute` at the exact "
            "levels of `mlhcalc.reference.levels`; their SCF time is the total minus the CPKS time they record. "
            "Speed-up = reference wall time / method wall time, averaged over the molecules."
        ],
    )

    throughput = []
    for set_name, methods in per_set.items():
        for method, result in methods.items():
            if result.seconds is not None:
                throughput.append([set_name, method, result.n_timed, 1e3 * result.seconds])
    stored = stored_wall_times(per_set)
    report.table(
        "Throughput over the evaluation sets (batched where the method batches)",
        ["set", "method", "N", "wall ms per structure"],
        throughput + stored,
        [
            "mlhcalc: one `electronic_results` call for the whole set after a compiling pass; GFN2-xTB: "
            "single point + 6 field single points per structure; surrogate: features + both models, batched. "
            "'stored' rows: median wall time the background labeller recorded in the label files (one "
            "thread, shared machine, other jobs running; not this run)."
        ],
    )
    results["throughput"] = [dict(zip(("set", "method", "n", "ms"), row)) for row in throughput + stored]


def stored_wall_times(per_set: dict) -> list[list]:
    rows = []
    for set_name in per_set:
        directory, split = MOLECULE_SETS[set_name]
        structures = [a for a in read_labels(directory) if a.info.get("split") == split]
        for stage, label in (
            ("minimal", "B3LYPG/STO-3G SCF, + CPKS α where labelled (stored)"),
            ("large", "B3LYPG/def2-TZVP SCF (stored)"),
            ("large_polarizability", "B3LYPG/def2-TZVP SCF + CPKS α (stored)"),
        ):
            times = [
                a.info[f"wall_time_{stage}"]
                for a in structures
                if np.isfinite(a.info.get(f"wall_time_{stage}", np.nan))
            ]
            if times:
                rows.append([set_name, label, len(times), 1e3 * float(np.median(times))])
    return rows


# ----------------------------------------------------------------------------------- scaling
def scaling_section(report: Report, mode: Mode, models: dict, results: dict) -> dict:
    """Prediction time and peak memory against size, per model and structure family."""
    from mlhcalc.calculator import electronic_results

    series: dict[str, list[dict]] = {}
    for name, model in models.items():
        if model.periodic:
            families = {"silicon (Γ only)": [silicon_cell(kind, repeat) for kind, repeat in mode.silicon_repeats]}
            kpts = {"size": (1, 1, 1), "gamma": True}
        else:
            families = {"alkane": [alkane(n) for n in mode.alkanes], "polyene": [polyene(n) for n in mode.polyenes]}
            kpts = None
        for family, structures in families.items():
            points = []
            for atoms in structures:
                timing, (result,) = measure(
                    partial(electronic_results, model, [atoms], kpts=kpts),
                    max(1, mode.repeats - 1),
                    memory=True,
                )
                if isinstance(result, Exception):
                    report.add(f"- scaling {name} {family} {len(atoms)} atoms failed: {result}")
                    continue
                nbands = np.asarray(result["eigenvalues"]).shape[-1]
                points.append(
                    {
                        "atoms": len(atoms),
                        "nao": int(nbands),
                        "first_s": timing.first,
                        "wall_s": timing.wall,
                        "cpu_s": timing.cpu,
                        "peak_mb": timing.peak_mb,
                        "delta_mb": timing.delta_mb,
                    }
                )
                print(f"  scaling {name} {family}: {len(atoms)} atoms {timing.wall:.3f} s", flush=True)
            if points:
                series[f"{name}: {family}"] = points
    if not any(model.periodic for model in models.values()):
        report.add("- silicon scaling (2–512 atoms): skipped, no periodic (silicon) model installed")

    rows, exponents = [], {}
    for key, points in series.items():
        atoms = [p["atoms"] for p in points]
        exponents[key] = {
            "time": fit_power_law(atoms, [p["wall_s"] for p in points], SCALING_FIT_MIN_ATOMS),
            "memory": fit_power_law(atoms, [p["delta_mb"] for p in points], SCALING_FIT_MIN_ATOMS),
        }
        for p in points:
            rows.append(
                [
                    key,
                    p["atoms"],
                    p["nao"],
                    1e3 * p["wall_s"],
                    1e3 * p["cpu_s"],
                    1e3 * (p["first_s"] or 0),
                    p["peak_mb"],
                    p["delta_mb"],
                ]
            )
    report.table(
        "Scaling of mlhcalc prediction (ε, μ, α; bands for cells) with size",
        ["model: family", "atoms", "AOs", "wall ms (steady)", "CPU ms", "first call ms", "peak RSS MB", "Δ RSS MB"],
        rows,
        [
            "One structure per `electronic_results` call; first call includes JAX compilation of its size "
            "bucket. Peak RSS: the process's peak resident memory during the steady call (VmHWM reset just "
            "before it); Δ: minus the resident memory before the call.",
            markdown_table(
                ["series", f"time exponent (≥ {SCALING_FIT_MIN_ATOMS} atoms)", "Δ memory exponent"],
                [[key, e["time"], e["memory"]] for key, e in exponents.items()],
            ),
        ],
    )
    results["scaling"] = {"series": series, "exponents": exponents}
    return series


# ----------------------------------------------------------------------------------- plots
def plots(mode: Mode, results: dict, output: Path) -> list[Path]:
    """The accuracy, timing and scaling figures of ``results`` (those with data) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for kind, draw in (("accuracy", _accuracy_figure), ("timing", _timing_figure), ("scaling", _scaling_figure)):
        fig = draw(plt, mode, results)
        if fig is None:
            continue
        fig.tight_layout()
        path = output / f"{mode.name}_{kind}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _accuracy_figure(plt, mode: Mode, results: dict):
    accuracy_sets = results.get("accuracy", {})
    if not accuracy_sets:
        return None
    panels = [
        ("valence_mae_ev", "n_structures", "valence occupied MAE (eV)"),
        ("gap_mae_ev", "n_structures", "HOMO–LUMO gap MAE (eV)"),
        ("dipole_mae_debye", "dipole_n_structures", "dipole mean |Δμ| (D)"),
        ("alpha_mae_percent", "alpha_n_structures", "α MAE / mean iso (%)"),
    ]
    set_name = next(iter(accuracy_sets))
    methods = accuracy_sets[set_name]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (key, count, title) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        names = [n for n, v in methods.items() if v.get(key) is not None]
        if not names:
            ax.text(0.5, 0.5, "no reference labels yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        values = [methods[n][key] for n in names]
        ax.barh(range(len(names)), values, color="C0")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i, n in enumerate(names):
            ax.text(values[i], i, f" N={methods[n].get(count, '?')}", va="center", fontsize=7)
        ax.margins(x=0.3)
    fig.suptitle(f"{set_name} vs B3LYPG/def2-TZVP ({mode.name} run)", fontsize=10)
    return fig


def _timing_figure(plt, mode: Mode, results: dict):
    timing = results.get("timing", {})
    if not timing:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(timing) + 1.2))
    names = list(timing)
    ax.barh(range(len(names)), [timing[n]["wall_s"] for n in names], color="C1")
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("wall seconds per molecule (same molecules)")
    ax.set_title(f"time per molecule ({mode.name} run)", fontsize=10)
    return fig


def _scaling_figure(plt, mode: Mode, results: dict):
    scaling = results.get("scaling", {}).get("series", {})
    if not scaling:
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (key, points) in enumerate(scaling.items()):
        atoms = [p["atoms"] for p in points]
        exponent = results["scaling"]["exponents"][key]["time"]
        label = key if exponent is None else f"{key} (∝ N^{exponent:.2f})"
        ax_t.loglog(atoms, [p["wall_s"] for p in points], "o-", color=f"C{i}", label=label)
        memory = [(n, p["delta_mb"]) for n, p in zip(atoms, points) if (p["delta_mb"] or 0.0) >= 0.5]
        if memory:
            ax_m.loglog(*zip(*memory), "o-", color=f"C{i}", label=key)
    ax_t.set_xlabel("atoms")
    ax_t.set_ylabel("wall s per structure (steady)")
    ax_t.legend(fontsize=7)
    ax_m.set_xlabel("atoms")
    ax_m.set_ylabel("peak RSS above the pre-call RSS (MB, ≥ 0.5)")
    ax_m.legend(fontsize=7)
    fig.suptitle(f"mlhcalc prediction scaling ({mode.name} run)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------- summary
def summary_markdown(mode: Mode, results: dict, seconds: float) -> str:
    """The short table the README links to: first molecular set, every method, its time and speed-up."""
    lines = [
        "# Benchmark summary",
        "",
        f"Mode **{mode.name}** (`python benchmarks/run.py --{mode.name}`), {results['date']}, "
        f"total run time {seconds / 60:.1f} min. All tables: [{mode.name}.md]({mode.name}.md); "
        f"method and metric definitions: [docs/benchmarks.md](../../docs/benchmarks.md).",
        "",
    ]
    accuracy_sets = results.get("accuracy", {})
    timing = results.get("timing", {})
    if accuracy_sets:
        set_name = next(iter(accuracy_sets))
        lines.append(f"Accuracy on **{set_name}** against B3LYPG/def2-TZVP (N = structures per metric):")
        lines.append("")
        largest_n = max(
            m.get("n_structures", m.get("dipole_n_structures", 0)) for m in accuracy_sets[set_name].values()
        )
        if largest_n < SMALL_N:
            lines.append(f"**Only {largest_n} labelled held-out structures: the accuracy columns are a smoke test.**")
            lines.append("")
        rows = []
        for method, m in accuracy_sets[set_name].items():
            t = timing.get(TIMING_OF.get(method, model_timing(method)), {})
            t_scf = timing.get(TIMING_WITHOUT_ALPHA.get(method, ""), t)
            rows.append(
                [
                    method,
                    _with_n(m.get("occupied_mae_ev"), m.get("n_structures")),
                    _with_n(m.get("valence_mae_ev"), m.get("n_structures")),
                    _with_n(m.get("gap_mae_ev"), m.get("n_structures")),
                    _with_n(m.get("dipole_mae_debye"), m.get("dipole_n_structures")),
                    _with_n(m.get("alpha_mae_percent"), m.get("alpha_n_structures")),
                    1e3 * t["wall_s"] if t else None,
                    t_scf.get("speedup_scf"),
                    t.get("speedup_scf_alpha"),
                ]
            )
        reference = timing.get(REFERENCE_ALPHA)
        if reference:
            rows.append(["B3LYPG/def2-TZVP (reference)", "0", "0", "0", "0", "0", 1e3 * reference["wall_s"], 1.0, 1.0])
        lines.append(
            markdown_table(
                [
                    "method",
                    "occupied MAE eV (N)",
                    "valence MAE eV (N)",
                    "gap MAE eV (N)",
                    "dipole D (N)",
                    "α MAE % (N)",
                    "ms per molecule (ε, μ, α)",
                    "speed-up vs def2-TZVP SCF (ε, μ)",
                    "speed-up vs def2-TZVP SCF + CPKS α",
                ],
                rows,
            )
        )
        lines.append("")
    else:
        lines.append("No held-out molecule had def2-TZVP labels in this run: no accuracy numbers.\n")
    exponents = results.get("scaling", {}).get("exponents", {})
    series = results.get("scaling", {}).get("series", {})
    for key, e in exponents.items():
        largest = max(series[key], key=lambda p: p["atoms"])
        lines.append(
            f"- Scaling, {key}: time ∝ N^{fmt(e['time'], 2)} (≥ {SCALING_FIT_MIN_ATOMS} atoms); "
            f"{largest['atoms']} atoms: {largest['wall_s']:.2f} s per structure, peak memory "
            f"{fmt(largest['delta_mb'], 0)} MB above the process's resident memory before the call."
        )
    lines.append("")
    lines.append(
        "Times: wall clock, one thread, shared 2-core machine, molecules as named in the full report; "
        "speed-up = reference wall time / method wall time on the same molecules (ε, μ: the reference SCF "
        "against the method without α, i.e. GFN2-xTB's single point and the STO-3G SCF; + α: against SCF + CPKS)."
    )
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _with_n(value, n) -> str:
    return "–" if value is None else f"{fmt(value)} ({n})"


# ----------------------------------------------------------------------------------- main
def installed_models(report: Report) -> dict:
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.registry import list_models

    found = list_models()
    models = {}
    for name in list(EXPECTED_MODELS) + sorted(set(found) - set(EXPECTED_MODELS)):
        if name not in found:
            report.add(f"- model `{name}`: not installed, skipped")
            continue
        model = HamiltonianModel.load(name)
        models[name] = model
        report.add(
            f"- model `{name}`: {model.metadata.get('level_of_theory', '?')} "
            f"({'periodic' if model.periodic else 'molecules'}, basis {model.basis}, `{_shown(found[name])}`)"
        )
    return models


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_true", help="< 10 min: ≤ 60 structures per set, one timed molecule")
    group.add_argument("--full", action="store_true", help="every labelled structure, 3 timed molecules, more sizes")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    mode = MODES["full" if args.full else "quick"]

    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*under testing.*")
    start = time.perf_counter()
    results: dict = {"mode": mode.name, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    report = Report()
    report.add(f"# Benchmark: mlhcalc side by side ({mode.name} run, {results['date']})\n")
    report.add(
        f"Command: `python benchmarks/run.py --{mode.name}`; {platform.node() or 'host'}, {os.cpu_count()} cores "
        f"(shared), load average at start {', '.join(f'{x:.1f}' for x in os.getloadavg())}; one thread per method.\n"
    )
    report.add("## Methods\n")
    models = installed_models(report)
    if not xtb_available():
        report.add("- GFN2-xTB: tblite is not installed (`pip install tblite`), skipped")

    report.add("\n## Accuracy on held-out molecules\n")
    per_set, surrogates = molecule_section(report, mode, models, results)
    report.add("\n## Accuracy on held-out silicon cells\n")
    silicon_timings = silicon_section(report, models, results)

    report.add("\n## Time per structure and speed-up\n")
    timing_section(report, mode, models, surrogates, per_set, results)
    for key, seconds in silicon_timings.items():
        report.add(f"- {key}: {1e3 * seconds:.1f} ms per cell (reference k-mesh)")
    if mode.time_silicon_reference and any(m.periodic for m in models.values()):
        silicon_reference_timing(report, results)
    else:
        report.add("- silicon reference (PBE/gth-dzvp) not timed in this mode / without a periodic model")

    report.add("\n## Scaling with size\n")
    scaling_section(report, mode, models, results)

    written = plots(mode, results, output)
    seconds = time.perf_counter() - start
    results["total_seconds"] = seconds
    report.add("\n## Figures\n")
    for path in written:
        report.add(f"![{path.stem}]({path.name})")
    report.add(f"\nTotal run time: {seconds / 60:.1f} min ({mode.name} mode).")
    (output / f"{mode.name}.md").write_text(report.text())
    (output / f"{mode.name}.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    (output / "summary.md").write_text(summary_markdown(mode, results, seconds))
    print(f"\nwrote {output / f'{mode.name}.md'}, {mode.name}.json, summary.md and {len(written)} figures")


def silicon_reference_timing(report: Report, results: dict) -> None:
    from ase.io import read

    from mlhcalc.reference.compute import silicon_stage
    from mlhcalc.reference.levels import SiliconLevel

    structures, _ = SILICON_SETS["silicon primitive"]
    cell = next(a for a in read(structures, index=":") if a.info.get("split") == "test")
    level = SiliconLevel()
    timing, _ = measure(lambda: silicon_stage(cell, 0, cell.info["kmesh"], level.basis_large, False, level))
    results.setdefault("timing", {})["PBE/gth-dzvp KRKS (silicon reference, 2 atoms)"] = {
        "wall_s": timing.wall,
        "cpu_s": timing.cpu,
    }
    report.add(f"- PBE/gth-dzvp reference, 2-atom cell on its {cell.info['kmesh']} mesh: {timing.wall:.0f} s wall")


def _json_default(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)  # numpy scalars and arrays


if __name__ == "__main__":
    main()
