"""The PySCF calculations behind each stage: pure functions of one structure.

Each ``*_stage`` function takes an ``ase.Atoms`` and returns ``(datasets, attrs)``: ``datasets`` maps a
label name to ``(array, unit)`` (atomic units, PySCF AO order, float64/complex128), ``attrs`` is the
level of theory and convergence information stored with the stage. Nothing here touches label files,
processes or threads; :mod:`mlhcalc.reference.worker` calls these. The one exception is the
restart scratch of periodic stages (:func:`scf_scratch`): the density-fitting integrals and the SCF
checkpoint of a cell, kept outside the results so that an interrupted calculation (a large supercell)
resumes from its last SCF cycle instead of starting again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
from ase import Atoms

from mlhcalc.reference import cpks
from mlhcalc.reference.levels import XC_GRIDS, MoleculeLevel, SiliconLevel
from mlhcalc.structure import dipole_origin, to_cell, to_mole

__all__ = [
    "HARTREE",
    "BOHR",
    "DIPOLE",
    "POLARIZABILITY",
    "INVERSE_BOHR",
    "DIMENSIONLESS",
    "molecule_minimal",
    "molecule_large",
    "molecule_large_polarizability",
    "molecule_large_with_polarizability",
    "silicon_stage",
    "scf_scratch",
    "parse_kmesh",
    "compute_stage",
]

HARTREE = "hartree"
BOHR = "bohr"
DIPOLE = "e*bohr"
POLARIZABILITY = "e^2*bohr^2/hartree (a.u., bohr^3)"
INVERSE_BOHR = "1/bohr"
DIMENSIONLESS = "1"

Datasets = dict[str, tuple[np.ndarray, str]]
MOLECULE = MoleculeLevel()
SILICON = SiliconLevel()


class SCFNotConverged(RuntimeError):
    """The SCF of a stage did not reach its convergence threshold (nothing is stored)."""


def _polarizability_class():
    with warnings.catch_warnings():  # pyscf.prop warns "under testing" for every module it imports
        warnings.simplefilter("ignore")
        from pyscf.prop.polarizability.rks import Polarizability
    return Polarizability


def _check_converged(mf, what: str) -> None:
    if not mf.converged:
        raise SCFNotConverged(
            f"{what}: SCF did not converge to conv_tol={mf.conv_tol:g} in {mf.max_cycle} cycles "
            f"(last energy {float(mf.e_tot):.10f} Ha)"
        )


def _grid_attrs(mf) -> dict:
    grids = mf.grids
    prune = getattr(grids, "prune", None)
    return {
        "grid": type(grids).__name__,
        "grid_level": int(getattr(grids, "level", -1)),
        "grid_prune": getattr(prune, "__name__", str(prune)),
        "grid_points": int(grids.weights.size) if getattr(grids, "weights", None) is not None else -1,
    }


def _cpks(mf, level: MoleculeLevel) -> tuple[np.ndarray, dict]:
    """``Polarizability(mf).polarizability()`` (symmetrised) and the attributes stored with it; evaluated
    by :mod:`mlhcalc.reference.cpks` where that applies, by pyscf-properties elsewhere."""
    start = time.perf_counter()
    if cpks.supported(mf):
        alpha = cpks.polarizability(mf, conv_tol=level.cphf_conv_tol, max_cycle=level.cphf_max_cycle)
        implementation = "mlhcalc.reference.cpks (occupied-virtual factorised evaluation, same solver and definition)"
    else:
        polobj = _polarizability_class()(mf)
        polobj.conv_tol = level.cphf_conv_tol
        polobj.max_cycle_cphf = level.cphf_max_cycle
        alpha = polobj.polarizability()
        implementation = "pyscf.prop.polarizability.rks.Polarizability"
    alpha = np.asarray(alpha, dtype=np.float64)
    attrs = {
        "polarizability_method": "CPKS, pyscf.prop.polarizability.rks.Polarizability(mf).polarizability()",
        "polarizability_implementation": implementation,
        "cphf_conv_tol": level.cphf_conv_tol,
        "cphf_max_cycle": level.cphf_max_cycle,
        "polarizability_wall_time": time.perf_counter() - start,
    }
    return 0.5 * (alpha + alpha.T), attrs  # symmetric up to the CPKS tolerance; store the symmetric part


def _dipole(mf, atoms: Atoms, charge: int) -> tuple[np.ndarray, np.ndarray]:
    origin = dipole_origin(atoms, charge)
    if np.any(origin):
        dip = mf.dip_moment(unit="AU", origin=origin, verbose=0)
    else:  # neutral: PySCF's default origin (0, 0, 0)
        dip = mf.dip_moment(unit="AU", verbose=0)
    return np.asarray(dip, dtype=np.float64), origin


def molecule_minimal(
    atoms: Atoms, charge: int, polarizability: bool, level: MoleculeLevel = MOLECULE, basis: str | None = None
) -> tuple[Datasets, dict]:
    """STO-3G B3LYPG: S, the Fock matrix of the final density, its MO energies, nocc, dipole, energy (+ α)."""
    from pyscf import dft

    basis = basis or level.basis_minimal
    mol = to_mole(atoms, basis, charge)
    mf = dft.RKS(mol, xc=level.xc)
    mf.conv_tol = level.conv_tol_minimal
    mf.conv_tol_grad = level.conv_tol_grad_minimal
    mf.verbose = 0
    energy = mf.kernel()
    _check_converged(mf, f"{basis} RKS/{level.xc}")
    dm = mf.make_rdm1()
    fock = np.asarray(mf.get_fock(dm=dm), dtype=np.float64)
    overlap = np.asarray(mf.get_ovlp(), dtype=np.float64)
    fock = 0.5 * (fock + fock.T)
    mo_energy = scipy.linalg.eigh(fock, overlap, eigvals_only=True)
    dipole, origin = _dipole(mf, atoms, charge)
    datasets: Datasets = {
        "overlap": (overlap, DIMENSIONLESS),
        "fock": (fock, HARTREE),
        "mo_energy": (mo_energy, HARTREE),
        "nocc": (np.int64(mol.nelectron // 2), DIMENSIONLESS),
        "dipole": (dipole, DIPOLE),
        "dipole_origin": (origin, BOHR),
        "energy": (np.float64(energy), HARTREE),
    }
    attrs = {
        "method": "RKS",
        "xc": level.xc,
        "basis": basis,
        "density_fit": False,
        "auxbasis": "",
        "conv_tol": level.conv_tol_minimal,
        "conv_tol_grad": level.conv_tol_grad_minimal,
        "converged": bool(mf.converged),
        "scf_cycles": int(getattr(mf, "cycles", -1)),
        "nao": int(mol.nao),
        "fock_definition": "mf.get_fock(dm=mf.make_rdm1()) of the converged SCF; mo_energy = eigh(fock, overlap)",
        **_grid_attrs(mf),
    }
    if polarizability:
        alpha, alpha_attrs = _cpks(mf, level)
        datasets["polarizability"] = (alpha, POLARIZABILITY)
        attrs.update(alpha_attrs)
    return datasets, attrs


def _large_scf(atoms: Atoms, charge: int, level: MoleculeLevel, basis: str | None):
    from pyscf import dft

    basis = basis or level.basis_large
    mol = to_mole(atoms, basis, charge)
    mf = dft.RKS(mol, xc=level.xc).density_fit(auxbasis=level.auxbasis_large)
    mf.conv_tol = level.conv_tol_large
    mf.verbose = 0
    mf.kernel()
    _check_converged(mf, f"{basis} RKS/{level.xc} (density fitting)")
    attrs = {
        "method": "RKS",
        "xc": level.xc,
        "basis": basis,
        "density_fit": True,
        "auxbasis": level.auxbasis_large,
        "conv_tol": level.conv_tol_large,
        "conv_tol_grad": float(np.sqrt(level.conv_tol_large)),  # PySCF's default, sqrt(conv_tol)
        "converged": bool(mf.converged),
        "scf_cycles": int(getattr(mf, "cycles", -1)),
        "nao": int(mol.nao),
        **_grid_attrs(mf),
    }
    return mol, mf, attrs


def molecule_large(
    atoms: Atoms, charge: int, level: MoleculeLevel = MOLECULE, basis: str | None = None
) -> tuple[Datasets, dict]:
    """def2-TZVP B3LYPG with density fitting: all MO energies, nocc, dipole, energy."""
    mol, mf, attrs = _large_scf(atoms, charge, level, basis)
    return _large_labels(mol, mf, atoms, charge, attrs)


def _large_labels(mol, mf, atoms: Atoms, charge: int, attrs: dict) -> tuple[Datasets, dict]:
    dipole, origin = _dipole(mf, atoms, charge)
    datasets: Datasets = {
        "mo_energy": (np.asarray(mf.mo_energy, dtype=np.float64), HARTREE),
        "nocc": (np.int64(mol.nelectron // 2), DIMENSIONLESS),
        "dipole": (dipole, DIPOLE),
        "dipole_origin": (origin, BOHR),
        "energy": (np.float64(mf.e_tot), HARTREE),
    }
    return datasets, {**attrs, "mo_energy_definition": "mf.mo_energy of the converged SCF"}


def _large_polarizability_from(mf, attrs: dict, level: MoleculeLevel) -> tuple[Datasets, dict]:
    alpha, alpha_attrs = _cpks(mf, level)
    return {"polarizability": (alpha, POLARIZABILITY)}, {**attrs, **alpha_attrs}


def molecule_large_polarizability(
    atoms: Atoms, charge: int, level: MoleculeLevel = MOLECULE, basis: str | None = None
) -> tuple[Datasets, dict]:
    """The CPKS static polarizability at the large level (reruns the SCF of :func:`molecule_large`)."""
    _, mf, attrs = _large_scf(atoms, charge, level, basis)
    return _large_polarizability_from(mf, attrs, level)


def molecule_large_with_polarizability(
    atoms: Atoms, charge: int, level: MoleculeLevel = MOLECULE, basis: str | None = None
) -> tuple[Datasets, dict, Datasets | BaseException, dict]:
    """The ``large`` and ``large_polarizability`` stages from ONE SCF (the CPKS reuses it).

    Returns (large datasets, large attrs, polarizability datasets or the exception the CPKS raised,
    polarizability attrs): a failed CPKS never loses the finished SCF labels.
    """
    mol, mf, attrs = _large_scf(atoms, charge, level, basis)
    datasets, large_attrs = _large_labels(mol, mf, atoms, charge, attrs)
    try:
        alpha_datasets, alpha_attrs = _large_polarizability_from(mf, attrs, level)
    except Exception as err:  # recorded as the failure of the polarizability stage only
        return datasets, large_attrs, err, {}
    return datasets, large_attrs, alpha_datasets, alpha_attrs


def parse_kmesh(value) -> tuple[int, int, int]:
    """A k-mesh from ``"4 4 4"``, ``"4x4x4"``, ``[4, 4, 4]`` or a numpy array; ValueError otherwise."""
    if isinstance(value, str):
        parts = value.replace("x", " ").replace(",", " ").split()
    else:
        parts = list(np.atleast_1d(np.asarray(value)).ravel())
    try:
        mesh = tuple(int(p) for p in parts)
        exact = all(float(p) == int(float(p)) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"k-mesh {value!r} is not three positive integers (e.g. '4 4 4')") from None
    if len(mesh) != 3 or not exact or min(mesh) < 1:
        raise ValueError(f"k-mesh {value!r} is not three positive integers (e.g. '4 4 4')")
    return mesh


def silicon_stage(
    atoms: Atoms,
    charge: int,
    kmesh,
    basis: str,
    with_matrices: bool,
    level: SiliconLevel = SILICON,
    xc_grid: str = "becke",
    conv_tol: float | None = None,
) -> tuple[Datasets, dict]:
    """PBE KRKS with GDF on the Γ-centred mesh: bands, Fermi level/VBM/CBM, energy, k-points (+ H(k), S(k)).

    ``xc_grid``: ``"becke"`` (PySCF's default with GDF, the reference labels) or ``"uniform"`` (the
    ``cell.mesh`` grid). The periodic Becke partition costs O(points × image atoms²): about 0.3 CPU
    minutes for a two-atom cell and, extrapolated from a timed block, ~450 for the 64-atom supercell
    (docs/data.md); ``scripts/silicon_grid_check.py`` measures what the uniform grid changes."""
    from pyscf.pbc import dft as pbcdft
    from pyscf.pbc.dft.gen_grid import UniformGrids

    if xc_grid not in XC_GRIDS:
        raise ValueError(f"xc_grid must be one of {', '.join(XC_GRIDS)}, got {xc_grid!r}")
    mesh = parse_kmesh(kmesh)
    cell = to_cell(atoms, basis, level.pseudo, charge)
    kpts = cell.make_kpts(mesh)
    mf = pbcdft.KRKS(cell, kpts, xc=level.xc).density_fit()
    if xc_grid == "uniform":
        mf.grids = UniformGrids(cell)
    mf.conv_tol = level.conv_tol if conv_tol is None else float(conv_tol)
    mf.verbose = 0
    scratch = scf_scratch(atoms, basis, mesh, level)
    resumed = _resume_from_scratch(mf, scratch)
    nocc = cell.nelectron // 2
    watch = _KpointOccupationWatch()
    mf.callback = watch
    energy, attempts = _kernel_or_stopped(mf, resumed, watch), 1
    if not mf.converged and not watch.stopped:
        # go on from the last density with a fresh, longer DIIS history (same convergence criteria)
        mf.diis_space = 16
        energy, attempts = _kernel_or_stopped(mf, mf.make_rdm1(), watch), 2
    occupation = AUFBAU_OCCUPATION
    if not mf.converged and watch.flips:
        # measured (si-prim-07/08/13/18/38, gth-dzvp): the aufbau occupation kept moving a doubly occupied
        # band back and forth between k-points (VBM and CBM 0.003-0.04 eV apart), so these cells have no
        # self-consistent aufbau solution with integer occupations. (Many other cells converge to a stable
        # aufbau solution with 3 or 5 bands at some k-points: those are left as they are.) Fill the lowest
        # nocc bands at every k-point instead, from the last orbitals.
        mf.callback = None
        mf.get_occ = fixed_occupation_per_kpoint(nocc)
        start = mf.make_rdm1(watch.mo_coeff, mf.get_occ(watch.mo_energy))
        mf.diis_space = 8
        energy, attempts = mf.kernel(start), attempts + 1
        occupation = (
            f"{FIXED_OCCUPATION_PREFIX} {nocc} bands at every k-point "
            "(the aufbau occupation oscillated between k-points)"
        )
    _check_converged(mf, f"{basis} KRKS/{level.xc} on a {mesh} mesh (after {attempts} attempts)")
    datasets: Datasets = {}
    if with_matrices:
        dm = mf.make_rdm1()
        hk = np.asarray(mf.get_fock(dm=dm), dtype=np.complex128)
        sk = np.asarray(mf.get_ovlp(), dtype=np.complex128)
        hk = 0.5 * (hk + hk.conj().transpose(0, 2, 1))
        sk = 0.5 * (sk + sk.conj().transpose(0, 2, 1))
        bands = np.stack([scipy.linalg.eigh(h, s, eigvals_only=True) for h, s in zip(hk, sk)])
        datasets["hk"] = (hk, HARTREE)
        datasets["sk"] = (sk, DIMENSIONLESS)
        definition = "eigh(hk, sk) per k; hk = mf.get_fock(dm=mf.make_rdm1()) of the converged SCF"
    else:
        bands = np.stack([np.asarray(e, dtype=np.float64) for e in mf.mo_energy])
        definition = "mf.mo_energy of the converged SCF"
    occ = np.stack([np.asarray(o) for o in mf.get_occ(mo_energy_kpts=bands)])
    occupied = bands[occ > 0]
    virtual = bands[occ == 0]
    vbm = float(occupied.max())
    cbm = float(virtual.min()) if virtual.size else float("nan")
    fermi = float(mf.get_fermi(bands, occ))
    datasets.update(
        {
            "bands": (bands, HARTREE),
            "nocc": (np.int64(nocc), DIMENSIONLESS),
            "energy": (np.float64(energy), HARTREE),
            "fermi_level": (np.float64(fermi), HARTREE),
            "vbm": (np.float64(vbm), HARTREE),
            "cbm": (np.float64(cbm), HARTREE),
            "kpts": (np.asarray(kpts, dtype=np.float64), INVERSE_BOHR),
            "kpts_frac": (np.asarray(cell.get_scaled_kpts(kpts), dtype=np.float64), DIMENSIONLESS),
            "kmesh": (np.asarray(mesh, dtype=np.int64), DIMENSIONLESS),
        }
    )
    attrs = {
        "method": "KRKS",
        "xc": level.xc,
        "basis": basis,
        "pseudo": level.pseudo,
        "density_fit": True,
        "auxbasis": "default (pyscf.pbc.df.incore.make_auxcell, even-tempered)",
        "conv_tol": float(mf.conv_tol),
        "conv_tol_grad": float(mf.conv_tol_grad or np.sqrt(mf.conv_tol)),
        "converged": bool(mf.converged),
        "scf_cycles": int(getattr(mf, "cycles", -1)),
        "nao": int(cell.nao),
        "kmesh": np.asarray(mesh, dtype=np.int64),
        "kpts_definition": "cell.make_kpts(kmesh): Gamma-centred; kpts = 2*pi * kpts_frac @ inv(cell).T",
        "bands_definition": definition,
        "fermi_level_definition": "PySCF get_fermi: the highest occupied level (equals vbm for an insulator)",
        "cell_precision": float(cell.precision),
        "cell_mesh": np.asarray(cell.mesh, dtype=np.int64),
        **_grid_attrs(mf),
        "resumed_from_scratch": resumed is not None,
        "scf_attempts": attempts,
        "occupation": occupation,
        "occupation_flips": len(watch.flips),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return datasets, attrs


AUFBAU_OCCUPATION = "aufbau over all k-points"
"""The ``occupation`` attribute of a periodic label filled by PySCF's aufbau (also: labels without one)."""
FIXED_OCCUPATION_PREFIX = "the lowest"
"""How the ``occupation`` attribute of a label with the same number of bands at every k-point begins."""

