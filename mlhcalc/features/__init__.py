"""Equivariant descriptors (featomic-torch neighbour expansion, compressed channels, Clebsch–Gordan
products). Nothing here knows about Hamiltonians."""

from mlhcalc.features.clebsch_gordan import ProductPlan, ProductTerm, parity_sigma, real_clebsch_gordan
from mlhcalc.features.descriptors import (
    PROPERTY_NAMES,
    EquivariantFeatures,
    FeatureHypers,
    Features,
    Irrep,
    atom_tensormap,
    find_rows,
    pair_tensormap,
    systems_from_atoms,
)

__all__ = [
    "PROPERTY_NAMES",
    "EquivariantFeatures",
    "FeatureHypers",
    "Features",
    "Irrep",
    "atom_tensormap",
    "find_rows",
    "pair_tensormap",
    "systems_from_atoms",
    "ProductPlan",
    "ProductTerm",
    "parity_sigma",
    "real_clebsch_gordan",
]
