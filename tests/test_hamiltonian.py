"""Coupled Hamiltonian blocks: exact round trip, labels, and rotation of real PySCF Hamiltonians."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from equivariance import assert_equivariant
from reference_matrices import kinetic_stack

from mlhcalc.features import FeatureHypers, systems_from_atoms
from mlhcalc.hamiltonian import (
    KEY_NAMES,
    PAIR_ANTISYMMETRIC,
    PAIR_SYMMETRIC,
    decompose,
    from_tensormap,
    hamiltonian_layout,
    reconstruct,
    to_tensormap,
)
from mlhcalc.hamiltonian.model import BlockModel, fit_ridge, load_block_model, save_block_model
from mlhcalc.structure import to_mole

torch.set_num_threads(1)


def cluster_all_species():
    """A non-symmetric cluster with every molecular species (two H, two C: same-species pairs)."""
    symbols = ["H", "C", "N", "O", "F", "S", "Cl", "H", "C"]
    rng = np.random.default_rng(3)
    positions = []
    while len(positions) < len(symbols):
        trial = rng.uniform(0, 4.5, size=3)
        if all(np.linalg.norm(trial - p) > 1.3 for p in positions):
            positions.append(trial)
    atoms = Atoms(symbols, positions=positions)
    atoms.info["charge"] = int(atoms.numbers.sum()) % 2  # closed shell for PySCF; H_core ignores it
    return atoms


def core_hamiltonian(atoms, basis="sto-3g"):
    mol = to_mole(atoms, basis, validate=False)
    return mol.intor("int1e_kin") + mol.intor("int1e_nuc")


def swap_sign(key):
    """B± of a same-species pair is even/odd under exchanging the two atoms."""
    return -1.0 if key["block_type"] == PAIR_ANTISYMMETRIC else 1.0


def molecular_blocks(basis):
    def blocks(atoms):
        layout = hamiltonian_layout(atoms.numbers, basis)
        return to_tensormap(decompose(torch.from_numpy(core_hamiltonian(atoms, basis)), layout), layout)

    return blocks


def random_symmetric_stack(translations, nao, seed=0):
    """H(T) with H(-T) = H(T)ᵀ exactly."""
    rng = np.random.default_rng(seed)
    stack = rng.normal(size=(len(translations), nao, nao))
    index = {tuple(t): k for k, t in enumerate(translations)}
    partner = [index[tuple(-t)] for t in translations]
    return 0.5 * (stack + stack[partner].transpose(0, 2, 1))


def test_round_trip_of_a_symmetric_molecular_hamiltonian_is_exact():
    atoms = cluster_all_species()
    layout = hamiltonian_layout(atoms.numbers, "sto-3g")
    hamiltonian = random_symmetric_stack(np.zeros((1, 3), int), layout.nao)[0]
    rebuilt = reconstruct(decompose(torch.from_numpy(hamiltonian), layout), layout)
    assert rebuilt.shape == hamiltonian.shape
    assert np.abs(rebuilt.numpy() - hamiltonian).max() <= 1e-12


def test_round_trip_of_a_periodic_hamiltonian_is_exact():
    atoms = bulk("SiC", "zincblende", a=4.36)
    translations = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    layout = hamiltonian_layout(atoms.numbers, "gth-szv", translations=translations)
    stack = random_symmetric_stack(translations, layout.nao, seed=1)
    rebuilt = reconstruct(decompose(torch.from_numpy(stack), layout), layout)
    assert rebuilt.shape == stack.shape
    assert np.abs(rebuilt.numpy() - stack).max() <= 1e-12


def test_number_of_coupled_values_equals_independent_matrix_elements():
    atoms = cluster_all_species()
    layout = hamiltonian_layout(atoms.numbers, "sto-3g")
    n_values = sum(group.coupling.shape[1] * len(group.samples) for group in layout.groups)
    assert n_values == layout.nao * (layout.nao + 1) // 2


def test_decomposition_sees_only_the_symmetric_part():
    atoms = cluster_all_species()
    layout = hamiltonian_layout(atoms.numbers, "sto-3g")
    matrix = np.random.default_rng(2).normal(size=(layout.nao, layout.nao))
    antisymmetric = decompose(torch.from_numpy(matrix - matrix.T), layout)
    assert max(float(values.abs().max()) for values in antisymmetric) == 0.0
    rebuilt = reconstruct(decompose(torch.from_numpy(matrix), layout), layout)
    assert np.abs(rebuilt.numpy() - 0.5 * (matrix + matrix.T)).max() <= 1e-12


def test_keys_are_named_and_carry_parity():
    atoms = molecule("H2O")
    layout = hamiltonian_layout(atoms.numbers, "sto-3g")
    tensor_map = to_tensormap(decompose(torch.from_numpy(core_hamiltonian(atoms)), layout), layout)
    assert tuple(tensor_map.keys.names) == KEY_NAMES
    for key in tensor_map.keys:
        assert key["sigma"] == (-1) ** (key["l_i"] + key["l_j"] + key["lambda"])
        assert abs(key["l_i"] - key["l_j"]) <= key["lambda"] <= key["l_i"] + key["l_j"]
    # the two hydrogens of water: both exchange-symmetric (s s, λ=0) and no antisymmetric s-s block
    hh = [tuple(int(v) for v in key.values) for key in tensor_map.keys if key["species_i"] == key["species_j"] == 1]
    assert (PAIR_SYMMETRIC, 1, 0, 0, 1, 0, 0, 0, 1) in hh
    assert all(key[0] != PAIR_ANTISYMMETRIC for key in hh)


def test_tensormap_view_round_trips():
    atoms = cluster_all_species()
    layout = hamiltonian_layout(atoms.numbers, "sto-3g")
    coupled = decompose(torch.from_numpy(core_hamiltonian(atoms)), layout)
    again = from_tensormap(to_tensormap(coupled, layout), layout)
    assert all(torch.equal(a, b) for a, b in zip(coupled, again))


def test_core_hamiltonian_blocks_rotate_with_wigner_d():
    """STO-3G core H (exactly equivariant): every block rotates by D^λ, parity σ, any atom order."""
    worst = assert_equivariant(molecular_blocks("sto-3g"), cluster_all_species(), rtol=1e-9, swap_sign=swap_sign)
    assert max(worst.values()) < 1e-9


def test_d_shell_blocks_rotate_with_wigner_d():
    """6-31G* (d on O): PySCF's d order is the real-harmonic m order, no reindexing needed."""
    atoms = molecule("H2O")
    atoms.positions += np.random.default_rng(5).normal(scale=0.05, size=atoms.positions.shape)
    assert_equivariant(
        molecular_blocks("6-31g*"),
        atoms,
        rtol=1e-9,
        swap_sign=swap_sign,
        checks=("rotation", "improper", "permutation"),
    )



