"""Build the QM7-like structure set: data/qm7like/structures.extxyz (geometries only).

1. Enumerate neutral closed-shell C/N/O(+H) molecules with 1-6 heavy atoms by growing
   RDKit graphs (add atom, close ring, raise bond order), with GDB-style filters.
2. Pick a diverse subset: forced classic molecules, then farthest-point sampling on
   count-Morgan + composition Tanimoto distance with per-size quotas.
3. ETKDG embed, GFN2-xTB (tblite) optimisation; drop failures and graph changes.
4. Two 500 K normal-mode-sampled conformers for a seeded subset of parents.
5. Splits by parent, polarizability subset, seeded shuffle, extxyz + splits.json + log.

Run:  OMP_NUM_THREADS=1 nice -n 10 python scripts/make_qm7like.py
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
from ase import Atoms, units  # noqa: E402
from ase.io import write  # noqa: E402
from geomtools import (  # noqa: E402
    distance_bonds,
    hessian,
    internal_modes,
    relax_smiles,
    signed_wavenumber,
    wavenumber_to_eigval,
    xtb_energy,
)
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdFingerprintGenerator  # noqa: E402

SEED = 20240607
MAX_HEAVY = 6
VALENCE = {"C": 4, "N": 3, "O": 2}
BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
BOND_TYPE = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
HETERO = {"N", "O"}

# Selected first, before farthest-point sampling (all must be in the enumerated pool).
CLASSICS = [
    "O", "N", "C", "O=C=O", "C#N", "C=O", "N#N", "NN", "NO", "N=C=O",
    "CC", "C=C", "C#C", "CO", "CN", "CC#N", "CC=O", "O=CO", "NC=O", "C=C=O",
    "CCC", "CC(C)=O", "CC(=O)O", "CCO", "COC", "CC(N)=O", "NC(N)=O", "COC=O", "C1CC1", "C1CO1",
    "C=CC=C", "C#CC", "C=C=C", "C=CC=O", "C=CC#N", "NCC(=O)O", "O=CC=O", "CCCC", "CC(C)C", "C1CCC1",
    "c1ccoc1", "c1cc[nH]c1", "c1c[nH]cn1", "c1cocn1", "C1CCOC1", "C1CCCC1", "C1=CCC=C1",
    "c1ccccc1", "c1ccncc1", "c1cnccn1", "c1cncnc1", "c1ccnnc1", "c1ncncn1", "C1CCCCC1", "C1=CCCCC1",
    "C1COCCO1", "C1CCNCC1", "C1COCCN1", "CC(N)C(=O)O", "O=C(O)C(=O)O", "CCCCCC", "CC(=O)OC",
]


# --------------------------------------------------------------------------- enumeration
def _kekule(smiles: str) -> Chem.RWMol:
    mol = Chem.MolFromSmiles(smiles)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    for atom in mol.GetAtoms():  # let sanitisation recompute hydrogens after edits
        atom.SetNumExplicitHs(0)
        atom.SetNoImplicit(False)
    return mol


def _free_valence(mol: Chem.Mol) -> list[int]:
    free = [VALENCE[a.GetSymbol()] for a in mol.GetAtoms()]
    for bond in mol.GetBonds():
        order = BOND_ORDER[bond.GetBondType()]
        free[bond.GetBeginAtomIdx()] -= order
        free[bond.GetEndAtomIdx()] -= order
    return free


def _canonical(rw: Chem.RWMol) -> str | None:
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - invalid valence etc.: not a molecule
        return None
    return Chem.MolToSmiles(mol)


def _same_size_children(smiles: str) -> set[str]:
    """Close a ring with a single bond, or raise the order of an existing bond by one."""
    mol = _kekule(smiles)
    free = _free_valence(mol)
    out = set()
    n = mol.GetNumAtoms()
    for i in range(n):
        for j in range(i + 1, n):
            if free[i] < 1 or free[j] < 1:
                continue
            rw = Chem.RWMol(mol)
            bond = rw.GetBondBetweenAtoms(i, j)
            if bond is None:
                rw.AddBond(i, j, Chem.BondType.SINGLE)
            elif BOND_ORDER[bond.GetBondType()] < 3:
                bond.SetBondType(BOND_TYPE[BOND_ORDER[bond.GetBondType()] + 1])
            else:
                continue
            smi = _canonical(rw)
            if smi:
                out.add(smi)
    return out


def _grown_children(smiles: str) -> set[str]:
    """Attach one new C, N or O by a single bond to any atom with free valence."""
    mol = _kekule(smiles)
    free = _free_valence(mol)
    out = set()
    for i in range(mol.GetNumAtoms()):
        if free[i] < 1:
            continue
        for element in "CNO":
            rw = Chem.RWMol(mol)
            k = rw.AddAtom(Chem.Atom(element))
            rw.AddBond(i, k, Chem.BondType.SINGLE)
            smi = _canonical(rw)
            if smi:
                out.add(smi)
    return out


def strain_flags(smiles: str) -> set[str]:
    """Structural features excluded in the spirit of GDB. Monotone: adding bonds or raising
    bond orders never removes a flag, so they may prune the enumeration early."""
    mol = _kekule(smiles)
    Chem.SanitizeMol(mol, Chem.SanitizeFlags.SANITIZE_ALL ^ Chem.SanitizeFlags.SANITIZE_SETAROMATICITY)
    ring = mol.GetRingInfo()
    flags = set()
    if ring.NumRings() > 2:
        flags.add("more_than_2_rings")
    for bond in mol.GetBonds():
        order = BOND_ORDER[bond.GetBondType()]
        a, b = bond.GetBeginAtom(), bond.GetEndAtom()
        if order == 3 and bond.IsInRing():
            flags.add("triple_bond_in_ring")  # all rings here have < 8 members
        if order == 2 and bond.IsInRingSize(3):
            flags.add("double_bond_in_3_ring")
        if order > 1 and max(ring.NumAtomRings(a.GetIdx()), ring.NumAtomRings(b.GetIdx())) > 1:
            flags.add("multiple_bond_at_ring_fusion")  # anti-Bredt for bicyclics this small
        if a.GetSymbol() == "O" and b.GetSymbol() == "O":
            flags.add("O-O_bond")  # peroxides, and O=O (triplet ground state)
    for atom in mol.GetAtoms():
        doubles = sum(1 for b in atom.GetBonds() if b.GetBondType() == Chem.BondType.DOUBLE)
        if doubles >= 2 and atom.IsInRing():
            flags.add("cumulene_in_ring")
    for bond_ring in ring.BondRings():
        if len(bond_ring) == 4:
            doubles = sum(mol.GetBondWithIdx(i).GetBondType() == Chem.BondType.DOUBLE for i in bond_ring)
            if doubles >= 2:
                flags.add("antiaromatic_4_ring")
    return flags


def _real_aromatic_ring_bond(mol: Chem.Mol, bond: Chem.Bond) -> bool:
    """Bond of a 5/6-membered ring that is aromatic with a Kekulé structure having 2 (5-ring)
    or 3 (6-ring) ring double bonds and at least one ring carbon: pyrazole, isoxazole,
    triazoles, tetrazole, pyridazine, tetrazines. Excludes pentazole, hexazine and RDKit's
    "aromatic" saturated rings of NH/O atoms such as c1n[nH][nH][nH]o1."""
    if not bond.GetIsAromatic():
        return False
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule)
    for ring in mol.GetRingInfo().BondRings():
        if bond.GetIdx() not in ring or len(ring) not in (5, 6):
            continue
        atoms = {mol.GetBondWithIdx(i).GetBeginAtomIdx() for i in ring}
        doubles = sum(kekule.GetBondWithIdx(i).GetBondType() == Chem.BondType.DOUBLE for i in ring)
        has_carbon = any(mol.GetAtomWithIdx(i).GetSymbol() == "C" for i in atoms)
        if all(mol.GetBondWithIdx(i).GetIsAromatic() for i in ring) and doubles == len(ring) // 2 and has_carbon:
            return True
    return False


def post_filter_ok(smiles: str) -> bool:
    """Rules applied after enumeration (not monotone under bond addition).

    Heteroatom-heteroatom: at most one N-N/N-O single bond outside real aromatic rings, and
    no heteroatom bonded to two heteroatoms (X-X-X chains: triazanes, N-O-N, O-N-O, ...)
    outside real aromatic rings. Cumulenes: no two adjacent atoms that each carry two
    double bonds (butatrienes, C=C=C=N, ...); allenes, ketenes, CO2, isocyanates stay.
    """
    mol = Chem.MolFromSmiles(smiles)
    singles = 0
    for bond in mol.GetBonds():
        pair = {bond.GetBeginAtom().GetSymbol(), bond.GetEndAtom().GetSymbol()}
        if pair <= HETERO and not _real_aromatic_ring_bond(mol, bond):
            if bond.GetBondType() in (Chem.BondType.SINGLE, Chem.BondType.AROMATIC):
                singles += 1
    if singles > 1:
        return False
    for atom in mol.GetAtoms():
        if atom.GetSymbol() in HETERO:
            het_bonds = [b for b in atom.GetBonds() if b.GetOtherAtom(atom).GetSymbol() in HETERO]
            if len(het_bonds) >= 2 and not all(_real_aromatic_ring_bond(mol, b) for b in het_bonds):
                return False

    def cumulated(atom: Chem.Atom) -> bool:
        return sum(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds()) >= 2

    for bond in mol.GetBonds():
        if cumulated(bond.GetBeginAtom()) and cumulated(bond.GetEndAtom()):
            return False
    return True


def enumerate_molecules(max_heavy: int, max_seconds: float) -> tuple[dict[int, list[str]], dict]:
    """All filtered canonical SMILES by heavy-atom count, and counts for the log."""
    t0 = time.time()

    def closure(level: set[str]) -> set[str]:
        todo = list(level)
        while todo:
            new = []
            for smi in todo:
                for child in _same_size_children(smi):
                    if child not in level and not strain_flags(child):
                        level.add(child)
                        new.append(child)
            todo = new
            if time.time() - t0 > max_seconds:
                raise RuntimeError("enumeration exceeded its time cap; lower MAX_HEAVY")
        return level

    levels = {1: closure({"C", "N", "O"})}
    for n in range(2, max_heavy + 1):
        grown = set()
        for smi in levels[n - 1]:
            grown.update(c for c in _grown_children(smi) if not strain_flags(c))
        levels[n] = closure(grown)
    pool = {n: sorted(s for s in levels[n] if post_filter_ok(s)) for n in levels}
    stats = {
        "after_strain_filters": {n: len(levels[n]) for n in levels},
        "after_post_filters": {n: len(pool[n]) for n in pool},
        "seconds": round(time.time() - t0, 1),
    }
    return pool, stats


# --------------------------------------------------------------------------- selection
def fingerprints(smiles: list[str]) -> np.ndarray:
    """Count Morgan (radius 2, 2048) + element/H/ring counts, as a dense count matrix."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    rows = []
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        counts = gen.GetCountFingerprintAsNumPy(mol).astype(np.int16)
        symbols = Counter(a.GetSymbol() for a in mol.GetAtoms())
        hydrogens = sum(a.GetTotalNumHs() for a in mol.GetAtoms())
        extra = [symbols["C"], symbols["N"], symbols["O"], hydrogens, mol.GetRingInfo().NumRings()]
        rows.append(np.concatenate([counts, np.array(extra, dtype=np.int16)]))
    return np.stack(rows)


