"""Label CPKS polarizabilities for a chosen part of a molecular set, in the set's own results directory.

``mlhcalc label --polarizability-from-info`` asks for α on every molecule flagged
``polarizability=T`` in the input (≥ 300 qm7like molecules and their conformers, ≈ 150 s each with
the def2-TZVP SCF, docs/data.md). A session cannot afford that at once, so this script labels the
flagged molecules of one split first (the held-out test split, so that every α metric has a
reference), optionally only those whose def2-TZVP MO energies are already labelled. It runs the
labeller on the full input with the flag cleared elsewhere, so structure ids, geometry checks and
the recorded input file are those of ``mlhcalc label``; stages ``minimal`` (STO-3G CPKS, recomputed
where α is newly asked for) and ``large_polarizability``. Resumable like the labeller.

    python scripts/label_polarizability.py data/qm7like/structures.extxyz data/qm7like/labels.h5 \
        --split test --only-labelled --workers 2
"""

from __future__ import annotations

import argparse

from ase.io import read as ase_read

from mlhcalc.reference import label
from mlhcalc.reference import read as read_labels
from mlhcalc.reference.runner import info_flag
from mlhcalc.reference.storage import result_paths


def selected(structures: list, labelled: set[str], split: str) -> list[bool]:
    """Per structure: flagged for α in the input, in ``split``, and (if ``labelled`` is not empty) named in it."""
    return [
        info_flag(a.info.get("polarizability", False))
        and a.info.get("split") == split
        and (not labelled or a.info.get("name") in labelled)
        for a in structures
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("structures")
    parser.add_argument("output", help="OUT.h5 of the set (results in OUT.d/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--only-labelled", action="store_true", help="only molecules with def2-TZVP MO energies")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    structures = ase_read(args.structures, ":")
    labelled: set[str] = set()
    if args.only_labelled:
        directory, _ = result_paths(args.output)
        labelled = {str(a.info["name"]) for a in read_labels(directory) if "mo_energy_large" in a.info}
    chosen = selected(structures, labelled, args.split)
    for atoms, flag in zip(structures, chosen):
        atoms.info["polarizability"] = flag
    print(f"{sum(chosen)} of {len(structures)} structures get a polarizability ({args.split} split)")
    try:
        summary = label(
            structures,
            args.output,
            level="molecule",
            stages="minimal,large_polarizability",
            polarizability="info",
            workers=args.workers,
            input_file=args.structures,
        )
    except KeyboardInterrupt:
        raise SystemExit("interrupted: every finished label is kept; rerun the same command to continue") from None
    print(summary)


if __name__ == "__main__":
    main()
