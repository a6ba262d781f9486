"""Equivariant descriptors of atoms and of atom pairs, from one featomic-torch neighbour expansion.

featomic's ``SphericalExpansionByPair`` gives, for every pair (i, j, T) inside the cutoff, the
expansion g_ij of the Gaussian on atom j (image T) around atom i on radial functions × real
spherical harmonics. Its (species, radial) channels are contracted to ``channels`` mixed channels
(fixed seeded or learnable) *before* any product, so memory does not grow with the number of
species. The atom-centred density is the sum of the compressed pair terms, ρ_i = Σ_j g_ij
(identical to featomic's ``SphericalExpansion``). Features of order λ and parity σ are:

- atoms: ρ_i itself (ν = 1, λ = l) and the λ-SOAP ρ_i ⊗ ρ_i coupled to λ (ν = 2);
- ordered pairs i → j (i ≠ j or T ≠ 0): g_ij itself and ρ_i ⊗ g_ij coupled to λ. The reversed pair
  (j, i, -T) carries ρ_j; ``Features.pair_partner`` links the two, so a block model can use
  symmetric/antisymmetric combinations of both orders.

- atoms, optionally (``long_range_widths``, molecules only): molecule-wide multipole features without
  a cutoff, Σ_{j ≠ i, j of species Z} Y_λ(r̂_ij) a^(λ+1) r_ij^λ / (r_ij² + a²)^(λ+1/2) for each species Z,
  width a and λ ≤ 2 (σ = +1): the potential (λ = 0), field (λ = 1) and field gradient (λ = 2) at atom i
  of unit charges on the atoms of each species, smoothed at short range. They let the on-site blocks see
  the whole molecule (docs/model.md, "Long-range features"). Property rows (0, λ, -1, channel, -1),
  channel = species index × len(widths) + width index, after the density columns.

Lengths are in bohr; σ = +1 means the block picks up (-1)^λ under inversion (like Y_λ), σ = -1
the opposite. Everything is differentiable with respect to positions and cell.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from mlhcalc.features.clebsch_gordan import ProductPlan

__all__ = [
    "FeatureHypers",
    "Irrep",
    "Features",
    "EquivariantFeatures",
    "systems_from_atoms",
    "atom_tensormap",
    "pair_tensormap",
    "PROPERTY_NAMES",
    "find_rows",
]

# each feature column: its body order (1: a density or pair expansion alone, 2: a coupled product),
# the l of both factors (-1 if absent) and their compressed channels (-1 if absent)
PROPERTY_NAMES = ("order", "l_1", "l_2", "channel_1", "channel_2")
ATOM_SAMPLE_NAMES = ("system", "atom")
PAIR_SAMPLE_NAMES = ("system", "atom_i", "atom_j", "cell_shift_a", "cell_shift_b", "cell_shift_c")


@dataclass(frozen=True)
class FeatureHypers:
    """Hyper-parameters of the descriptors (lengths in bohr). See docs/model.md."""

    species: tuple[int, ...] = (1, 6, 7, 8, 9, 14, 16, 17)
    cutoff: float = 8.0
    smoothing: float = 1.0
    gaussian_width: float = 0.6
    max_radial: int = 5
    max_angular: int = 3
    max_lambda: int = 2
    channels: int = 8
    pair_channels: int = 4
    learnable_compression: bool = False
    seed: int = 0
    long_range_widths: tuple[float, ...] = ()
    long_range_scale: float = 0.01

    # long_range_widths: widths a (bohr) of the molecule-wide multipole features of every atom (empty: none);
    # long_range_scale: their fixed prefactor (brings them to the size of the density-product columns, so
    # one ridge penalty per head treats both alike). See EquivariantFeatures and docs/model.md.

    def __post_init__(self):
        species = tuple(int(z) for z in self.species)
        if list(species) != sorted(set(species)) or not species or species[0] < 1:
            raise ValueError(f"species must be distinct atomic numbers in increasing order, got {self.species}")
        object.__setattr__(self, "species", species)
        widths = tuple(float(w) for w in self.long_range_widths)
        if any(not w > 0 for w in widths) or len(set(widths)) != len(widths):
            raise ValueError(
                f"long_range_widths must be distinct positive lengths (bohr), got {self.long_range_widths}"
            )
        object.__setattr__(self, "long_range_widths", widths)
        if not 0 <= self.max_lambda <= 2 * self.max_angular:
            raise ValueError(f"max_lambda={self.max_lambda} must be in 0..2*max_angular={2 * self.max_angular}")
        if min(self.channels, self.pair_channels) < 1 or self.max_radial < 0 or self.max_angular < 0:
            raise ValueError("channels and pair_channels must be ≥ 1, max_radial and max_angular ≥ 0")
        if not 0 < self.smoothing < self.cutoff or self.gaussian_width <= 0:
            raise ValueError("need 0 < smoothing < cutoff and gaussian_width > 0")

    @property
    def n_radial(self) -> int:
        return self.max_radial + 1  # featomic's GTO basis has max_radial + 1 functions

    def featomic_hypers(self) -> dict:
        return {
            "cutoff": {"radius": self.cutoff, "smoothing": {"type": "ShiftedCosine", "width": self.smoothing}},
            "density": {"type": "Gaussian", "width": self.gaussian_width},
            "basis": {
                "type": "TensorProduct",
                "max_angular": self.max_angular,
                "radial": {"type": "Gto", "max_radial": self.max_radial},
            },
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureHypers:
        return cls(**{**values, "species": tuple(values["species"])})

    @property
    def long_range_lambdas(self) -> range:
        """Orders λ of the long-range features (λ ≤ 2, the on-site blocks of s and p shells)."""
        return range(min(self.max_lambda, 2) + 1) if self.long_range_widths else range(0)


class Irrep(NamedTuple):
    """Symmetry label of a feature block: order λ and parity σ."""

    lam: int
    sigma: int


@dataclass
class Features:
    """Dense equivariant features of a batch of structures.

    ``atom[Irrep(λ, σ)]`` has shape [n_atoms, 2λ+1, n_features]; its rows are ``atom_samples``
    (system, atom index inside the system). ``pair[...]`` has shape [n_pairs, 2λ+1, n_features];
    rows are ``pair_samples`` (system, atom_i, atom_j, cell shift of j in lattice vectors);
    ``pair_partner[p]`` is the row of the reversed pair (j, i, -T). Column meanings are in
    ``atom_properties`` / ``pair_properties`` (rows of :data:`PROPERTY_NAMES`).
    """

    atom_samples: torch.Tensor
    atom_species: torch.Tensor
    atom: dict[Irrep, torch.Tensor]
    pair_samples: torch.Tensor
    pair_species: torch.Tensor
    pair_partner: torch.Tensor
    pair: dict[Irrep, torch.Tensor]
    atom_properties: dict[Irrep, np.ndarray]
    pair_properties: dict[Irrep, np.ndarray]
    pair_source: _PairSource | None = None

    @property
    def pair_row_bytes(self) -> int:
        """Memory of the pair features of one pair (all irreps), in bytes."""
        return 8 * sum((2 * irrep.lam + 1) * len(rows) for irrep, rows in self.pair_properties.items())


def systems_from_atoms(atoms_list, *, positions_requires_grad: bool = False, cell_requires_grad: bool = False):
    """ase.Atoms (Å) → featomic/metatomic ``System`` objects in bohr (float64).

    Set ``*_requires_grad`` to differentiate features with respect to ``system.positions`` / ``system.cell``.
    """
    from metatomic.torch import System

    from mlhcalc.structure import is_periodic, lattice_bohr, positions_bohr

    if not isinstance(atoms_list, (list, tuple)):
        atoms_list = [atoms_list]
    systems = []
    for atoms in atoms_list:
        periodic = is_periodic(atoms)
        cell = lattice_bohr(atoms) if periodic else np.zeros((3, 3))
        systems.append(
            System(
                types=torch.tensor(atoms.get_atomic_numbers(), dtype=torch.int32),
                positions=torch.tensor(positions_bohr(atoms), dtype=torch.float64).requires_grad_(
                    positions_requires_grad
                ),
                cell=torch.tensor(cell, dtype=torch.float64).requires_grad_(cell_requires_grad),
                pbc=torch.tensor([periodic] * 3),
            )
        )
    return systems


def _semi_orthogonal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Random [rows, cols] matrix with orthonormal rows (cols ≥ rows) or columns (cols < rows)."""
    gaussian = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))  # unique QR: deterministic across LAPACK builds
    return q.T if cols >= rows else q


