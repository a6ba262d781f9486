"""Factorised CPKS (mlhcalc.reference.cpks) against pyscf-properties' Polarizability: time and agreement.

    OMP_NUM_THREADS=1 python benchmarks/cpks_speed.py [--heavy 2,4,6]

For the first qm7like molecule with each number of heavy atoms: the def2-TZVP B3LYPG SCF (density
fitting, the label level), then both CPKS evaluations with conv_tol 1e-9 and 20 cycles. Prints a
Markdown table (seconds on this machine, max |Δα| in a.u.).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from ase.io import read

from mlhcalc.reference import cpks
from mlhcalc.reference.levels import MoleculeLevel
from mlhcalc.structure import to_mole

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heavy", default="2,4,6")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyscf import dft
        from pyscf.prop.polarizability.rks import Polarizability

    level = MoleculeLevel()
    structures = read(ROOT / "data/qm7like/structures.extxyz", ":")
    print("| molecule | atoms | AOs | grid | SCF s | pyscf CPKS s | mlhcalc CPKS s | speed-up | max abs Δα a.u. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_heavy in (int(x) for x in args.heavy.split(",")):
        atoms = next((a for a in structures if a.info["n_heavy"] == n_heavy), None)
        if atoms is None:
            raise SystemExit(f"--heavy: no qm7like molecule has {n_heavy} heavy atoms (the set has 1 to 6)")
        mol = to_mole(atoms, level.basis_large, 0)
        mf = dft.RKS(mol, xc=level.xc).density_fit(auxbasis=level.auxbasis_large)
        mf.conv_tol, mf.verbose = level.conv_tol_large, 0
        start = time.perf_counter()
        mf.kernel()
        t_scf = time.perf_counter() - start
        start = time.perf_counter()
        ours = cpks.polarizability(mf, conv_tol=level.cphf_conv_tol, max_cycle=level.cphf_max_cycle)
        t_ours = time.perf_counter() - start
        polobj = Polarizability(mf)
        polobj.conv_tol, polobj.max_cycle_cphf = level.cphf_conv_tol, level.cphf_max_cycle
        start = time.perf_counter()
        ref = polobj.polarizability()
        t_ref = time.perf_counter() - start
        print(
            f"| {atoms.info['name']} {atoms.get_chemical_formula()} | {len(atoms)} | {mol.nao} | "
            f"{mf.grids.weights.size} | {t_scf:.1f} | {t_ref:.1f} | {t_ours:.1f} | {t_ref / t_ours:.1f}× | "
            f"{np.abs(ours - ref).max():.1e} |"
        )


if __name__ == "__main__":
    main()