def periodic_kinetic_blocks(atoms, basis="gth-szv", cutoff=4.0):
    """Coupled blocks of the kinetic H(T) for the pairs inside ``cutoff`` Å."""
    first, second, shifts = neighbor_list("ijS", atoms, cutoff)
    pairs = np.concatenate([np.stack([first, second], 1), shifts], axis=1)
    layout = hamiltonian_layout(atoms.numbers, basis, pairs=pairs)
    stack = kinetic_stack(atoms, layout.translations, basis)
    return to_tensormap(decompose(torch.from_numpy(stack), layout), layout)


def test_periodic_kinetic_blocks_rotate_and_follow_periodic_images():
    atoms = bulk("SiC", "zincblende", a=4.36)
    atoms.positions += np.random.default_rng(6).normal(scale=0.05, size=atoms.positions.shape)
    assert_equivariant(
        periodic_kinetic_blocks,
        atoms,
        trials=1,
        rtol=1e-9,
        swap_sign=swap_sign,
        checks=("rotation", "improper", "permutation", "images"),
    )


def test_reconstruction_is_differentiable():
    layout = hamiltonian_layout(molecule("H2O").numbers, "sto-3g")
    coupled = [
        torch.randn(group.samples.shape[0], group.coupling.shape[1], dtype=torch.float64, requires_grad=True)
        for group in layout.groups
    ]
    assert torch.autograd.gradcheck(lambda *values: reconstruct(list(values), layout), coupled)


