"""Loss terms on the outputs of the qm layer, batched in JAX and differentiable from torch.

For a padded batch (:class:`mlhcalc.training.dataset.PaddedBatch`) the model's Fock matrices go
through :func:`mlhcalc.qm.molecular.response_properties` (``vmap`` over structures, one ``jit`` per
AO bucket): sorted orbital energies, density (→ dipole about the stored origin) and the
non-self-consistent polarizability, all with projector-form derivatives. Per term t the sum of
squared errors SSE_t runs over the masked targets (orbital levels of the MO window; dipole and
polarizability components of the structures labelled with them). The loss of a set of structures is

    L = Σ_t w_t · SSE_t / (N_t · n_t)

with n_t the number of target entries in the set and N_t a fixed normaliser per term: by default
var_t, the variance of the term's targets over the train set (:func:`target_statistics`), so every
term is a mean squared error in units of the spread of its targets; or the initial model's train
mean squared error (``normalization: initial``), so every term starts at 1. A mini-batch gets
per-term scales (:func:`batch_scales`) that make its loss an unbiased estimate of the train-set
loss. The torch side sees one scalar; its gradient w.r.t. the Fock stack comes from
``jax.value_and_grad`` in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import torch

from mlhcalc.qm.bridge import jax_to_torch_tensor, torch_to_jax_array
from mlhcalc.qm.molecular import electronic_dipole, response_properties

__all__ = [
    "TERMS",
    "batch_observables",
    "squared_errors",
    "qm_loss",
    "qm_observables",
    "TargetStatistics",
    "target_statistics",
    "batch_scales",
    "set_losses",
]

TERMS = ("mo_energy", "dipole", "polarizability")


def batch_observables(fock, overlap, dipole_ints, mo_occ, nuclear_dipole):
    """Sorted orbital energies [b, n] (Ha), dipoles [b, 3] (e·bohr) and non-self-consistent
    polarizabilities [b, 3, 3] (a.u.) of a stack of padded systems."""
    props = jax.vmap(response_properties)(fock, overlap, dipole_ints, mo_occ)
    dipole = nuclear_dipole + jax.vmap(electronic_dipole)(props.density, dipole_ints)
    return props.mo_energy, dipole, props.polarizability


def squared_errors(mo_energy, dipole, alpha, targets) -> jax.Array:
    """Masked sums of squared errors (SSE_mo, SSE_dipole, SSE_alpha) of a batch."""
    mo_target, mo_mask, dipole_target, dipole_mask, alpha_target, alpha_mask = targets
    return jnp.stack(
        [
            jnp.sum(mo_mask * (mo_energy - mo_target) ** 2),
            jnp.sum(dipole_mask[:, None] * (dipole - dipole_target) ** 2),
            jnp.sum(alpha_mask[:, None, None] * (alpha - alpha_target) ** 2),
        ]
    )


def _weighted_loss(fock_model, fock_offset, overlap, dipole_ints, mo_occ, nuclear_dipole, targets, scales):
    observables = batch_observables(fock_model + fock_offset, overlap, dipole_ints, mo_occ, nuclear_dipole)
    sse = squared_errors(*observables, targets)
    return jnp.dot(scales, sse), (sse, observables)


_loss_and_grad = jax.jit(jax.value_and_grad(_weighted_loss, has_aux=True))
_observables = jax.jit(lambda fock_model, fock_offset, *rest: batch_observables(fock_model + fock_offset, *rest))
_squared_errors = jax.jit(squared_errors)


class _QMLoss(torch.autograd.Function):
    """Σ_t scale_t · SSE_t of a padded batch; the gradient w.r.t. the Fock stack is computed in the
    forward pass (one JAX call) and applied in backward."""

    @staticmethod
    def forward(ctx, fock, batch, scales, aux):
        (loss, (sse, observables)), grad = _loss_and_grad(
            torch_to_jax_array(fock), *batch.qm_inputs(), batch.targets(), np.asarray(scales, dtype=float)
        )
        ctx.fock_grad = jax_to_torch_tensor(grad)
        aux["sse"] = np.asarray(sse)
        aux["observables"] = tuple(np.asarray(x)[: batch.n_real] for x in observables)
        return torch.tensor(float(loss), dtype=fock.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.fock_grad, None, None, None


def qm_loss(fock: torch.Tensor, batch, scales) -> tuple[torch.Tensor, np.ndarray, tuple[np.ndarray, ...]]:
    """(Σ_t scales[t] · SSE_t as a differentiable torch scalar, SSE per term, observables of the real
    structures) for the model Fock stack ``fock`` [size, bucket, bucket] (zero padded, float64)."""
    aux: dict = {}
    loss = _QMLoss.apply(fock.contiguous(), batch, scales, aux)
    return loss, aux["sse"], aux["observables"]


def qm_observables(fock: torch.Tensor, batch) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Orbital energies, dipoles and polarizabilities of the real structures of ``batch``, and the
    SSE per term against the batch's targets (forward only, no gradient)."""
    outputs = _observables(torch_to_jax_array(fock.detach().contiguous()), *batch.qm_inputs())
    sse = np.asarray(_squared_errors(*outputs, batch.targets()))
    return tuple(np.asarray(x)[: batch.n_real] for x in outputs), sse