class EquivariantFeatures(torch.nn.Module):
    """Atom and pair features of order λ ≤ ``max_lambda`` for a list of ``System`` (bohr)."""

    def __init__(self, hypers: FeatureHypers | None = None):
        super().__init__()
        import featomic.torch

        self.hypers = hypers = hypers or FeatureHypers()
        self._calculator = featomic.torch.SphericalExpansionByPair(**hypers.featomic_hypers())
        species_index = torch.full((max(hypers.species) + 1,), -1, dtype=torch.long)
        species_index[list(hypers.species)] = torch.arange(len(hypers.species))
        self.register_buffer("species_index", species_index, persistent=False)

        generator = torch.Generator().manual_seed(hypers.seed)
        n_species, n_radial = len(hypers.species), hypers.n_radial

        def random_compression(channels):  # [l, species, radial, channel]
            return torch.stack(
                [
                    torch.stack([_semi_orthogonal(n_radial, channels, generator) for _ in range(n_species)])
                    for _ in range(hypers.max_angular + 1)
                ]
            )

        # both contractions act on the same featomic coefficients: all channels of the density
        # (summed over neighbours), fewer for the single-neighbour pair term (it is rank one in
        # (m, radial) and its products are the bulk of the memory)
        compression = torch.cat([random_compression(hypers.channels), random_compression(hypers.pair_channels)], 3)
        if hypers.learnable_compression:
            self.compression = torch.nn.Parameter(compression)
        else:
            self.register_buffer("compression", compression)

        L, lam_max = hypers.max_angular, hypers.max_lambda
        pairs = [(l1, l2) for l1 in range(L + 1) for l2 in range(L + 1) if abs(l1 - l2) <= lam_max]
        self._atom_products = ProductPlan([(l1, l2) for l1, l2 in pairs if l1 <= l2], lam_max, L)
        self._pair_products = ProductPlan(pairs, lam_max, L)
        channels = hypers.channels
        # ρ^l ⊗ ρ^l is (anti)symmetric in its two channels, A_qp = (-1)^λ A_pq: keep q ≤ p (q < p)
        upper, strictly_upper = (torch.triu_indices(channels, channels, offset) for offset in (0, 1))
        self._atom_triangles = {  # by λ mod 2, as flat indices q·channels + p
            0: upper[0] * channels + upper[1],
            1: strictly_upper[0] * channels + strictly_upper[1],
        }
        self.atom_properties = self._properties(self._atom_products.terms, channels, atom=True)
        self.pair_properties = self._properties(self._pair_products.terms, hypers.pair_channels, atom=False)

    def _properties(self, terms, second_channels: int, atom: bool) -> dict[Irrep, np.ndarray]:
        # product columns run over (channel of the second factor, channel of the first), the latter fastest
        second, first = (
            grid.ravel()
            for grid in np.meshgrid(np.arange(second_channels), np.arange(self.hypers.channels), indexing="ij")
        )
        properties: dict[Irrep, list] = {}
        for lam in range(min(self.hypers.max_angular, self.hypers.max_lambda) + 1):
            properties.setdefault(Irrep(lam, 1), []).extend([1, lam, -1, q, -1] for q in range(second_channels))
        for term in terms:
            keep = self._atom_triangles[term.lam % 2].numpy() if atom and term.l1 == term.l2 else slice(None)
            rows = properties.setdefault(Irrep(term.lam, term.sigma), [])
            rows.extend([2, term.l1, term.l2, a, b] for a, b in zip(first[keep], second[keep]))
        if atom:
            n_long = len(self.hypers.species) * len(self.hypers.long_range_widths)
            for lam in self.hypers.long_range_lambdas:
                properties.setdefault(Irrep(lam, 1), []).extend([0, lam, -1, c, -1] for c in range(n_long))
        return {irrep: np.array(rows, dtype=np.int32) for irrep, rows in sorted(properties.items())}

    def _check_species(self, systems) -> None:
        for system in systems:
            types = system.types.long()
            in_range = types < len(self.species_index)
            known = in_range & (self.species_index[torch.where(in_range, types, 0)] >= 0)
            if not bool(known.all()):
                z = int(types[~known][0])
                raise ValueError(
                    f"atomic number {z} is not in the feature species {self.hypers.species}: "
                    "add it to FeatureHypers.species (and retrain)"
                )

    def _pair_expansion(self, systems):
        """Compressed pair terms g_ij per l ([P, 2l+1, channels + pair_channels]) for the pairs
        other than (i, i, 0), their samples and species, and the compressed Gaussian of every atom
        on itself (l = 0 only)."""
        expansion = self._calculator.compute(systems)
        block_ids: dict[tuple[int, int], list[int]] = {}
        for index, (lam, _, first_type, second_type) in enumerate(expansion.keys.values.tolist()):
            block_ids.setdefault((first_type, second_type), [-1] * (self.hypers.max_angular + 1))[lam] = index
        terms: list[list[torch.Tensor]] = [[] for _ in range(self.hypers.max_angular + 1)]
        samples, species, self_terms, self_samples = [], [], [], []
        for pair, ids in block_ids.items():
            weights = self.compression[:, self.species_index[pair[1]]]
            block = expansion.block_by_id(ids[0])
            # featomic lists (i, i, 0) in the l = 0 block only; the other rows are the same in every l
            rows = block.samples.values.long()
            is_self = (rows[:, 1] == rows[:, 2]) & (rows[:, 3:] == 0).all(dim=1)
            compressed = block.values @ weights[0]
            if bool(is_self.any()):
                self_terms.append(compressed[is_self])
                self_samples.append(rows[is_self])
                compressed, rows = compressed[~is_self], rows[~is_self]
            terms[0].append(compressed)
            samples.append(rows)
            species.append(torch.tensor(pair).expand(len(rows), 2))
            for l in range(1, self.hypers.max_angular + 1):
                values = expansion.block_by_id(ids[l]).values
                if len(values) != len(rows):
                    raise RuntimeError(f"featomic pair samples differ between l=0 and l={l} for species {pair}")
                terms[l].append(values @ weights[l])
        return (
            [torch.cat(parts) for parts in terms],
            torch.cat(samples),
            torch.cat(species),
            torch.cat(self_terms),
            torch.cat(self_samples),
        )

    def forward(self, systems, *, lazy_pairs: bool = False) -> Features:
        """Features of ``systems``. ``lazy_pairs=True`` leaves ``Features.pair`` empty: the pair
        features are then computed for the rows asked for (``Features.pair_source(rows)``), so a caller that
        goes through the pairs in chunks never holds all of them (their size grows as pairs ×
        channels × pair_channels; the values are the same)."""
        if not isinstance(systems, (list, tuple)):
            systems = [systems]
        self._check_species(systems)
        counts = torch.tensor([system.positions.shape[0] for system in systems])
        offsets = torch.cumsum(counts, 0) - counts
        atom_samples = torch.stack(
            [torch.repeat_interleave(torch.arange(len(systems)), counts), torch.cat([torch.arange(n) for n in counts])],
            dim=1,
        )
        atom_species = torch.cat([system.types.long() for system in systems])

        terms, pair_samples, pair_species, self_terms, self_samples = self._pair_expansion(systems)
        first = offsets[pair_samples[:, 0]] + pair_samples[:, 1]
        n_atoms, channels = int(counts.sum()), self.hypers.channels
        density = [
            torch.zeros((n_atoms,) + term.shape[1:2] + (channels,), dtype=term.dtype).index_add(
                0, first, term[..., :channels]
            )
            for term in terms
        ]
        self_atoms = offsets[self_samples[:, 0]] + self_samples[:, 1]
        density[0] = density[0].index_add(0, self_atoms, self_terms[..., :channels])
        pair_terms = [term[..., channels:] for term in terms]

        density_all = torch.cat(density, dim=1)
        atom = _Filler(n_atoms, self.atom_properties, density_all.dtype)
        for lam in range(min(self.hypers.max_angular, self.hypers.max_lambda) + 1):
            atom.put(Irrep(lam, 1), density[lam])
        for term, product in zip(self._atom_products.terms, self._atom_products(density_all, density)):
            if term.l1 == term.l2:
                product = product.flatten(2)[..., self._atom_triangles[term.lam % 2]]
            atom.put(Irrep(term.lam, term.sigma), product)
        if self.hypers.long_range_widths:
            for lam, values in enumerate(self._long_range(systems)):
                atom.put(Irrep(lam, 1), values)
        source = _PairSource(self, density_all, pair_terms, first)

        return Features(
            atom_samples=atom_samples,
            atom_species=atom_species,
            atom=atom.finish(),
            pair_samples=pair_samples,
            pair_species=pair_species,
            pair_partner=_partner_rows(pair_samples),
            pair={} if lazy_pairs else source(),
            atom_properties=self.atom_properties,
            pair_properties=self.pair_properties,
            pair_source=source if lazy_pairs else None,
        )

    def _long_range(self, systems) -> list[torch.Tensor]:
        """Long-range features of every atom, [n_atoms, 2λ+1, n_species · n_widths] for each λ of
        ``hypers.long_range_lambdas`` (differentiable with respect to positions)."""
        hypers = self.hypers
        widths = torch.tensor(hypers.long_range_widths, dtype=torch.float64)
        per_lambda: list[list[torch.Tensor]] = [[] for _ in hypers.long_range_lambdas]
        for system in systems:
            if bool(system.pbc.any()):
                raise ValueError(
                    "long-range features (FeatureHypers.long_range_widths) are implemented for molecules only: "
                    "use a model without them for periodic cells"
                )
            positions = system.positions
            n = len(positions)
            eye = torch.eye(n, dtype=torch.bool)
            vectors = positions[None, :, :] - positions[:, None, :]  # r_j − r_i
            # a finite stand-in on the diagonal keeps norm() differentiable; those terms are masked out
            vectors = torch.where(eye[..., None], torch.ones_like(vectors), vectors)
            distances = torch.linalg.norm(vectors, dim=-1)
            harmonics = _real_harmonics(vectors / distances[..., None])
            onehot = (system.types.long()[:, None] == torch.tensor(hypers.species)[None, :]).to(torch.float64)
            squared = distances[None] ** 2 + widths[:, None, None] ** 2  # [w, i, j]
            for lam in hypers.long_range_lambdas:
                kernel = widths[:, None, None] ** (lam + 1) * distances[None] ** lam / squared ** (lam + 0.5)
                kernel = torch.where(eye[None], torch.zeros_like(kernel), kernel)
                # one width at a time, summed over j by species with a matrix product: the transient is
                # [n, n, 2λ+1] (an einsum over all widths at once made [n, n, 2λ+1, widths])
                values = torch.stack(
                    [(harmonics[lam] * kernel[w][..., None]).transpose(1, 2) @ onehot for w in range(len(widths))],
                    dim=-1,
                )  # [i, m, species, width]
                per_lambda[lam].append(hypers.long_range_scale * values.reshape(n, 2 * lam + 1, -1))
        return [torch.cat(parts) for parts in per_lambda]


