"""Evaluation against the large-basis labels: the metrics of ``metrics.py`` for a model, and the same
metrics for the plain minimal-basis calculation (the baseline the model must beat).

- :func:`predict_samples`: orbital energies, dipoles, polarizabilities of a model on precomputed
  samples (batched qm layer, sizes sorted into buckets) and the per-term sums of squared errors.
- :func:`score`: metrics of any predictions against the large-basis references.
- :func:`evaluate`: model + labelled ``ase.Atoms`` → metrics (the function for test sets and
  ``data/larger``); :func:`baseline_metrics`: the same from ``*_minimal`` labels.

Polarizabilities: the model's is the non-self-consistent response of its effective Hamiltonian; the
references are CPKS (self-consistent). Structures without a label simply do not enter that metric
(the ``*_n_structures`` entries say how many did).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from mlhcalc.training import metrics
from mlhcalc.training.dataset import LARGE_KEYS, Sample, model_fock_stack, model_samples, pad_batch
from mlhcalc.training.losses import qm_observables

__all__ = ["Predictions", "predict_samples", "score", "evaluate", "baseline_metrics"]


@dataclass
class Predictions:
    """Per structure (input order): orbital energies (model levels, ascending), dipole, polarizability."""

    mo_energy: list[np.ndarray]
    dipole: np.ndarray  # (n, 3) e·bohr
    polarizability: np.ndarray  # (n, 3, 3) a.u.
    sse: np.ndarray | None = None  # (3,) per-term sums of squared errors against the samples' targets


def size_sorted_batches(samples: Sequence[Sample], batch_size: int) -> list[list[int]]:
    """Indices of ``samples`` in chunks of ``batch_size``, sorted by size (few, tight buckets)."""
    order = sorted(range(len(samples)), key=lambda k: (samples[k].nao, k))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def predict_samples(block_model, samples: Sequence[Sample], batch_size: int = 16, bucket: int = 16) -> Predictions:
    """The model's observables on ``samples`` and the SSE of each loss term (no gradients)."""
    n = len(samples)
    mo_energy: list = [None] * n
    dipole, alpha = np.zeros((n, 3)), np.zeros((n, 3, 3))
    sse = np.zeros(3)
    with torch.no_grad():
        for indices in size_sorted_batches(samples, batch_size):
            chunk = [samples[k] for k in indices]
            batch = pad_batch(chunk, batch_size, bucket)
            fock = model_fock_stack(block_model, chunk, batch)
            (mo, dip, pol), batch_sse = qm_observables(fock, batch)
            sse += batch_sse
            for row, k in enumerate(indices):
                mo_energy[k] = mo[row, : samples[k].nao]
                dipole[k], alpha[k] = dip[row], pol[row]
    return Predictions(mo_energy, dipole, alpha, sse)


def score(
    mo_energy: Sequence[np.ndarray],
    dipole: Sequence | None,
    polarizability: Sequence | None,
    mo_energy_ref: Sequence[np.ndarray],
    dipole_ref: Sequence,
    polarizability_ref: Sequence,
    nocc: Sequence[int],
    numbers: Sequence[np.ndarray],
) -> dict[str, float]:
    """All metrics of ``metrics.py`` of predictions against references (one entry per structure;
    a reference or prediction of None leaves that structure out of that metric)."""
    result: dict[str, float] = {"n_structures": len(mo_energy)}
    result.update(metrics.orbital_energy_metrics(mo_energy, mo_energy_ref, nocc, numbers))
    pairs = [
        (p, r) for p, r in zip(dipole if dipole is not None else [], dipole_ref) if p is not None and r is not None
    ]
    result["dipole_n_structures"] = len(pairs)
    if pairs:
        result["dipole_mae_debye"] = metrics.dipole_mae_debye(
            np.array([p for p, _ in pairs]), np.array([r for _, r in pairs])
        )
    pairs = [
        (p, r)
        for p, r in zip(polarizability if polarizability is not None else [], polarizability_ref)
        if p is not None and r is not None
    ]
    result["alpha_n_structures"] = len(pairs)
    if pairs:
        alpha = metrics.polarizability_metrics(np.array([p for p, _ in pairs]), np.array([r for _, r in pairs]))
        result.update({f"alpha_{key}": value for key, value in alpha.items()})
    return result


def score_samples(predictions: Predictions, samples: Sequence[Sample]) -> dict[str, float]:
    """:func:`score` of model predictions on ``samples`` against their large-basis labels."""
    return score(
        predictions.mo_energy,
        list(predictions.dipole),
        list(predictions.polarizability),
        [s.mo_energy_ref for s in samples],
        [s.dipole for s in samples],
        [s.polarizability for s in samples],
        [s.nocc for s in samples],
        [s.numbers for s in samples],
    )


def evaluate(model, atoms_list: Sequence[Atoms], *, batch_size: int = 16, bucket: int = 16) -> dict[str, float]:
    """Metrics of ``model`` (a :class:`~mlhcalc.model.HamiltonianModel` or its ``BlockModel``) on
    labelled molecules (``mo_energy_large``, ``nocc``; ``dipole_large`` and ``polarizability_large``
    where present) against the large-basis labels."""
    block_model = getattr(model, "block_model", model)
    samples = model_samples(block_model, atoms_list)
    return score_samples(predict_samples(block_model, samples, batch_size, bucket), samples)


def baseline_metrics(atoms_list: Sequence[Atoms]) -> dict[str, float]:
    """The same metrics for the plain minimal-basis calculation (``mo_energy_minimal``,
    ``dipole_minimal``, ``polarizability_minimal`` where present) against the large-basis labels."""
    info = [a.info for a in atoms_list]
    missing = [k for k, i in enumerate(info) if "mo_energy_minimal" not in i or LARGE_KEYS["mo_energy"] not in i]
    if missing:
        raise ValueError(f"{len(missing)} structures lack mo_energy_minimal or {LARGE_KEYS['mo_energy']}")
    return score(
        [np.asarray(i["mo_energy_minimal"]) for i in info],
        [i.get("dipole_minimal") for i in info],
        [i.get("polarizability_minimal") for i in info],
        [np.asarray(i[LARGE_KEYS["mo_energy"]]) for i in info],
        [i.get(LARGE_KEYS["dipole"]) for i in info],
        [i.get(LARGE_KEYS["polarizability"]) for i in info],
        [int(i["nocc"]) for i in info],
        [a.get_atomic_numbers() for a in atoms_list],
    )
