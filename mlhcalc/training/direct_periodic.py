"""Direct fit of periodic cells: closed-form ridge regression of real-space H(T) (gth-szv silicon).

Targets: the labelled H(k), S(k) of a cell (stage ``minimal``: PBE, gth-szv, gth-pade, Γ-centred
mesh) become real-space H(T) through the Wigner–Seitz transform
(:func:`mlhcalc.qm.periodic.wigner_seitz_transform`). The model predicts the on-site blocks and the
blocks of atom pairs (i, j, T) inside its feature cutoff; each of those must be the unique shortest
image of its supercell class (Wigner–Seitz weight 1), otherwise its target would be a share of the
block or belong to another image. :func:`check_images` enforces that (the mesh's supercell bounds the
cutoff: for the 2-atom cell on 4×4×4, bonds up to ~14 bohr).

The gth-szv H(T) of silicon is long-ranged (the AOs are diffuse: blocks of 2 mHa at 13 bohr), and
truncating it at the cutoff moves the bands by tenths of an eV. Its tail follows the overlap, so the
target can be H − μS with a constant μ (``overlap_shift``, hartree): truncating H − μS costs much
less, and adding μS(k) back (all of S, exact integrals in the calculator; model metadata
``overlap_shift_ha``) shifts every band by exactly μ, eigenvectors unchanged.

The ridge pieces are those of :mod:`mlhcalc.training.direct` (normal equations with translations,
per-head solve, closed-form held-out and leave-one-cell-out errors per head); :func:`fit` selects the
regularisation on val by the band-energy MAE. Evaluation (:func:`cell_bands`, :func:`score`): band energies of
(Σ_T e^{ik·T} H'(T) + μ S_label(k), S_label(k)), H' the prediction, on the label mesh against the
labelled bands, metrics of :mod:`mlhcalc.training.metrics` (eV, absolute, no alignment).
:func:`truncated_reference` is the target restricted to the model's blocks: its bands are the
cutoff floor (:func:`overlap_shift_scan` for several μ).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import Atoms

from mlhcalc.features import systems_from_atoms
from mlhcalc.hamiltonian.blocks import decompose, reconstruct
from mlhcalc.hamiltonian.model import BlockModel, model_layouts
from mlhcalc.orbitals import structure_ao_slices
from mlhcalc.qm import periodic
from mlhcalc.qm.lattice import WignerSeitzImages
from mlhcalc.structure import lattice_bohr, positions_bohr
from mlhcalc.training import direct, metrics

__all__ = [
    "BASIS",
    "WINDOW_EV",
    "CellReference",
    "load_labelled",
    "check_images",
    "truncated_reference",
    "overlap_shift_scan",
    "normal_equations",
    "predict_real_space",
    "translation_rows",
    "reference_on",
    "kpoint_order",
    "cell_bands",
    "score",
    "STRATEGIES",
    "fit",
]

BASIS = "gth-szv"
HAMILTONIAN_KEY = "hk_minimal"
WINDOW_EV = 1.5
"""Conduction states up to CBM + 1.5 eV belong to the band window of issue 7."""


@dataclass
class CellReference:
    """One labelled cell in atomic units: geometry, reference bands on the mesh and the WS H(T)."""

    name: str
    lattice: np.ndarray  # (3, 3) bohr, rows a_i
    positions: np.ndarray  # (natm, 3) bohr
    kpts: np.ndarray  # (nk, 3) bohr⁻¹, the label mesh
    overlap_k: np.ndarray  # (nk, nao, nao) S(k) of the label
    bands: np.ndarray  # (nk, nao) hartree, eigenvalues of (H(k), S(k))
    n_valence: int  # occupied bands (two electrons each)
    images: WignerSeitzImages
    hamiltonian_t: np.ndarray  # (nT, nao, nao) hartree on images.n_int, WS transform of H(k)
    overlap_t: np.ndarray  # (nT, nao, nao) on images.n_int, WS transform of S(k)
    overlap_shift: float = 0.0  # μ (hartree): the model's target is H − μS

    @property
    def target_t(self) -> np.ndarray:
        """The fitting target H(T) − μ S(T) on ``images.n_int`` (hartree)."""
        return self.hamiltonian_t - self.overlap_shift * self.overlap_t if self.overlap_shift else self.hamiltonian_t

    def with_overlap_shift(self, overlap_shift: float) -> CellReference:
        return replace(self, overlap_shift=float(overlap_shift))

    @classmethod
    def from_atoms(
        cls, atoms: Atoms, basis: str = BASIS, suffix: str = "minimal", overlap_shift: float = 0.0
    ) -> CellReference:
        info = atoms.info
        lattice, positions = lattice_bohr(atoms), positions_bohr(atoms)
        matrices_k = np.stack([info[f"hk_{suffix}"], info[f"sk_{suffix}"]])
        kpts = np.asarray(info["kpts"], dtype=float)
        slices = structure_ao_slices(atoms.get_chemical_symbols(), basis)
        images, matrices_t = periodic.wigner_seitz_transform(
            matrices_k, kpts, lattice, positions, slices, np.asarray(info["kmesh"], dtype=int)
        )
        return cls(
            name=str(info.get("name", info.get("structure_id", "?"))),
            lattice=lattice,
            positions=positions,
            kpts=kpts,
            overlap_k=np.asarray(info[f"sk_{suffix}"]),
            bands=np.asarray(info[f"bands_{suffix}"], dtype=float),
            n_valence=int(info["nocc"]),
            images=images,
            hamiltonian_t=np.array(matrices_t[0]),  # writable copies of the JAX result
            overlap_t=np.array(matrices_t[1]),
            overlap_shift=float(overlap_shift),
        )


def load_labelled(labels) -> dict[str, list[Atoms]]:
    """Cells of ``labels`` with H(k) labels, grouped by ``atoms.info['split']`` (input order)."""
    return direct.load_labelled(labels, key=HAMILTONIAN_KEY)


# ------------------------------------------------------------------------ targets inside the cutoff
def _model_pairs(model: BlockModel, atoms: Atoms):
    systems = systems_from_atoms([atoms])
    with torch.no_grad():
        features = model.features(systems)
    return systems, features, features.pair_samples[:, 1:].numpy()


def check_images(ref: CellReference, pairs: np.ndarray) -> None:
    """``ValueError`` unless every pair (i, j, n) (rows of ``pairs``) is the unique shortest
    Wigner–Seitz image of its class, i.e. its reference block is the whole block of H_sc(R)."""
    rows = translation_rows(pairs[:, 2:], ref.images.n_int)
    weights = np.where(rows >= 0, ref.images.weights[rows, pairs[:, 0], pairs[:, 1]], 0.0)
    bad = ~np.isclose(weights, 1.0, rtol=0, atol=1e-12)
    if bad.any():
        bond = ref.positions[pairs[bad, 1]] + pairs[bad, 2:] @ ref.lattice - ref.positions[pairs[bad, 0]]
        outside = int((rows < 0).sum())
        raise ValueError(
            f"{ref.name}: {int(bad.sum())} atom pairs inside the feature cutoff ({outside} of them outside the "
            f"translation set) are not unique Wigner–Seitz images of the {ref.images.mesh} mesh's supercell "
            f"(shortest such bond {np.linalg.norm(bond, axis=1).min():.2f} bohr): lower FeatureHypers.cutoff below "
            "that or use labels on a larger mesh"
        )


def truncated_reference(model: BlockModel, atoms: Atoms, ref: CellReference, matrices_t=None) -> np.ndarray:
    """The target H(T) − μS(T) (or ``matrices_t``, on ``ref.images.n_int``) with every block the model
    does not predict set to zero: on-site blocks and pairs inside the feature cutoff are kept (checked
    by :func:`check_images`). Its bands are the cutoff floor."""
    systems, features, pairs = _model_pairs(model, atoms)
    check_images(ref, pairs)
    (layout,) = model_layouts(features, systems, model.basis, [ref.images.n_int])
    matrices_t = ref.target_t if matrices_t is None else matrices_t
    return reconstruct(decompose(torch.tensor(matrices_t), layout), layout).numpy()


def overlap_shift_scan(
    model: BlockModel, atoms_list: Sequence[Atoms], refs: Sequence[CellReference], shifts: Sequence[float]
) -> list[dict]:
    """The cutoff floor (:func:`score` of the truncated target) of these cells for every μ of ``shifts``:
    it needs no fit, so μ can be chosen on the training cells. Truncation is linear, so H and S are
    truncated once."""
    truncated = [
        [truncated_reference(model, a, r, m) for m in (r.hamiltonian_t, r.overlap_t)] for a, r in zip(atoms_list, refs)
    ]
    results = []
    for shift in shifts:
        shifted = [r.with_overlap_shift(shift) for r in refs]
        floors = [(r.images.n_int, h - shift * s) for r, (h, s) in zip(refs, truncated)]
        results.append({"overlap_shift_ha": float(shift), **score(shifted, floors)})
    return results


def normal_equations(model: BlockModel, atoms_list: Sequence[Atoms], refs: Sequence[CellReference]) -> dict:
    """Per head [XᵀX, XᵀY, Σy², rows] of the WS targets H(T) − μS(T)
    (:func:`mlhcalc.training.direct.normal_equations`), after :func:`check_images` on every cell."""
    for atoms, ref in zip(atoms_list, refs):
        check_images(ref, _model_pairs(model, atoms)[2])
    return direct.normal_equations(
        model, atoms_list, [r.target_t for r in refs], translations=[r.images.n_int for r in refs]
    )


# ------------------------------------------------------------------------------------ evaluation
def predict_real_space(model: BlockModel, atoms_list: Sequence[Atoms]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(integer translations [n_T, 3], H'(T) [n_T, nao, nao] in hartree) of every cell: the model's own
    translation set (pairs inside the cutoff, their negatives and 0), as the calculator uses it. H' is
    H − μS for a model fitted with μ (add μS(k) for bands: :func:`cell_bands`)."""
    predictor = direct.CachedPredictor(model, atoms_list)
    return list(zip(predictor.translations, predictor.predict()))


