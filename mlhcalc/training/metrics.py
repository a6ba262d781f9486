"""The project's error metrics (``REFERENCE.md``, "Metrics"), as plain numpy functions.

One definition, used by tests, model cards and benchmarks. Inputs are in the package's atomic
units (hartree, e·bohr, bohr³); outputs carry their unit in the name (``_ev``, ``_debye``,
``_au``, ``_percent``, ``_ha``). Per-structure quantities of different sizes are passed as
sequences of arrays (one per structure), pooled as stated below.

Definitions
-----------
- **Orbital energies** (molecules): per structure the levels are sorted ascending and the first
  ``nocc`` are occupied. ``occupied_mae_ev``: mean of |Δε| over every occupied level of every
  structure (pooled, core included). ``valence_mae_ev``: the same without the ``n_core`` lowest
  levels of each structure, ``n_core`` = number of core orbitals of the atoms (1s for Li–Ne, so
  for H C N O molecules the number of heavy atoms; 1s2s2p for Na–Ar). ``lumo_mae_ev``: mean over
  structures of |Δε_LUMO| (level ``nocc``); ``gap_mae_ev``: mean over structures of
  |Δ(ε_LUMO − ε_HOMO)|; ``homo_mae_ev`` likewise.
- **Dipole**: mean over structures of |μ_pred − μ_ref| (Euclidean norm of the difference), D.
- **Polarizability**: MAE over all 9 components and all structures (a.u.), and that MAE divided
  by the mean isotropic polarizability tr(α_ref)/3 of the reference (%). Isotropic part: mean over
  structures of |Δ tr(α)/3|. Anisotropic part: MAE over the 9 components of the traceless
  part α − tr(α)/3·I. Also the anisotropy invariant γ = sqrt(3/2 · A:A) (A the traceless part).
- **Fock / Hamiltonian elements**: mean of |ΔF_μν| over all nao² elements of every structure
  (pooled; full matrices, so an off-diagonal element counts twice), hartree.
- **Band energies** (periodic): mean of |Δε_nk| in eV over the bands compared (all common bands by
  default) and every k-point of the reference mesh, absolute (no alignment). Band gap = CBM − VBM
  on the mesh: min over k of band ``n_valence`` minus max over k of band ``n_valence − 1``.
  ``band_window_mae_ev``: the same over the valence bands and the conduction states up to
  CBM_ref + 1.5 eV (by the reference energy of each state).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import units as _units

__all__ = [
    "HARTREE_TO_EV",
    "EBOHR_TO_DEBYE",
    "n_core_orbitals",
    "occupied_mae_ev",
    "valence_mae_ev",
    "homo_mae_ev",
    "lumo_mae_ev",
    "gap_mae_ev",
    "orbital_energy_metrics",
    "dipole_debye",
    "dipole_mae_debye",
    "isotropic",
    "anisotropic_part",
    "anisotropy",
    "polarizability_metrics",
    "fock_mae_ha",
    "band_energy_mae_ev",
    "band_window_mae_ev",
    "band_gap",
    "band_gap_error_ev",
    "band_metrics",
]

HARTREE_TO_EV = _units.Hartree
"""1 hartree in eV (ASE)."""
EBOHR_TO_DEBYE = _units.Bohr / _units.Debye
"""1 e·bohr in debye (ASE's ``Debye`` is 1 D expressed in e·Å)."""


def _as_list(values) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def _check_lengths(*sequences) -> int:
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"inputs must have one entry per structure, got lengths {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        raise ValueError("no structures to compare")
    return n


def n_core_orbitals(numbers) -> int:
    """Number of doubly occupied core orbitals: 0 for H/He, 1 (1s) for Li–Ne, 5 (1s2s2p) for Na–Ar,
    9 (…3s3p) for K–Kr (3d counted as valence)."""
    numbers = np.asarray(numbers, dtype=int)
    if (numbers > 36).any():
        raise ValueError("n_core_orbitals knows elements up to Kr only")
    return int(np.select([numbers <= 2, numbers <= 10, numbers <= 18], [0, 1, 5], 9).sum())


def _levels(pred, ref, nocc, start=None) -> np.ndarray:
    """|Δε| of levels [start_s, nocc_s) of every structure, concatenated (hartree)."""
    pred, ref = _as_list(pred), _as_list(ref)
    n = _check_lengths(pred, ref, nocc)
    start = [0] * n if start is None else start
    errors = []
    for p, r, occ, first in zip(pred, ref, nocc, start):
        p, r, occ = np.sort(p), np.sort(r), int(occ)
        if occ > min(len(p), len(r)):
            raise ValueError(f"nocc={occ} exceeds the number of levels ({len(p)}, {len(r)})")
        errors.append(np.abs(p[int(first) : occ] - r[int(first) : occ]))
    errors = np.concatenate(errors)
    if errors.size == 0:
        raise ValueError("no levels to compare")
    return errors


def occupied_mae_ev(pred: Sequence, ref: Sequence, nocc: Sequence[int]) -> float:
    """MAE (eV) over all occupied levels of all structures, core included (inputs in hartree)."""
    return float(_levels(pred, ref, nocc).mean() * HARTREE_TO_EV)


def valence_mae_ev(pred: Sequence, ref: Sequence, nocc: Sequence[int], numbers: Sequence) -> float:
    """MAE (eV) over occupied levels without the ``n_core_orbitals(numbers)`` lowest of each structure."""
    core = [n_core_orbitals(z) for z in numbers]
    return float(_levels(pred, ref, nocc, start=core).mean() * HARTREE_TO_EV)


def _frontier(levels, nocc, offset: int) -> np.ndarray:
    values = []
    for eps, occ in zip(_as_list(levels), nocc):
        eps, index = np.sort(eps), int(occ) + offset
        if not 0 <= index < len(eps):
            raise ValueError(f"level {index} does not exist ({len(eps)} levels, nocc={occ})")
        values.append(eps[index])
    return np.asarray(values)


def homo_mae_ev(pred, ref, nocc) -> float:
    """Mean over structures of |Δε_HOMO| (eV)."""
    _check_lengths(pred, ref, nocc)
    return float(np.abs(_frontier(pred, nocc, -1) - _frontier(ref, nocc, -1)).mean() * HARTREE_TO_EV)


def lumo_mae_ev(pred, ref, nocc) -> float:
    """Mean over structures of |Δε_LUMO| (eV); the LUMO is level ``nocc`` (0-based)."""
    _check_lengths(pred, ref, nocc)
    return float(np.abs(_frontier(pred, nocc, 0) - _frontier(ref, nocc, 0)).mean() * HARTREE_TO_EV)


def gap_mae_ev(pred, ref, nocc) -> float:
    """Mean over structures of |Δ(ε_LUMO − ε_HOMO)| (eV)."""
    _check_lengths(pred, ref, nocc)
    gap_pred = _frontier(pred, nocc, 0) - _frontier(pred, nocc, -1)
    gap_ref = _frontier(ref, nocc, 0) - _frontier(ref, nocc, -1)
    return float(np.abs(gap_pred - gap_ref).mean() * HARTREE_TO_EV)


def orbital_energy_metrics(pred, ref, nocc, numbers) -> dict[str, float]:
    """All orbital-energy metrics at once (eV): occupied, valence, HOMO, LUMO, gap."""
    return {
        "occupied_mae_ev": occupied_mae_ev(pred, ref, nocc),
        "valence_mae_ev": valence_mae_ev(pred, ref, nocc, numbers),
        "homo_mae_ev": homo_mae_ev(pred, ref, nocc),
        "lumo_mae_ev": lumo_mae_ev(pred, ref, nocc),
        "gap_mae_ev": gap_mae_ev(pred, ref, nocc),
    }


def dipole_debye(dipole_au):
    """e·bohr → debye."""
    return np.asarray(dipole_au, dtype=float) * EBOHR_TO_DEBYE


def dipole_mae_debye(pred, ref) -> float:
    """Mean over structures of |μ_pred − μ_ref| (vector norm), debye; inputs e·bohr, shape (n, 3)."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred.shape != ref.shape or pred.ndim != 2 or pred.shape[1] != 3 or len(pred) == 0:
        raise ValueError(f"dipoles must be (n, 3) arrays of equal shape, got {pred.shape} and {ref.shape}")
    return float(np.linalg.norm(pred - ref, axis=1).mean() * EBOHR_TO_DEBYE)


def isotropic(alpha):
    """tr(α)/3 of one (3, 3) tensor or a stack (n, 3, 3)."""
    return np.trace(np.asarray(alpha, dtype=float), axis1=-2, axis2=-1) / 3.0


def anisotropic_part(alpha):
    """Traceless part α − tr(α)/3 · I (same shape as ``alpha``)."""
    alpha = np.asarray(alpha, dtype=float)
    return alpha - isotropic(alpha)[..., None, None] * np.eye(3)


def anisotropy(alpha):
    """Anisotropy invariant γ = sqrt(3/2 · A:A) of the traceless part A (of the symmetrised α)."""
    alpha = np.asarray(alpha, dtype=float)
    a = anisotropic_part(0.5 * (alpha + np.swapaxes(alpha, -1, -2)))
    return np.sqrt(1.5 * (a * a).sum(axis=(-2, -1)))


def polarizability_metrics(pred, ref) -> dict[str, float]:
    """Polarizability errors of (n, 3, 3) stacks in a.u.: MAE over all 9 components and structures
    (``mae_au``) and relative to the mean isotropic reference α (``mae_percent``); isotropic part
    (``isotropic_mae_au``, ``isotropic_mae_percent``); traceless anisotropic part over its 9
    components (``anisotropic_mae_au``); anisotropy invariant (``anisotropy_mae_au``);
    ``mean_isotropic_ref_au``."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred.shape != ref.shape or pred.shape[1:] != (3, 3) or len(pred) == 0:
        raise ValueError(f"polarizabilities must be (n, 3, 3) arrays of equal shape, got {pred.shape}, {ref.shape}")
    mean_iso = float(isotropic(ref).mean())
    mae = float(np.abs(pred - ref).mean())
    iso = float(np.abs(isotropic(pred) - isotropic(ref)).mean())
    return {
        "mae_au": mae,
        "mae_percent": 100.0 * mae / mean_iso,
        "isotropic_mae_au": iso,
        "isotropic_mae_percent": 100.0 * iso / mean_iso,
        "anisotropic_mae_au": float(np.abs(anisotropic_part(pred) - anisotropic_part(ref)).mean()),
        "anisotropy_mae_au": float(np.abs(anisotropy(pred) - anisotropy(ref)).mean()),
        "mean_isotropic_ref_au": mean_iso,
    }


def fock_mae_ha(pred: Sequence, ref: Sequence) -> float:
    """Mean |ΔF| over all elements of all matrices (hartree); matrices may differ in size between
    structures but must match within one."""
    pred, ref = _as_list(pred), _as_list(ref)
    _check_lengths(pred, ref)
    total, count = 0.0, 0
    for p, r in zip(pred, ref):
        if p.shape != r.shape:
            raise ValueError(f"matrix shapes differ: {p.shape} vs {r.shape}")
        total += float(np.abs(p - r).sum())
        count += p.size
    return total / count


def band_energy_mae_ev(pred: Sequence, ref: Sequence, n_bands: int | None = None) -> float:
    """Mean |Δε_nk| (eV, no alignment) over bands ``[0, n_bands)`` (default: all bands both have)
    and all k-points; each entry (n_k, n_bands) in hartree, on the same k mesh."""
    pred, ref = _as_list(pred), _as_list(ref)
    _check_lengths(pred, ref)
    errors = []
    for p, r in zip(pred, ref):
        p, r = np.atleast_2d(p), np.atleast_2d(r)
        if p.shape[0] != r.shape[0]:
            raise ValueError(f"different numbers of k-points: {p.shape[0]} vs {r.shape[0]}")
        count = min(p.shape[1], r.shape[1]) if n_bands is None else int(n_bands)
        if count > min(p.shape[1], r.shape[1]):
            raise ValueError(f"n_bands={count} exceeds the bands available ({p.shape[1]}, {r.shape[1]})")
        errors.append(np.abs(np.sort(p, axis=1)[:, :count] - np.sort(r, axis=1)[:, :count]).ravel())
    return float(np.concatenate(errors).mean() * HARTREE_TO_EV)


def band_window_mae_ev(
    pred: Sequence, ref: Sequence, n_valence, window_ev: float | None = 1.5, valence: bool = True
) -> float:
    """Mean |Δε_nk| (eV, no alignment) over the valence bands ``[0, n_valence)`` (if ``valence``) and the
    conduction states with ε_ref ≤ CBM_ref + ``window_ev`` (CBM of each structure on its mesh; None: no
    conduction states). Inputs as in :func:`band_energy_mae_ev`; ``n_valence`` one value or one per
    structure. Issue 7's window: a minimal basis cannot carry the higher conduction bands."""
    pred, ref = _as_list(pred), _as_list(ref)
    n = _check_lengths(pred, ref)
    errors = []
    for p, r, occupied in zip(pred, ref, np.broadcast_to(np.asarray(n_valence, dtype=int), (n,))):
        p, r = np.sort(np.atleast_2d(p), axis=1), np.sort(np.atleast_2d(r), axis=1)
        if p.shape != r.shape:
            raise ValueError(f"band arrays differ in shape: {p.shape} vs {r.shape}")
        cbm = band_gap(r, occupied)[2]
        selected = r <= cbm + (-np.inf if window_ev is None else window_ev / HARTREE_TO_EV)
        selected[:, :occupied] = valence
        errors.append(np.abs(p - r)[selected])
    errors = np.concatenate(errors)
    if errors.size == 0:
        raise ValueError("no band energies in the window")
    return float(errors.mean() * HARTREE_TO_EV)


def band_gap(bands, n_valence: int) -> tuple[float, float, float]:
    """(gap, VBM, CBM) in the units of ``bands`` (n_k, n_bands): CBM − VBM on the mesh, VBM = max_k
    of band ``n_valence − 1``, CBM = min_k of band ``n_valence`` (bands sorted per k)."""
    bands = np.sort(np.atleast_2d(np.asarray(bands, dtype=float)), axis=1)
    if not 0 < n_valence < bands.shape[1]:
        raise ValueError(f"n_valence={n_valence} must be in 1..{bands.shape[1] - 1}")
    vbm, cbm = float(bands[:, n_valence - 1].max()), float(bands[:, n_valence].min())
    return cbm - vbm, vbm, cbm


def band_gap_error_ev(pred, ref, n_valence: int) -> float:
    """|gap_pred − gap_ref| (eV) of one structure's bands (hartree)."""
    return abs(band_gap(pred, n_valence)[0] - band_gap(ref, n_valence)[0]) * HARTREE_TO_EV


def band_metrics(pred: Sequence, ref: Sequence, n_valence, window_ev: float = 1.5) -> dict[str, float]:
    """The band metrics of periodic models (eV): MAE over the valence bands and the window (valence +
    conduction up to CBM_ref + ``window_ev``) and its conduction part (:func:`band_window_mae_ev`),
    and the band gap, VBM and CBM errors, each the mean over structures of |Δ|. Inputs as in
    :func:`band_window_mae_ev` (equal shapes), ``n_valence`` one value per structure."""
    pred, ref = _as_list(pred), _as_list(ref)
    _check_lengths(pred, ref)
    n_valence = list(n_valence)
    edges = np.array([[band_gap(b, nv) for b, nv in zip(bands, n_valence)] for bands in (pred, ref)])
    delta = np.abs(edges[0] - edges[1]).mean(axis=0) * HARTREE_TO_EV
    return {
        "valence_mae_ev": band_window_mae_ev(pred, ref, n_valence, window_ev=None),
        "window_mae_ev": band_window_mae_ev(pred, ref, n_valence, window_ev),
        "conduction_window_mae_ev": band_window_mae_ev(pred, ref, n_valence, window_ev, valence=False),
        "gap_mae_ev": float(delta[0]),
        "vbm_mae_ev": float(delta[1]),
        "cbm_mae_ev": float(delta[2]),
    }
