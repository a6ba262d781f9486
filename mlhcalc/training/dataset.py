"""Training data: labelled molecules → precomputed, model-ready samples, and padded batches.

The features do not depend on the trained weights, so each structure's :class:`Sample` holds its
features, its model-basis integrals (S, r about the dipole origin), occupations, nuclear dipole
and its large-basis targets once; an optimisation step is then only the linear heads and the qm
layer. A mini-batch is assembled by concatenating the samples' features into one block-diagonal
"system" (one pass of the heads for the whole batch, :func:`concatenate_features`) and by padding
every matrix to a common size bucket with :func:`mlhcalc.qm.molecular.pad_system` (one compiled,
``vmap``-ped qm function per bucket). Units: atomic (hartree, bohr, e·bohr, bohr³).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
from ase import Atoms

from mlhcalc.features import Features, systems_from_atoms
from mlhcalc.hamiltonian.blocks import HamiltonianLayout, hamiltonian_layout, reconstruct
from mlhcalc.hamiltonian.model import REPRESENTATIONS, overlap_power
from mlhcalc.qm.molecular import pad_system

__all__ = [
    "LARGE_KEYS",
    "Sample",
    "mo_levels",
    "build_sample",
    "build_samples",
    "model_samples",
    "has_targets",
    "concatenate_features",
    "batch_layout",
    "PaddedBatch",
    "pad_batch",
    "bucket_size",
    "model_fock_stack",
]

# atoms.info keys of the large-basis targets (mlhcalc.reference.read)
LARGE_KEYS = {"mo_energy": "mo_energy_large", "dipole": "dipole_large", "polarizability": "polarizability_large"}


@dataclass
class Sample:
    """One molecule, ready for training or evaluation (atomic units, PySCF AO order).

    ``levels``: indices (ascending) of the model's sorted eigenvalues that have a target;
    ``mo_target``: the large-basis energies of those levels. ``dipole`` / ``polarizability``: large-basis
    targets or None when the structure is not labelled with them. ``mo_energy_ref``: all large-basis
    levels (for the metrics).
    """

    name: str
    numbers: np.ndarray
    nao: int
    nocc: int
    features: Features
    overlap: np.ndarray
    dipole_ints: np.ndarray
    mo_occ: np.ndarray
    nuclear_dipole: np.ndarray
    levels: np.ndarray
    mo_target: np.ndarray
    mo_energy_ref: np.ndarray
    dipole: np.ndarray | None
    polarizability: np.ndarray | None
    positions: np.ndarray | None = None  # bohr; with ao_atom, what self-consistent-charge models need
    ao_atom: np.ndarray | None = None
    charges: np.ndarray | None = field(default=None, repr=False)  # last SCC charges (warm start)
    _padded: dict = field(default_factory=dict, repr=False)

    def padded(self, size: int):
        """(Fock offset, S, r, mo_occ) embedded in ``size`` AOs by ``pad_system`` (cached per size):
        the model's Fock matrix, zero-padded, plus the offset is the padded Fock matrix."""
        if size not in self._padded:
            zero = np.zeros((self.nao, self.nao))
            padded = pad_system(size, zero, self.overlap, self.dipole_ints, self.mo_occ)
            self._padded[size] = tuple(np.asarray(x) for x in padded)
        return self._padded[size]


def mo_levels(nocc: int, n_minimal: int, n_large: int, window: str = "occupied", virtuals: int = 1) -> np.ndarray:
    """Indices of the levels matched between the model (``n_minimal`` orbitals) and the large basis
    (``n_large``): ``occupied`` → 0 … nocc−1 and the ``virtuals`` lowest virtual levels (1 = LUMO),
    as far as both bases have them; ``minimal`` → the lowest ``n_minimal`` levels."""
    if window == "minimal":
        count = n_minimal
    elif window == "occupied":
        count = nocc + virtuals
    else:
        raise ValueError(f"window must be 'occupied' or 'minimal', got {window!r}")
    return np.arange(min(count, n_minimal, n_large))


def has_targets(atoms: Atoms) -> bool:
    """True if ``atoms`` carries the large-basis labels training needs (MO energies and nocc)."""
    return LARGE_KEYS["mo_energy"] in atoms.info and "nocc" in atoms.info


def _origin(atoms: Atoms) -> np.ndarray:
    from mlhcalc.structure import dipole_origin

    origin = atoms.info.get("dipole_origin")
    return np.asarray(dipole_origin(atoms) if origin is None else origin, dtype=float).reshape(3)