def translation_rows(n_int, target_n_int) -> np.ndarray:
    """Row of every integer translation of ``n_int`` in the set ``target_n_int`` (−1 where absent)."""
    index = {tuple(n): t for t, n in enumerate(np.asarray(target_n_int).tolist())}
    return np.array([index.get(tuple(n), -1) for n in np.asarray(n_int).reshape(-1, 3).tolist()], dtype=int)


def reference_on(ref: CellReference, n_int) -> np.ndarray:
    """The WS target H(T) − μS(T) on the translations ``n_int`` (e.g. a prediction's), ``KeyError`` if
    one is not in the WS set."""
    rows = translation_rows(n_int, ref.images.n_int)
    if (rows < 0).any():
        raise KeyError(f"{ref.name}: translation {np.asarray(n_int)[rows < 0][0].tolist()} is not in the WS set")
    return ref.target_t[rows]


def kpoint_order(kpts_frac, reference_kpts_frac) -> np.ndarray:
    """Index ``order`` with ``kpts_frac[order]`` ≡ ``reference_kpts_frac`` modulo reciprocal lattice vectors
    (e.g. ASE's ``{'size': mesh, 'gamma': True}`` k-points, in [−½, ½), against PySCF's ``make_kpts``)."""
    difference = np.asarray(reference_kpts_frac)[:, None, :] - np.asarray(kpts_frac)[None, :, :]
    same = (np.abs(difference - np.rint(difference)) < 1e-8).all(axis=-1)
    if not (same.sum(axis=1) == 1).all():
        raise ValueError("the two k-point sets are not the same mesh")
    return same.argmax(axis=1)


