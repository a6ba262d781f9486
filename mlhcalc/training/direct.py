"""Direct fit: closed-form ridge regression of minimal-basis Fock matrices (``fock_minimal``).

The model is a :class:`mlhcalc.model.HamiltonianModel` (equivariant features → per-block linear
heads → raw AO Fock matrix in PySCF order); this module fits its weights to reference Fock
matrices and measures what matters downstream: orbital energies, HOMO–LUMO gap, dipole.

Pieces (all deterministic; features are seeded, the solves are closed form):

- :func:`load_labelled` reads the labels (``mlhcalc.reference.read``) and groups them by split.
- :class:`Reference` caches per structure the integrals (S, r), occupation and reference labels,
  so candidate Fock matrices can be scored cheaply (:func:`fock_observables`, :func:`score`).
- :func:`normal_equations` accumulates XᵀX, XᵀY, Σy² per head (the same problem
  :func:`mlhcalc.hamiltonian.fit_ridge` solves); :func:`solve` sets the weights for one
  regularisation per head; :func:`validation_sse` / :func:`select_regularization` choose each
  head's regularisation on held-out normal equations (each head is an independent least-squares
  problem, so this is exact and costs no refit of features); :func:`regularization_candidates`
  runs both strategies (one value for all heads scanned on a val objective, or one per head).
- :func:`truncate_to_cutoff`: the reference Fock with the blocks of atom pairs beyond the feature
  cutoff set to zero (what the model can at best represent): the cutoff floor.
- :func:`to_lowdin` / :func:`from_lowdin`: S^∓1/2 F S^∓1/2, for fitting experiments in the
  Löwdin-orthogonalised basis (the shipped model predicts the raw AO Fock matrix).
- :func:`to_scc_target` / :func:`from_scc`: the self-consistent-charge model's target F − H_es(q_ref)
  and the self-consistent H_ML + H_es(q) of a prediction (:mod:`mlhcalc.hamiltonian.electrostatics`).

Observables use the overlap and dipole integrals at the structure's positions (PySCF), the
dipole origin of the labels (``atoms.info['dipole_origin']``, else
:func:`mlhcalc.structure.dipole_origin`), aufbau occupations and the numpy generalised
eigensolver; ``tests/test_direct_fit.py`` pins them against
:func:`mlhcalc.qm.molecular.molecule_properties`.

The normal equations come from ``mlhcalc.hamiltonian.model._accumulate_normal_equations`` (private:
the same accumulation ``fit_ridge`` uses), so the two fits cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from ase import Atoms

from mlhcalc.features import systems_from_atoms
from mlhcalc.hamiltonian.blocks import reconstruct
from mlhcalc.hamiltonian.model import BlockModel, _accumulate_normal_equations, model_layouts, overlap_power
from mlhcalc.structure import ao_atom_map, dipole_origin, positions_bohr, to_mole
from mlhcalc.training import metrics

__all__ = [
    "SPLITS",
    "load_labelled",
    "label_files",
    "Reference",
    "fock_observables",
    "score",
    "truncate_to_cutoff",
    "to_lowdin",
    "from_lowdin",
    "to_scc_target",
    "from_scc",
    "normal_equations",
    "add_normal_equations",
    "solve",
    "validation_sse",
    "cross_validation_sse",
    "select_regularization",
    "predict_focks",
    "CachedPredictor",
    "resolve_regularization",
    "regularization_candidates",
    "apply_best",
    "log_grid",
]

SPLITS = ("train", "val", "test")
FOCK_KEY = "fock_minimal"


# ------------------------------------------------------------------------------------------ data
def load_labelled(labels: str | Path, key: str = FOCK_KEY) -> dict[str, list[Atoms]]:
    """Structures of ``labels`` (a ``.d`` directory or consolidated ``.h5``) that carry ``key``,
    grouped by ``atoms.info['split']`` (input order kept)."""
    from mlhcalc.reference import read

    groups: dict[str, list[Atoms]] = {}
    for atoms in read(labels):
        if key in atoms.info:
            groups.setdefault(str(atoms.info.get("split", "none")), []).append(atoms)
    return groups


def label_files(labels_dir: str | Path, atoms_list: Sequence[Atoms], stage: str = "minimal") -> list[Path]:
    """The per-structure label files (``<structure_id>.<stage>.h5``) behind ``atoms_list``, sorted."""
    directory = Path(labels_dir)
    paths = sorted(directory / f"{atoms.info['structure_id']}.{stage}.h5" for atoms in atoms_list)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} label files missing, e.g. {missing[0]}")
    return paths


# ----------------------------------------------------------------------------------- observables
@dataclass
class Reference:
    """One structure's integrals and reference labels (atomic units)."""

    numbers: np.ndarray
    positions: np.ndarray  # bohr
    origin: np.ndarray  # bohr, origin of ``dipole_ints``
    overlap: np.ndarray
    dipole_ints: np.ndarray  # (3, nao, nao), <mu|r - origin|nu>
    ao_atom: np.ndarray
    nocc: int
    fock: np.ndarray | None
    mo_energy: np.ndarray | None
    dipole: np.ndarray | None
    polarizability: np.ndarray | None  # CPKS (self-consistent) when labelled

    @classmethod
    def from_atoms(cls, atoms: Atoms, basis: str = "sto-3g", suffix: str = "minimal") -> Reference:
        mol = to_mole(atoms, basis)
        origin = np.asarray(atoms.info.get("dipole_origin", dipole_origin(atoms)), dtype=float)
        with mol.with_common_orig(origin):
            dipole_ints = mol.intor("int1e_r")
        if mol.nelectron % 2:
            raise ValueError("closed shells only")
        info = atoms.info

        def label(name):
            value = info.get(f"{name}_{suffix}")
            return None if value is None else np.asarray(value, dtype=float)

        return cls(
            numbers=atoms.get_atomic_numbers(),
            positions=positions_bohr(atoms),
            origin=origin,
            overlap=mol.intor("int1e_ovlp"),
            dipole_ints=dipole_ints,
            ao_atom=ao_atom_map(mol),
            nocc=mol.nelectron // 2,
            fock=label("fock"),
            mo_energy=label("mo_energy"),
            dipole=label("dipole"),
            polarizability=label("polarizability"),
        )


