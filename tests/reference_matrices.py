"""Exact one-electron matrices used as stand-in Hamiltonians by several tests: they are exactly
equivariant and cheap, so tolerances can be tight (shared helper, not a test module)."""

import numpy as np
from pyscf import gto

from mlhcalc.structure import lattice_bohr, positions_bohr


def kinetic_stack(atoms, translations, basis="gth-szv"):
    """Kinetic-energy matrices T(T) between the home cell and its images T (exact integrals, no lattice sum)."""
    symbols = atoms.get_chemical_symbols()

    def mole(positions):
        return gto.M(atom=list(zip(symbols, positions)), basis=basis, unit="Bohr", spin=None, verbose=0)

    home = mole(positions_bohr(atoms))
    images = [mole(positions_bohr(atoms) + shift @ lattice_bohr(atoms)) for shift in translations]
    return np.array([gto.intor_cross("int1e_kin", home, image) for image in images])