def cell_bands(ref: CellReference, hamiltonian_t, n_int) -> np.ndarray:
    """Band energies (nk, nao) in hartree on the label mesh of H'(T) on the integer translations
    ``n_int`` (a model of H − μS) plus μ S(k), with the labelled S(k), as the calculator does it."""
    hamiltonian_k = periodic.bloch_sum(hamiltonian_t, np.asarray(n_int) @ ref.lattice, ref.kpts)
    hamiltonian_k = hamiltonian_k + ref.overlap_shift * ref.overlap_k
    return np.asarray(periodic.band_energies_k(hamiltonian_k, ref.overlap_k))


def score(refs: Sequence[CellReference], predictions: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Metrics of predicted (n_int, H(T)) against the labels of ``refs`` (eV unless named ``_ha``):
    band MAE over all bands, valence bands, the window (valence + conduction up to CBM + 1.5 eV) and
    its conduction part, band gap / VBM / CBM (means over cells of |Δ|), and the MAE of H(T) − μS(T)
    over the translations the model predicts (whole nao × nao matrices against the WS target)."""
    pred = [cell_bands(r, h, n) for r, (n, h) in zip(refs, predictions)]
    ref = [r.bands for r in refs]
    return {
        "n_structures": len(refs),
        "hamiltonian_mae_ha": metrics.fock_mae_ha(
            [h for _, h in predictions], [reference_on(r, n) for r, (n, _) in zip(refs, predictions)]
        ),
        "band_mae_ev": metrics.band_energy_mae_ev(pred, ref),
        **metrics.band_metrics(pred, ref, [r.n_valence for r in refs], WINDOW_EV),
    }


# --------------------------------------------------------------------------------------- fitting
STRATEGIES = ("global", "per-head-cv")  # "per-head" (on val) is also available: see docs/direct_fit.md


def fit(
    model: BlockModel,
    train: tuple[Sequence[Atoms], Sequence[CellReference]],
    val: tuple[Sequence[Atoms], Sequence[CellReference]],
    *,
    grid: Sequence[float] = direct.log_grid(-10, 0),
    strategies: Sequence[str] = STRATEGIES,
    penalty: str = "mean",
) -> tuple[dict, list[list]]:
    """Ridge fit on ``train`` (atoms, references) with the regularisation chosen on ``val`` by the band
    MAE over all bands among the candidates of :func:`mlhcalc.training.direct.regularization_candidates`:
    ``"global"``, one value of ``grid`` for every head (each value costs a val prediction, features
    cached); ``"per-head"``, each head's value by its own held-out H(T) error (closed form from the val
    normal equations); ``"per-head-cv"``, the same by leave-one-cell-out cross-validation on train.
    The default leaves out ``"per-head"``: a few val cells hold too few on-site rows to choose those
    heads' values (with 2 val cells it chose λ = 1 for the on-site invariants, in-sample error 7× the
    val error). The model is left at the best candidate.
    Returns the record (choice, val metrics, timings) and one row (strategy, label, val metrics) per
    candidate."""
    wall, cpu = time.perf_counter(), time.process_time()
    folds = [normal_equations(model, [atoms], [ref]) for atoms, ref in zip(*train)]  # one per cell
    normal = direct.add_normal_equations(*folds)
    t_train = time.perf_counter() - wall
    normal_val = normal_equations(model, *val)
    predictor = direct.CachedPredictor(model, val[0])

    def val_score():
        return score(val[1], list(zip(predictor.translations, predictor.predict())))

    candidates = direct.regularization_candidates(
        model,
        normal,
        normal_val,
        val_score,
        lambda result: result["band_mae_ev"],
        global_grid=grid,
        head_grid=grid,
        penalties=(penalty,),
        strategies=strategies,
        default=max(grid),
        folds=folds,
    )
    record = direct.apply_best(model, normal, candidates)
    record.update(
        train_normal_equations_wall_s=t_train,
        fit_wall_s=time.perf_counter() - wall,
        fit_cpu_s=time.process_time() - cpu,
    )
    return record, [[s, lab, r] for _, _, s, _, lab, r in candidates]