# ---------------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class TargetStatistics:
    """Per term: number of target entries and their variance over a set (the train set)."""

    counts: np.ndarray  # (3,)
    variances: np.ndarray  # (3,)
    n_structures: int

    def to_dict(self) -> dict:
        return {
            "n_structures": self.n_structures,
            **{f"{t}_count": int(c) for t, c in zip(TERMS, self.counts)},
            **{f"{t}_variance": float(v) for t, v in zip(TERMS, self.variances)},
        }


def _entries(samples) -> list[np.ndarray]:
    mo = [s.mo_target for s in samples]
    dipole = [s.dipole for s in samples if s.dipole is not None]
    alpha = [s.polarizability.ravel() for s in samples if s.polarizability is not None]
    return [np.concatenate(x) if x else np.zeros(0) for x in (mo, dipole, alpha)]


def target_counts(samples: Sequence) -> np.ndarray:
    """Number of target entries per term in ``samples``."""
    return np.array([len(x) for x in _entries(samples)], dtype=float)


def target_statistics(samples: Sequence) -> TargetStatistics:
    """Counts and variances (about the mean, pooled over levels / components) of the targets of
    ``samples``; a term without entries has variance NaN."""
    entries = _entries(samples)
    variances = np.array([x.var() if len(x) else np.nan for x in entries])
    return TargetStatistics(np.array([len(x) for x in entries], dtype=float), variances, len(samples))


def batch_scales(
    weights: Sequence[float], normalizers: np.ndarray, train: TargetStatistics, n_batch: int
) -> np.ndarray:
    """Per-term factors for the SSE of a batch of ``n_batch`` training structures, such that the
    batch loss is an unbiased estimate of the train loss Σ_t w_t SSE_t / (N_t n_t) (N_t:
    ``normalizers``, e.g. the train variances)."""
    weights = np.asarray(weights, dtype=float)
    scales = np.zeros(len(TERMS))
    active = weights > 0
    scales[active] = weights[active] * train.n_structures / (normalizers[active] * train.counts[active] * n_batch)
    return scales


def set_losses(sse: np.ndarray, counts: np.ndarray, normalizers: np.ndarray, weights) -> dict[str, float]:
    """Normalised per-term losses SSE_t / (N_t n_t) of a set (NaN for terms without entries or
    normaliser) and ``total`` = Σ_t w_t · term_t over the weighted terms."""
    weights = np.asarray(weights, dtype=float)
    terms = {}
    total = 0.0
    for index, term in enumerate(TERMS):
        if counts[index] > 0 and np.isfinite(normalizers[index]) and normalizers[index] > 0:
            terms[term] = float(sse[index] / (normalizers[index] * counts[index]))
            if weights[index] > 0:
                total += weights[index] * terms[term]
        else:
            terms[term] = float("nan")
    terms["total"] = total
    return terms
