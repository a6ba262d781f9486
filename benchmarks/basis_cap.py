"""How much out-of-plane polarizability a model basis can carry at all: plain B3LYPG CPKS α of the
planar qm7like test molecules in candidate model bases, against the def2-TZVP reference.

A trained effective Hamiltonian is not bound to the plain calculation's numbers, but it is bound to
its basis: a sum-over-states α only has the virtual orbitals that basis spans. STO-3G has none
odd under the molecular plane beyond the π* levels, which caps nᵀαn (models/organic/README.md,
'Ablations'); this script measures whether polarisation functions lift that cap, the question
behind the ``model.basis`` experiment (docs/training.md).

    OMP_NUM_THREADS=1 python benchmarks/basis_cap.py --bases sto-3g 6-31g* def2-svp

Prints, per basis, the out-of-plane (nᵀαn) and in-plane α of every planar test molecule with a CPKS
label as a fraction of def2-TZVP, and the median fraction; with ``--non-planar`` also the isotropic
fraction of the other test molecules (4 bases × 15 CPKS runs more).
Same functional and grid as the labels (mlhcalc.reference, no density fitting as for STO-3G).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alpha_gap import plane_components  # noqa: E402
from design_space import labelled  # noqa: E402

from mlhcalc.reference.compute import molecule_minimal  # noqa: E402
from mlhcalc.structure import is_planar  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", nargs="+", default=["sto-3g", "6-31g*", "def2-svp"])
    parser.add_argument("--labels", default=str(REPO / "data" / "qm7like" / "labels.d"))
    parser.add_argument("--non-planar", action="store_true", help="also the isotropic α of the non-planar ones")
    args = parser.parse_args(argv)
    molecules = [a for a in labelled(args.labels, "test") if "polarizability_large" in a.info]
    planar = [a for a in molecules if is_planar(a) and len(a) > 2]
    other = [a for a in molecules if not (is_planar(a) and len(a) > 2)] if args.non_planar else []
    print(f"{len(planar)} planar and {len(other)} non-planar test molecules with a def2-TZVP CPKS α (used)\n")
    header = "| molecule | " + " | ".join(f"{b} nᵀαn / ref | {b} in-plane / ref" for b in args.bases)
    print(header + " | def2-TZVP nᵀαn | def2-TZVP in-plane |")
    print("|---|" + "---|" * (2 * len(args.bases) + 2))
    fractions = {b: {"out": [], "in": [], "iso": [], "seconds": []} for b in args.bases}
    for k, atoms in enumerate(planar + other):
        flat = k < len(planar)
        reference = np.asarray(atoms.info["polarizability_large"])
        cells = []
        for basis in args.bases:
            start = time.perf_counter()
            datasets, _ = molecule_minimal(atoms, int(atoms.info.get("charge", 0)), True, basis=basis)
            fractions[basis]["seconds"].append(time.perf_counter() - start)
            alpha = np.asarray(datasets["polarizability"][0])
            if flat:
                out, inside = plane_components(atoms, alpha)
                out_ref, in_ref = plane_components(atoms, reference)
                fractions[basis]["out"].append(out / out_ref)
                fractions[basis]["in"].append(inside / in_ref)
                cells += [f"{out / out_ref:.2f}", f"{inside / in_ref:.2f}"]
            else:
                fractions[basis]["iso"].append(np.trace(alpha) / np.trace(reference))
        if flat:
            label = atoms.info.get("smiles") or atoms.info.get("name")
            out_ref, in_ref = plane_components(atoms, reference)
            print(f"| {label} | " + " | ".join(cells) + f" | {out_ref:.1f} | {in_ref:.1f} |")
    print("\n| basis | median nᵀαn / ref (planar) | median in-plane / ref (planar) "
          "| median iso α / ref (non-planar) | median s per molecule (SCF + CPKS) |")
    print("|---|---|---|---|---|")
    for basis, f in fractions.items():
        iso = f"{np.median(f['iso']):.2f}" if f["iso"] else "–"
        print(f"| {basis} | {np.median(f['out']):.2f} | {np.median(f['in']):.2f} | {iso} "
              f"| {np.median(f['seconds']):.1f} |")


if __name__ == "__main__":
    main()