def _optional(atoms: Atoms, key: str, shape) -> np.ndarray | None:
    value = atoms.info.get(key)
    return None if value is None else np.asarray(value, dtype=float).reshape(shape)


def lowdin_fock(fock: np.ndarray, atoms: Atoms, basis: str) -> np.ndarray:
    """S^-1/2 F S^-1/2 of ``atoms`` in ``basis``: the target of a ``representation="lowdin"`` model
    (:func:`mlhcalc.training.direct.to_lowdin` is the same for a direct-fit ``Reference``)."""
    from mlhcalc.structure import to_mole

    root = overlap_power(to_mole(atoms, basis).intor("int1e_ovlp"), -0.5)
    return root @ np.asarray(fock) @ root


def build_sample(
    features_model,
    atoms: Atoms,
    basis: str,
    window: str = "occupied",
    virtuals: int = 1,
    name: str | None = None,
    representation: str = "ao",
) -> Sample:
    """Precompute everything one labelled molecule needs (``features_model``: the model's
    :class:`~mlhcalc.features.EquivariantFeatures`). ``representation="lowdin"``: the model predicts
    H_L = S^-1/2 H S^-1/2, so the sample carries the integrals of that basis (overlap = identity,
    dipole integrals S^-1/2 r S^-1/2); levels, density and dipole are those of H = S^1/2 H_L S^1/2."""
    from mlhcalc.qm.eigen import aufbau_occupations
    from mlhcalc.qm.integrals import nuclear_dipole
    from mlhcalc.structure import ao_atom_map, is_periodic, positions_bohr, to_mole

    name = name or str(atoms.info.get("name", atoms.get_chemical_formula()))
    if is_periodic(atoms):
        raise ValueError(f"{name}: the trainer handles molecules only")
    if not has_targets(atoms):
        raise ValueError(f"{name} has no large-basis labels ({LARGE_KEYS['mo_energy']}, nocc)")
    # PySCF's integrals directly (the values of qm.integrals.ao_integrals, without its per-molecule jit)
    mol = to_mole(atoms, basis)
    positions, origin = positions_bohr(atoms), _origin(atoms)
    overlap = mol.intor("int1e_ovlp")
    with mol.with_common_orig(origin):
        dipole_ints = mol.intor("int1e_r")
    if representation == "lowdin":
        root = overlap_power(overlap, -0.5)
        dipole_ints = np.einsum("ij,xjk,kl->xil", root, dipole_ints, root, optimize=True)
        overlap = np.eye(len(overlap))
    elif representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    nao, nocc = mol.nao_nr(), int(atoms.info["nocc"])
    if 2 * nocc != mol.nelectron:
        raise ValueError(f"{name}: nocc = {nocc} but the molecule has {mol.nelectron} electrons")
    reference = np.sort(np.asarray(atoms.info[LARGE_KEYS["mo_energy"]], dtype=float).ravel())
    levels = mo_levels(nocc, nao, len(reference), window, virtuals)
    with torch.no_grad():
        features = features_model(systems_from_atoms([atoms]))
    return Sample(
        name=name,
        numbers=atoms.get_atomic_numbers(),
        nao=nao,
        nocc=nocc,
        features=features,
        overlap=np.asarray(overlap),
        dipole_ints=np.asarray(dipole_ints),
        mo_occ=aufbau_occupations(mol.nelectron, nao),
        nuclear_dipole=np.asarray(nuclear_dipole(mol.atom_charges(), positions, origin)),
        levels=levels,
        mo_target=reference[levels],
        mo_energy_ref=reference,
        dipole=_optional(atoms, LARGE_KEYS["dipole"], 3),
        polarizability=_optional(atoms, LARGE_KEYS["polarizability"], (3, 3)),
        positions=positions,
        ao_atom=ao_atom_map(mol),
    )


def build_samples(
    features_model,
    atoms_list: Sequence[Atoms],
    basis: str,
    window="occupied",
    virtuals=1,
    progress=None,
    representation: str = "ao",
):
    """:func:`build_sample` for every structure (``progress``: an optional wrapper such as tqdm)."""
    iterator = atoms_list if progress is None else progress(atoms_list)
    return [
        build_sample(features_model, atoms, basis, window, virtuals, representation=representation)
        for atoms in iterator
    ]


def model_samples(block_model, atoms_list: Sequence[Atoms], window="occupied", virtuals=1, progress=None):
    """:func:`build_samples` in the basis and representation of ``block_model`` (a BlockModel)."""
    return build_samples(
        block_model.features,
        atoms_list,
        block_model.basis,
        window,
        virtuals,
        progress,
        representation=block_model.representation,
    )


