"""Atomic-orbital layouts of PySCF basis sets, per species and per structure.

Owns the one fact everything else relies on: in which order PySCF lays out the AOs of an atom
(shells in basis order, each contraction column a radial function ``n``, 2l+1 real spherical
components), and the permutation from PySCF's component order to the m = -l..l order of real
spherical harmonics (featomic/sphericart convention). Only p shells differ: PySCF writes
(px, py, pz) and m = -1, 0, 1 is (y, z, x), so ``m_order = [1, 2, 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = [
    "Shell",
    "SpeciesLayout",
    "species_layout",
    "structure_ao_slices",
    "pyscf_to_m_order",
    "m_to_pyscf_order",
    "m_order_permutation",
]


@dataclass(frozen=True)
class Shell:
    """One radial function of one species: ``n`` counts radial functions of the same ``l``
    from 0 in basis order; ``offset`` is the index of its first AO inside the atom's AO block."""

    n: int
    l: int
    offset: int

    @property
    def size(self) -> int:
        return 2 * self.l + 1

    @property
    def ao_slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class SpeciesLayout:
    """The AO block of one species in one basis, in PySCF order."""

    symbol: str
    basis: str
    shells: tuple[Shell, ...]

    @property
    def nao(self) -> int:
        return sum(s.size for s in self.shells)

    @property
    def max_l(self) -> int:
        return max(s.l for s in self.shells)

    def ao_labels(self) -> list[tuple[int, int, int]]:
        """(n, l, m) for every AO in PySCF order (m is the real-harmonic index -l..l)."""
        labels = []
        for shell in self.shells:
            perm = m_to_pyscf_order(shell.l)
            ms = np.arange(-shell.l, shell.l + 1)[perm]
            labels.extend((shell.n, shell.l, int(m)) for m in ms)
        return labels


def _basis_name(basis) -> str:
    if not isinstance(basis, str):
        raise TypeError(f"basis must be a PySCF basis name such as 'sto-3g', got {basis!r}")
    return basis.lower()


@cache
def species_layout(basis: str, symbol: str) -> SpeciesLayout:
    """AO layout of ``symbol`` in ``basis``, read from a one-atom PySCF ``Mole``.

    Raises ``ValueError`` if the basis has no functions for the element.
    """
    from pyscf import gto

    basis = _basis_name(basis)
    try:
        z = gto.charge(symbol)
        mol = gto.M(atom=[(symbol, (0.0, 0.0, 0.0))], basis=basis, spin=z % 2, unit="Bohr", verbose=0)
    except Exception as err:  # PySCF raises a bare KeyError/RuntimeError for unknown basis/element
        raise ValueError(f"basis {basis!r} has no functions for element {symbol!r} ({err})") from err
    if mol.nao == 0:
        raise ValueError(f"basis {basis!r} has no functions for element {symbol!r}")
    shells = []
    count_per_l: dict[int, int] = {}
    offset = 0
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        for _ in range(int(mol.bas_nctr(ib))):
            n = count_per_l.get(l, 0)
            count_per_l[l] = n + 1
            shells.append(Shell(n=n, l=l, offset=offset))
            offset += 2 * l + 1
    if offset != mol.nao:  # cartesian or unexpected layout
        raise ValueError(f"unexpected AO count for {symbol} in {basis}: {offset} != {mol.nao}")
    return SpeciesLayout(symbol=symbol, basis=basis, shells=tuple(shells))


def structure_ao_slices(symbols: list[str], basis: str) -> list[slice]:
    """AO slice of every atom in the AO order PySCF uses for the whole structure."""
    slices = []
    start = 0
    for symbol in symbols:
        nao = species_layout(basis, symbol).nao
        slices.append(slice(start, start + nao))
        start += nao
    return slices


def pyscf_to_m_order(l: int) -> np.ndarray:
    """Index array ``p`` with ``block_m = block_pyscf[p]``: PySCF component order → m = -l..l."""
    if l == 1:
        return np.array([1, 2, 0])
    return np.arange(2 * l + 1)


def m_to_pyscf_order(l: int) -> np.ndarray:
    """Inverse of :func:`pyscf_to_m_order`: ``block_pyscf = block_m[p]``."""
    return np.argsort(pyscf_to_m_order(l))


def m_order_permutation(layout: SpeciesLayout) -> np.ndarray:
    """Permutation of a whole atomic AO block from PySCF order to m order (shell by shell)."""
    return np.concatenate([shell.offset + pyscf_to_m_order(shell.l) for shell in layout.shells])