def fock_observables(ref: Reference, fock: np.ndarray, polarizability: bool = False) -> dict[str, np.ndarray]:
    """MO energies (Ha), dipole (e·bohr, about ``ref.origin``) and optionally the sum-over-states
    (non-self-consistent) polarizability (a.u.) of the Fock matrix ``fock`` (aufbau, closed shell)."""
    fock = 0.5 * (fock + fock.T)
    mo_energy, mo_coeff = scipy.linalg.eigh(fock, ref.overlap)
    occupied = mo_coeff[:, : ref.nocc]
    density = 2.0 * occupied @ occupied.T
    electronic = -np.einsum("cmn,nm->c", ref.dipole_ints, density)
    nuclear = (ref.numbers[:, None] * (ref.positions - ref.origin)).sum(0)
    result = {"mo_energy": mo_energy, "dipole": electronic + nuclear}
    if polarizability:
        virtual = mo_coeff[:, ref.nocc :]
        r_ai = np.einsum("ma,cmn,ni->cai", virtual, ref.dipole_ints, occupied, optimize=True)
        gaps = mo_energy[ref.nocc :, None] - mo_energy[None, : ref.nocc]
        result["polarizability"] = 4.0 * np.einsum("xai,yai->xy", r_ai, r_ai / gaps)
    return result


def score(refs: Sequence[Reference], focks: Sequence[np.ndarray], polarizability: bool = False) -> dict[str, float]:
    """Metrics of predicted Fock matrices against the stored reference labels of ``refs``:
    Fock MAE (Ha), occupied/valence/HOMO/LUMO/gap MAE (eV), dipole MAE (D); with
    ``polarizability``, the SOS α of ``focks`` against the stored (CPKS) α where labelled."""
    observables = [fock_observables(r, f, polarizability) for r, f in zip(refs, focks)]
    nocc = [r.nocc for r in refs]
    result = {"n_structures": len(refs), "fock_mae_ha": metrics.fock_mae_ha(focks, [r.fock for r in refs])}
    result.update(
        metrics.orbital_energy_metrics(
            [o["mo_energy"] for o in observables], [r.mo_energy for r in refs], nocc, [r.numbers for r in refs]
        )
    )
    result["dipole_mae_debye"] = metrics.dipole_mae_debye(
        np.array([o["dipole"] for o in observables]), np.array([r.dipole for r in refs])
    )
    if polarizability:
        pairs = [
            (o["polarizability"], r.polarizability) for o, r in zip(observables, refs) if r.polarizability is not None
        ]
        if pairs:
            alpha = metrics.polarizability_metrics(np.array([p for p, _ in pairs]), np.array([q for _, q in pairs]))
            result.update({f"alpha_{k}": v for k, v in alpha.items()})
            result["alpha_n_structures"] = len(pairs)
    return result


