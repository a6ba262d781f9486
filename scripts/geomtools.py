"""Shared helpers for the structure-set scripts: SMILES -> 3D -> GFN2-xTB minimum.

Owns RDKit embedding (ETKDG with a fixed seed, lowest-MMFF conformer), GFN2-xTB
(tblite) single points, optimisation and finite-difference Hessians, and the bond-graph
check used to reject structures whose connectivity changed. Units are ASE's (eV, Å, amu).
"""

from __future__ import annotations

import os

# One thread per process: the machine has 2 cores shared with other people.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.data import covalent_radii  # noqa: E402
from ase.optimize import BFGS  # noqa: E402
from rdkit import Chem, RDLogger  # noqa: E402
from rdkit.Chem import AllChem, rdMolTransforms  # noqa: E402

RDLogger.DisableLog("rdApp.*")

BOND_SCALE = 1.2  # a pair is bonded if d < 1.2 * (r_cov,i + r_cov,j)


def xtb_calculator():
    """GFN2-xTB from tblite, neutral singlet, silent."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def embed(smiles: str, seed: int, num_confs: int = 8, all_trans_chain: bool = False) -> Chem.Mol:
    """Hydrogen-complete RDKit molecule with one 3D conformer.

    ETKDGv3 with a fixed random seed embeds `num_confs` conformers; each is relaxed with
    MMFF94 (UFF if MMFF has no parameters) and the lowest one is kept (ties: lowest index),
    so the xTB optimisation starts near a low-energy conformer. With `all_trans_chain` the
    heavy-atom chain (SMILES order) is set all-trans before the force-field relaxation.
    """
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=num_confs, params=params))
    if not cids:
        params.useRandomCoords = True
        cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=num_confs, params=params))
    if not cids:
        raise RuntimeError("embedding failed")
    if all_trans_chain:
        heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
        for cid in cids:
            conf = mol.GetConformer(cid)
            for i in range(len(heavy) - 3):
                rdMolTransforms.SetDihedralDeg(conf, *heavy[i : i + 4], 180.0)
    energies = None
    if AllChem.MMFFHasAllMoleculeParams(mol):
        res = AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
        energies = [e for _, e in res]
    elif AllChem.UFFHasAllMoleculeParams(mol):
        res = AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
        energies = [e for _, e in res]
    best = cids[int(np.argmin(energies))] if energies else cids[0]
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    out.AddConformer(Chem.Conformer(mol.GetConformer(best)), assignId=True)
    return out


def mol_to_atoms(mol: Chem.Mol) -> Atoms:
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    return Atoms(symbols, positions=mol.GetConformer().GetPositions())


def topology_bonds(mol: Chem.Mol) -> set[tuple[int, int]]:
    """Bonds of the (hydrogen-complete) molecular graph as sorted index pairs."""
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}


def distance_bonds(atoms: Atoms, scale: float = BOND_SCALE) -> set[tuple[int, int]]:
    """Bonds from interatomic distances with scaled covalent radii."""
    d = atoms.get_all_distances()
    r = covalent_radii[atoms.numbers]
    i, j = np.nonzero(np.triu(d < scale * (r[:, None] + r[None, :]), k=1))
    return set(zip(i.tolist(), j.tolist()))


def optimise(atoms: Atoms, fmax: float = 0.01, steps: int = 300) -> tuple[bool, int]:
    """BFGS on GFN2-xTB in place; returns (converged, number of steps)."""
    atoms.calc = xtb_calculator()
    opt = BFGS(atoms, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return converged, int(opt.nsteps)


def xtb_energy(atoms: Atoms) -> float:
    calc = xtb_calculator()
    probe = atoms.copy()
    probe.calc = calc
    return float(probe.get_potential_energy())


def hessian(atoms: Atoms, delta: float = 0.005) -> np.ndarray:
    """Cartesian GFN2-xTB Hessian (eV/Å², shape 3N×3N) by central differences of forces."""
    probe = atoms.copy()
    probe.calc = xtb_calculator()
    x0 = atoms.positions.copy()
    n = len(atoms)
    h = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        grads = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[k // 3, k % 3] += sign * delta
            probe.positions = x
            grads.append(-probe.get_forces().ravel())
        h[k] = (grads[0] - grads[1]) / (2 * delta)
    return 0.5 * (h + h.T)


def internal_modes(atoms: Atoms, hess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mass-weighted Hessian eigenpairs (eV/Å²/amu; vectors 3N×m, mass-weighted) in the
    complement of rigid translations and rotations (m = 3N-6, or 3N-5 if linear)."""
    masses = atoms.get_masses()
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    hm = hess / np.outer(sqrt_m, sqrt_m)
    r = atoms.positions - atoms.get_center_of_mass()
    rigid = []
    for k in range(3):
        axis = np.zeros(3)
        axis[k] = 1.0
        rigid.append((np.tile(axis, (len(atoms), 1)) * np.sqrt(masses)[:, None]).ravel())
        rigid.append((np.cross(axis, r) * np.sqrt(masses)[:, None]).ravel())
    u, s, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    basis = u[:, int((s > 1e-6 * s[0]).sum()) :]
    eigval, eigvec = np.linalg.eigh(basis.T @ hm @ basis)
    return eigval, basis @ eigvec


