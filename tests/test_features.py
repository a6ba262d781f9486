"""Equivariant descriptors: conventions, equivariance, gradients, determinism."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from equivariance import assert_equivariant, real_spherical_harmonics

from mlhcalc.features import (
    EquivariantFeatures,
    FeatureHypers,
    Irrep,
    atom_tensormap,
    pair_tensormap,
    real_clebsch_gordan,
    systems_from_atoms,
)

torch.set_num_threads(1)

SMALL = FeatureHypers(species=(1, 6, 8, 14), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)


@pytest.fixture(scope="module")
def calculator():
    return EquivariantFeatures(SMALL)


def distorted(atoms, seed=0, scale=0.05):
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    return atoms


def test_clebsch_gordan_stack_is_orthogonal():
    for l1, l2 in [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3)]:
        stack = np.concatenate(
            [real_clebsch_gordan(l1, l2, lam) for lam in range(abs(l1 - l2), l1 + l2 + 1)], axis=2
        ).reshape((2 * l1 + 1) * (2 * l2 + 1), -1)
        assert np.abs(stack.T @ stack - np.eye(len(stack))).max() < 1e-13


def test_pair_expansion_is_real_spherical_harmonic_of_the_bond(calculator):
    """A single neighbour's expansion is f(r)·Y_lm(r̂) in the checker's real-harmonic convention."""
    direction = np.array([0.3, -0.5, 0.81])
    direction /= np.linalg.norm(direction)
    dimer = Atoms("CO", positions=[[0, 0, 0], 1.2 * direction])
    features = calculator(systems_from_atoms(dimer))
    for lam in (1, 2):
        first = features.pair[Irrep(lam, 1)][0, :, : SMALL.pair_channels].detach().numpy()
        harmonic = real_spherical_harmonics(lam, direction[None])[0]
        coefficient = harmonic @ first / (harmonic @ harmonic)
        assert np.abs(first - np.outer(harmonic, coefficient)).max() < 1e-12 * np.abs(first).max() + 1e-15
        assert np.abs(coefficient).max() > 1e-6


def test_density_is_featomic_spherical_expansion():
    """ρ_i (compressed) equals featomic's SphericalExpansion contracted with the same channels."""
    import featomic.torch

    hypers = FeatureHypers(species=(14,), cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)
    module = EquivariantFeatures(hypers)
    systems = systems_from_atoms(distorted(bulk("Si", "diamond", a=5.43), seed=1))
    expansion = featomic.torch.SphericalExpansion(**hypers.featomic_hypers()).compute(systems)
    features = module(systems)
    for lam in range(3):
        block = expansion.block({"o3_lambda": lam, "o3_sigma": 1, "center_type": 14, "neighbor_type": 14})
        expected = block.values @ module.compression[lam, 0, :, : hypers.channels]
        got = features.atom[Irrep(lam, 1)][..., : hypers.channels]
        assert torch.allclose(got, expected, rtol=0, atol=1e-13 * expected.abs().max())


def test_molecular_features_are_equivariant(calculator):
    atoms = distorted(molecule("CH3OH"))
    for view in (atom_tensormap, pair_tensormap):
        assert_equivariant(lambda a, view=view: view(calculator(systems_from_atoms(a))), atoms, rtol=1e-10)


def test_periodic_features_are_equivariant(calculator):
    atoms = distorted(bulk("Si", "diamond", a=5.43) * (1, 1, 1), seed=2, scale=0.1)
    atoms[0].symbol = "C"  # two species, so permutations and pair keys are not trivial
    for view in (atom_tensormap, pair_tensormap):
        assert_equivariant(
            lambda a, view=view: view(calculator(systems_from_atoms(a))),
            atoms,
            trials=1,
            checks=("rotation", "improper", "permutation", "images"),
            rtol=1e-10,
        )


def test_pair_partner_is_the_reversed_pair(calculator):
    features = calculator(systems_from_atoms(distorted(bulk("Si", "diamond", a=5.43), seed=3)))
    samples, partner = features.pair_samples, features.pair_partner
    assert (partner >= 0).all()
    assert torch.equal(partner[partner], torch.arange(len(partner)))
    assert torch.equal(samples[partner][:, [2, 1]], samples[:, [1, 2]])
    assert torch.equal(samples[partner][:, 3:], -samples[:, 3:])


def test_position_and_cell_gradients_match_finite_differences(calculator):
    atoms = distorted(bulk("Si", "diamond", a=5.43), seed=4, scale=0.1)
    atoms[1].symbol = "C"
    weights = {}

    def scalar(system):
        features = calculator([system])
        total = 0.0
        for name, blocks in (("atom", features.atom), ("pair", features.pair)):
            for irrep, values in blocks.items():
                if (name, irrep) not in weights:
                    weights[(name, irrep)] = torch.randn(
                        values.shape, generator=torch.Generator().manual_seed(7), dtype=values.dtype
                    )
                total = total + (values * weights[(name, irrep)]).sum()
        return total

    (system,) = systems_from_atoms(atoms, positions_requires_grad=True, cell_requires_grad=True)
    value = scalar(system)
    grad_positions, grad_cell = torch.autograd.grad(value, [system.positions, system.cell])

    step = 1e-5

    def shifted(positions, cell):
        (moved,) = systems_from_atoms(atoms)
        from metatomic.torch import System

        return System(types=moved.types, positions=positions, cell=cell, pbc=moved.pbc)

    positions, cell = system.positions.detach(), system.cell.detach()
    for atom, axis in [(0, 0), (1, 2)]:
        delta = torch.zeros_like(positions)
        delta[atom, axis] = step
        numeric = (scalar(shifted(positions + delta, cell)) - scalar(shifted(positions - delta, cell))) / (2 * step)
        assert abs(float(numeric) - float(grad_positions[atom, axis])) < 1e-6 * max(1.0, abs(float(numeric)))
    for row, column in [(0, 1), (2, 2)]:
        delta = torch.zeros_like(cell)
        delta[row, column] = step
        # strain the cell only: fractional coordinates fixed is the convention of dE/dcell, not here;
        # featomic's cell gradient is at fixed Cartesian positions
        numeric = (scalar(shifted(positions, cell + delta)) - scalar(shifted(positions, cell - delta))) / (2 * step)
        assert abs(float(numeric) - float(grad_cell[row, column])) < 1e-6 * max(1.0, abs(float(numeric)))


def test_features_are_deterministic_and_seeded():
    systems = systems_from_atoms(distorted(molecule("H2O")))
    first = EquivariantFeatures(SMALL)(systems)
    again = EquivariantFeatures(SMALL)(systems)
    other = EquivariantFeatures(FeatureHypers(**{**SMALL.to_dict(), "seed": 1}))(systems)
    irrep = Irrep(1, 1)
    assert torch.equal(first.pair[irrep], again.pair[irrep])
    assert not torch.allclose(first.pair[irrep], other.pair[irrep])


def test_unknown_species_is_rejected(calculator):
    with pytest.raises(ValueError, match="atomic number 17"):
        calculator(systems_from_atoms(molecule("CH3Cl")))
