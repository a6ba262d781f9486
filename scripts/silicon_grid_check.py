"""How much the XC quadrature grid moves the PBE/gth-dzvp bands of a labelled silicon cell.

The labeller's KRKS with GDF integrates the XC potential on PySCF's periodic Becke grids. Their
partition weights cost O(N_points × N_image_atoms²): for the 64-atom supercell (1.17 M points,
1291 atoms from the images that reach the cell) that is about 450 CPU-minutes before the first
SCF cycle, against 0.3 minutes for a two-atom cell (``--becke-cost``, below). A uniform grid has
no partition. This script reruns one labelled cell with the labeller's settings but
``UniformGrids`` (``cell.mesh``, or a denser ``--mesh``) and prints the band differences against
its committed Becke-grid label, so a supercell reference on a uniform grid can be judged against
the 2-atom training labels.

    OMP_NUM_THREADS=1 python scripts/silicon_grid_check.py 0
    OMP_NUM_THREADS=1 python scripts/silicon_grid_check.py --becke-cost data/silicon/supercell64.extxyz

``--becke-cost FILE`` instead estimates the Becke partition of the first cell in FILE: it repeats
the first steps of PySCF's ``pyscf.pbc.dft.gen_grid.get_becke_grids`` (images within its ``rcut``,
the atomic grids that reach the cell), times the partition kernel on one block of 2000 points and
scales that to the whole grid.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase.io import read

REPO = Path(__file__).resolve().parent.parent


def becke_cost(path: str, block: int = 2000) -> None:
    import ctypes

    from pyscf import dft, lib
    from pyscf.pbc.dft import gen_grid
    from pyscf.pbc.gto import eval_gto

    from mlhcalc.reference.compute import SILICON
    from mlhcalc.structure import to_cell

    cell = to_cell(read(path, index=0), SILICON.basis_large, SILICON.pseudo)
    images = eval_gto.get_lattice_Ls(cell, rcut=eval_gto._estimate_rcut(cell).max())
    grids = gen_grid.gen_atomic_grids(cell, {}, dft.radi.gauss_chebyshev, 3, dft.gen_grid.nwchem_prune)
    to_fractional = cell.reciprocal_vectors(norm_to=1)
    centres = images.reshape(-1, 1, 3) + cell.atom_coords()
    points, atoms_in = 0, []
    for image in range(len(images)):
        for atom in range(cell.natm):
            coords = grids[cell.atom_symbol(atom)][0] + centres[image, atom]
            inside = np.all(np.abs(to_fractional @ coords.T) < 0.5, axis=0).sum()
            if inside > 8:  # get_becke_grids keeps an atom's grid if more than 8 points fall in the cell
                points += int(inside)
                atoms_in.append(centres[image, atom])
    atoms_in = np.ascontiguousarray(atoms_in)
    sample = np.asfortranarray(np.random.default_rng(0).random((block, 3)) @ cell.lattice_vectors())
    weights = np.empty((len(atoms_in), block))
    started = time.perf_counter()
    dft.gen_grid.libdft.VXCgen_grid(
        weights.ctypes.data_as(ctypes.c_void_p),
        sample.ctypes.data_as(ctypes.c_void_p),
        atoms_in.ctypes.data_as(ctypes.c_void_p),
        lib.c_null_ptr(),
        ctypes.c_int(len(atoms_in)),
        ctypes.c_int(block),
    )
    seconds = time.perf_counter() - started
    print(f"{path}: {cell.natm} atoms, {points} Becke points in the cell, {len(atoms_in)} atoms (with images) "
          f"in the partition; {block} points took {seconds:.1f} s -> about {seconds * points / block / 60:.1f} "
          f"minutes for the partition with {lib.num_threads()} thread(s)")


def main() -> None:
    from pyscf.pbc import dft as pbcdft
    from pyscf.pbc.dft.gen_grid import UniformGrids

    from mlhcalc.reference import read as read_labels
    from mlhcalc.reference.compute import SILICON
    from mlhcalc.structure import to_cell
    from mlhcalc.training.metrics import band_gap
    from mlhcalc.units import HARTREE_TO_EV

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=int, nargs="?", help="index in data/silicon/primitive.extxyz (labelled cell)")
    parser.add_argument("--mesh", type=int, nargs=3, help="uniform XC grid (default: cell.mesh)")
    parser.add_argument("--becke-cost", metavar="FILE", help="estimate the Becke partition cost of FILE's first cell")
    args = parser.parse_args()
    if args.becke_cost:
        becke_cost(args.becke_cost)
        return
    if args.index is None:
        parser.error("give a cell index or --becke-cost FILE")

    atoms = read(REPO / "data/silicon/primitive.extxyz", index=args.index)
    label = {a.info["structure_id"]: a for a in read_labels(REPO / "data/silicon/primitive_labels.d")}[
        f"{args.index:06d}"
    ]
    reference = np.sort(np.asarray(label.info["bands_large"]), axis=1)
    started = time.perf_counter()
    cell = to_cell(atoms, SILICON.basis_large, SILICON.pseudo)
    kpts = cell.make_kpts(tuple(int(n) for n in label.info["kmesh"]))
    mf = pbcdft.KRKS(cell, kpts, xc=SILICON.xc).density_fit()
    mf.grids = UniformGrids(cell)
    if args.mesh:
        mf.grids.mesh = tuple(args.mesh)
    mf.conv_tol = SILICON.conv_tol
    mf.verbose = 0
    mf.kernel()
    if not mf.converged:
        raise SystemExit("SCF not converged")
    bands = np.sort(np.stack([np.asarray(e) for e in mf.mo_energy]), axis=1)
    nocc = int(label.info["nocc"])
    delta = (bands - reference)[:, :8] * HARTREE_TO_EV
    gap_delta = band_gap(bands, nocc)[0] - band_gap(reference, nocc)[0]
    grid_mesh = tuple(int(n) for n in mf.grids.mesh)
    kmesh = tuple(int(n) for n in label.info["kmesh"])
    print(f"cell {label.info['name']}, uniform XC grid {grid_mesh} ({mf.grids.weights.size} points) "
          f"against the Becke-grid label, 8 lowest bands on the {kmesh} mesh:")
    print(f"  mean Δ {delta.mean() * 1000:.1f} meV, mean |Δ| {np.abs(delta).mean() * 1000:.1f} meV, "
          f"max |Δ| {np.abs(delta).max() * 1000:.1f} meV, "
          f"spread of Δ (max − min) {np.ptp(delta) * 1000:.1f} meV, "
          f"gap Δ {gap_delta * HARTREE_TO_EV * 1000:.1f} meV; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