def _real_harmonics(unit: torch.Tensor) -> list[torch.Tensor]:
    """Real spherical harmonics λ = 0, 1, 2 of unit vectors [..., 3] in featomic's order and phase
    (m = −λ..λ; λ = 1: y, z, x), up to a common factor per λ."""
    x, y, z = unit[..., 0], unit[..., 1], unit[..., 2]
    return [
        torch.ones_like(x)[..., None],
        torch.stack([y, z, x], dim=-1),
        torch.stack([x * y, y * z, (3 * z * z - 1) / (2 * math.sqrt(3)), x * z, (x * x - y * y) / 2], dim=-1),
    ]


class _PairSource:
    """Pair features (g_ij and ρ_i ⊗ g_ij) of any subset of the pairs, from the pair terms and densities."""

    def __init__(self, module: EquivariantFeatures, density_all, pair_terms, first):
        self.module, self.density_all, self.pair_terms, self.first = module, density_all, pair_terms, first
        self._halves: list[torch.Tensor] | None = None

    def __call__(self, rows: torch.Tensor | None = None) -> dict[Irrep, torch.Tensor]:
        """Feature blocks of the pairs ``rows`` (None: all, in order)."""
        module = self.module
        terms = self.pair_terms if rows is None else [term[rows] for term in self.pair_terms]
        first = self.first if rows is None else self.first[rows]
        if self._halves is None:  # the atom-sized half of every product, shared by all calls
            self._halves = module._pair_products.prepare(self.density_all)
        pair = _Filler(len(first), module.pair_properties, self.density_all.dtype)
        for lam in range(min(module.hypers.max_angular, module.hypers.max_lambda) + 1):
            pair.put(Irrep(lam, 1), terms[lam])
        # the pair products are most of the memory: written straight into their final place, one
        # l2 at a time, so the peak stays near the size of the result
        products = module._pair_products(self.density_all, terms, rows=first, halves=self._halves)
        for term, product in zip(module._pair_products.terms, products):
            pair.put(Irrep(term.lam, term.sigma), product)
        return pair.finish()