OCCUPATION_FLIPS_LIMIT = 8
"""SCF cycles in which the aufbau occupation moves electrons between k-points (the number of occupied
bands of some k-point changes from the cycle before, with unequal numbers in one of the two) before
:func:`silicon_stage` stops the aufbau attempt and fills the same number of bands at every k-point."""


class _OccupationOscillates(Exception):
    pass


class _KpointOccupationWatch:
    """SCF callback: records the cycles whose aufbau occupation moved electrons between k-points since the
    cycle before, keeps the last orbitals, and stops the SCF after :data:`OCCUPATION_FLIPS_LIMIT` of them.
    A stable occupation, equal at every k-point or not, is never stopped."""

    def __init__(self) -> None:
        self.flips: list[int] = []
        self.mo_coeff = self.mo_energy = None
        self._previous: tuple[int, ...] | None = None

    def __call__(self, envs: dict) -> None:
        self.mo_coeff, self.mo_energy = envs["mo_coeff"], envs["mo_energy"]
        counts = tuple(int(np.count_nonzero(np.asarray(o) > 0)) for o in envs["mo_occ"])
        previous, self._previous = self._previous, counts
        if previous is None or counts == previous or (len(set(counts)) == 1 and len(set(previous)) == 1):
            return
        self.flips.append(int(envs["cycle"]))
        if self.stopped:
            raise _OccupationOscillates

    @property
    def stopped(self) -> bool:
        """Whether the watch has stopped the SCF (it has seen :data:`OCCUPATION_FLIPS_LIMIT` flips)."""
        return len(self.flips) >= OCCUPATION_FLIPS_LIMIT