def tanimoto_distance(matrix: np.ndarray, row: np.ndarray) -> np.ndarray:
    inter = np.minimum(matrix, row).sum(axis=1, dtype=np.int64)
    union = np.maximum(matrix, row).sum(axis=1, dtype=np.int64)
    return 1.0 - inter / np.maximum(union, 1)


def farthest_point_selection(
    smiles: list[str], sizes: np.ndarray, forced: list[str], quotas: dict[int, int], seed: int
) -> list[str]:
    """Forced molecules first, then repeatedly the pool member farthest (count Tanimoto) from
    everything selected, among sizes whose quota is not yet full. The pool is permuted with
    `seed` so that ties break reproducibly but not alphabetically."""
    order = np.random.default_rng(seed).permutation(len(smiles))
    smiles = [smiles[i] for i in order]
    sizes = sizes[order]
    fps = fingerprints(smiles)
    index = {s: i for i, s in enumerate(smiles)}
    missing = [s for s in forced if s not in index]
    if missing:
        raise ValueError(f"forced molecules not in the pool: {missing}")
    picked = [index[s] for s in forced]
    taken = Counter(sizes[picked].tolist())
    min_dist = np.full(len(smiles), np.inf)
    for i in picked:
        min_dist = np.minimum(min_dist, tanimoto_distance(fps, fps[i]))
    total = sum(quotas.values())
    while len(picked) < total:
        open_sizes = [n for n, q in quotas.items() if taken[n] < q]
        candidate = np.where(np.isin(sizes, open_sizes), min_dist, -1.0)
        candidate[picked] = -1.0
        i = int(np.argmax(candidate))
        if candidate[i] < 0:
            raise RuntimeError("pool exhausted before quotas were met")
        picked.append(i)
        taken[int(sizes[i])] += 1
        min_dist = np.minimum(min_dist, tanimoto_distance(fps, fps[i]))
    return [smiles[i] for i in picked]


