"""Recompute committed molecular labels with plain PySCF (no mlhcalc code) and print how far they are
from the labels: the check of issue 3 for molecules, on structures drawn at random.

The molecule is the label's stored geometry (bohr, the positions the labeller computed with; the set's
extxyz must agree with it to 1e-8 bohr), with the label's charge, singlet. The SCFs are
the levels of docs/data.md, written out here rather than imported: ``large`` is RKS/B3LYPG, def2-TZVP,
density fitting with def2-universal-jkfit, default grid, ``conv_tol`` 1e-10; ``minimal`` is RKS/B3LYPG,
STO-3G, no density fitting, ``conv_tol`` 1e-12, ``conv_tol_grad`` 1e-8. The polarizability, where the
structure has one, is pyscf-properties' ``Polarizability(mf).polarizability()`` (PySCF's own CPKS
evaluation), symmetrised as stored. Tolerances of issue 3: MO energies 1e-6 Ha, dipole 1e-5 a.u.,
polarizability 1e-3 a.u.; the exit status is 1 if any is exceeded. One qm7like molecule takes about
1 minute (def2-TZVP) plus 1–3 minutes for its polarizability on one core.

    OMP_NUM_THREADS=1 python scripts/check_molecule_label.py qm7like --random 3 --seed 20261124
    OMP_NUM_THREADS=1 python scripts/check_molecule_label.py larger 5 --stage minimal
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
from ase.io import read

REPO = Path(__file__).resolve().parent.parent
SETS = {"qm7like": "data/qm7like", "larger": "data/larger"}
TOLERANCE = {"mo_energy": 1e-6, "dipole": 1e-5, "polarizability": 1e-3}  # hartree, e·bohr, bohr³


def _labels(directory: Path, sid: str, stage: str) -> dict | None:
    """The datasets of one stored stage (atomic units), with the structure's charge; None if absent."""
    path = directory / f"{sid}.{stage}.h5"
    if not path.is_file():
        return None
    with h5py.File(path, "r") as root:
        group = root[f"structures/{sid}"]
        out = {name: np.asarray(data[()]) for name, data in group[stage].items()}
        out["charge"] = int(group.attrs["charge"])
        out["positions_bohr"] = np.asarray(group["positions"][()])
    return out


def check(set_name: str, index: int, stage: str, polarizability: bool) -> list[tuple[str, float, float | None]]:
    """Rows (quantity, max |recomputed − label|, tolerance; None: reported only) of one structure-stage."""
    from ase.units import Bohr
    from pyscf import dft, gto

    directory = REPO / SETS[set_name] / "labels.d"
    sid = f"{index:06d}"
    label = _labels(directory, sid, stage)
    if label is None:
        missing = directory / f"{sid}.{stage}.h5"
        raise SystemExit(f"no {stage} label for {set_name} structure {index} ({missing} is missing): "
                         "pick a labelled one (python scripts/label_status.py) or use --random")  # fmt: skip
    alpha = _labels(directory, sid, "large_polarizability") if stage == "large" else label
    atoms = read(REPO / SETS[set_name] / "structures.extxyz", index=index)
    shift = np.abs(atoms.positions / Bohr - label["positions_bohr"]).max()
    if shift > 1e-8:
        raise SystemExit(f"{set_name} {sid}: the extxyz geometry differs from the label's by {shift:.1e} bohr")

    mol = gto.M(
        atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), label["positions_bohr"])], unit="bohr",
        basis="def2-tzvp" if stage == "large" else "sto-3g", charge=label["charge"], spin=0, verbose=0,
    )  # fmt: skip
    mf = dft.RKS(mol, xc="b3lypg")
    if stage == "large":
        mf = mf.density_fit(auxbasis="def2-universal-jkfit")
        mf.conv_tol = 1e-10
    else:
        mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    if not mf.converged:
        raise SystemExit(f"{set_name} {sid} {stage}: plain PySCF did not converge")
    if stage == "minimal":  # the label's levels are eigenvalues of (F, S) with F from the final density
        import scipy.linalg

        fock, overlap = mf.get_fock(dm=mf.make_rdm1()), mf.get_ovlp()
        mo_energy = scipy.linalg.eigh(fock, overlap, eigvals_only=True)
    else:
        mo_energy = mf.mo_energy
    dipole = mf.dip_moment(unit="AU", origin=label["dipole_origin"], verbose=0)
    rows = [
        ("mo_energy", float(np.abs(mo_energy - label["mo_energy"]).max()), TOLERANCE["mo_energy"]),
        ("dipole", float(np.abs(dipole - label["dipole"]).max()), TOLERANCE["dipole"]),
        ("energy", abs(float(mf.e_tot) - float(label["energy"])), None),
    ]
    if stage == "minimal":
        rows += [
            ("overlap", float(np.abs(overlap - label["overlap"]).max()), 1e-10),
            ("fock", float(np.abs(fock - label["fock"]).max()), TOLERANCE["mo_energy"]),
        ]
    if polarizability and alpha is not None and "polarizability" in alpha:
        warnings.filterwarnings("ignore", message="Module .* is under testing")  # pyscf-properties on import
        from pyscf.prop.polarizability.rks import Polarizability

        tensor = np.asarray(Polarizability(mf).polarizability())
        tensor = (tensor + tensor.T) / 2
        rows.append(("polarizability", float(np.abs(tensor - alpha["polarizability"]).max()),
                     TOLERANCE["polarizability"]))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("index", type=int, nargs="*", help="0-based positions in the set's extxyz")
    parser.add_argument("--random", type=int, default=0, metavar="N", help="also N structures drawn at random "
                        "among those with the stage's label")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of --random")
    parser.add_argument("--stage", choices=("large", "minimal"), default="large")
    parser.add_argument("--no-polarizability", action="store_true", help="skip the CPKS even where labelled")
    args = parser.parse_args()

    indices = list(args.index)
    if args.random:
        directory = REPO / SETS[args.set] / "labels.d"
        labelled = sorted(int(p.name.split(".")[0]) for p in directory.glob(f"*.{args.stage}.h5"))
        if args.random > len(labelled):
            parser.error(
                f"--random {args.random}: only {len(labelled)} {args.set} structures have a {args.stage} label"
            )
        indices += random.Random(args.seed).sample(labelled, args.random)
    if not indices:
        parser.error("give structure indices or --random N")
    failed = False
    print("| structure | stage | quantity | max abs difference (a.u.) | tolerance | |")
    print("|---|---|---|---|---|---|")
    for index in indices:
        started = time.perf_counter()
        for name, difference, tolerance in check(args.set, index, args.stage, not args.no_polarizability):
            bad = tolerance is not None and difference > tolerance
            failed |= bad
            verdict = "" if tolerance is None else ("FAIL" if bad else "ok")
            limit = "" if tolerance is None else f"{tolerance:g}"
            print(f"| {args.set} {index} | {args.stage} | {name} | {difference:.1e} | {limit} | {verdict} |")
        print(
            f"| {args.set} {index} | {args.stage} | wall time | {time.perf_counter() - started:.0f} s | | |", flush=True
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