def _kernel_or_stopped(mf, dm0, watch: _KpointOccupationWatch) -> float:
    """``mf.kernel(dm0)``, returning early (unconverged) when ``watch`` stops it."""
    try:
        return mf.kernel(dm0)
    except _OccupationOscillates:
        mf.converged = False
        return float("nan")


def fixed_occupation_per_kpoint(nocc: int):
    """A KRKS ``get_occ`` that doubly occupies the ``nocc`` lowest bands at every k-point (no electrons
    move between k-points), whatever the band energies of other k-points."""

    def get_occ(mo_energy_kpts=None, mo_coeff_kpts=None):
        occupations = []
        for energies in mo_energy_kpts:
            energies = np.asarray(energies)
            occ = np.zeros(energies.shape)
            occ[np.argsort(energies, kind="stable")[:nocc]] = 2.0
            occupations.append(occ)
        return occupations

    return get_occ


def scf_scratch(atoms: Atoms, basis: str, mesh, level: SiliconLevel = SILICON) -> Path:
    """Restart directory of one periodic SCF: ``$MLHCALC_SCRATCH`` (default ``~/.cache/mlhcalc/scratch``)
    / a hash of the geometry, basis, k-mesh and level, so a restart only ever reuses its own cell's data."""
    key = hashlib.sha256()
    for array in (atoms.get_atomic_numbers(), atoms.positions, np.asarray(atoms.cell), np.asarray(mesh)):
        key.update(np.ascontiguousarray(array).tobytes())
    key.update(repr((basis, level)).encode())
    root = Path(os.environ.get("MLHCALC_SCRATCH", Path.home() / ".cache" / "mlhcalc" / "scratch"))
    return root / key.hexdigest()[:24]


