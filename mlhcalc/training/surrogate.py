"""Direct surrogates: dipole and polarizability predicted straight from structure (no Hamiltonian).

The "direct ML" baselines the hybrid Hamiltonian model is compared with. They use the same atom
features as the Hamiltonian model (:class:`mlhcalc.features.EquivariantFeatures`, the λ-SOAP-like
blocks ``Features.atom[Irrep(λ, σ=+1)]``), are linear in those features per species, and are fitted
by closed-form ridge regression with the regularisation chosen on a validation set. Everything is
float64 and deterministic. Units: bohr, e·bohr (dipole), bohr³ = a.u. (polarizability).

Models (sums over the atoms i of a structure, Z_i the species of atom i):

- **Dipole, vector** (``kind="vector"``): μ = Σ_i W_{Z_i}ᵀ x_i^(λ=1), one 3-vector per atom from its
  λ = 1, σ = +1 features; the components come out in featomic's m order (y, z, x) and are permuted
  to Cartesian (x, y, z) (:data:`M_TO_CARTESIAN`).
- **Dipole, charges** (``kind="charges"``): q_i = w_{Z_i}·x_i^(λ=0) + b_{Z_i}, shifted uniformly so
  that Σ_i q_i equals the total charge Q; μ = Σ_i q_i (R_i − R_0) with R_0 the dipole origin. For the
  raw charges this is μ = Σ_i q_i^raw (R_i − R̄) + Q (R̄ − R_0), R̄ the mean atom position: linear in
  (w, b), translation invariant when Q = 0.
- **Dipole, both** (``kind="both"``): the sum of the two, fitted jointly.
- **Polarizability**: α = Σ_i [a_i I/√3 + Σ_m b_im E_m], a_i = w_{Z_i}·x_i^(λ=0) + b_{Z_i} and
  b_i = W_{Z_i}ᵀ x_i^(λ=2, σ=+1). ``E_m`` (:data:`L2_BASIS`) are the symmetric traceless 3×3 matrices
  whose quadratic forms rᵀE_m r = (2xy, 2yz, (2z² − x² − y²)/√3, 2xz, x² − y²)/√2 (m = −2..2) are
  √(8π/15) times featomic's real Y_2m (one common factor), orthonormal in the Frobenius product
  together with I/√3. So α ↦ (tr α/√3, ⟨E_m, α⟩) is the orthogonal λ = 0 ⊕ λ = 2 split of
  the symmetric part of α, the λ = 2 coefficients rotate with the same real Wigner matrices as the
  features, and α(Rr) = R α Rᵀ (tests/test_surrogate.py).

Fit: normal equations per output block, penalty ``reg × mean diagonal`` of the penalised columns
(``penalty="mean"``) or ``reg × diagonal`` (``"diagonal"``: ridge on column-standardised features);
per-species biases (λ = 0 only) get only a 1e-12 relative penalty. :meth:`fit` scans ``grid`` and
keeps the value of lowest validation error (dipole: mean |Δμ|; polarizability: λ = 0 by the isotropic MAE, λ = 2 by
the MAE of the traceless part's components, the two parts are independent least-squares problems).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
from ase import Atoms

from mlhcalc.features import EquivariantFeatures, FeatureHypers, Irrep, systems_from_atoms
from mlhcalc.structure import dipole_origin, positions_bohr, resolve_charge
from mlhcalc.training import metrics

__all__ = [
    "SPECIES",
    "DEFAULT_GRID",
    "M_TO_CARTESIAN",
    "CARTESIAN_TO_M",
    "L2_BASIS",
    "ISO_BASIS",
    "spherical_to_vector",
    "vector_to_spherical",
    "tensor_to_spherical",
    "spherical_to_tensor",
    "StructureFeatures",
    "structure_features",
    "DipoleSurrogate",
    "PolarizabilitySurrogate",
    "ridge_solve",
]

SPECIES = (1, 6, 7, 8)
DEFAULT_GRID = tuple(float(10.0**k) for k in np.arange(-10.0, 2.01, 0.5))
"""Regularisations scanned on val (relative to the mean diagonal of XᵀX), half-decade steps."""

M_TO_CARTESIAN = np.array([2, 0, 1])
"""λ = 1 components in m order (−1, 0, 1) ∝ (y, z, x): ``v_cart = c[M_TO_CARTESIAN]``."""
CARTESIAN_TO_M = np.array([1, 2, 0])
"""``c = v_cart[CARTESIAN_TO_M]`` (the same reindex as PySCF p shells → featomic m order)."""


def _l2_basis() -> np.ndarray:
    s2, s6 = np.sqrt(2.0), np.sqrt(6.0)
    basis = np.zeros((5, 3, 3))
    basis[0][0, 1] = basis[0][1, 0] = 1 / s2  # m = -2 ∝ xy
    basis[1][1, 2] = basis[1][2, 1] = 1 / s2  # m = -1 ∝ yz
    basis[2] = np.diag([-1.0, -1.0, 2.0]) / s6  # m = 0 ∝ 2z² - x² - y²
    basis[3][0, 2] = basis[3][2, 0] = 1 / s2  # m = 1 ∝ xz
    basis[4] = np.diag([1.0, -1.0, 0.0]) / s2  # m = 2 ∝ x² - y²
    return basis


L2_BASIS = _l2_basis()
"""[5, 3, 3]: symmetric traceless E_m (m = −2..2, featomic's real Y_2m order), Frobenius-orthonormal."""
ISO_BASIS = np.eye(3) / np.sqrt(3.0)
"""The λ = 0 unit tensor I/√3."""


def spherical_to_vector(c: np.ndarray) -> np.ndarray:
    """[..., 3] λ = 1 components in m order → Cartesian (x, y, z)."""
    return np.asarray(c)[..., M_TO_CARTESIAN]


def vector_to_spherical(v: np.ndarray) -> np.ndarray:
    """[..., 3] Cartesian → λ = 1 components in m order (y, z, x)."""
    return np.asarray(v)[..., CARTESIAN_TO_M]


def tensor_to_spherical(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., 3, 3] → (λ = 0 coefficient tr α/√3 [...], λ = 2 coefficients ⟨E_m, α⟩ [..., 5]).
    Only the symmetric part of α contributes."""
    alpha = np.asarray(alpha, dtype=float)
    return np.einsum("...ij,ij->...", alpha, ISO_BASIS), np.einsum("...ij,mij->...m", alpha, L2_BASIS)


def spherical_to_tensor(c0: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tensor_to_spherical`: c0 I/√3 + Σ_m c2_m E_m (symmetric)."""
    c0, c2 = np.asarray(c0, dtype=float), np.asarray(c2, dtype=float)
    return c0[..., None, None] * ISO_BASIS + np.einsum("...m,mij->...ij", c2, L2_BASIS)


# ---------------------------------------------------------------------------------------- features
@dataclass
class StructureFeatures:
    """One structure's atom features (σ = +1 blocks, numpy) and geometry (bohr)."""

    numbers: np.ndarray  # (n,)
    positions: np.ndarray  # (n, 3) bohr
    charge: int
    origin: np.ndarray  # (3,) bohr: origin of the dipole (mlhcalc.structure.dipole_origin or atoms.info)
    lam0: np.ndarray  # (n, F0)
    lam1: np.ndarray  # (n, 3, F1), m order
    lam2: np.ndarray  # (n, 5, F2), m order


def structure_features(
    atoms_list: Sequence[Atoms],
    hypers: FeatureHypers | None = None,
    *,
    calculator: EquivariantFeatures | None = None,
    batch_size: int = 32,
) -> list[StructureFeatures]:
    """The λ = 0, 1, 2 (σ = +1) atom features of every structure (molecules only)."""
    calculator = calculator or EquivariantFeatures(hypers or FeatureHypers(species=SPECIES))
    if calculator.hypers.max_lambda < 2 or calculator.hypers.max_angular < 1:
        raise ValueError("the surrogates need max_lambda ≥ 2 and max_angular ≥ 1")
    atoms_list = list(atoms_list)
    result = []
    with torch.no_grad():
        for start in range(0, len(atoms_list), batch_size):
            batch = atoms_list[start : start + batch_size]
            if any(np.any(atoms.pbc) for atoms in batch):
                raise ValueError("the direct surrogates are for molecules (no periodic structures)")
            features = calculator(systems_from_atoms(batch))
            system = features.atom_samples[:, 0].numpy()
            blocks = [features.atom[Irrep(lam, 1)].numpy() for lam in (0, 1, 2)]
            for index, atoms in enumerate(batch):
                rows = system == index
                charge = resolve_charge(atoms)
                origin = atoms.info.get("dipole_origin")
                result.append(
                    StructureFeatures(
                        numbers=atoms.get_atomic_numbers().copy(),
                        positions=positions_bohr(atoms),
                        charge=charge,
                        origin=np.asarray(dipole_origin(atoms) if origin is None else origin, dtype=float),
                        lam0=blocks[0][rows, 0].copy(),
                        lam1=blocks[1][rows].copy(),
                        lam2=blocks[2][rows].copy(),
                    )
                )
    return result


def _per_species_sum(values: np.ndarray, numbers: np.ndarray, species: Sequence[int]) -> np.ndarray:
    """[n, c, F] → [c, n_species·F]: Σ over the atoms of each species, species blocks side by side."""
    return np.concatenate([values[numbers == z].sum(0) for z in species], axis=-1)


def _with_one(lam0: np.ndarray) -> np.ndarray:
    return np.concatenate([lam0, np.ones((len(lam0), 1))], axis=1)


# ------------------------------------------------------------------------------------------- ridge
def ridge_solve(
    gram: np.ndarray,
    moment: np.ndarray,
    regularization: float,
    groups: Sequence[np.ndarray],
    free: np.ndarray,
    penalty: str = "mean",
) -> np.ndarray:
    """argmin |Xw − y|² + Σ_k p_k w_k²: ``groups`` are column index sets with their own scale (mean
    diagonal of XᵀX over the group for ``penalty="mean"``, the column's own diagonal for
    ``"diagonal"``), times ``regularization``; ``free`` columns get only 1e-12 × their diagonal.
    Columns never seen in training (zero diagonal, e.g. an absent species) get weight 0."""
    diagonal = np.diag(gram).copy()
    scale = np.zeros_like(diagonal)
    for group in groups:
        penalised = group[~free[group] & (diagonal[group] > 0.0)]  # unseen columns do not set the scale
        if len(penalised) == 0:
            continue
        if penalty == "mean":
            scale[penalised] = max(diagonal[penalised].mean(), 1e-300)
        elif penalty == "diagonal":
            scale[penalised] = np.maximum(diagonal[penalised], 1e-12 * max(diagonal[penalised].max(), 1e-300))
        else:
            raise ValueError(f"penalty must be 'mean' or 'diagonal', got {penalty!r}")
    pen = regularization * scale
    # free columns: a negligible penalty keeps the system positive definite when they are collinear
    # (the per-species constant charges: their columns sum to zero, Σ_i (R_i − R̄) = 0)
    pen[free] = 1e-12 * diagonal[free]
    pen[diagonal == 0.0] = 1.0  # unseen columns: zero rows of XᵀX and of Xᵀy → weight 0
    # Jacobi scaling (unit diagonal) before the solve: the columns differ by orders of magnitude
    norm = 1.0 / np.sqrt(np.where(diagonal > 0.0, diagonal, 1.0))
    matrix = (gram + np.diag(pen)) * norm[:, None] * norm[None, :]
    rhs = moment * (norm[:, None] if moment.ndim == 2 else norm)
    try:
        factor = scipy.linalg.cho_factor(matrix)
        solution = scipy.linalg.cho_solve(factor, rhs)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):  # singular (tiny penalty, collinear free columns)
        solution = np.linalg.lstsq(matrix, rhs, rcond=1e-14)[0]
    return solution * (norm[:, None] if moment.ndim == 2 else norm)


