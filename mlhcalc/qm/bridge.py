"""torch <-> JAX bridge: make a JAX function of arrays differentiable from torch autograd.

The only ``qm`` module that imports torch. Forward runs ``jax.vjp`` (jitted) on the inputs,
backward applies the stored pullback; tensors cross through DLPack without copies (CPU,
contiguous). The inputs are saved with ``ctx.save_for_backward`` so torch raises if they are
modified in place before ``backward`` (the JAX residuals may share their memory).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import torch

__all__ = ["jax_to_torch", "torch_to_jax_array", "jax_to_torch_tensor"]


def torch_to_jax_array(tensor: torch.Tensor) -> jax.Array:
    """Zero-copy view of a (detached, contiguous) torch tensor as a JAX array."""
    return jnp.from_dlpack(tensor.detach().contiguous())


def jax_to_torch_tensor(array: jax.Array) -> torch.Tensor:
    """Zero-copy view of a JAX array as a torch tensor."""
    return torch.from_dlpack(array)


def _apply_pullback(pullback, cotangents):
    return pullback(cotangents)


_apply_pullback_jit = jax.jit(_apply_pullback)


class _JaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, forward_with_pullback, apply_pullback, *tensors):
        outputs, pullback = forward_with_pullback(*(torch_to_jax_array(t) for t in tensors))
        ctx.pullback = pullback
        ctx.apply_pullback = apply_pullback
        ctx.single_output = not isinstance(outputs, (tuple, list))
        ctx.save_for_backward(*tensors)
        if ctx.single_output:
            return jax_to_torch_tensor(outputs)
        return tuple(jax_to_torch_tensor(out) for out in outputs)

    @staticmethod
    def backward(ctx, *grad_outputs):
        ctx.saved_tensors  # noqa: B018 - raises if an input was modified in place since forward
        cotangents = tuple(torch_to_jax_array(g) for g in grad_outputs)
        cotangents = cotangents[0] if ctx.single_output else cotangents
        grads = ctx.apply_pullback(ctx.pullback, cotangents)
        return (None, None) + tuple(jax_to_torch_tensor(g) for g in grads)


def jax_to_torch(fn: Callable, *, jit: bool = True) -> Callable:
    """Wrap ``fn(*arrays) -> array | tuple of arrays`` (JAX) as a torch-differentiable function.

    All inputs must be float tensors of one device (CPU here), float64 to keep JAX's precision;
    non-array arguments belong in a closure (``functools.partial``). Outputs are returned as a
    tensor or a tuple of tensors, matching ``fn``. ``jit=False`` for functions JAX cannot jit.
    """

    def forward_with_pullback(*arrays):
        outputs, pullback = jax.vjp(fn, *arrays)
        return (tuple(outputs) if isinstance(outputs, list) else outputs), pullback

    if jit:
        forward_with_pullback = jax.jit(forward_with_pullback)
    apply_pullback = _apply_pullback_jit if jit else _apply_pullback

    def wrapped(*tensors: torch.Tensor):
        return _JaxFunction.apply(forward_with_pullback, apply_pullback, *tensors)

    return wrapped