def to_lowdin(ref: Reference, fock: np.ndarray) -> np.ndarray:
    """S^-1/2 F S^-1/2: the Fock matrix in Löwdin-orthogonalised AOs (each keeps its atom and (n, l, m)
    label, and S^±1/2 is a rotation-covariant function of the geometry, so the blocks transform as
    the raw AO ones do)."""
    root = overlap_power(ref.overlap, -0.5)
    return root @ fock @ root


def from_lowdin(ref: Reference, fock_lowdin: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_lowdin`: S^1/2 F_L S^1/2 (raw AO basis)."""
    root = overlap_power(ref.overlap, 0.5)
    return root @ fock_lowdin @ root


def to_scc_target(ref: Reference, fock: np.ndarray) -> np.ndarray:
    """F − H_es(q_F): what the learned part of a self-consistent-charge model is fitted to (q_F: the
    Mulliken charges of F's own aufbau density)."""
    from mlhcalc.hamiltonian.electrostatics import gamma_matrix, mulliken_charges, scc_term

    charges = mulliken_charges(fock, ref.overlap, ref.nocc, ref.ao_atom, ref.numbers)
    return fock - scc_term(charges, gamma_matrix(ref.numbers, ref.positions), ref.overlap, ref.ao_atom)


def from_scc(ref: Reference, h_model: np.ndarray) -> np.ndarray:
    """The self-consistent H = H_ML + H_es(q(H)) of a predicted H_ML (inverse of :func:`to_scc_target`
    at the fixed point)."""
    from mlhcalc.hamiltonian.electrostatics import gamma_matrix, solve_scc

    gamma = gamma_matrix(ref.numbers, ref.positions)
    hamiltonian, _, _ = solve_scc(h_model, ref.overlap, gamma, ref.ao_atom, ref.numbers, ref.nocc)
    return hamiltonian


def truncate_to_cutoff(ref: Reference, fock: np.ndarray, cutoff_bohr: float) -> np.ndarray:
    """``fock`` with the blocks of atom pairs at distance ≥ ``cutoff_bohr`` set to zero."""
    distances = np.linalg.norm(ref.positions[:, None] - ref.positions[None], axis=-1)
    keep = distances[ref.ao_atom[:, None], ref.ao_atom[None, :]] < cutoff_bohr
    return np.where(keep, fock, 0.0)


# --------------------------------------------------------------------------------------- fitting
def normal_equations(
    model: BlockModel, atoms_list: Sequence[Atoms], focks, batch_size: int = 16, translations=None
) -> dict[str, list]:
    """Per head: [XᵀX, XᵀY, Σy², rows] over ``atoms_list`` with target Fock matrices ``focks``
    (the bias column, if the head has one, is the last one of X). Periodic cells: ``focks[s]`` is an
    H(T) stack on the integer translations ``translations[s]``."""
    normal: dict[str, list] = {}
    with torch.no_grad():
        for start in range(0, len(atoms_list), batch_size):
            chunk = slice(start, start + batch_size)
            targets = [torch.as_tensor(np.asarray(f), dtype=torch.float64) for f in focks[chunk]]
            shifts = None if translations is None else translations[chunk]
            _accumulate_normal_equations(model, systems_from_atoms(list(atoms_list[chunk])), targets, shifts, normal)
    return normal


PENALTIES = ("mean", "diagonal")
NEGLIGIBLE_FEATURES = 1e-20
"""A head whose largest Σ x² over the training rows is below this has no usable features (they are
O(1) by construction; symmetric sites give exact zeros up to round-off, Σ x² ~ 1e-32)."""


def add_normal_equations(*parts: dict[str, list]) -> dict[str, list]:
    """Sum of normal equations of disjoint sets of structures (they are additive)."""
    total: dict[str, list] = {}
    for part in parts:
        for name, values in part.items():
            if name in total:
                total[name] = [a + b for a, b in zip(total[name], values)]
            else:
                total[name] = list(values)
    return total


def _penalised_solve(
    model: BlockModel, name: str, gram: torch.Tensor, moment: torch.Tensor, regularization: float, penalty: str = "mean"
):
    n_weights = model.weights[name].shape[0]
    diagonal = torch.diagonal(gram)[:n_weights]
    if float(diagonal.max()) < NEGLIGIBLE_FEATURES:
        # round-off features (e.g. λ ≥ 1 on-site features of symmetric sites): a relative penalty would
        # amplify the noise into huge weights; such a head keeps zero weights (its bias, if any: the mean)
        solution = torch.zeros_like(moment)
        if gram.shape[0] > n_weights:
            solution[n_weights] = moment[n_weights] / gram[n_weights, n_weights]
        return solution
    if penalty == "mean":  # fit_ridge's choice: one penalty for all features of the head
        added = regularization * diagonal.mean().clamp(min=1e-300)
    elif penalty == "diagonal":  # the same as standardising every feature column (no centring)
        added = regularization * diagonal.clamp(min=1e-300 + 1e-14 * float(diagonal.max()))
    else:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    regularized = gram.clone()
    regularized.diagonal()[:n_weights] += added
    return torch.linalg.solve(regularized, moment)


def solve(
    model: BlockModel, normal: dict[str, list], regularization: float | dict[str, float], penalty: str = "mean"
) -> list[str]:
    """Set the weights (and biases) of every head in ``normal`` to the ridge solution. Penalty:
    ``"mean"``: ``regularization`` × mean diagonal of XᵀX for every weight (as ``fit_ridge``);
    ``"diagonal"``: ``regularization`` × (XᵀX)_kk for weight k (ridge on standardised features). The
    bias is not penalised; a dict gives one value per head. Heads without training rows keep zero
    weights; their names are returned."""
    empty = []
    with torch.no_grad():
        for name, weight in model.weights.items():
            weight.zero_()
            if name in model.biases:
                model.biases[name].zero_()
            if name not in normal or normal[name][3] == 0:
                empty.append(name)
                continue
            gram, moment, _, _ = normal[name]
            lam = regularization[name] if isinstance(regularization, dict) else regularization
            solution = _penalised_solve(model, name, gram, moment, lam, penalty)
            weight.copy_(solution[: weight.shape[0]])
            if name in model.biases:
                model.biases[name].copy_(solution[weight.shape[0]])
    return empty


def validation_sse(
    model: BlockModel, train: dict[str, list], held_out: dict[str, list], grid: Sequence[float], penalty: str = "mean"
) -> dict[str, np.ndarray]:
    """Per head, the held-out sum of squared errors of the coupled values (= squared Frobenius
    error of the independent Fock elements) for each regularisation in ``grid``."""
    result = {}
    with torch.no_grad():
        for name, (gram, moment, _, count) in train.items():
            if count == 0 or name not in held_out:
                continue
            gram_v, moment_v, squares_v, _ = held_out[name]
            errors = []
            for lam in grid:
                w = _penalised_solve(model, name, gram, moment, lam, penalty)
                sse = squares_v.sum() - 2 * (w * moment_v).sum() + (w * (gram_v @ w)).sum()
                errors.append(float(sse))
            result[name] = np.asarray(errors)
    return result


def cross_validation_sse(
    model: BlockModel, parts: Sequence[dict[str, list]], grid: Sequence[float], penalty: str = "mean"
) -> dict[str, np.ndarray]:
    """Per head, the held-out SSE summed over the folds ``parts`` (normal equations of disjoint groups of
    structures, e.g. one per structure): each part is held out once and the rest fitted, in closed form
    (the normal equations are additive). For heads whose val split is too small to choose on."""
    total = add_normal_equations(*parts)
    summed: dict[str, np.ndarray] = {}
    for part in parts:
        rest = {name: [a - b for a, b in zip(total[name], part.get(name, [0, 0, 0, 0]))] for name in total}
        for name, errors in validation_sse(model, rest, part, grid, penalty).items():
            summed[name] = summed.get(name, 0.0) + errors
    return summed


def select_regularization(sse: dict[str, np.ndarray], grid: Sequence[float], default: float) -> dict[str, float]:
    """Per head, the grid value of lowest held-out error (ties → the larger regularisation);
    heads without held-out rows get ``default``."""
    grid = np.asarray(grid, dtype=float)
    chosen = {}
    for name, errors in sse.items():
        best = errors.min()
        candidates = np.nonzero(errors <= best + 1e-12 * abs(best) + 1e-300)[0]  # round-off can make SSE < 0
        chosen[name] = float(grid[candidates].max())
    chosen["__default__"] = float(default)
    return chosen


def resolve_regularization(model: BlockModel, chosen: dict[str, float]) -> dict[str, float]:
    return {name: chosen.get(name, chosen["__default__"]) for name in model.weights}


def regularization_candidates(
    model: BlockModel,
    normal: dict[str, list],
    normal_val: dict[str, list],
    evaluate,
    objective,
    *,
    global_grid: Sequence[float],
    head_grid: Sequence[float],
    penalties: Sequence[str] = ("mean",),
    strategies: Sequence[str] = ("global", "per-head"),
    default: float = 1e-6,
    folds: Sequence[dict[str, list]] = (),
) -> list[tuple]:
    """Val candidates of the ridge regularisation, one per (penalty, strategy): ``"global"``, the value of
    ``global_grid`` for all heads with the lowest ``objective(evaluate())`` (``evaluate`` scores the
    model's current weights on val); ``"per-head"``, each head's value of ``head_grid`` by its own
    held-out error (:func:`validation_sse`; heads without val rows get ``default``); ``"per-head-cv"``,
    the same by cross-validation over ``folds``, the train normal equations split into groups
    (:func:`cross_validation_sse`). Returns tuples (objective, penalty, strategy, regularisation per
    head, label, val metrics); the model is left at the last candidate."""
    candidates = []
    for penalty in penalties:
        if "global" in strategies:
            scan = []
            for lam in global_grid:
                solve(model, normal, lam, penalty)
                result = evaluate()
                scan.append((objective(result), lam, result))
            score_, lam, result = min(scan, key=lambda item: item[0])
            candidates.append((score_, penalty, "global", {n: lam for n in model.weights}, f"{lam:.0e}", result))
        for strategy in [s for s in ("per-head", "per-head-cv") if s in strategies]:
            if strategy == "per-head":
                sse = validation_sse(model, normal, normal_val, head_grid, penalty)
            else:
                sse = cross_validation_sse(model, folds, head_grid, penalty)
            regs = resolve_regularization(model, select_regularization(sse, head_grid, default=default))
            solve(model, normal, regs, penalty)
            result = evaluate()
            values = sorted(set(regs.values()))
            candidates.append((objective(result), penalty, strategy, regs, f"{values[0]:.0e}…{values[-1]:.0e}", result))
    return candidates


def apply_best(model: BlockModel, normal: dict[str, list], candidates: Sequence[tuple]) -> dict:
    """Set the model to the candidate of :func:`regularization_candidates` with the lowest objective;
    returns its record (penalty, strategy, regularisation per head and label, heads without training
    rows, val metrics, objective)."""
    objective, penalty, strategy, regs, label, result = min(candidates, key=lambda item: item[0])
    return {
        "penalty": penalty,
        "strategy": strategy,
        "regularization": regs,
        "regularization_label": label,
        "heads_without_training_rows": solve(model, normal, regs, penalty),
        "val": result,
        "objective": objective,
    }


def predict_focks(model: BlockModel, atoms_list: Sequence[Atoms], batch_size: int = 16) -> list[np.ndarray]:
    """Predicted Fock matrices (numpy, hartree, PySCF AO order) of molecules."""
    focks = []
    with torch.no_grad():
        for start in range(0, len(atoms_list), batch_size):
            for _, fock in model(systems_from_atoms(list(atoms_list[start : start + batch_size]))):
                focks.append(fock.numpy().copy())
    return focks


class CachedPredictor:
    """Features and block layouts of fixed structures, computed once, so the Fock matrices of many
    weight settings of ``model`` (e.g. a regularisation scan) cost only the linear heads."""

    def __init__(self, model: BlockModel, atoms_list: Sequence[Atoms], batch_size: int = 16):
        self.model = model
        self.batches = []
        with torch.no_grad():
            for start in range(0, len(atoms_list), batch_size):
                systems = systems_from_atoms(list(atoms_list[start : start + batch_size]))
                features = model.features(systems)
                self.batches.append((features, model_layouts(features, systems, model.basis)))

    @property
    def translations(self) -> list[np.ndarray]:
        """Per structure, the integer translations [n_T, 3] of the stacks :meth:`predict` returns for
        periodic cells (``[[0, 0, 0]]`` for molecules)."""
        return [np.asarray(layout.translations) for _, layouts in self.batches for layout in layouts]

    def predict(self) -> list[np.ndarray]:
        with torch.no_grad():
            return [
                reconstruct(self.model.coupled(features, layout), layout).numpy().copy()
                for features, layouts in self.batches
                for layout in layouts
            ]


def timed(function, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def log_grid(low: int, high: int) -> list[float]:
    """10^low … 10^high, one value per decade."""
    return [float(10.0**k) for k in range(low, high + 1)]
