"""PBE/gth-dzvp reference bands of one silicon cell along Γ–X–W–L–Γ–K, for the band-structure plot of
models/silicon (benchmarks/silicon_plots.py).

Runs the labeller's SCF (mlhcalc.reference.compute.silicon_stage settings: KRKS, GDF, Γ-centred
4×4×4 mesh, gth-pade), checks its mesh bands against the committed label of that cell, then the
non-self-consistent bands of the converged density at the path k-points (``get_bands`` with FFTDF and
the SCF's Becke grids: GDF would need new three-centre integrals per band k-point; the FFTDF-vs-GDF
difference on the mesh is printed and stored). Writes
``data/silicon/bandpath_<structure_id>.npz``: ``kpts_frac`` (n, 3), ``x`` (n,) path coordinate
(bohr⁻¹), ``special_x``, ``special_labels``, ``bands`` (n, nbands) hartree, ``mesh_bands`` (nk, nbands),
``mesh_kpts_frac``, ``nocc``, ``mesh_bands_fftdf`` (the FFTDF route on the mesh: within the 8 lowest
bands it deviates from the GDF labels by ≤ 0.6 meV for cell 0). About 10 minutes on an idle core
(22 minutes measured on the shared machine).

    OMP_NUM_THREADS=1 python scripts/silicon_reference_bands.py 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase.dft.kpoints import BandPath
from ase.io import read
from ase.lattice import FCC

REPO = Path(__file__).resolve().parent.parent
PATH = "GXWLGK"
NPOINTS = 60


def fcc_band_path(atoms, npoints: int = NPOINTS) -> BandPath:
    """Γ–X–W–L–Γ–K with the fcc special points (fractional, of the undistorted primitive fcc cell) in
    the reciprocal cell of ``atoms``: a strained or rattled cell keeps the same labels."""
    return BandPath(atoms.cell, path=PATH, special_points=FCC(1.0).get_special_points()).interpolate(npoints=npoints)


def main() -> None:
    from pyscf.pbc import dft as pbcdft

    from mlhcalc.reference import read as read_labels
    from mlhcalc.reference.compute import SILICON
    from mlhcalc.structure import to_cell

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=int, help="index in data/silicon/primitive.extxyz")
    parser.add_argument("--npoints", type=int, default=NPOINTS)
    args = parser.parse_args()

    atoms = read(REPO / "data/silicon/primitive.extxyz", index=args.index)
    structure_id = f"{args.index:06d}"
    started = time.perf_counter()
    cell = to_cell(atoms, SILICON.basis_large, SILICON.pseudo)
    mesh = tuple(int(n) for n in atoms.info.get("kmesh", (4, 4, 4)))
    kpts = cell.make_kpts(mesh)
    mf = pbcdft.KRKS(cell, kpts, xc=SILICON.xc).density_fit()
    mf.conv_tol = SILICON.conv_tol
    mf.kernel()
    if not mf.converged:
        raise SystemExit("SCF not converged")
    mesh_bands = np.stack([np.asarray(e) for e in mf.mo_energy])
    labelled = {a.info["structure_id"]: a for a in read_labels(REPO / "data/silicon/primitive_labels.d")}
    label = labelled.get(structure_id)
    if label is not None and "bands_large" in label.info:
        deviation = np.abs(mesh_bands - np.asarray(label.info["bands_large"])).max()
        print(f"mesh bands vs the committed label: max |Δ| {deviation:.1e} Ha")
    path = fcc_band_path(atoms, args.npoints)
    x, special_x, special_labels = path.get_linear_kpoint_axis()
    # Non-SCF bands of the converged density with plane-wave (FFTDF) Coulomb and XC on the uniform grid:
    # GDF needs new three-centre integrals for every band k-point (hours for gth-dzvp). The same route on
    # the mesh k-points measures what the switch costs against the labelled (GDF) bands.
    fft = pbcdft.KRKS(cell, kpts, xc=SILICON.xc)
    fft.grids = mf.grids  # the SCF's Becke grids for the XC (the uniform FFT grid differs by up to 1e-3 Ha)
    density = mf.make_rdm1()
    mesh_check = np.stack([np.asarray(e) for e in fft.get_bands(kpts, kpts=kpts, dm_kpts=density)[0]])
    fft_vs_gdf = float(np.abs(mesh_check - mesh_bands).max())
    print(f"non-SCF FFTDF bands on the mesh vs the GDF SCF bands: max |Δ| {fft_vs_gdf:.1e} Ha")
    band_kpts = cell.get_abs_kpts(path.kpts)
    bands = np.stack([np.asarray(e) for e in fft.get_bands(band_kpts, kpts=kpts, dm_kpts=density)[0]])
    output = REPO / f"data/silicon/bandpath_{structure_id}.npz"
    np.savez_compressed(
        output,
        kpts_frac=path.kpts,
        x=x,
        special_x=special_x,
        special_labels=np.array(special_labels),
        bands=bands,
        mesh_bands=mesh_bands,
        mesh_kpts_frac=cell.get_scaled_kpts(kpts),
        nocc=cell.nelectron // 2,
        fft_vs_gdf_mesh_max_ha=fft_vs_gdf,
        mesh_bands_fftdf=mesh_check,
        level=f"PBE/{SILICON.basis_large} ({SILICON.pseudo}), KRKS GDF SCF on {mesh}; path bands non-SCF "
        "from that density with FFTDF (get_bands)",
    )
    print(f"wrote {output} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
