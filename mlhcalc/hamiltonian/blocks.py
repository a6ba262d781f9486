"""Exact decomposition of a symmetric AO Hamiltonian (PySCF order) into labelled coupled blocks, and back.

Every (shell a on atom i, shell b on atom j) sub-block, after reordering PySCF → m order (the only
place the project does it), is coupled to λ = |l_a - l_b|..l_a + l_b with real Clebsch–Gordan
coefficients, B^λ_μ = Σ C^{λμ}_{m_a m_b} H_{m_a m_b}; its parity is σ = (-1)^(l_a + l_b + λ).
Only independent blocks are kept (H is symmetric; periodic: H(-T) = H(T)ᵀ):

- ``ON_SITE`` (i, i, T = 0): shell pairs a ≤ b (ordered by (l, n)); for a = b only even λ (the odd
  ones are the antisymmetric part, zero for a symmetric H).
- ``PAIR_SYMMETRIC`` / ``PAIR_ANTISYMMETRIC`` (same species, i ≠ j or T ≠ 0): B± = (H_ij(T)[a,b] ±
  H_ji(-T)[a,b]) / √2, even/odd under exchanging the two atoms, for the pair i < j (i = j: T > 0),
  shell pairs a ≤ b; for a = b, B+ has only even λ and B- only odd λ.
- ``PAIR_HETERO`` (different species): H_ij(T)[a,b] for Z_i < Z_j, all shell pairs and λ.

The work is done per *group* (one kind and species pair) on dense tensors: ``decompose`` gathers
every atom-pair block of a group with one index and couples all shell pairs and λ with one matrix;
``reconstruct`` is the transpose. ``to_tensormap`` / ``from_tensormap`` give the labelled view
(metatensor keys ``block_type, species_i, n_i, l_i, species_j, n_j, l_j, lambda, sigma``; samples
``system, atom_i, atom_j, cell_shift_a, cell_shift_b, cell_shift_c``; components ``mu``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

from mlhcalc.features.clebsch_gordan import parity_sigma, real_clebsch_gordan
from mlhcalc.orbitals import m_order_permutation, species_layout

__all__ = [
    "ON_SITE",
    "PAIR_SYMMETRIC",
    "PAIR_ANTISYMMETRIC",
    "PAIR_HETERO",
    "KEY_NAMES",
    "SAMPLE_NAMES",
    "BlockKey",
    "BlockGroup",
    "HamiltonianLayout",
    "hamiltonian_layout",
    "decompose",
    "reconstruct",
    "to_tensormap",
    "from_tensormap",
]

ON_SITE, PAIR_SYMMETRIC, PAIR_ANTISYMMETRIC, PAIR_HETERO = 0, 1, -1, 2
KEY_NAMES = ("block_type", "species_i", "n_i", "l_i", "species_j", "n_j", "l_j", "lambda", "sigma")
SAMPLE_NAMES = ("system", "atom_i", "atom_j", "cell_shift_a", "cell_shift_b", "cell_shift_c")


class BlockKey(NamedTuple):
    """Label of one coupled block (field names as in :data:`KEY_NAMES`, ``lam`` for ``lambda``)."""

    block_type: int
    species_i: int
    n_i: int
    l_i: int
    species_j: int
    n_j: int
    l_j: int
    lam: int
    sigma: int


@dataclass(frozen=True)
class BlockGroup:
    """All coupled blocks of one kind and species pair for one structure.

    ``gather`` [n_samples, K]: flat indices into the stacked H(T) (m order inside shells) of the
    matrix elements the group reads; ``coupling`` [K, n_columns]: the orthonormal-column map from
    those elements to the coupled values; ``weights`` [K]: 1/2 where the element's transpose is
    read by the same group (it is then written twice by reconstruction's M + Mᵀ).
    ``keys[k]`` owns columns ``columns[k]`` of the group's coupled values [n_samples, n_columns].
    """

    kind: str
    species_i: int
    species_j: int
    samples: torch.Tensor
    gather: torch.Tensor
    coupling: torch.Tensor
    weights: torch.Tensor
    keys: tuple[BlockKey, ...]
    columns: tuple[slice, ...]


@dataclass(frozen=True)
class HamiltonianLayout:
    """Everything needed to go between H(T) [n_T, nao, nao] of one structure and its coupled blocks."""

    numbers: np.ndarray
    basis: str
    translations: np.ndarray
    partner: np.ndarray
    nao: int
    periodic: bool
    groups: tuple[BlockGroup, ...]


def _shell_order(layout):
    """Shells of a species sorted by (l, n): the order in which 'a ≤ b' is meant."""
    return sorted(layout.shells, key=lambda shell: (shell.l, shell.n))


@cache
def _coupling_columns(kind, basis, symbol_i, symbol_j):
    """Coupling matrix [K, n_columns], weights [K] and (key fields, column slice) for a group kind.

    Input elements: the (nao_i × nao_j) block H_ij (m order within shells); for same-species pairs
    followed by the block H_ji(-T) of the partner.
    """
    layout_i, layout_j = species_layout(basis, symbol_i), species_layout(basis, symbol_j)
    nao_i, nao_j = layout_i.nao, layout_j.nao
    block_size = nao_i * nao_j
    n_inputs = 2 * block_size if kind == "same_species" else block_size
    columns, keys, weights = [], [], np.ones(n_inputs)

    def element_indices(shell_a, shell_b, second=False):
        rows = shell_a.offset + np.arange(2 * shell_a.l + 1)
        cols = shell_b.offset + np.arange(2 * shell_b.l + 1)
        return (rows[:, None] * nao_j + cols[None, :]) + (block_size if second else 0)

    for index_a, shell_a in enumerate(_shell_order(layout_i)):
        for index_b, shell_b in enumerate(_shell_order(layout_j)):
            diagonal = kind != "hetero" and index_a == index_b
            if kind != "hetero" and index_a > index_b:
                continue
            if diagonal:
                weights[element_indices(shell_a, shell_b).ravel()] = 0.5
                if kind == "same_species":
                    weights[element_indices(shell_a, shell_b, second=True).ravel()] = 0.5
            signs = (1, -1) if kind == "same_species" else (None,)
            for sign in signs:
                for lam in range(abs(shell_a.l - shell_b.l), shell_a.l + shell_b.l + 1):
                    if diagonal and (lam % 2 == 0) != (sign in (None, 1)):
                        continue  # zero for a symmetric H: the antisymmetric part of a diagonal shell block
                    cg = real_clebsch_gordan(shell_a.l, shell_b.l, lam).reshape(-1, 2 * lam + 1)
                    column = np.zeros((n_inputs, 2 * lam + 1))
                    if sign is None:
                        column[element_indices(shell_a, shell_b).ravel()] = cg
                    else:
                        column[element_indices(shell_a, shell_b).ravel()] = cg / math.sqrt(2)
                        column[element_indices(shell_a, shell_b, second=True).ravel()] = sign * cg / math.sqrt(2)
                    block_type = {
                        None: ON_SITE if kind == "on_site" else PAIR_HETERO,
                        1: PAIR_SYMMETRIC,
                        -1: PAIR_ANTISYMMETRIC,
                    }[sign]
                    keys.append(
                        (
                            block_type,
                            shell_a.n,
                            shell_a.l,
                            shell_b.n,
                            shell_b.l,
                            lam,
                            parity_sigma(shell_a.l, shell_b.l, lam),
                        )
                    )
                    columns.append(column)
    coupling = torch.from_numpy(np.concatenate(columns, axis=1))
    return coupling, torch.from_numpy(weights), tuple(keys)


def _canonical_pairs(numbers, pairs):
    """Keep one of (i, j, T) / (j, i, -T): Z_i < Z_j for different species, else i < j, or i = j and T > 0."""
    i, j, (a, b, c) = pairs[:, 0], pairs[:, 1], pairs[:, 2:].T
    zi, zj = numbers[i], numbers[j]
    positive_shift = (a > 0) | ((a == 0) & (b > 0)) | ((a == 0) & (b == 0) & (c > 0))
    keep = np.where(zi != zj, zi < zj, (i < j) | ((i == j) & positive_shift))
    return pairs[keep]


def hamiltonian_layout(
    numbers,
    basis: str,
    translations=None,
    pairs=None,
    system: int = 0,
    periodic: bool | None = None,
) -> HamiltonianLayout:
    """Layout of the coupled blocks of one structure.

    ``numbers``: atomic numbers (PySCF atom order). ``translations`` [n_T, 3] integer lattice
    translations of the stacked H(T) (None: a molecule, H has shape [nao, nao]); every -T must be
    present. ``pairs`` [n, 5] rows (i, j, T) of the off-site blocks to keep (either order of a pair
    is enough; None: every pair of atoms for every T); without ``translations`` they are those of the
    pairs, their negatives and 0. ``system`` is written in the samples. ``periodic`` decides whether
    :func:`reconstruct` returns a stack or a matrix (None: periodic if translations are given or a
    pair crosses the cell).
    """
    numbers = np.asarray(numbers, dtype=int)
    n_atoms = len(numbers)
    if pairs is not None:
        pairs = np.asarray(pairs, dtype=int).reshape(-1, 5)
    if periodic is None:
        periodic = translations is not None or (pairs is not None and bool(np.any(pairs[:, 2:])))
    if translations is None:
        shifts = np.zeros((1, 3), dtype=int) if pairs is None else pairs[:, 2:]
        translations = np.unique(np.concatenate([np.zeros((1, 3), int), shifts, -shifts]), axis=0)
    translations = np.asarray(translations, dtype=int).reshape(-1, 3)
    index_of = {tuple(t): k for k, t in enumerate(translations.tolist())}
    if len(index_of) != len(translations) or (0, 0, 0) not in index_of:
        raise ValueError("translations must be distinct and include (0, 0, 0)")
    missing = [t for t in index_of if tuple(-v for v in t) not in index_of]
    if missing:
        raise ValueError(f"translation {list(missing[0])} has no partner -T: H(-T) = H(T)ᵀ is needed")
    partner = np.array([index_of[tuple(-v for v in t)] for t in index_of])

    if pairs is None:
        i, j, t = np.meshgrid(np.arange(n_atoms), np.arange(n_atoms), np.arange(len(translations)), indexing="ij")
        pairs = np.concatenate([np.stack([i.ravel(), j.ravel()], 1), translations[t.ravel()]], axis=1)
    pairs = pairs[~((pairs[:, 0] == pairs[:, 1]) & (pairs[:, 2:] == 0).all(axis=1))]
    pairs = np.unique(np.concatenate([pairs, pairs[:, [1, 0, 2, 3, 4]] * [1, 1, -1, -1, -1]]), axis=0)
    pairs = _canonical_pairs(numbers, pairs)
    for shift in np.unique(pairs[:, 2:], axis=0).tolist():
        if tuple(shift) not in index_of:
            raise ValueError(f"pair translation {shift} is not among the translations of H(T)")

    symbols = _symbols(numbers)
    layouts = {z: species_layout(basis, symbols[z]) for z in np.unique(numbers)}
    ao_start = np.concatenate([[0], np.cumsum([layouts[z].nao for z in numbers])])
    nao = int(ao_start[-1])
    m_order = {z: m_order_permutation(layout) for z, layout in layouts.items()}

    def flat_blocks(t_index, atom_i, atom_j):
        """Flat indices [n, nao_i * nao_j] of the blocks (atom_i, atom_j) of H(T[t_index]), m order."""
        rows = ao_start[atom_i][:, None] + m_order[numbers[atom_i[0]]][None, :]
        cols = ao_start[atom_j][:, None] + m_order[numbers[atom_j[0]]][None, :]
        flat = t_index[:, None, None] * nao * nao + rows[:, :, None] * nao + cols[:, None, :]
        return flat.reshape(len(atom_i), -1)

    t_index = np.array([index_of[tuple(t)] for t in pairs[:, 2:].tolist()], dtype=int).reshape(-1)
    zi, zj = numbers[pairs[:, 0]], numbers[pairs[:, 1]]
    selections = [("on_site", z, z, None) for z in layouts]
    selections += [
        ("same_species" if a == b else "hetero", a, b, (zi == a) & (zj == b))
        for a, b in sorted({(int(a), int(b)) for a, b in zip(zi, zj)})
    ]
    groups = []
    for kind, z_i, z_j, selected in selections:
        if kind == "on_site":
            atoms = np.flatnonzero(numbers == z_i)
            rows = np.stack([atoms, atoms, *np.zeros((3, len(atoms)), dtype=int)], axis=1)
            gather = flat_blocks(np.full(len(atoms), index_of[(0, 0, 0)]), atoms, atoms)
        else:
            rows, t = pairs[selected], t_index[selected]
            gather = flat_blocks(t, rows[:, 0], rows[:, 1])
            if kind == "same_species":
                gather = np.concatenate([gather, flat_blocks(partner[t], rows[:, 1], rows[:, 0])], axis=1)
        coupling, weights, key_fields = _coupling_columns(kind, basis, symbols[z_i], symbols[z_j])
        keys, columns, start = [], [], 0
        for block_type, n_i, l_i, n_j, l_j, lam, sigma in key_fields:
            keys.append(BlockKey(block_type, int(z_i), n_i, l_i, int(z_j), n_j, l_j, lam, sigma))
            columns.append(slice(start, start + 2 * lam + 1))
            start += 2 * lam + 1
        samples = np.concatenate([np.full((len(rows), 1), system), rows], axis=1)
        groups.append(
            BlockGroup(
                kind=kind,
                species_i=int(z_i),
                species_j=int(z_j),
                samples=torch.from_numpy(samples.astype(np.int64)),
                gather=torch.from_numpy(gather.astype(np.int64)),
                coupling=coupling,
                weights=weights,
                keys=tuple(keys),
                columns=tuple(columns),
            )
        )
    return HamiltonianLayout(
        numbers=numbers,
        basis=basis,
        translations=translations,
        partner=partner,
        nao=nao,
        periodic=bool(periodic),
        groups=tuple(groups),
    )


def _symbols(numbers):
    from ase.data import chemical_symbols

    return {int(z): chemical_symbols[z] for z in np.unique(numbers)}


def _stack(hamiltonian, layout: HamiltonianLayout) -> torch.Tensor:
    hamiltonian = torch.as_tensor(hamiltonian)
    if hamiltonian.dim() == 2:
        hamiltonian = hamiltonian[None]
    expected = (len(layout.translations), layout.nao, layout.nao)
    if tuple(hamiltonian.shape) != expected:
        raise ValueError(f"H has shape {tuple(hamiltonian.shape)}, the layout expects {expected}")
    return hamiltonian


def decompose(hamiltonian, layout: HamiltonianLayout) -> list[torch.Tensor]:
    """Coupled values of every group, [n_samples, n_columns] each (differentiable).

    ``hamiltonian``: [nao, nao] (molecule) or [n_T, nao, nao] in ``layout.translations`` order, PySCF AO
    order. Only the symmetric part (H(T) + H(-T)ᵀ)/2 is seen: ``reconstruct`` returns exactly that.
    """
    stacked = _stack(hamiltonian, layout)
    symmetric = 0.5 * (stacked + stacked[torch.as_tensor(layout.partner)].transpose(1, 2))
    flat = symmetric.reshape(-1)
    return [flat[group.gather] @ group.coupling.to(flat.dtype) for group in layout.groups]


def reconstruct(coupled: list[torch.Tensor], layout: HamiltonianLayout) -> torch.Tensor:
    """Inverse of :func:`decompose`: H(T) [n_T, nao, nao] (or [nao, nao] for a molecule), symmetric
    by construction (H(-T) = H(T)ᵀ), differentiable with respect to the coupled values."""
    indices, values = [], []
    for group, group_values in zip(layout.groups, coupled):
        dtype = group_values.dtype
        elements = (group_values @ group.coupling.to(dtype).T) * group.weights.to(dtype)
        indices.append(group.gather.reshape(-1))
        values.append(elements.reshape(-1))
    n_t, nao = len(layout.translations), layout.nao
    dtype = values[0].dtype if values else torch.float64
    half = torch.zeros(n_t * nao * nao, dtype=dtype).index_put((torch.cat(indices),), torch.cat(values))
    half = half.reshape(n_t, nao, nao)
    full = half + half[torch.as_tensor(layout.partner)].transpose(1, 2)
    return full if layout.periodic else full[0]


def to_tensormap(coupled: list[torch.Tensor], layout: HamiltonianLayout):
    """Labelled view: one metatensor block per key, values [n_samples, 2λ+1, 1]."""
    from metatensor.torch import Labels, TensorBlock, TensorMap

    keys, blocks = [], []
    properties = Labels(["_"], torch.zeros((1, 1), dtype=torch.int32))
    for group, values in zip(layout.groups, coupled):
        samples = Labels(list(SAMPLE_NAMES), group.samples.to(torch.int32))
        for key, columns in zip(group.keys, group.columns):
            lam = key.lam
            components = [Labels(["mu"], torch.arange(-lam, lam + 1, dtype=torch.int32)[:, None])]
            keys.append(list(key))
            blocks.append(TensorBlock(values[:, columns, None], samples, components, properties))
    return TensorMap(Labels(list(KEY_NAMES), torch.tensor(keys, dtype=torch.int32).reshape(-1, 9)), blocks)


def from_tensormap(tensor_map, layout: HamiltonianLayout) -> list[torch.Tensor]:
    """Coupled values per group from a labelled TensorMap with this layout's keys and samples."""
    coupled = []
    for group in layout.groups:
        parts = []
        for key in group.keys:
            block = tensor_map.block(dict(zip(KEY_NAMES, (int(v) for v in key))))
            if not torch.equal(block.samples.values.to(torch.long), group.samples):
                raise ValueError(f"samples of block {key} do not match the layout")
            parts.append(block.values[..., 0])
        coupled.append(torch.cat(parts, dim=1))
    return coupled
