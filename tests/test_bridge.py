"""The torch <-> JAX bridge: same values and gradients as pure JAX, without copies."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from ase.build import molecule

import mlhcalc.qm  # noqa: F401  (x64)
from mlhcalc.qm.bridge import jax_to_torch, jax_to_torch_tensor, torch_to_jax_array
from mlhcalc.qm.integrals import make_template
from mlhcalc.qm.molecular import molecule_properties
from mlhcalc.structure import positions_bohr, to_mole


def _two_in_two_out(x, y):
    return jnp.tanh(x) @ y, jnp.sum(jnp.sin(x) * y**2)


def _random(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator, requires_grad=True)


def test_gradients_equal_jax_for_several_inputs_and_outputs():
    x, y = _random((4, 4), 0), _random((4, 4), 1)
    first, second = jax_to_torch(_two_in_two_out)(x, y)
    weights = torch.linspace(-1.0, 1.0, 16, dtype=torch.float64).reshape(4, 4)
    ((weights * first).sum() + 3.0 * second).backward()

    def loss(a, b):
        out = _two_in_two_out(a, b)
        return jnp.sum(weights.numpy() * out[0]) + 3.0 * out[1]

    expected = jax.grad(loss, argnums=(0, 1))(x.detach().numpy(), y.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), expected[0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(y.grad.numpy(), expected[1], atol=1e-12, rtol=0)
    np.testing.assert_allclose(first.detach().numpy(), _two_in_two_out(x.detach().numpy(), y.detach().numpy())[0])


def test_molecular_gradients_through_torch_equal_jax():
    """Dipole and polarizability of water w.r.t. the Fock matrix and positions, from torch."""
    atoms = molecule("H2O")
    template = make_template(atoms)
    mol = to_mole(atoms)
    fock0 = mol.intor("int1e_kin") + mol.intor("int1e_nuc")  # any symmetric H with an open gap
    positions0 = positions_bohr(atoms)

    def dipole_and_alpha(fock, positions):
        props = molecule_properties(template, positions, fock)
        return props["dipole"], props["polarizability"]

    def loss(fock, positions):
        dipole, alpha = dipole_and_alpha(fock, positions)
        return jnp.sum(dipole * jnp.arange(1.0, 4.0)) + jnp.sum(alpha * jnp.eye(3))

    fock = torch.tensor(fock0, requires_grad=True)
    positions = torch.tensor(positions0, requires_grad=True)
    dipole, alpha = jax_to_torch(dipole_and_alpha)(fock, positions)
    ((dipole * torch.arange(1.0, 4.0, dtype=torch.float64)).sum() + torch.trace(alpha)).backward()
    expected = jax.grad(loss, argnums=(0, 1))(jnp.asarray(fock0), jnp.asarray(positions0))
    np.testing.assert_allclose(fock.grad.numpy(), expected[0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(positions.grad.numpy(), expected[1], atol=1e-12, rtol=0)


def test_single_output_is_a_tensor_and_unjitted_functions_work():
    x = _random((5,), 2)
    out = jax_to_torch(lambda a: jnp.sum(a**3), jit=False)(x)
    assert isinstance(out, torch.Tensor) and out.shape == ()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.detach().numpy() ** 2, atol=1e-12)


def test_conversions_share_memory():
    tensor = torch.arange(8, dtype=torch.float64)
    array = torch_to_jax_array(tensor)
    assert array.unsafe_buffer_pointer() == tensor.data_ptr()
    assert jax_to_torch_tensor(array).data_ptr() == tensor.data_ptr()


def test_inplace_change_of_an_input_before_backward_raises():
    x = _random((3,), 3)
    y = x * 1.0
    out = jax_to_torch(lambda a: jnp.sum(a**2))(y)
    with torch.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_closure_over_static_arguments():
    x = _random((3, 3), 4)
    power = jax_to_torch(partial(jnp.linalg.matrix_power, n=3))
    power(x).sum().backward()
    expected = jax.grad(lambda a: jnp.linalg.matrix_power(a, 3).sum())(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-12)
