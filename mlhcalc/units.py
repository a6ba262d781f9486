"""Every unit conversion between the package's atomic units and ASE's units, in one place.

Inside mlhcalc: hartree, bohr, e·bohr, polarizability in a.u. (= bohr³), time in fs for MD series.
At the ASE boundary (calculator, CLI, spectra): eV, Å, e·Å, Å³, e (Born charges), Å² (dα/dR), cm⁻¹.
The constants are ASE's (``ase.units``, CODATA 2014), so results agree with other ASE calculators.
"""

from __future__ import annotations

import numpy as np
from ase import units as _ase

__all__ = [
    "HARTREE_TO_EV",
    "BOHR_TO_ANGSTROM",
    "DIPOLE_AU_TO_E_ANGSTROM",
    "E_ANGSTROM_TO_DEBYE",
    "POLARIZABILITY_AU_TO_ANGSTROM3",
    "POLARIZABILITY_AU_TO_ASE_RAMAN",
    "ANGSTROM3_TO_ASE_RAMAN",
    "POLARIZABILITY_DERIVATIVE_AU_TO_ANGSTROM2",
    "INVERSE_FS_TO_WAVENUMBER",
    "KELVIN_TO_WAVENUMBER",
    "energy_ev",
    "dipole_e_angstrom",
    "polarizability_angstrom3",
    "polarizability_ase_raman",
    "polarizability_derivative_angstrom2",
]

HARTREE_TO_EV = _ase.Hartree
"""1 hartree in eV."""
BOHR_TO_ANGSTROM = _ase.Bohr
"""1 bohr in Å."""
DIPOLE_AU_TO_E_ANGSTROM = _ase.Bohr
"""1 e·bohr in e·Å."""
E_ANGSTROM_TO_DEBYE = 1.0 / _ase.Debye
"""1 e·Å in debye (ASE's ``Debye`` is 1 D in e·Å)."""
POLARIZABILITY_AU_TO_ANGSTROM3 = _ase.Bohr**3
"""1 a.u. of polarizability (e² bohr² / hartree = 4πε₀ bohr³) in Å³ (Gaussian-style volume units)."""
POLARIZABILITY_AU_TO_ASE_RAMAN = _ase.Bohr**2 / _ase.Hartree
"""1 a.u. of polarizability in e²Å²/eV, the unit of ASE's ``StaticPolarizabilityCalculator``."""
ANGSTROM3_TO_ASE_RAMAN = 1.0 / (_ase.Bohr * _ase.Hartree)
"""α[e²Å²/eV] = α[Å³] / (Bohr · Hartree), as ASE's ``PlaczekStatic`` undoes it."""
POLARIZABILITY_DERIVATIVE_AU_TO_ANGSTROM2 = _ase.Bohr**2
"""dα/dR: 1 bohr³/bohr in Å³/Å = Å²."""
INVERSE_FS_TO_WAVENUMBER = 1e15 / (100.0 * _ase._c)
"""A frequency of 1 fs⁻¹ in cm⁻¹ (ν̃ = ν / c)."""
KELVIN_TO_WAVENUMBER = _ase.kB / _ase.invcm
"""k_B · 1 K in cm⁻¹ (≈ 0.695)."""


def energy_ev(energy_hartree):
    """Hartree → eV (scalars or arrays)."""
    return np.asarray(energy_hartree) * HARTREE_TO_EV


def dipole_e_angstrom(dipole_au):
    """e·bohr → e·Å."""
    return np.asarray(dipole_au) * DIPOLE_AU_TO_E_ANGSTROM


def polarizability_angstrom3(polarizability_au):
    """a.u. (bohr³) → Å³."""
    return np.asarray(polarizability_au) * POLARIZABILITY_AU_TO_ANGSTROM3


def polarizability_ase_raman(polarizability_au):
    """a.u. → e²Å²/eV (ASE's static-Raman polarizability unit)."""
    return np.asarray(polarizability_au) * POLARIZABILITY_AU_TO_ASE_RAMAN


def polarizability_derivative_angstrom2(derivative_au):
    """dα/dR: bohr² → Å²."""
    return np.asarray(derivative_au) * POLARIZABILITY_DERIVATIVE_AU_TO_ANGSTROM2