def _resume_from_scratch(mf, scratch: Path):
    """Density-fitting integrals, core Hamiltonian and SCF checkpoint of ``mf`` in ``scratch``: reuse the
    integrals and H_core if a previous attempt finished building them, start from its last SCF cycle's
    density if it has one (returned; None for a fresh start). The checkpoint is rewritten every cycle."""
    from pyscf.lib.chkfile import load as chkfile_load

    scratch.mkdir(parents=True, exist_ok=True)
    cderi, complete = scratch / "cderi.h5", scratch / "cderi.complete"
    if complete.is_file() and cderi.is_file():
        mf.with_df._cderi = str(cderi)
    else:
        cderi.unlink(missing_ok=True)  # a build killed midway leaves a partial file PySCF cannot reopen
        mf.with_df._cderi_to_save = str(cderi)
        mf.with_df.build()
        complete.touch()
    # the core Hamiltonian too: its GTH local part alone took over 10 minutes for the 64-atom cell
    hcore_file = scratch / "hcore.npy"
    if hcore_file.is_file():
        hcore = np.load(hcore_file)
    else:
        hcore = np.asarray(mf.get_hcore())
        partial = scratch / "hcore.partial.npy"
        np.save(partial, hcore)
        os.replace(partial, hcore_file)
    mf.get_hcore = lambda *args, **kwargs: hcore
    checkpoint = scratch / "scf.chk"
    density = None
    # PySCF writes the cell into the checkpoint before the first cycle: a run killed that early
    # leaves a checkpoint without an SCF record, and the next attempt starts from the usual guess
    if checkpoint.is_file() and chkfile_load(str(checkpoint), "scf") is not None:
        density = mf.from_chk(str(checkpoint))
    mf.chkfile = str(checkpoint)
    return density


def compute_stage(task) -> tuple[Datasets, dict]:
    """Run one :class:`mlhcalc.reference.worker.Task` (one structure, one stage)."""
    if task.level == "molecule":
        level = MoleculeLevel()
        if task.stage == "minimal":
            return molecule_minimal(task.atoms, task.charge, task.polarizability, level, task.basis_minimal)
        if task.stage == "large":
            return molecule_large(task.atoms, task.charge, level, task.basis_large)
        if task.stage == "large_polarizability":
            return molecule_large_polarizability(task.atoms, task.charge, level, task.basis_large)
    elif task.level == "silicon" and task.stage in ("minimal", "large"):
        level = SiliconLevel()
        minimal = task.stage == "minimal"  # the minimal basis also stores H(k), S(k)
        return silicon_stage(
            task.atoms,
            task.charge,
            task.kmesh,
            (task.basis_minimal or level.basis_minimal) if minimal else task.basis_large or level.basis_large,
            with_matrices=minimal,
            level=level,
            xc_grid=task.xc_grid,
            conv_tol=task.conv_tol,
        )
    raise ValueError(f"unknown stage {task.stage!r} for level {task.level!r}")
