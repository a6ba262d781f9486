"""Levels of theory and stages of the reference labels (the single source of these numbers).

The values follow ``shared/REFERENCE.md``; change them only together with that document and the
``format_version`` of :mod:`mlhcalc.reference.storage`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LEVELS",
    "MOLECULE_STAGES",
    "SILICON_STAGES",
    "STAGE_SUFFIX",
    "MoleculeLevel",
    "SiliconLevel",
    "stages_for",
    "XC_GRIDS",
]

LEVELS = ("molecule", "silicon")

# Order matters: cheap stages first, so a run that is cut short has the cheap labels of every structure.
MOLECULE_STAGES = ("minimal", "large", "large_polarizability")
SILICON_STAGES = ("minimal", "large")

# XC quadrature grids of the periodic stages: "becke" (the reference labels) or "uniform" (cell.mesh),
# for cells too large for the periodic Becke partition (mlhcalc.reference.compute.silicon_stage)
XC_GRIDS = ("becke", "uniform")

# Suffix of the ``atoms.info`` keys a stage's labels get in :func:`mlhcalc.reference.read`
# (the CPKS stage adds ``polarizability_large`` to the large-basis labels).
STAGE_SUFFIX = {"minimal": "minimal", "large": "large", "large_polarizability": "large"}


@dataclass(frozen=True)
class MoleculeLevel:
    """Molecules: B3LYP (VWN-RPA correlation, PySCF ``b3lypg``) in two basis sets."""

    xc: str = "b3lypg"
    basis_minimal: str = "sto-3g"
    conv_tol_minimal: float = 1e-12
    conv_tol_grad_minimal: float = 1e-8
    basis_large: str = "def2-tzvp"
    auxbasis_large: str = "def2-universal-jkfit"
    conv_tol_large: float = 1e-10
    # pyscf-properties CPKS defaults, recorded with each polarizability
    cphf_conv_tol: float = 1e-9
    cphf_max_cycle: int = 20


@dataclass(frozen=True)
class SiliconLevel:
    """Periodic cells: PBE with GTH pseudopotentials, Gaussian density fitting, Γ-centred k-mesh."""

    xc: str = "pbe"
    pseudo: str = "gth-pade"
    basis_minimal: str = "gth-szv"
    basis_large: str = "gth-dzvp"
    conv_tol: float = 1e-10


def stages_for(level: str) -> tuple[str, ...]:
    if level == "molecule":
        return MOLECULE_STAGES
    if level == "silicon":
        return SILICON_STAGES
    raise ValueError(f"unknown level {level!r}: choose one of {', '.join(LEVELS)}")
