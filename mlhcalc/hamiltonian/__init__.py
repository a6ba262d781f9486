"""Hamiltonian blocks: exact decomposition of H(T) (PySCF AO order) into Clebsch–Gordan coupled,
labelled blocks, the assembly of H(T) from them, and the per-block linear model that predicts them."""

from mlhcalc.hamiltonian.blocks import (
    KEY_NAMES,
    ON_SITE,
    PAIR_ANTISYMMETRIC,
    PAIR_HETERO,
    PAIR_SYMMETRIC,
    SAMPLE_NAMES,
    BlockGroup,
    BlockKey,
    HamiltonianLayout,
    decompose,
    from_tensormap,
    hamiltonian_layout,
    reconstruct,
    to_tensormap,
)
from mlhcalc.hamiltonian.model import BlockModel, fit_ridge, load_block_model, model_layouts, save_block_model

__all__ = [
    "KEY_NAMES",
    "ON_SITE",
    "PAIR_ANTISYMMETRIC",
    "PAIR_HETERO",
    "PAIR_SYMMETRIC",
    "SAMPLE_NAMES",
    "BlockGroup",
    "BlockKey",
    "HamiltonianLayout",
    "decompose",
    "from_tensormap",
    "hamiltonian_layout",
    "reconstruct",
    "to_tensormap",
    "BlockModel",
    "fit_ridge",
    "load_block_model",
    "model_layouts",
    "save_block_model",
]
