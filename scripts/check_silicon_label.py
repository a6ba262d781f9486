"""Recompute one committed silicon label with plain PySCF (fresh guess, no mlhcalc SCF code) and print
how far the bands and total energy are from it: the check of issue 3 for periodic labels.

The cell is built from the extxyz input directly (Å, PySCF defaults otherwise), the SCF is the level of
docs/data.md (KRKS/PBE, GDF, gth-pade, Γ-centred mesh, conv_tol 1e-10). Where the label records that it
filled the lowest ``nocc`` bands at every k-point (its ``occupation`` attribute), the recomputation does
the same (``fixed_occupation_per_kpoint``: a plain numpy ``get_occ``). One gth-dzvp two-atom cell takes
10-20 minutes on one core.

    OMP_NUM_THREADS=1 python scripts/check_silicon_label.py primitive 8 --stage large
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
from ase.io import read

REPO = Path(__file__).resolve().parent.parent
SETS = {"primitive": "data/silicon/primitive", "cubic": "data/silicon/cubic"}
BASIS = {"minimal": "gth-szv", "large": "gth-dzvp"}


def main() -> None:
    from pyscf.pbc import dft, gto

    from mlhcalc.reference.compute import AUFBAU_OCCUPATION, FIXED_OCCUPATION_PREFIX, fixed_occupation_per_kpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("index", type=int, help="0-based position in the set's extxyz")
    parser.add_argument("--stage", choices=sorted(BASIS), default="large")
    parser.add_argument(
        "--occupation", choices=("label", "fixed", "aufbau"), default="label",
        help="label: as the label says (the check); fixed: the lowest nocc bands at every k-point; aufbau: "
        "PySCF's over all k-points (fixed or aufbau on a label made the other way measures what the choice changes)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    atoms = read(REPO / f"{SETS[args.set]}.extxyz", index=args.index)
    sid = f"{args.index:06d}"
    label_file = REPO / f"{SETS[args.set]}_labels.d" / f"{sid}.{args.stage}.h5"
    if not label_file.is_file():
        raise SystemExit(f"no {args.stage} label for {args.set} cell {args.index} ({label_file} is missing): "
                         "label it first (docs/data.md) or pick a labelled cell (python scripts/label_status.py)")
    with h5py.File(label_file, "r") as root:
        group = root[f"structures/{sid}/{args.stage}"]
        label_bands = np.asarray(group["bands"][()])
        label_energy = float(group["energy"][()])
        mesh = tuple(int(n) for n in group["kmesh"][()])
        occupation = str(group.attrs.get("occupation", AUFBAU_OCCUPATION))
        conv_tol = float(group.attrs["conv_tol"])

    cell = gto.Cell()
    cell.atom = [(symbol, position) for symbol, position in zip(atoms.get_chemical_symbols(), atoms.positions)]
    cell.a = np.asarray(atoms.cell)
    cell.unit = "angstrom"
    cell.basis = BASIS[args.stage]
    cell.pseudo = "gth-pade"
    cell.verbose = 0
    cell.build()
    mf = dft.KRKS(cell, cell.make_kpts(mesh), xc="pbe").density_fit()
    mf.conv_tol = conv_tol
    fixed = occupation.startswith(FIXED_OCCUPATION_PREFIX) if args.occupation == "label" else args.occupation == "fixed"
    if fixed:
        mf.get_occ = fixed_occupation_per_kpoint(cell.nelectron // 2)
    mf.kernel()
    if args.stage == "minimal":  # the label's bands are eigenvalues of H(k) from the final density
        fock, overlap = mf.get_fock(dm=mf.make_rdm1()), mf.get_ovlp()
        import scipy.linalg

        bands = np.stack([scipy.linalg.eigh(f, s, eigvals_only=True) for f, s in zip(fock, overlap)])
    else:
        bands = np.stack([np.asarray(e) for e in mf.mo_energy])
    occupied = [int(np.count_nonzero(o)) for o in mf.mo_occ]
    print(f"{args.set} {sid} {args.stage}: label occupation {occupation!r}; recomputed with "
          f"{'the lowest nocc bands at every k-point' if fixed else 'aufbau'} ({min(occupied)}-{max(occupied)} "
          f"occupied bands per k-point); converged {mf.converged} in {mf.cycles} cycles")
    print(f"max |bands - label| {np.abs(bands - label_bands).max():.1e} Ha; "
          f"|energy - label| {abs(mf.e_tot - label_energy):.1e} Ha; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
