"""Per-block linear equivariant model: features of order (λ, σ) → coupled Hamiltonian blocks → H(T).

One weight matrix per (kind, species pair, block type, λ, σ) maps the matching features to every
shell pair's block of that symmetry at once; the same weights act on all μ components (so the
output rotates like the input). A bias exists only on invariant blocks (λ = 0, σ = +1) that are
not exchange-odd. Inputs per block type:

- ``ON_SITE``: atom features of atom i;
- ``PAIR_SYMMETRIC`` / ``PAIR_ANTISYMMETRIC``: (f(i→j, T) ± f(j→i, -T)) / √2, so the block is even
  / odd under exchanging the two atoms, as the target is;
- ``PAIR_HETERO``: f(i→j, T) and f(j→i, -T) side by side (Z_i < Z_j).

``gated=True`` multiplies each output block by 1 + tanh(invariants · W_g) (per sample and shell
pair; W_g starts at zero, so a ridge fit is unchanged); the gate is invariant and exchange-even, so
equivariance and the ± symmetry are kept. Pairs are those inside the feature cutoff; blocks of more
distant pairs are zero. The assembled H is exactly symmetric (H(-T) = H(T)ᵀ) by construction.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from mlhcalc.features import EquivariantFeatures, FeatureHypers, Features, Irrep, find_rows
from mlhcalc.hamiltonian.blocks import (
    ON_SITE,
    PAIR_ANTISYMMETRIC,
    PAIR_HETERO,
    PAIR_SYMMETRIC,
    HamiltonianLayout,
    _coupling_columns,
    decompose,
    hamiltonian_layout,
    reconstruct,
)
from mlhcalc.orbitals import species_layout

__all__ = ["BlockModel", "fit_ridge", "model_layouts", "save_block_model", "load_block_model"]

_KINDS = {ON_SITE: "on_site", PAIR_SYMMETRIC: "same_species", PAIR_ANTISYMMETRIC: "same_species", PAIR_HETERO: "hetero"}


@dataclass(frozen=True)
class _Head:
    """One weight matrix: block type and symmetry, the keys (shell pairs) it predicts and their columns."""

    name: str
    block_type: int
    irrep: Irrep
    columns: torch.Tensor  # [n_keys · (2λ+1)], key-major, into the group's coupled values
    n_keys: int
    bias: bool


def _heads(kind: str, basis: str, symbol_i: str, symbol_j: str, z_i: int, z_j: int) -> list[_Head]:
    _, _, keys = _coupling_columns(kind, basis, symbol_i, symbol_j)
    by_symmetry: dict[tuple[int, int, int], list[np.ndarray]] = defaultdict(list)
    start = 0
    for block_type, *_, lam, sigma in keys:
        by_symmetry[(block_type, lam, sigma)].append(np.arange(start, start + 2 * lam + 1))
        start += 2 * lam + 1
    heads = []
    for (block_type, lam, sigma), columns in sorted(by_symmetry.items()):
        heads.append(
            _Head(
                name=f"{kind}_{z_i}_{z_j}_type{block_type}_l{lam}_s{sigma}".replace("-", "m"),
                block_type=block_type,
                irrep=Irrep(lam, sigma),
                columns=torch.from_numpy(np.concatenate(columns)),
                n_keys=len(columns),
                bias=lam == 0 and sigma == 1 and block_type != PAIR_ANTISYMMETRIC,
            )
        )
    return heads


def model_layouts(features: Features, systems, basis: str, translations=None) -> list[HamiltonianLayout]:
    """Block layout of each system for the pairs the features see (``translations``: per system, the
    translations of a reference H(T) stack to index into, or None)."""
    layouts = []
    for index, system in enumerate(systems):
        mine = features.pair_samples[:, 0] == index
        layouts.append(
            hamiltonian_layout(
                system.types.numpy(),
                basis,
                translations=None if translations is None else translations[index],
                pairs=features.pair_samples[mine][:, 1:].numpy(),
                system=index,
                periodic=bool(system.pbc.any()),
            )
        )
    return layouts


REPRESENTATIONS = ("ao", "lowdin")


def overlap_power(overlap: np.ndarray, power: float) -> np.ndarray:
    """S^power of a (positive definite) overlap matrix, from its eigendecomposition: S^-1/2 maps the
    raw AO Hamiltonian to the Löwdin representation (S^-1/2 H S^-1/2), S^1/2 maps it back."""
    values, vectors = np.linalg.eigh(overlap)
    return (vectors * values**power) @ vectors.T


class BlockModel(torch.nn.Module):
    """Features → coupled blocks → H, for the species of ``hypers`` in ``basis``.

    ``representation``: ``"ao"`` — the blocks are those of H in the raw AO basis (every shipped
    model); ``"lowdin"`` — those of S^-1/2 H S^-1/2, the Löwdin-orthogonalised basis (same atom-centred
    labels and symmetry), for bases whose near-singular overlap makes raw-AO predictions
    ill-conditioned (docs/training.md, "A model basis with polarisation functions").

    ``electrostatics``: ``"none"``, or ``"scc"`` — the blocks are those of H_ML, and the model
    Hamiltonian is H_ML + H_es(q) with self-consistent Mulliken charges q
    (:mod:`mlhcalc.hamiltonian.electrostatics`; molecules, AO representation). :meth:`forward`
    returns H_ML; :meth:`mlhcalc.model.HamiltonianModel.finish` adds the rest."""

    def __init__(
        self,
        hypers: FeatureHypers,
        basis: str,
        *,
        gated: bool = False,
        representation: str = "ao",
        electrostatics: str = "none",
    ):
        super().__init__()
        from ase.data import chemical_symbols

        from mlhcalc.hamiltonian.electrostatics import ELECTROSTATICS, hubbard

        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if electrostatics not in ELECTROSTATICS:
            raise ValueError(f"electrostatics must be one of {ELECTROSTATICS}, got {electrostatics!r}")
        if electrostatics == "scc":
            if representation != "ao":
                raise ValueError("electrostatics='scc' works with representation='ao' only")
            hubbard(hypers.species)  # fails early for an element without a Hubbard U
        self.basis = basis
        self.gated = gated
        self.representation = representation
        self.electrostatics = electrostatics
        self.features = EquivariantFeatures(hypers)
        symbols = {z: chemical_symbols[z] for z in hypers.species}
        combos = [("on_site", z, z) for z in hypers.species]
        combos += [("same_species", z, z) for z in hypers.species]
        combos += [("hetero", a, b) for a in hypers.species for b in hypers.species if a < b]
        self.heads: dict[tuple[str, int, int], list[_Head]] = {}
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        self.gates = torch.nn.ParameterDict()
        atom_width = {irrep: len(rows) for irrep, rows in self.features.atom_properties.items()}
        pair_width = {irrep: len(rows) for irrep, rows in self.features.pair_properties.items()}
        for kind, z_i, z_j in combos:
            species_layout(basis, symbols[z_i])  # fails early if the basis lacks an element
            heads = _heads(kind, basis, symbols[z_i], symbols[z_j], z_i, z_j)
            self.heads[(kind, z_i, z_j)] = heads
            widths = atom_width if kind == "on_site" else pair_width
            factor = 2 if kind == "hetero" else 1
            for head in heads:
                if head.irrep not in widths:
                    raise ValueError(
                        f"blocks of symmetry {head.irrep} need features of that order: raise FeatureHypers.max_lambda"
                    )
                width = factor * widths[head.irrep]
                self.weights[head.name] = torch.nn.Parameter(torch.zeros(width, head.n_keys, dtype=torch.float64))
                if head.bias:
                    self.biases[head.name] = torch.nn.Parameter(torch.zeros(head.n_keys, dtype=torch.float64))
                if gated:
                    gate_width = factor * widths[Irrep(0, 1)]
                    self.gates[head.name] = torch.nn.Parameter(
                        torch.zeros(gate_width, head.n_keys, dtype=torch.float64)
                    )

    def config(self) -> dict:
        """Everything needed to rebuild the model (JSON-serialisable)."""
        config = {"hypers": self.features.hypers.to_dict(), "basis": self.basis, "gated": self.gated}
        if self.representation != "ao":  # absent = "ao": files written before the option load unchanged
            config["representation"] = self.representation
        if self.electrostatics != "none":  # absent = "none", likewise
            config["electrostatics"] = self.electrostatics
        return config

    def forward(self, systems, translations=None):
        """List of (layout, predicted H) per system: H [nao, nao] for molecules, [n_T, nao, nao] (in
        ``layout.translations`` order; ``translations[s]`` to impose one) for periodic systems.

        The pair features are computed and used in chunks of pairs (``PAIR_CHUNK_BYTES`` of features
        each) and never held all at once: their memory no longer grows with the system."""
        systems = list(systems)
        features = self.features(systems, lazy_pairs=True)
        layouts = model_layouts(features, systems, self.basis, translations)
        chunk = pair_chunk_rows(features)
        return [(layout, reconstruct(self.coupled(features, layout, chunk), layout)) for layout in layouts]

    def coupled(
        self, features: Features, layout: HamiltonianLayout, chunk_rows: int | None = None
    ) -> list[torch.Tensor]:
        """Predicted coupled values of every group of ``layout`` (one system of ``features``), pair
        groups ``chunk_rows`` samples at a time (None: all at once)."""
        result = []
        for group, chunks in zip(layout.groups, _group_inputs(features, layout, chunk_rows)):
            n_columns = group.coupling.shape[1]
            parts = []
            for inputs in chunks:
                columns, values = [], []
                for head in self.heads[(group.kind, group.species_i, group.species_j)]:
                    design = inputs(head.block_type, head.irrep)  # [n, 2λ+1, F]
                    prediction = torch.einsum("nmf,fk->nkm", design, self.weights[head.name])
                    if head.bias:
                        prediction = prediction + self.biases[head.name][None, :, None]
                    if self.gated:
                        gate = inputs(head.block_type, Irrep(0, 1), gate=True)[:, 0] @ self.gates[head.name]
                        prediction = prediction * (1 + torch.tanh(gate))[:, :, None]
                    columns.append(head.columns)
                    values.append(prediction.reshape(len(design), -1))
                empty = torch.zeros(len(values[0]), n_columns, dtype=torch.float64)
                parts.append(empty.index_copy(1, torch.cat(columns), torch.cat(values, dim=1)))
            result.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return result


PAIR_CHUNK_BYTES = 16 * 2**20
"""Pair features computed at once by :meth:`BlockModel.forward` (both orders of each pair count)."""


def pair_chunk_rows(features: Features) -> int:
    """Pair samples per chunk so that the features of a chunk (both orders) stay within
    :data:`PAIR_CHUNK_BYTES` (read at call time)."""
    return max(1, PAIR_CHUNK_BYTES // (2 * features.pair_row_bytes))


def _group_inputs(features: Features, layout: HamiltonianLayout, chunk_rows: int | None = None):
    """For each group, its chunks of samples (one chunk for on-site groups, or with ``chunk_rows``
    None), each a function (block type, irrep) → design tensor [n_chunk, 2λ+1, F]. The heads of a
    group share their inputs, so each is gathered once (cached while the chunk is in use)."""
    system_atoms = features.atom_samples[:, 0] == int(layout.groups[0].samples[0, 0]) if layout.groups else None
    atom_offset = int(torch.nonzero(system_atoms)[0]) if system_atoms is not None else 0
    for group in layout.groups:
        samples = group.samples
        if group.kind == "on_site":
            rows = atom_offset + samples[:, 1]

            def inputs(block_type, irrep, gate=False, rows=rows):
                return features.atom[irrep][rows]

            yield [functools.cache(inputs)]
            continue
        all_rows = find_rows(features.pair_samples, samples)
        if bool((all_rows < 0).any()):
            raise ValueError("a pair of the layout has no features (outside the feature cutoff?)")
        size = max(1, len(all_rows) if chunk_rows is None else chunk_rows)  # layout groups are never empty
        yield (_pair_inputs(features, all_rows[start : start + size]) for start in range(0, len(all_rows), size))


def _pair_inputs(features: Features, rows: torch.Tensor):
    """Inputs of the pair heads for the pair samples ``rows``: both orders, gathered (or computed) once."""
    both = torch.cat([rows, features.pair_partner[rows]])
    if features.pair_source is not None:  # lazy features: computed for these pairs, every irrep at once
        block = features.pair_source(both).__getitem__
    else:  # gathered irrep by irrep, only those the heads ask for

        @functools.cache
        def block(irrep):
            return features.pair[irrep][both]

    n = len(rows)

    def inputs(block_type, irrep, gate=False):
        forward, backward = block(irrep)[:n], block(irrep)[n:]
        if block_type == PAIR_HETERO:
            return torch.cat([forward, backward], dim=2)
        # the gate must be exchange-even for both signs
        sign = -1.0 if (block_type == PAIR_ANTISYMMETRIC and not gate) else 1.0
        return (forward + sign * backward) / math.sqrt(2)

    return functools.cache(inputs)


def fit_ridge(
    model: BlockModel,
    systems,
    hamiltonians,
    *,
    translations=None,
    regularization: float = 1e-8,
    batch_size: int = 16,
) -> dict[str, float]:
    """Closed-form ridge fit of the linear weights and biases to reference Hamiltonians.

    ``hamiltonians[s]``: [nao, nao] (molecule) or [n_T, nao, nao] with ``translations[s]`` [n_T, 3]
    (PySCF AO order, e.g. minimal-basis Fock matrices). Each head is an independent least-squares
    problem over all its samples and μ components; the penalty is ``regularization`` times the mean
    diagonal of XᵀX (the bias is not penalised). Gates, if any, are left at zero. Features are
    computed ``batch_size`` structures at a time. Returns the root mean square error of the fitted
    coupled values per head (training error).
    """
    systems = list(systems)
    normal: dict[str, list] = {}
    with torch.no_grad():
        for start in range(0, len(systems), batch_size):
            batch = slice(start, start + batch_size)
            _accumulate_normal_equations(
                model,
                systems[batch],
                hamiltonians[batch],
                None if translations is None else translations[batch],
                normal,
            )
        errors = {}
        for name, (gram, moment, squares, count) in normal.items():
            n_weights = model.weights[name].shape[0]
            penalty = regularization * torch.diagonal(gram)[:n_weights].mean().clamp(min=1e-300)
            regularized = gram.clone()
            regularized.diagonal()[:n_weights] += penalty
            solution = torch.linalg.solve(regularized, moment)
            model.weights[name].copy_(solution[:n_weights])
            if name in model.biases:
                model.biases[name].copy_(solution[n_weights])
            residual = squares - 2 * (solution * moment).sum(0) + (solution * (gram @ solution)).sum(0)
            errors[name] = float(torch.sqrt(residual.clamp(min=0).sum() / (count * solution.shape[1])))
    return errors


def _accumulate_normal_equations(model: BlockModel, systems, hamiltonians, translations, normal: dict) -> None:
    """Add XᵀX, XᵀY, Σy² and the row count of every head over ``systems`` to ``normal``."""
    features = model.features(systems)
    layouts = model_layouts(features, systems, model.basis, translations)
    for layout, hamiltonian in zip(layouts, hamiltonians):
        targets = decompose(torch.as_tensor(hamiltonian, dtype=torch.float64), layout)
        for group, target, chunks in zip(layout.groups, targets, _group_inputs(features, layout)):
            (inputs,) = chunks
            for head in model.heads[(group.kind, group.species_i, group.species_j)]:
                design = inputs(head.block_type, head.irrep)
                n, components, width = design.shape
                x = design.reshape(n * components, width)
                y = target[:, head.columns].reshape(n, head.n_keys, components).transpose(1, 2)
                y = y.reshape(n * components, head.n_keys)
                if head.bias:
                    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
                gram, moment = x.T @ x, x.T @ y
                squares = (y * y).sum(0)
                if head.name in normal:
                    previous = normal[head.name]
                    gram, moment, squares = gram + previous[0], moment + previous[1], squares + previous[2]
                    count = previous[3] + len(x)
                else:
                    count = len(x)
                normal[head.name] = [gram, moment, squares, count]


_FORMAT = "mlhcalc.block_model/1"


def save_block_model(model: BlockModel, path, metadata: dict | None = None) -> None:
    """Write weights, configuration and free-form JSON ``metadata`` to one file readable by
    ``torch.load(..., weights_only=True)`` (tensors and strings only)."""
    torch.save(
        {
            "format": _FORMAT,
            "config": json.dumps(model.config()),
            "metadata": json.dumps(metadata or {}),
            "state": model.state_dict(),
        },
        path,
    )


def block_model_from_config(config: dict) -> BlockModel:
    """A zero-weight :class:`BlockModel` from :meth:`BlockModel.config` output."""
    return BlockModel(
        FeatureHypers.from_dict(config["hypers"]),
        config["basis"],
        gated=config["gated"],
        representation=config.get("representation", "ao"),
        electrostatics=config.get("electrostatics", "none"),
    )


def load_block_model(path) -> tuple[BlockModel, dict]:
    """Inverse of :func:`save_block_model`: (model, metadata). Never unpickles code."""
    content = torch.load(path, weights_only=True, map_location="cpu")
    if content.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a block model file (format {content.get('format')!r}, expected {_FORMAT!r})")
    config = json.loads(content["config"])
    model = block_model_from_config(config)
    model.load_state_dict(content["state"])
    return model, json.loads(content["metadata"])
