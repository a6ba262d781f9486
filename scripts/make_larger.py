"""Build the larger-molecule transfer set: data/larger/structures.extxyz (geometries only).

Hand-picked real molecules with 7-10 heavy atoms of C, N, O (+H), plus long all-trans
chains (n-alkanes and polyenes with 8, 10, 12 carbons) for size extrapolation of the
polarizability. Same pipeline as the QM7-like set: ETKDG (fixed seed, lowest-MMFF of 8
conformers), GFN2-xTB (tblite) BFGS to fmax 0.01 eV/Å, saddle escape, graph and stereo checks.

Run:  OMP_NUM_THREADS=1 nice -n 10 python scripts/make_larger.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy: one thread per process

import numpy as np  # noqa: E402
from ase.io import write  # noqa: E402
from geomtools import relax_smiles  # noqa: E402
from rdkit import Chem  # noqa: E402

SEED = 20240608

# (common name, category, SMILES, in the polarizability subset)
MOLECULES = [
    ("toluene", "substituted benzene", "Cc1ccccc1", True),
    ("phenol", "substituted benzene", "Oc1ccccc1", True),
    ("aniline", "substituted benzene", "Nc1ccccc1", True),
    ("benzaldehyde", "substituted benzene", "O=Cc1ccccc1", False),
    ("anisole", "substituted benzene", "COc1ccccc1", False),
    ("benzonitrile", "substituted benzene", "N#Cc1ccccc1", True),
    ("styrene", "substituted benzene", "C=Cc1ccccc1", False),
    ("4-aminophenol", "substituted benzene", "Nc1ccc(O)cc1", False),
    ("benzoic acid", "substituted benzene", "O=C(O)c1ccccc1", False),
    ("acetophenone", "substituted benzene", "CC(=O)c1ccccc1", False),
    ("salicylic acid", "substituted benzene", "O=C(O)c1ccccc1O", False),
    ("acetanilide", "substituted benzene", "CC(=O)Nc1ccccc1", False),
    ("methyl benzoate", "ester", "COC(=O)c1ccccc1", False),
    ("indole", "heteroaromatic", "c1ccc2[nH]ccc2c1", False),
    ("benzofuran", "heteroaromatic", "c1ccc2occc2c1", False),
    ("benzimidazole", "heteroaromatic", "c1ccc2[nH]cnc2c1", False),
    ("quinoline", "heteroaromatic", "c1ccc2ncccc2c1", False),
    ("naphthalene", "aromatic", "c1ccc2ccccc2c1", True),
    ("9H-purine", "heteroaromatic", "c1ncc2[nH]cnc2n1", False),
    ("2-aminopyridine", "heteroaromatic", "Nc1ccccn1", True),
    ("nicotinamide", "drug-like fragment", "NC(=O)c1cccnc1", False),
    ("4-dimethylaminopyridine", "heteroaromatic", "CN(C)c1ccncc1", False),
    ("adenine (9H)", "nucleobase", "Nc1ncnc2[nH]cnc12", False),
    ("cytosine (1H, amino-oxo)", "nucleobase", "Nc1cc[nH]c(=O)n1", False),
    ("uracil", "nucleobase", "O=c1cc[nH]c(=O)[nH]1", True),
    ("thymine", "nucleobase", "Cc1c[nH]c(=O)[nH]c1=O", False),
    ("L-serine", "amino acid (neutral)", "N[C@@H](CO)C(=O)O", True),
    ("L-threonine", "amino acid (neutral)", "C[C@@H](O)[C@H](N)C(=O)O", False),
    ("L-valine", "amino acid (neutral)", "CC(C)[C@H](N)C(=O)O", False),
    ("L-proline", "amino acid (neutral)", "OC(=O)[C@@H]1CCCN1", False),
    ("L-leucine", "amino acid (neutral)", "CC(C)C[C@H](N)C(=O)O", False),
    ("L-asparagine", "amino acid (neutral)", "NC(=O)C[C@H](N)C(=O)O", False),
    ("L-glutamic acid", "amino acid (neutral)", "N[C@@H](CCC(=O)O)C(=O)O", False),
    ("n-butyl acetate", "ester", "CCCCOC(C)=O", False),
    ("ethyl acrylate", "ester", "C=CC(=O)OCC", False),
    ("epsilon-caprolactone", "ester (lactone)", "O=C1CCCCCO1", False),
    ("epsilon-caprolactam", "amide (lactam)", "O=C1CCCCCN1", False),
    ("cyclohexanone", "ketone", "O=C1CCCCC1", False),
    ("N-methylpiperidine", "amine", "CN1CCCCC1", False),
    ("barbituric acid", "drug-like fragment", "O=C1CC(=O)NC(=O)N1", False),
    ("histamine", "drug-like fragment", "NCCc1c[nH]cn1", False),
    ("isoniazid", "drug-like fragment", "NNC(=O)c1ccncc1", False),
]

# All-trans chains (backbone dihedrals set to 180° before relaxation).
CHAINS = [
    ("n-octane", "alkane chain", "CCCCCCCC", True),
    ("n-decane", "alkane chain", "CCCCCCCCCC", True),
    ("n-dodecane", "alkane chain", "CCCCCCCCCCCC", True),
    ("all-trans-1,3,5,7-octatetraene", "polyene chain", "C=C/C=C/C=C/C=C", True),
    ("all-trans-1,3,5,7,9-decapentaene", "polyene chain", "C=C/C=C/C=C/C=C/C=C", True),
    ("all-trans-1,3,5,7,9,11-dodecahexaene", "polyene chain", "C=C/C=C/C=C/C=C/C=C/C=C", True),
]


def _relax_task(task: tuple[str, str, int, bool]) -> dict:
    name, smiles, seed, chain = task
    res = relax_smiles(smiles, seed, all_trans_chain=chain)
    res["name"] = name
    return res


def backbone_dihedrals(atoms, n_heavy: int) -> list[float]:
    """Dihedrals (degrees) along the first n_heavy atoms, which RDKit numbers as the chain."""
    return [float(atoms.get_dihedral(i, i + 1, i + 2, i + 3)) for i in range(n_heavy - 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "data" / "larger"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    entries = [(*m, False) for m in MOLECULES] + [(*c, True) for c in CHAINS]
    tasks = []
    for i, (_, _, smiles, _, chain) in enumerate(entries):
        mol = Chem.MolFromSmiles(smiles)
        assert set(a.GetSymbol() for a in mol.GetAtoms()) <= {"C", "N", "O"}, smiles
        assert chain or 7 <= mol.GetNumAtoms() <= 10, smiles
        tasks.append((f"larger-{i:02d}", Chem.MolToSmiles(mol), SEED + i, chain))
    with get_context("fork").Pool(args.workers) as pool:
        results = list(pool.imap(_relax_task, tasks))

    structures, dropped, log_rows = [], [], []
    for (name, smiles, _, chain), res, (label, category, _, polar, _) in zip(tasks, results, entries):
        if res["status"] == "ok" and res["smiles_3d"] != smiles:
            res = {"status": "stereo_changed", "smiles_3d": res["smiles_3d"]}
        if res["status"] != "ok":
            dropped.append({"name": name, "label": label, "smiles": smiles, "status": res["status"]})
            continue
        atoms = res["atoms"]
        n_heavy = Chem.MolFromSmiles(smiles).GetNumAtoms()
        atoms.info = {
            "name": name, "smiles": smiles, "parent": name, "kind": "equilibrium", "split": "larger",
            "polarizability": polar, "xtb_energy_eV": res["energy"], "n_heavy": n_heavy,
            "label": label, "category": category,
        }
        structures.append(atoms)
        row = {"name": name, "label": label, "n_atoms": len(atoms), "n_heavy": n_heavy,
               "lowest_wavenumber": round(res["lowest_wavenumber"], 1), "saddle_rounds": res["saddle_rounds"]}
        if chain:
            dihedrals = np.array(backbone_dihedrals(atoms, n_heavy))
            row["max_backbone_deviation_from_trans_deg"] = round(float(np.max(np.abs(dihedrals - 180.0))), 1)
        log_rows.append(row)

    write(out / "structures.extxyz", structures, format="extxyz")
    log = {
        "seed": SEED,
        "structures": len(structures),
        "polarizability": sum(a.info["polarizability"] for a in structures),
        "per_heavy_atoms": dict(sorted(Counter(a.info["n_heavy"] for a in structures).items())),
        "dropped": dropped,
        "molecules": log_rows,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "build_log.json").write_text(json.dumps(log, indent=1) + "\n")
    for row in log_rows:
        print(row)
    print({k: v for k, v in log.items() if k != "molecules"})


if __name__ == "__main__":
    main()