# --------------------------------------------------------------------------------------- batching
def concatenate_features(parts: Sequence[Features]) -> Features:
    """One :class:`Features` in which the structures of ``parts`` (each a single system 0) are one
    system with atoms numbered consecutively. No pair joins two parts, so the Hamiltonian of the
    concatenation is block diagonal with the parts' Hamiltonians as blocks."""
    atom_offsets = np.cumsum([0] + [len(f.atom_samples) for f in parts])
    pair_offsets = np.cumsum([0] + [len(f.pair_samples) for f in parts])
    atom_samples, pair_samples = [], []
    for part, offset in zip(parts, atom_offsets):
        if len(part.atom_samples) and int(part.atom_samples[:, 0].max()) != 0:
            raise ValueError("concatenate_features expects single-structure features (system 0)")
        atoms = part.atom_samples.clone()
        atoms[:, 1] += int(offset)
        pairs = part.pair_samples.clone()
        pairs[:, 1:3] += int(offset)
        atom_samples.append(atoms)
        pair_samples.append(pairs)
    first = parts[0]
    return Features(
        atom_samples=torch.cat(atom_samples),
        atom_species=torch.cat([f.atom_species for f in parts]),
        atom={irrep: torch.cat([f.atom[irrep] for f in parts]) for irrep in first.atom},
        pair_samples=torch.cat(pair_samples),
        pair_species=torch.cat([f.pair_species for f in parts]),
        pair_partner=torch.cat([f.pair_partner + int(offset) for f, offset in zip(parts, pair_offsets)]),
        pair={irrep: torch.cat([f.pair[irrep] for f in parts]) for irrep in first.pair},
        atom_properties=first.atom_properties,
        pair_properties=first.pair_properties,
    )


def batch_layout(samples: Sequence[Sample], features: Features, basis: str) -> HamiltonianLayout:
    """Block layout of the concatenated molecule of ``samples`` (pairs: those of ``features``)."""
    numbers = np.concatenate([s.numbers for s in samples])
    return hamiltonian_layout(numbers, basis, pairs=features.pair_samples[:, 1:].numpy(), system=0, periodic=False)