def test_missing_partner_translation_is_rejected():
    with pytest.raises(ValueError, match="partner"):
        hamiltonian_layout([14, 14], "gth-szv", translations=[[0, 0, 0], [1, 0, 0]])


# --- the per-block linear model ------------------------------------------------------------------

MODEL_HYPERS = FeatureHypers(
    species=(1, 6, 8, 14), cutoff=5.0, max_radial=3, max_angular=2, channels=4, pair_channels=2
)


def random_model(basis="sto-3g", seed=0):
    model = BlockModel(MODEL_HYPERS, basis, gated=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def predicted_blocks(model):
    def blocks(atoms):
        with torch.no_grad():
            ((layout, hamiltonian),) = model(systems_from_atoms(atoms))
        return to_tensormap(decompose(hamiltonian, layout), layout)

    return blocks


def test_predicted_molecular_hamiltonian_is_symmetric_and_equivariant():
    model = random_model()
    atoms = molecule("CH3CH2OH")  # two carbons: exchange-odd (PAIR_ANTISYMMETRIC) blocks exist
    atoms.positions += np.random.default_rng(7).normal(scale=0.05, size=atoms.positions.shape)
    ((_, hamiltonian),) = model(systems_from_atoms(atoms))
    assert torch.equal(hamiltonian, hamiltonian.T)
    assert_equivariant(predicted_blocks(model), atoms, trials=1, rtol=1e-9, swap_sign=swap_sign)


def test_predicted_periodic_hamiltonian_obeys_h_minus_t_and_follows_images():
    model = random_model("gth-szv")
    atoms = bulk("SiC", "zincblende", a=4.36)
    atoms.positions += np.random.default_rng(8).normal(scale=0.05, size=atoms.positions.shape)
    ((layout, stack),) = model(systems_from_atoms(atoms))
    assert torch.equal(stack, stack[torch.as_tensor(layout.partner)].transpose(1, 2))
    assert_equivariant(
        predicted_blocks(model), atoms, trials=1, rtol=1e-9, swap_sign=swap_sign, checks=("rotation", "images")
    )


def test_ridge_fit_predicts_a_held_out_core_hamiltonian():
    rng = np.random.default_rng(9)

    def distorted_water():
        atoms = molecule("H2O")
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        return atoms

    train = [distorted_water() for _ in range(12)]
    model = BlockModel(MODEL_HYPERS, "sto-3g")
    fit_ridge(model, systems_from_atoms(train), [core_hamiltonian(atoms) for atoms in train])
    held_out = distorted_water()
    with torch.no_grad():
        ((_, predicted),) = model(systems_from_atoms(held_out))
    reference = core_hamiltonian(held_out)
    # core H spans ~30 Ha; an unfitted model is off by that much, a wrong block mapping by ≫ 1e-2
    assert np.abs(predicted.numpy() - reference).max() < 1e-2
    assert np.abs(np.linalg.eigvalsh(predicted.numpy()) - np.linalg.eigvalsh(reference)).max() < 1e-2


def test_predicted_hamiltonian_gradient_matches_finite_differences():
    model = random_model()
    atoms = molecule("H2O")
    atoms.positions += np.random.default_rng(10).normal(scale=0.05, size=atoms.positions.shape)
    weights = torch.from_numpy(np.random.default_rng(11).normal(size=(7, 7)))

    def energy(positions):
        from metatomic.torch import System

        (template,) = systems_from_atoms(atoms)
        system = System(types=template.types, positions=positions, cell=template.cell, pbc=template.pbc)
        ((_, hamiltonian),) = model([system])
        return (hamiltonian * weights).sum()

    (system,) = systems_from_atoms(atoms, positions_requires_grad=True)
    (gradient,) = torch.autograd.grad(energy(system.positions), system.positions)
    step = 1e-5
    positions = system.positions.detach()
    for atom, axis in [(0, 2), (2, 0)]:
        delta = torch.zeros_like(positions)
        delta[atom, axis] = step
        numeric = (energy(positions + delta) - energy(positions - delta)) / (2 * step)
        assert abs(float(numeric) - float(gradient[atom, axis])) < 1e-6 * max(1.0, abs(float(numeric)))


def test_ridge_fit_predicts_a_held_out_periodic_hamiltonian_within_the_cutoff():
    rng = np.random.default_rng(12)
    translations = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])

    def distorted_cell():
        atoms = bulk("SiC", "zincblende", a=4.36)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        return atoms

    train = [distorted_cell() for _ in range(8)]
    model = BlockModel(MODEL_HYPERS, "gth-szv")
    stacks = [kinetic_stack(atoms, translations) for atoms in train]
    fit_ridge(model, systems_from_atoms(train), stacks, translations=[translations] * len(train))
    held_out = distorted_cell()
    with torch.no_grad():
        ((layout, predicted),) = model(systems_from_atoms(held_out), translations=[translations])
    reference = torch.from_numpy(kinetic_stack(held_out, translations))
    within_cutoff = reconstruct(decompose(reference, layout), layout)  # pairs beyond the cutoff set to 0
    # kinetic H(T) elements reach ~1 Ha; measured error ~5e-6 Ha
    assert (predicted - within_cutoff).abs().max() < 1e-3


