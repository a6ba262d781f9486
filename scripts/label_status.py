"""Print how complete each labelled dataset is: finished and failed structure-stages per set,
the number of structures with a polarizability per stage, and the disk size.

    python scripts/label_status.py            # markdown table for docs/data.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
from ase.io import read as ase_read

from mlhcalc.reference.storage import scan

SETS = {
    "qm7like": ("data/qm7like/structures.extxyz", "data/qm7like/labels.d"),
    "larger": ("data/larger/structures.extxyz", "data/larger/labels.d"),
    "silicon primitive": ("data/silicon/primitive.extxyz", "data/silicon/primitive_labels.d"),
    "silicon cubic": ("data/silicon/cubic.extxyz", "data/silicon/cubic_labels.d"),
    "silicon 64-atom": ("data/silicon/supercell64.extxyz", "data/silicon/supercell64_labels.d"),
}


def _with_polarizability(paths) -> int:
    count = 0
    for path in paths:
        with h5py.File(path, "r") as root:
            (sid,) = root["structures"].keys()
            group = root["structures"][sid]
            count += any("polarizability" in group[key] for key in group if isinstance(group[key], h5py.Group))
    return count


def main(root: Path) -> None:
    print("| set | structures | stage | finished | failed | with polarizability | size on disk |")
    print("|---|---|---|---|---|---|---|")
    for name, (structures, labels) in SETS.items():
        n_structures = len(ase_read(root / structures, index=":"))
        content = scan(root / labels)
        stages = sorted({stage for _, stage in content.done} | {stage for _, stage in content.failed})
        size = sum(p.stat().st_size for p in (root / labels).glob("*")) / 1e6 if (root / labels).is_dir() else 0.0
        if not stages:
            print(f"| {name} | {n_structures} | – | 0 | 0 | 0 | 0 MB |")
        for stage in stages:
            done = [path for (sid, s), path in content.done.items() if s == stage]
            failed = sum(1 for (_, s) in content.failed if s == stage)
            print(
                f"| {name} | {n_structures} | {stage} | {len(done)} | {failed} | {_with_polarizability(done)} "
                f"| {size:.1f} MB |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