# --------------------------------------------------------------------------- conformers
def normal_mode_conformers(task: dict) -> dict:
    """Classical harmonic Boltzmann sampling at T: each normal coordinate Q_i ~ N(0, kT/λ_i),
    λ_i floored at (100 cm⁻¹)² so soft torsions and imaginary modes do not blow up.
    A sample is rejected if the distance graph changes or any bond stretches/shrinks > 25 %."""
    atoms = Atoms(task["symbols"], positions=np.array(task["positions"]))
    bonds = {tuple(b) for b in task["bonds"]}
    rng = np.random.default_rng(task["seed"])
    eigval, modes = internal_modes(atoms, hessian(atoms))
    floor = wavenumber_to_eigval(task["min_wavenumber"])
    kt = units.kB * task["temperature"]
    sigma = np.sqrt(kt / np.maximum(eigval, floor))
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    i_idx, j_idx = np.array(sorted(bonds)).T
    d0 = atoms.get_all_distances()[i_idx, j_idx]
    accepted, attempts = [], 0
    while len(accepted) < task["n_conformers"] and attempts < task["max_attempts"]:
        attempts += 1
        q = rng.normal(size=len(sigma)) * sigma
        trial = atoms.copy()
        trial.positions = atoms.positions + (inv_sqrt_m * (modes @ q)).reshape(-1, 3)
        d = trial.get_all_distances()[i_idx, j_idx]
        if np.max(np.abs(d / d0 - 1.0)) > 0.25 or distance_bonds(trial) != bonds:
            continue
        accepted.append({"positions": trial.positions.tolist(), "energy": xtb_energy(trial)})
    return {
        "name": task["name"],
        "accepted": accepted,
        "attempts": attempts,
        "n_imaginary": int((eigval < -wavenumber_to_eigval(20.0)).sum()),
        "lowest_wavenumber": signed_wavenumber(eigval[0]),
    }


