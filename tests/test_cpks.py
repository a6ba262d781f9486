"""The factorised CPKS polarizability equals pyscf-properties' reference implementation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyscf import dft, gto, scf

from mlhcalc.reference import cpks

WATER = "O 0 0 0.117; H 0 0.757 -0.469; H 0 -0.757 -0.469"
# A non-planar, lower-symmetry molecule, so that every tensor component is exercised.
METHANOL = (
    "C -0.047 0.664 0.0; O -0.047 -0.758 0.0; H -1.086 0.975 0.0; H 0.860 -1.081 0.0; "
    "H 0.437 1.080 0.888; H 0.437 1.080 -0.888"
)
TOL = 1e-6  # a.u.; both solve the same Krylov problem to conv_tol = 1e-9


def _reference(mf) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyscf.prop.polarizability.rks import Polarizability
    polobj = Polarizability(mf)
    polobj.conv_tol, polobj.max_cycle_cphf = 1e-9, 20
    return np.asarray(polobj.polarizability())


def _converged(mf):
    mf.conv_tol, mf.verbose = 1e-10, 0
    mf.kernel()
    assert mf.converged
    return mf


@pytest.mark.parametrize(
    ("atom", "xc"),
    [(WATER, "b3lypg"), (METHANOL, "b3lypg"), (WATER, "lda,vwn"), (WATER, "pbe")],
)
def test_equals_pyscf_properties(atom, xc):
    mol = gto.M(atom=atom, basis="def2-svp", verbose=0)
    mf = _converged(dft.RKS(mol, xc=xc).density_fit(auxbasis="def2-universal-jkfit"))
    assert cpks.supported(mf)
    ours = cpks.polarizability(mf)
    np.testing.assert_allclose(ours, _reference(mf), atol=TOL)
    assert np.trace(ours) / 3 > 1.0  # a real response, not zeros on both sides


def test_hartree_fock():
    mol = gto.M(atom=WATER, basis="def2-svp", verbose=0)
    mf = _converged(scf.RHF(mol).density_fit(auxbasis="def2-universal-jkfit"))
    np.testing.assert_allclose(cpks.polarizability(mf), _reference(mf), atol=TOL)


def test_unsupported_cases_are_refused():
    mol = gto.M(atom=WATER, basis="sto-3g", verbose=0)
    exact = _converged(dft.RKS(mol, xc="b3lypg"))  # no density fitting: the labeller falls back to pyscf
    assert not cpks.supported(exact)
    with pytest.raises(NotImplementedError, match="density-fitted"):
        cpks.polarizability(exact)
    rsh = _converged(dft.RKS(mol, xc="camb3lyp").density_fit(auxbasis="def2-universal-jkfit"))
    assert not cpks.supported(rsh)