def wavenumber_to_eigval(wavenumber: float) -> float:
    """cm⁻¹ -> mass-weighted Hessian eigenvalue in eV/Å²/amu."""
    omega = 2 * np.pi * units._c * 100 * wavenumber  # rad/s
    return omega**2 * 1e-20 * units._amu / units._e


def signed_wavenumber(eigval: float) -> float:
    """Hessian eigenvalue -> wavenumber in cm⁻¹, negative for imaginary modes."""
    return float(np.sign(eigval) * np.sqrt(abs(eigval) / wavenumber_to_eigval(1.0)))


def escape_saddles(
    atoms: Atoms, bonds: set, threshold: float = 50.0, max_rounds: int = 4, step: float = 0.3
) -> tuple[str, int, float]:
    """Push an optimised geometry off saddle points, in place.

    While the lowest internal mode is imaginary beyond `threshold` cm⁻¹, displace along it
    (largest atomic displacement `step` Å, deterministic sign from the eigensolver) and
    re-optimise. Returns (status, rounds used, final lowest wavenumber in cm⁻¹).
    """
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    for rounds in range(max_rounds + 1):
        eigval, modes = internal_modes(atoms, hessian(atoms))
        lowest = signed_wavenumber(eigval[0])
        if lowest > -threshold or rounds == max_rounds:
            return "ok", rounds, lowest
        shift = (inv_sqrt_m * modes[:, 0]).reshape(-1, 3)
        atoms.positions += step * shift / np.linalg.norm(shift, axis=1).max()
        converged, _ = optimise(atoms)
        if not converged:
            return "not_converged_after_saddle_escape", rounds + 1, lowest
        if distance_bonds(atoms) != bonds:
            return "graph_changed_after_saddle_escape", rounds + 1, lowest
    raise AssertionError("unreachable")


def finish_molecule(atoms: Atoms) -> Atoms:
    """Detach the calculator and put the centre of mass at the origin."""
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions)
    out.positions -= out.get_center_of_mass()
    return out


def relax_smiles(smiles: str, seed: int, num_confs: int = 8, all_trans_chain: bool = False) -> dict:
    """Embed + GFN2-xTB optimisation + saddle escape, with bond-graph checks.

    Returns a dict with 'status' ("ok" or the reason for dropping) and, if ok, the relaxed
    Atoms (no calculator), its energy (eV), bonds, lowest wavenumber and a SMILES with
    stereochemistry perceived from the final geometry.
    """
    try:
        mol = embed(smiles, seed, num_confs=num_confs, all_trans_chain=all_trans_chain)
    except Exception as err:  # noqa: BLE001 - any RDKit failure is a dropped molecule
        return {"status": "embed_failed", "detail": str(err)}
    atoms = mol_to_atoms(mol)
    bonds = topology_bonds(mol)
    if distance_bonds(atoms) != bonds:
        return {"status": "embedded_graph_mismatch"}
    try:
        converged, nsteps = optimise(atoms)
        if not converged:
            return {"status": "not_converged", "nsteps": nsteps}
        if distance_bonds(atoms) != bonds:
            return {"status": "graph_changed", "nsteps": nsteps}
        status, saddle_rounds, lowest = escape_saddles(atoms, bonds)
    except Exception as err:  # noqa: BLE001 - tblite SCF failure
        return {"status": "xtb_failed", "detail": str(err)}
    if status != "ok":
        return {"status": status}
    return {
        "status": "ok",
        "nsteps": nsteps,
        "saddle_rounds": saddle_rounds,
        "lowest_wavenumber": lowest,
        "energy": xtb_energy(atoms),
        "atoms": finish_molecule(atoms),
        "bonds": sorted(bonds),
        "smiles_3d": stereo_smiles_from_3d(mol, atoms.positions),
    }


def stereo_smiles_from_3d(mol: Chem.Mol, positions: np.ndarray) -> str:
    """Canonical isomeric SMILES with stereo re-perceived from the given geometry."""
    m = Chem.Mol(mol)
    conf = m.GetConformer()
    for i, p in enumerate(positions):
        conf.SetAtomPosition(i, p.tolist())
    Chem.AssignStereochemistryFrom3D(m)
    return Chem.MolToSmiles(Chem.RemoveHs(m))
