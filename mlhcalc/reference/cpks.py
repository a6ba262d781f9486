"""Coupled-perturbed Kohn–Sham static polarizability in the occupied–virtual space (fast path).

``pyscf.prop.polarizability.rks.Polarizability(mf).polarizability()`` (the reference definition,
../shared/REFERENCE.md) builds, at every Krylov iteration, three full AO response densities and
contracts them with the XC kernel on the grid (AO values re-evaluated every time, cost
∝ n_grid·n_ao²) and with the density-fitted exchange (cost ∝ n_aux·n_ao³). The CPKS only needs the
virtual–occupied block of the response potential, so this module computes exactly the same
quantity from orbital factors:

- the response density is D¹ = 2 (X C_oᵀ + C_o Xᵀ) with X = C_v U, so on the grid
  ρ¹ = 4 Σ_i ξ_i φ_i and ∇ρ¹ = 4 Σ_i (∇ξ_i φ_i + ξ_i ∇φ_i), with φ the occupied and ξ = ψ_v U the
  response orbitals (MO values and gradients on the grid computed once);
- the XC kernel is PySCF's own (``cache_xc_kernel``, the same effective GGA/LDA kernel
  ``nr_rks_fxc`` uses), and the potential's vo block is
  V_ai = Σ_g w [f₀ ψ_a φ_i + Σ_x f_x (∂_xψ_a φ_i + ψ_a ∂_xφ_i)];
- Coulomb and exact exchange use the same density-fitting tensor as the SCF (``mf.with_df``),
  transformed once to the MO basis: J_ai = 4 Σ_P L_P,ai Σ_bj L_P,bj U_bj,
  K_ai = 2 Σ_bj [(ab|ij) + (aj|ib)] U_bj.

The Krylov solver, its tolerance and iteration limit, the perturbation (dipole integrals about the
nuclear charge centre) and the final contraction are PySCF's (``pyscf.scf.cphf.solve``), so the
result equals the reference call to the solver's tolerance (tests/test_reference.py compares them;
measured difference ≤ 1e-6 a.u.) at a fraction of the cost (benchmarks/cpks_speed.py).

Limits: closed-shell RKS (or RHF) with density fitting and a LDA/GGA functional without range
separation or non-local correlation; anything else raises ``NotImplementedError`` and the caller
falls back to PySCF's implementation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["supported", "polarizability"]


def supported(mf) -> bool:
    """True when :func:`polarizability` can handle this converged SCF object."""
    from pyscf import dft

    if getattr(mf, "with_df", None) is None or not hasattr(mf.with_df, "loop"):
        return False
    if np.asarray(mf.mo_coeff).ndim != 2 or not np.all(np.isin(mf.mo_occ, (0.0, 2.0))):
        return False
    if isinstance(mf, dft.rks.KohnShamDFT):
        if mf.do_nlc():
            return False
        omega, _, _ = mf._numint.rsh_and_hybrid_coeff(mf.xc, spin=mf.mol.spin)
        if omega != 0 or mf._numint._xc_type(mf.xc) not in ("LDA", "GGA", "HF"):
            return False
    return True


def _mo_cderi(mf, mo_coeff: np.ndarray) -> np.ndarray:
    """(n_aux, n_mo, n_mo) density-fitting tensor of the SCF in the MO basis."""
    from pyscf import lib

    nmo = mo_coeff.shape[1]
    blocks = []
    for eri1 in mf.with_df.loop():
        ao = lib.unpack_tril(eri1)  # (naux_blk, nao, nao)
        blocks.append(np.matmul(mo_coeff.T, ao @ mo_coeff).reshape(-1, nmo, nmo))
    return np.concatenate(blocks, axis=0)


def _grid_orbitals(mf, mo_coeff: np.ndarray, deriv: int):
    """MO values (and gradients) on the SCF grid, with the grid weights."""
    ni = mf._numint
    values, weights = [], []
    for ao, _mask, weight, _coords in ni.block_loop(mf.mol, mf.grids, mf.mol.nao, deriv):
        ao = ao if ao.ndim == 3 else ao[None]
        values.append(ao @ mo_coeff)
        weights.append(weight)
    return np.concatenate(values, axis=1), np.concatenate(weights)


def polarizability(mf, conv_tol: float = 1e-9, max_cycle: int = 20) -> np.ndarray:
    """Static CPKS polarizability (3, 3) of a converged closed-shell SCF, in atomic units.

    Same definition, perturbation and solver as ``Polarizability(mf).polarizability()`` with
    ``conv_tol`` and ``max_cycle_cphf`` set; see the module docstring for how it is evaluated.
    """
    from pyscf import dft, lib
    from pyscf.scf import cphf

    if not supported(mf):
        raise NotImplementedError("fast CPKS: needs a density-fitted closed-shell RKS/RHF without range separation")
    mol = mf.mol
    mo_energy, mo_coeff, mo_occ = mf.mo_energy, np.asarray(mf.mo_coeff), mf.mo_occ
    occ = mo_occ > 0
    vir = ~occ
    nocc = int(occ.sum())
    nmo = mo_coeff.shape[1]

    charges = mol.atom_charges()
    centre = np.einsum("i,ix->x", charges, mol.atom_coords()) / charges.sum()
    with mol.with_common_orig(centre):
        int_r = mol.intor_symmetric("int1e_r", comp=3)
    h1 = lib.einsum("xpq,pi,qj->xij", int_r, mo_coeff, mo_coeff[:, occ])
    s1 = np.zeros_like(h1)

    if isinstance(mf, dft.rks.KohnShamDFT):
        ni = mf._numint
        xctype = ni._xc_type(mf.xc)
        _, _, hyb = ni.rsh_and_hybrid_coeff(mf.xc, spin=mol.spin)
    else:
        xctype, hyb = "HF", 1.0

    cderi = _mo_cderi(mf, mo_coeff)
    l_vo = np.ascontiguousarray(cderi[:, vir][:, :, occ])  # (naux, nvir, nocc)
    if hyb != 0:  # exact exchange needs (ab|ij) too
        l_oo = np.ascontiguousarray(cderi[:, occ][:, :, occ])
        l_vv = np.ascontiguousarray(cderi[:, vir][:, :, vir])
    del cderi

    if xctype in ("LDA", "GGA"):
        if mf.grids.coords is None:
            mf.grids.build(with_non0tab=True)
        deriv = 1 if xctype == "GGA" else 0
        orbitals, weights = _grid_orbitals(mf, mo_coeff, deriv)
        phi = np.ascontiguousarray(orbitals[:, :, occ])  # (ncomp, ngrid, nocc)
        psi = np.ascontiguousarray(orbitals[:, :, vir])  # (ncomp, ngrid, nvir)
        del orbitals
        _, _, fxc = ni.cache_xc_kernel(mol, mf.grids, mf.xc, mo_coeff, mo_occ, 0)
        fxc = np.asarray(fxc).reshape(deriv * 3 + 1, deriv * 3 + 1, -1) * weights

    def response(us: np.ndarray) -> np.ndarray:
        """vo blocks of the response potentials of D¹ = 2 (C_v u C_oᵀ + h.c.), u = us[n] (nvir, nocc)."""
        n = us.shape[0]
        rho_p = 4.0 * np.tensordot(us, l_vo, axes=([1, 2], [1, 2]))  # (n, naux)
        v = np.tensordot(rho_p, l_vo, axes=(1, 0))  # (n, nvir, nocc)
        if hyb != 0:
            for m in range(n):
                k = np.tensordot(np.matmul(l_vv, us[m]), l_oo, axes=([0, 2], [0, 2]))  # Σ (ab|ij) u_bj
                t = np.matmul(l_vo.transpose(0, 2, 1), us[m])  # (naux, i, j) = Σ_b L_ib u_bj
                k += np.tensordot(l_vo, t, axes=([0, 2], [0, 2]))  # Σ (aj|ib) u_bj
                v[m] -= hyb * k
        if xctype in ("LDA", "GGA"):
            ncomp = phi.shape[0]
            for m in range(n):
                xi = psi[0] @ us[m]  # (ngrid, nocc): response orbitals Σ_a ψ_a u_ai
                eta = phi[0] @ us[m].T  # (ngrid, nvir): Σ_i u_ai φ_i
                rho1 = np.empty((ncomp, phi.shape[1]))
                rho1[0] = 4.0 * np.einsum("gi,gi->g", xi, phi[0])
                for x in range(1, ncomp):  # ∇ρ¹ = 4 (Σ_a ∇ψ_a η_a + Σ_i ξ_i ∇φ_i)
                    rho1[x] = 4.0 * (np.einsum("ga,ga->g", psi[x], eta) + np.einsum("gi,gi->g", xi, phi[x]))
                wv = np.einsum("yg,xyg->xg", rho1, fxc)
                left = wv[0][:, None] * phi[0]
                for x in range(1, ncomp):
                    left += wv[x][:, None] * phi[x]
                v[m] += psi[0].T @ left
                if ncomp > 1:
                    grad_psi = wv[1][:, None] * psi[1]
                    for x in range(2, ncomp):
                        grad_psi += wv[x][:, None] * psi[x]
                    v[m] += grad_psi.T @ phi[0]
        return v

    def vind(mo1: np.ndarray) -> np.ndarray:
        mo1 = mo1.reshape(-1, nmo, nocc)
        out = np.zeros_like(mo1)
        out[:, vir] = response(np.ascontiguousarray(mo1[:, vir]))
        return out.ravel()

    mo1 = cphf.solve(vind, mo_energy, mo_occ, h1, s1, max_cycle, conv_tol)[0]
    e2 = np.einsum("xpi,ypi->xy", h1, mo1)
    return (e2 + e2.T) * -2