class _Filler:
    """Preallocated feature blocks filled column range by column range (autograd records the copies)."""

    def __init__(self, n_rows: int, properties: dict[Irrep, np.ndarray], dtype: torch.dtype):
        self.blocks = {
            irrep: torch.empty((n_rows, 2 * irrep.lam + 1, len(rows)), dtype=dtype)
            for irrep, rows in properties.items()
        }
        self.filled = dict.fromkeys(properties, 0)

    def put(self, irrep: Irrep, values: torch.Tensor) -> None:
        """``values`` [n, 2λ+1, f] or [n, 2λ+1, q, p] (any strides) → the next f (or q·p) columns."""
        start = self.filled[irrep]
        width = int(np.prod(values.shape[2:]))
        self.blocks[irrep][:, :, start : start + width].unflatten(2, values.shape[2:]).copy_(values)
        self.filled[irrep] = start + width

    def finish(self) -> dict[Irrep, torch.Tensor]:
        for irrep, block in self.blocks.items():
            if self.filled[irrep] != block.shape[2]:
                raise RuntimeError(f"feature block {irrep} filled {self.filled[irrep]} of {block.shape[2]} columns")
        return self.blocks


def find_rows(table: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Row of ``table`` [n, k] (integer sample rows, distinct) equal to each row of ``queries`` [m, k]; -1 if absent."""
    both = torch.cat([table, queries])
    low = both.min(dim=0).values if len(both) else torch.zeros(table.shape[1], dtype=torch.long)
    span = (both.max(dim=0).values - low + 1) if len(both) else torch.ones(table.shape[1], dtype=torch.long)

    def encode(rows):  # mixed-radix code, exact while Π span < 2^63 (atoms² · shifts³: fine)
        code = torch.zeros(len(rows), dtype=torch.long)
        for column, column_low, column_span in zip(rows.T, low, span):
            code = code * column_span + (column - column_low)
        return code

    codes = encode(table)
    order = torch.argsort(codes)
    wanted = encode(queries)
    position = torch.searchsorted(codes[order], wanted).clamp(max=max(len(codes) - 1, 0))
    rows = order[position] if len(codes) else torch.zeros_like(wanted)
    found = codes[rows] == wanted if len(codes) else torch.zeros_like(wanted, dtype=torch.bool)
    return torch.where(found, rows, torch.full_like(rows, -1))


def _partner_rows(pair_samples: torch.Tensor) -> torch.Tensor:
    """Row of (system, j, i, -T) for every (system, i, j, T) (always present in featomic's full list)."""
    reversed_samples = torch.cat([pair_samples[:, :1], pair_samples[:, [2, 1]], -pair_samples[:, 3:]], dim=1)
    return find_rows(pair_samples, reversed_samples)


def _tensormap(samples, species, blocks, properties, sample_names, species_names):
    from metatensor.torch import Labels, TensorBlock, TensorMap

    keys, tensor_blocks = [], []
    species_values = species.reshape(len(species), -1)
    for irrep, values in blocks.items():
        for combo in torch.unique(species_values, dim=0):
            rows = torch.nonzero((species_values == combo).all(dim=1)).squeeze(1)
            keys.append([irrep.lam, irrep.sigma, *combo.tolist()])
            tensor_blocks.append(
                TensorBlock(
                    values=values[rows],
                    samples=Labels(list(sample_names), samples[rows].to(torch.int32)),
                    components=[Labels(["mu"], torch.arange(-irrep.lam, irrep.lam + 1, dtype=torch.int32)[:, None])],
                    properties=Labels(list(PROPERTY_NAMES), torch.from_numpy(properties[irrep])),
                )
            )
    key_labels = Labels(["lambda", "sigma", *species_names], torch.tensor(keys, dtype=torch.int32))
    return TensorMap(key_labels, tensor_blocks)


def atom_tensormap(features: Features):
    """Labelled view of the atom features: keys (lambda, sigma, species_i), samples (system, atom)."""
    return _tensormap(
        features.atom_samples,
        features.atom_species,
        features.atom,
        features.atom_properties,
        ATOM_SAMPLE_NAMES,
        ("species_i",),
    )


def pair_tensormap(features: Features):
    """Labelled view of the pair features: keys (lambda, sigma, species_i, species_j), samples
    (system, atom_i, atom_j, cell_shift_a, cell_shift_b, cell_shift_c)."""
    return _tensormap(
        features.pair_samples,
        features.pair_species,
        features.pair,
        features.pair_properties,
        PAIR_SAMPLE_NAMES,
        ("species_i", "species_j"),
    )
