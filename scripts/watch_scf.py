"""Follow a long periodic SCF of ``mlhcalc label`` through its checkpoint: one line per SCF cycle.

The labeller keeps the SCF checkpoint of a periodic stage in its scratch directory
(``$MLHCALC_SCRATCH/<hash>/scf.chk``, docs/data.md); PySCF rewrites it after every cycle. This
prints, each time it changes: the time, the total energy and its change (hartree), and the largest
change of any of the lowest ``--bands`` band energies since the previous cycle (meV), with the gap
at ``--nocc``. Use it to see whether the last decades of ``conv_tol`` still move the bands. Stops
when the file disappears (the labeller removes its scratch after success) or on Ctrl-C.

    python scripts/watch_scf.py /work/scratch/8581649c3e446ff57d1243ce --bands 256 --nocc 128
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import h5py
import numpy as np

from mlhcalc.units import HARTREE_TO_EV


def snapshot(checkpoint: Path, n_bands: int) -> tuple[float, np.ndarray, tuple[int, int]]:
    """Total energy (Ha), the lowest ``n_bands`` band energies over all k-points (Ha, sorted) and the
    fewest and most occupied bands of any k-point (unequal: the aufbau put electrons of one k-point at
    another; if that keeps changing from cycle to cycle the labeller stops it, docs/data.md)."""
    with h5py.File(checkpoint, "r") as root:
        energy = float(root["scf/e_tot"][()])
        bands = np.sort(np.asarray(root["scf/mo_energy"][()], dtype=np.float64).ravel())
        occupied = np.count_nonzero(np.asarray(root["scf/mo_occ"][()]) > 0, axis=-1)
    return energy, bands[:n_bands], (int(occupied.min()), int(occupied.max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scratch", type=Path, help="the stage's scratch directory (or its scf.chk)")
    parser.add_argument("--bands", type=int, default=256, help="how many of the lowest bands to compare")
    parser.add_argument("--nocc", type=int, default=None, help="occupied bands, for the gap (default: half)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between looks at the file")
    args = parser.parse_args()
    checkpoint = args.scratch / "scf.chk" if args.scratch.is_dir() else args.scratch
    nocc = args.nocc if args.nocc is not None else args.bands // 2
    seen, previous = None, None
    while checkpoint.is_file():
        stamp = checkpoint.stat().st_mtime
        if stamp != seen:
            time.sleep(2.0)  # let PySCF finish writing
            seen = stamp
            try:
                energy, bands, (fewest, most) = snapshot(checkpoint, args.bands)
            except (OSError, KeyError):  # caught mid-write: next look
                seen = None
                continue
            line = f"{datetime.datetime.now():%H:%M:%S}  E = {energy:.12f} Ha"
            if previous is not None:
                change = np.abs(bands - previous[1]).max() * HARTREE_TO_EV * 1e3
                line += f"  ΔE = {energy - previous[0]:+.2e} Ha  max |Δband| = {change:.3f} meV"
            line += f"  gap = {(bands[nocc] - bands[nocc - 1]) * HARTREE_TO_EV:.4f} eV"
            line += f"  occupied bands per k-point {fewest}" + (f"-{most}" if most != fewest else "")
            print(line, flush=True)
            previous = (energy, bands)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