def _normal(designs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate(designs, axis=0)
    y = np.concatenate(targets, axis=0)
    return x.T @ x, x.T @ y


def _select(grid, errors) -> tuple[float, int]:
    """Lowest error; ties → the larger regularisation."""
    errors = np.asarray(errors)
    best = np.nonzero(errors <= errors.min() * (1 + 1e-12) + 1e-300)[0].max()
    return float(grid[best]), int(best)


def _as_features(data, hypers) -> list[StructureFeatures]:
    data = list(data)
    if data and isinstance(data[0], StructureFeatures):
        return data
    return structure_features(data, hypers)


# ------------------------------------------------------------------------------------------ dipole
@dataclass
class DipoleSurrogate:
    """μ from structure (e·bohr, about the structure's dipole origin); see the module docstring.

    ``weights`` (after :meth:`fit`): for ``"vector"`` [n_species·F1] (species blocks of the λ = 1
    map), for ``"charges"`` [n_species·(F0 + 1)] (λ = 0 weights then the bias, per species),
    for ``"both"`` the two concatenated (vector first).
    """

    kind: str = "vector"
    hypers: FeatureHypers = field(default_factory=lambda: FeatureHypers(species=SPECIES))
    penalty: str = "mean"
    weights: np.ndarray | None = None
    regularization: float | None = None
    validation_curve: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ("vector", "charges", "both"):
            raise ValueError(f"kind must be 'vector', 'charges' or 'both', got {self.kind!r}")

    @property
    def species(self) -> tuple[int, ...]:
        return tuple(self.hypers.species)

    def _blocks(self, sf: StructureFeatures) -> list[np.ndarray]:
        blocks = []
        if self.kind in ("vector", "both"):
            blocks.append(_per_species_sum(sf.lam1, sf.numbers, self.species)[M_TO_CARTESIAN])
        if self.kind in ("charges", "both"):
            centred = sf.positions - sf.positions.mean(0)  # R_i − R̄
            per_atom = centred[:, :, None] * _with_one(sf.lam0)[:, None, :]  # [n, 3, F0 + 1]
            blocks.append(_per_species_sum(per_atom, sf.numbers, self.species))
        return blocks

    def design(self, sf: StructureFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(X [3, P], offset [3]): μ = X w + offset, offset = Q (R̄ − origin)."""
        offset = sf.charge * (sf.positions.mean(0) - sf.origin)
        return np.concatenate(self._blocks(sf), axis=1), offset

    def _column_groups(self, sf: StructureFeatures) -> tuple[list[np.ndarray], np.ndarray]:
        sizes = [block.shape[1] for block in self._blocks(sf)]
        starts = np.cumsum([0] + sizes)
        groups = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
        free = np.zeros(starts[-1], dtype=bool)
        if self.kind in ("charges", "both"):  # the per-species constant charges (bias columns)
            width = sf.lam0.shape[1] + 1
            charge_start = starts[-2]
            free[charge_start + width - 1 : starts[-1] : width] = True
        return groups, free

    def fit(
        self,
        train,
        train_dipoles,
        val=None,
        val_dipoles=None,
        *,
        regularization: float | None = None,
        grid: Sequence[float] = DEFAULT_GRID,
    ) -> DipoleSurrogate:
        """Fit to ``train_dipoles`` [n, 3] (e·bohr). ``train``/``val``: ase.Atoms or
        :class:`StructureFeatures`. With ``val`` and no ``regularization``, scan ``grid`` and keep
        the value of lowest val mean |Δμ|; otherwise use ``regularization`` (default 1e-6)."""
        train = _as_features(train, self.hypers)
        designs = [self.design(sf) for sf in train]
        targets = [np.asarray(mu, dtype=float) - offset for (_, offset), mu in zip(designs, train_dipoles)]
        gram, moment = _normal([x for x, _ in designs], targets)
        groups, free = self._column_groups(train[0])
        if val is not None and regularization is None:
            val = _as_features(val, self.hypers)
            val_designs = [self.design(sf) for sf in val]
            val_dipoles = np.asarray(val_dipoles, dtype=float)
            errors = []
            for reg in grid:
                w = ridge_solve(gram, moment, reg, groups, free, self.penalty)
                pred = np.stack([x @ w + offset for x, offset in val_designs])
                errors.append(metrics.dipole_mae_debye(pred, val_dipoles))
            self.validation_curve = list(zip(map(float, grid), errors))
            regularization, _ = _select(grid, errors)
        self.regularization = 1e-6 if regularization is None else float(regularization)
        self.weights = ridge_solve(gram, moment, self.regularization, groups, free, self.penalty)
        return self

    def predict(self, data) -> np.ndarray:
        """[n, 3] dipoles (e·bohr) of ase.Atoms or :class:`StructureFeatures`."""
        if self.weights is None:
            raise RuntimeError("fit the model first")
        result = []
        for sf in _as_features(data, self.hypers):
            x, offset = self.design(sf)
            result.append(x @ self.weights + offset)
        return np.stack(result) if result else np.zeros((0, 3))

    def charges(self, data) -> list[np.ndarray]:
        """Per-atom partial charges (e) of the charge term (``kind`` "charges" or "both"), summing to Q."""
        if self.kind == "vector":
            raise ValueError("the vector model has no charges")
        if self.weights is None:
            raise RuntimeError("fit the model first")
        result = []
        for sf in _as_features(data, self.hypers):
            width = sf.lam0.shape[1] + 1
            w = self.weights[-len(self.species) * width :].reshape(len(self.species), width)
            index = np.searchsorted(self.species, sf.numbers)
            raw = np.einsum("nf,nf->n", _with_one(sf.lam0), w[index])
            result.append(raw - (raw.sum() - sf.charge) / len(raw))
        return result


# -------------------------------------------------------------------------------- polarizability
@dataclass
class PolarizabilitySurrogate:
    """α from structure (a.u., symmetric 3×3); see the module docstring.

    ``weights0`` [n_species·(F0 + 1)] (λ = 0 weights then the bias, per species), ``weights2``
    [n_species·F2]; ``regularization`` = (λ = 0 value, λ = 2 value).
    """

    hypers: FeatureHypers = field(default_factory=lambda: FeatureHypers(species=SPECIES))
    penalty: str = "mean"
    weights0: np.ndarray | None = None
    weights2: np.ndarray | None = None
    regularization: tuple[float, float] | None = None
    validation_curve: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def species(self) -> tuple[int, ...]:
        return tuple(self.hypers.species)

    def design(self, sf: StructureFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(X0 [1, P0], X2 [5, P2]): tr α/√3 = X0 w0, ⟨E_m, α⟩ = X2 w2."""
        return (
            _per_species_sum(_with_one(sf.lam0)[:, None, :], sf.numbers, self.species),
            _per_species_sum(sf.lam2, sf.numbers, self.species),
        )

    def fit(
        self,
        train,
        train_alphas,
        val=None,
        val_alphas=None,
        *,
        regularization: tuple[float, float] | None = None,
        grid: Sequence[float] = DEFAULT_GRID,
    ) -> PolarizabilitySurrogate:
        """Fit to ``train_alphas`` [n, 3, 3] (a.u.). With ``val`` and no ``regularization``, each part's
        value is chosen on val (λ = 0: isotropic MAE; λ = 2: MAE over the traceless part's components);
        otherwise ``regularization`` (default (1e-6, 1e-6))."""
        train = _as_features(train, self.hypers)
        c0, c2 = tensor_to_spherical(np.asarray(train_alphas, dtype=float))
        designs = [self.design(sf) for sf in train]
        gram0, moment0 = _normal([x0 for x0, _ in designs], [np.atleast_1d(t) for t in c0])
        gram2, moment2 = _normal([x2 for _, x2 in designs], list(c2))
        width = train[0].lam0.shape[1] + 1
        groups0, free0 = [np.arange(len(gram0))], np.zeros(len(gram0), dtype=bool)
        free0[width - 1 :: width] = True
        groups2, free2 = [np.arange(len(gram2))], np.zeros(len(gram2), dtype=bool)

        def solve(reg0, reg2):
            return (
                ridge_solve(gram0, moment0, reg0, groups0, free0, self.penalty),
                ridge_solve(gram2, moment2, reg2, groups2, free2, self.penalty),
            )

        if val is not None and regularization is None:
            val = _as_features(val, self.hypers)
            val_c0, val_c2 = tensor_to_spherical(np.asarray(val_alphas, dtype=float))
            val_designs = [self.design(sf) for sf in val]
            x0 = np.concatenate([x for x, _ in val_designs])  # [n_val, P0]
            x2 = np.stack([x for _, x in val_designs])  # [n_val, 5, P2]
            iso_errors, aniso_errors = [], []
            for reg in grid:
                w0, w2 = solve(reg, reg)
                iso_errors.append(float(np.abs(x0 @ w0 - val_c0).mean()) / np.sqrt(3.0))  # |Δ tr α/3|
                traceless = spherical_to_tensor(np.zeros(len(val)), x2 @ w2 - val_c2)
                aniso_errors.append(float(np.abs(traceless).mean()))
            self.validation_curve = list(zip(map(float, grid), iso_errors, aniso_errors))
            regularization = (_select(grid, iso_errors)[0], _select(grid, aniso_errors)[0])
        self.regularization = (1e-6, 1e-6) if regularization is None else tuple(map(float, regularization))
        self.weights0, self.weights2 = solve(*self.regularization)
        return self

    def predict(self, data) -> np.ndarray:
        """[n, 3, 3] polarizabilities (a.u.) of ase.Atoms or :class:`StructureFeatures`."""
        if self.weights0 is None:
            raise RuntimeError("fit the model first")
        result = []
        for sf in _as_features(data, self.hypers):
            x0, x2 = self.design(sf)
            result.append(spherical_to_tensor((x0 @ self.weights0)[0], x2 @ self.weights2))
        return np.stack(result) if result else np.zeros((0, 3, 3))
