"""Print how complete each labelled dataset is: finished and failed structure-stages per set,
the number of structures with a polarizability per stage, the median wall time of a
stage (as stored by the labeller, shared machine) and the disk size.

    python scripts/label_status.py            # markdown table for docs/data.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
from ase.io import read as ase_read

from mlhcalc.reference.storage import scan

SETS = {
    "qm7like": ("data/qm7like/structures.extxyz", "data/qm7like/labels.d"),
    "larger": ("data/larger/structures.extxyz", "data/larger/labels.d"),
    "silicon primitive": ("data/silicon/primitive.extxyz", "data/silicon/primitive_labels.d"),
    "silicon cubic": ("data/silicon/cubic.extxyz", "data/silicon/cubic_labels.d"),
    "silicon 64-atom": ("data/silicon/supercell64.extxyz", "data/silicon/supercell64_labels.d"),
}


def _stage_facts(paths, stage: str) -> tuple[int, float]:
    """How many of the stage files hold a polarizability, and their median wall time (s)."""
    count, wall_times = 0, []
    for path in paths:
        with h5py.File(path, "r") as root:
            (sid,) = root["structures"].keys()
            group = root["structures"][sid][stage]
            count += "polarizability" in group
            wall_times.append(float(group.attrs.get("wall_time", np.nan)))
    return count, float(np.median(wall_times)) if wall_times else float("nan")


def main(root: Path) -> None:
    print("| set | structures | stage | finished | failed | with polarizability | median wall time | size on disk |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (structures, labels) in SETS.items():
        n_structures = len(ase_read(root / structures, index=":"))
        content = scan(root / labels)
        stages = sorted({stage for _, stage in content.done} | {stage for _, stage in content.failed})
        size = sum(p.stat().st_size for p in (root / labels).glob("*")) / 1e6 if (root / labels).is_dir() else 0.0
        if not stages:
            print(f"| {name} | {n_structures} | – | 0 | 0 | 0 | – | 0 MB |")
        for stage in stages:
            done = [path for (sid, s), path in content.done.items() if s == stage]
            failed = sum(1 for (_, s) in content.failed if s == stage)
            with_alpha, wall_time = _stage_facts(done, stage)
            print(
                f"| {name} | {n_structures} | {stage} | {len(done)} | {failed} | {with_alpha} "
                f"| {wall_time:.1f} s | {size:.1f} MB |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