def bucket_size(nao: int, step: int) -> int:
    """Smallest multiple of ``step`` ≥ ``nao``."""
    return max(step, -(-int(nao) // step) * step)


@dataclass
class PaddedBatch:
    """A batch of ``n_real`` samples (plus empty fillers up to ``size`` structures) in ``bucket`` AOs.

    ``fock_index``: (batch, row, col) of every real matrix element in the padded [size, bucket,
    bucket] stack and ``source_index``: the flat index of that element in the block-diagonal
    Hamiltonian of the concatenated batch. The rest are numpy inputs of the qm layer (masks 0/1)."""

    n_real: int
    bucket: int
    fock_index: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    source_index: torch.Tensor
    fock_offset: np.ndarray  # [size, bucket, bucket]
    overlap: np.ndarray
    dipole_ints: np.ndarray  # [size, 3, bucket, bucket]
    mo_occ: np.ndarray
    nuclear_dipole: np.ndarray  # [size, 3]
    mo_target: np.ndarray  # [size, bucket]
    mo_mask: np.ndarray
    dipole_target: np.ndarray  # [size, 3]
    dipole_mask: np.ndarray  # [size]
    alpha_target: np.ndarray  # [size, 3, 3]
    alpha_mask: np.ndarray  # [size]

    def qm_inputs(self) -> tuple[np.ndarray, ...]:
        return (self.fock_offset, self.overlap, self.dipole_ints, self.mo_occ, self.nuclear_dipole)

    def targets(self) -> tuple[np.ndarray, ...]:
        return (
            self.mo_target,
            self.mo_mask,
            self.dipole_target,
            self.dipole_mask,
            self.alpha_target,
            self.alpha_mask,
        )

    def scatter(self, hamiltonian: torch.Tensor) -> torch.Tensor:
        """The padded [size, bucket, bucket] stack of the diagonal blocks of ``hamiltonian`` (the
        block-diagonal matrix of the concatenated batch); differentiable, padding zero."""
        size = len(self.overlap)
        stack = torch.zeros(size, self.bucket, self.bucket, dtype=hamiltonian.dtype)
        return stack.index_put(self.fock_index, hamiltonian.reshape(-1)[self.source_index])


def pad_batch(samples: Sequence[Sample], size: int, step: int) -> PaddedBatch:
    """Pad ``samples`` (at most ``size``) to one AO bucket (a multiple of ``step``) and fill the batch
    up to ``size`` structures with empty ones (no AOs, no electrons, all masks 0), so that one
    compiled qm function serves every batch of that bucket."""
    if not 0 < len(samples) <= size:
        raise ValueError(f"need 1..{size} samples, got {len(samples)}")
    bucket = bucket_size(max(s.nao for s in samples), step)
    parts = [s.padded(bucket) for s in samples] + [_filler(bucket)] * (size - len(samples))
    fock_offset, overlap, dipole_ints, mo_occ = (np.stack(x) for x in zip(*parts))

    mo_target = np.zeros((size, bucket))
    mo_mask = np.zeros((size, bucket))
    dipole_target, dipole_mask = np.zeros((size, 3)), np.zeros(size)
    alpha_target, alpha_mask = np.zeros((size, 3, 3)), np.zeros(size)
    nuclear = np.zeros((size, 3))
    batch_rows, rows, cols, sources = [], [], [], []
    total = sum(s.nao for s in samples)
    offset = 0
    for k, sample in enumerate(samples):
        mo_target[k, sample.levels] = sample.mo_target
        mo_mask[k, sample.levels] = 1.0
        nuclear[k] = sample.nuclear_dipole
        if sample.dipole is not None:
            dipole_target[k], dipole_mask[k] = sample.dipole, 1.0
        if sample.polarizability is not None:
            alpha_target[k], alpha_mask[k] = sample.polarizability, 1.0
        i, j = np.meshgrid(np.arange(sample.nao), np.arange(sample.nao), indexing="ij")
        batch_rows.append(np.full(i.size, k))
        rows.append(i.ravel())
        cols.append(j.ravel())
        sources.append((offset + i.ravel()) * total + offset + j.ravel())
        offset += sample.nao
    index = tuple(torch.from_numpy(np.concatenate(x)) for x in (batch_rows, rows, cols))
    return PaddedBatch(
        n_real=len(samples),
        bucket=bucket,
        fock_index=index,
        source_index=torch.from_numpy(np.concatenate(sources)),
        fock_offset=fock_offset,
        overlap=overlap,
        dipole_ints=dipole_ints,
        mo_occ=mo_occ,
        nuclear_dipole=nuclear,
        mo_target=mo_target,
        mo_mask=mo_mask,
        dipole_target=dipole_target,
        dipole_mask=dipole_mask,
        alpha_target=alpha_target,
        alpha_mask=alpha_mask,
    )


@cache
def _filler(bucket: int) -> tuple[np.ndarray, ...]:
    """An empty structure (no AOs, no electrons) padded to ``bucket``: fills partial batches."""
    empty = np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((3, 0, 0)), np.zeros(0)
    return tuple(np.asarray(x) for x in pad_system(bucket, *empty))


def model_fock_stack(block_model, samples: Sequence[Sample], batch: PaddedBatch) -> torch.Tensor:
    """The model's Fock matrices of ``samples`` as the zero-padded stack of ``batch`` (differentiable
    w.r.t. the model's weights): one pass of the heads over the concatenated batch."""
    features = concatenate_features([s.features for s in samples])
    layout = batch_layout(samples, features, block_model.basis)
    hamiltonian = reconstruct(block_model.coupled(features, layout), layout)
    if block_model.electrostatics == "scc":
        hamiltonian = _with_scc(hamiltonian, samples)
    return batch.scatter(hamiltonian)


def _with_scc(hamiltonian: torch.Tensor, samples: Sequence[Sample]) -> torch.Tensor:
    """The block-diagonal H_ML of a batch → H_ML + H_es(q*) per molecule (differentiable;
    :func:`mlhcalc.hamiltonian.electrostatics.scc_hamiltonian`, warm-started from the sample's last q*)."""
    from mlhcalc.hamiltonian.electrostatics import gamma_matrix, scc_hamiltonian

    blocks, offset = [], 0
    for sample in samples:
        if sample.ao_atom is None or sample.positions is None:
            raise ValueError(f"{sample.name}: the sample lacks positions/ao_atom for self-consistent charges")
        stop = offset + sample.nao
        full, sample.charges = scc_hamiltonian(
            hamiltonian[offset:stop, offset:stop],
            sample.overlap,
            gamma_matrix(sample.numbers, sample.positions),
            sample.ao_atom,
            sample.numbers,
            sample.nocc,
            charges=sample.charges,
            strict=False,  # an optimiser's trial step may leave no fixed point: a (high) loss, not a crash
        )
        blocks.append(full)
        offset = stop
    return torch.block_diag(*blocks)