# --------------------------------------------------------------------------- driver
def _relax_task(task: tuple[str, str, int]) -> dict:
    name, smiles, seed = task
    res = relax_smiles(smiles, seed)
    res["name"] = name
    res["smiles"] = smiles
    return res


def stratified_splits(parents: list[dict], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Split by parent, stratified by heavy-atom count (rounded per size)."""
    rng = np.random.default_rng(seed)
    split = {}
    for n in sorted({p["n_heavy"] for p in parents}):
        names = sorted(p["name"] for p in parents if p["n_heavy"] == n)
        names = [names[i] for i in rng.permutation(len(names))]
        n_val = int(round(fractions["val"] * len(names)))
        n_test = int(round(fractions["test"] * len(names)))
        for k, name in enumerate(names):
            split[name] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "data" / "qm7like"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-conformer-parents", type=int, default=160)
    parser.add_argument("--n-polarizability-parents", type=int, default=320)
    parser.add_argument("--max-enum-seconds", type=float, default=600.0)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    log: dict = {"seed": SEED}

    pool, log["enumeration"] = enumerate_molecules(MAX_HEAVY, args.max_enum_seconds)
    print("pool per heavy-atom count:", log["enumeration"], flush=True)

    # Quotas: every molecule with 1-3 heavy atoms, then growing numbers for 4, 5, 6.
    quotas = {1: len(pool[1]), 2: len(pool[2]), 3: len(pool[3]), 4: 130, 5: 230}
    quotas[6] = 720 - sum(quotas.values())
    all_smiles = [s for n in sorted(pool) for s in pool[n]]
    sizes = np.array([n for n in sorted(pool) for _ in pool[n]])
    forced = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in CLASSICS]
    t0 = time.time()
    selected = farthest_point_selection(all_smiles, sizes, forced, quotas, SEED)
    log["selection"] = {"quotas": quotas, "forced": forced, "seconds": round(time.time() - t0, 1)}
    print(f"selected {len(selected)} (quotas {quotas}) in {time.time() - t0:.0f} s", flush=True)

    # Relax all selected molecules (ids follow the selection order; dropped ids leave gaps).
    tasks = [(f"qm7like-{i:04d}", smi, SEED + i) for i, smi in enumerate(selected)]
    t0 = time.time()
    ctx = get_context("fork")
    with ctx.Pool(args.workers) as pool_:
        results = list(pool_.imap(_relax_task, tasks, chunksize=4))
    log["relax_seconds"] = round(time.time() - t0, 1)
    parents = []
    dropped = []
    for res in results:
        if res["status"] != "ok":
            dropped.append({k: res[k] for k in ("name", "smiles", "status") if k in res})
            continue
        res["n_heavy"] = Chem.MolFromSmiles(res["smiles"]).GetNumAtoms()
        parents.append(res)
    log["saddle_escape"] = {
        "rule": "lowest internal mode below -50 cm^-1: displace 0.3 A along it and re-optimise (<= 4 rounds)",
        "parents_escaped": sum(p["saddle_rounds"] > 0 for p in parents),
        "parents_still_imaginary": {
            p["name"]: round(p["lowest_wavenumber"]) for p in parents if p["lowest_wavenumber"] <= -50.0
        },
        "lowest_wavenumber_min": round(min(p["lowest_wavenumber"] for p in parents), 1),
    }
    log["dropped"] = dropped
    log["dropped_by_reason"] = dict(Counter(d["status"] for d in dropped))
    print(f"relaxed in {log['relax_seconds']} s; kept {len(parents)}, dropped {log['dropped_by_reason']}", flush=True)
    print("saddle escape:", log["saddle_escape"], flush=True)

    # Conformers: a seeded order of parents with >= 3 atoms; the first n that succeed.
    rng = np.random.default_rng(SEED + 1)
    eligible = [p for p in parents if len(p["atoms"]) >= 3]
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    candidates = order[: int(args.n_conformer_parents * 1.15) + 5]
    conf_tasks = [
        {
            "name": p["name"],
            "symbols": p["atoms"].get_chemical_symbols(),
            "positions": p["atoms"].positions.tolist(),
            "bonds": p["bonds"],
            "seed": SEED + 100000 + int(p["name"].split("-")[1]),
            "temperature": 500.0,
            "min_wavenumber": 100.0,
            "n_conformers": 2,
            "max_attempts": 200,
        }
        for p in candidates
    ]
    t0 = time.time()
    with ctx.Pool(args.workers) as pool_:
        conf_results = list(pool_.imap(normal_mode_conformers, conf_tasks, chunksize=2))
    log["conformer_seconds"] = round(time.time() - t0, 1)
    conformers = {}
    for res in conf_results:
        if len(res["accepted"]) == 2 and len(conformers) < args.n_conformer_parents:
            conformers[res["name"]] = res
    log["conformers"] = {
        "method": "normal-mode sampling, classical harmonic Boltzmann at 500 K, modes floored at 100 cm^-1",
        "candidates_tried": len(conf_results),
        "candidates_failed": [r["name"] for r in conf_results if len(r["accepted"]) < 2],
        "parents": len(conformers),
        "attempts_per_parent_mean": float(np.mean([r["attempts"] for r in conformers.values()])),
        "parents_with_imaginary_modes": [r["name"] for r in conformers.values() if r["n_imaginary"]],
    }
    print(f"conformers for {len(conformers)} parents in {log['conformer_seconds']} s", flush=True)

    # Splits by parent, polarizability subset (all conformer parents + seeded others).
    split = stratified_splits(parents, {"train": 0.75, "val": 0.10, "test": 0.15}, SEED + 2)
    others = sorted(p["name"] for p in parents if p["name"] not in conformers)
    rng = np.random.default_rng(SEED + 3)
    n_extra = args.n_polarizability_parents - len(conformers)
    polar = set(conformers) | {others[i] for i in rng.permutation(len(others))[:n_extra]}

    structures = []
    for p in parents:
        atoms = p["atoms"]
        atoms.info = {
            "name": p["name"], "smiles": p["smiles"], "parent": p["name"], "kind": "equilibrium",
            "split": split[p["name"]], "polarizability": p["name"] in polar,
            "xtb_energy_eV": p["energy"], "n_heavy": p["n_heavy"],
        }
        structures.append(atoms)
        for k, conf in enumerate(conformers.get(p["name"], {"accepted": []})["accepted"], start=1):
            c = Atoms(atoms.get_chemical_symbols(), positions=np.array(conf["positions"]))
            c.info = dict(atoms.info, name=f"{p['name']}-c{k}", kind="conformer", xtb_energy_eV=conf["energy"])
            structures.append(c)
    order = np.random.default_rng(SEED + 4).permutation(len(structures))
    structures = [structures[i] for i in order]
    write(out / "structures.extxyz", structures, format="extxyz")
    splits = {s: [a.info["name"] for a in structures if a.info["split"] == s] for s in ("train", "val", "test")}
    (out / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")

    counts = {
        "parents": len(parents),
        "conformers": sum(a.info["kind"] == "conformer" for a in structures),
        "structures": len(structures),
        "parents_per_heavy_atoms": dict(sorted(Counter(p["n_heavy"] for p in parents).items())),
        "parents_per_split": dict(Counter(split.values())),
        "structures_per_split": {s: len(v) for s, v in splits.items()},
        "parents_per_split_and_heavy_atoms": {
            s: dict(sorted(Counter(p["n_heavy"] for p in parents if split[p["name"]] == s).items()))
            for s in ("train", "val", "test")
        },
        "polarizability_parents": len(polar),
        "polarizability_structures": sum(bool(a.info["polarizability"]) for a in structures),
        "atoms_per_structure_max": max(len(a) for a in structures),
    }
    log["counts"] = counts
    log["total_seconds"] = round(time.time() - t_start, 1)
    (out / "build_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps(counts, indent=1))
    print(f"total {log['total_seconds']} s")


if __name__ == "__main__":
    main()