def test_saved_model_predicts_the_same_hamiltonian(tmp_path):
    model = random_model()
    path = tmp_path / "model.pt"
    save_block_model(model, path, metadata={"trained_on": "nothing"})
    loaded, metadata = load_block_model(path)
    atoms = molecule("H2O")
    with torch.no_grad():
        ((_, expected),) = model(systems_from_atoms(atoms))
        ((_, got),) = loaded(systems_from_atoms(atoms))
    assert metadata == {"trained_on": "nothing"}
    assert loaded.gated and loaded.basis == "sto-3g"
    assert torch.equal(got, expected)


def test_batched_prediction_equals_one_structure_at_a_time():
    model = random_model()
    structures = [molecule("CH3OH"), molecule("H2O"), molecule("CH4")]
    with torch.no_grad():
        batched = model(systems_from_atoms(structures))
        single = [model(systems_from_atoms(atoms))[0] for atoms in structures]
    for (_, together), (_, alone) in zip(batched, single):
        assert torch.allclose(together, alone, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", ["molecule", "periodic"])
def test_pairs_in_chunks_give_the_all_at_once_hamiltonian_and_gradient(kind):
    """forward() computes pair features lazily, a few pairs at a time; the result and its position
    derivative must be those of the features computed for all pairs at once (``coupled`` without chunks)."""
    from mlhcalc.hamiltonian.model import model_layouts

    if kind == "molecule":
        model, atoms = random_model(), molecule("CH3CH2OH")
    else:
        model, atoms = random_model("gth-szv"), bulk("SiC", "zincblende", a=4.36)
    atoms.positions += np.random.default_rng(12).normal(scale=0.05, size=atoms.positions.shape)
    weights = None

    def hamiltonian(chunk_rows):
        nonlocal weights
        systems = systems_from_atoms(atoms, positions_requires_grad=True)
        lazy = chunk_rows is not None
        features = model.features(systems, lazy_pairs=lazy)
        assert (len(features.pair) == 0) == lazy
        (layout,) = model_layouts(features, systems, model.basis)
        result = reconstruct(model.coupled(features, layout, chunk_rows), layout)
        if weights is None:
            weights = torch.from_numpy(np.random.default_rng(13).normal(size=result.shape))
        (gradient,) = torch.autograd.grad((weights * result).sum(), systems[0].positions)
        return result.detach(), gradient

    expected, expected_gradient = hamiltonian(None)
    assert expected.abs().max() > 0.1
    for chunk_rows in (1, 7, 10**6):  # one pair per chunk, uneven chunks, one chunk
        got, gradient = hamiltonian(chunk_rows)
        assert torch.allclose(got, expected, rtol=0, atol=1e-12)
        assert torch.allclose(gradient, expected_gradient, rtol=0, atol=1e-10)
    with torch.no_grad():
        ((_, via_forward),) = model(systems_from_atoms(atoms))
    assert torch.allclose(via_forward, expected, rtol=0, atol=1e-12)
