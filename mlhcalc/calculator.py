"""The ASE face of the package: :class:`MLHamiltonian`, an ASE calculator for the electronic
properties of a model Hamiltonian, :class:`PairedCalculator` (forces from another calculator,
everything else from ours) and :class:`StaticPolarizability` (ASE's static-Raman adapter).

Physics stays in :mod:`mlhcalc.qm`; this module validates input, batches structures through the
model and the qm layer (features batched, JAX matrices padded to size buckets and ``vmap``-ped),
and converts atomic units to ASE units with :mod:`mlhcalc.units`. Reference: docs/calculator.md.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np
from ase import Atoms
from ase.calculators.abc import GetOutputsMixin
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    PropertyNotPresent,
    all_changes,
    kpts2ndarray,
)
from ase.calculators.polarizability import StaticPolarizabilityCalculator

from mlhcalc import units
from mlhcalc.model import HamiltonianModel
from mlhcalc.structure import ao_atom_map, dipole_origin, lattice_bohr, positions_bohr, to_cell, to_mole

__all__ = [
    "MLHamiltonian",
    "PairedCalculator",
    "StaticPolarizability",
    "electronic_results",
    "resolve_kpoints",
    "qm_compile_seconds",
    "BAND_PROPERTIES",
    "FORCE_PROPERTIES",
    "MOLECULAR_PROPERTIES",
    "PERIODIC_RESPONSE_PROPERTIES",
    "DERIVATIVE_PROPERTIES",
]

BAND_PROPERTIES = ("eigenvalues", "occupations", "fermi_level", "ibz_kpoints", "kpoint_weights")
MOLECULAR_PROPERTIES = ("dipole", "polarizability")
PERIODIC_RESPONSE_PROPERTIES = ("polarizability", "dielectric_tensor")
"""Clamped-ion response of a cell, computed only when asked (a k-mesh average, see docs/periodic.md)."""
DERIVATIVE_PROPERTIES = ("born_effective_charges", "dipole_derivatives", "polarizability_derivatives")
FORCE_PROPERTIES = ("energy", "free_energy", "energies", "forces", "stress", "stresses")

DEFAULT_PERIODIC_KPTS = {"density": 3.5, "gamma": True}
"""k-points of a periodic cell when none are given: a Γ-centred mesh with ASE's default density
(3.5 points per Å⁻¹ along each reciprocal vector)."""

_NO_FORCES = (
    "MLHamiltonian predicts electronic properties only (no energy, forces or stress): pair it with a "
    "force calculator, e.g. PairedCalculator(forces=TBLite(method='GFN2-xTB'), electronic=MLHamiltonian(...))"
)
_NOT_PERIODIC = (
    "{name} is not defined for a periodic cell by this calculator: the dipole of a crystal and its position "
    "derivatives need the Berry-phase (modern) theory of polarization, which is not implemented; use a "
    "molecular model on a cluster, or ask for eigenvalues, DOS, band gap, Fermi level, charges, "
    "polarizability (per cell) or dielectric_tensor"
)
_NOT_MOLECULAR = "{name} is a property of a periodic cell: for a molecule ask for 'polarizability'"
_NOT_A_MESH = (
    "the polarizability and dielectric tensor of a cell are averages over the Brillouin zone: give a full "
    "uniform k-mesh, kpts=(n, n, n) or {{'size': (n, n, n), 'gamma': True}}, not {what}"
)
_CHARGED = (
    "computing a structure with total charge {charge}: the shipped models were trained on neutral "
    "molecules only, so expect larger errors for ions"
)


# ----------------------------------------------------------------------------- k-points


def resolve_kpoints(kpts, atoms: Atoms) -> np.ndarray:
    """Fractional k-points (nk, 3) from any form ASE calculators accept.

    ``(n1, n2, n3)``: Monkhorst–Pack (ASE's ``monkhorst_pack``: for even n it misses Γ);
    ``{'size': (n1, n2, n3), 'gamma': True}`` or ``{'density': d, 'gamma': True}``: Γ-centred;
    ``{'path': 'GXWLGK', 'npoints': 100}`` or an ASE ``BandPath`` (``atoms.cell.bandpath(...)``);
    an explicit list of fractional k-points. ``None``: :data:`DEFAULT_PERIODIC_KPTS`. No symmetry
    reduction is done: every k-point is kept, with uniform weights.
    """
    if kpts is None:
        kpts = DEFAULT_PERIODIC_KPTS
    if not isinstance(kpts, dict) and not hasattr(kpts, "kpts"):
        array = np.asarray(kpts)
        if array.shape == (3,) and np.issubdtype(array.dtype, np.integer):
            kpts = tuple(int(n) for n in array)  # ASE only recognises Python ints as a mesh size
            if min(kpts) < 1:
                raise ValueError(f"k-point mesh sizes must be positive, got {kpts}")
    try:
        kfrac = np.asarray(kpts2ndarray(kpts, atoms=atoms), dtype=float).reshape(-1, 3)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(
            f"cannot read kpts={kpts!r} ({err}): give (n1, n2, n3), {{'size': (n1, n2, n3), 'gamma': True}}, "
            "a list of fractional k-points or atoms.cell.bandpath(...)"
        ) from None
    if len(kfrac) == 0 or not np.isfinite(kfrac).all():
        raise ValueError(f"kpts={kpts!r} gives no usable k-points")
    return kfrac


# ----------------------------------------------------------------------------- model Hamiltonians


def _check(model: HamiltonianModel, atoms: Atoms, charge: int | None, warn: bool = True) -> int:
    """Validate ``atoms`` for ``model`` (errors name the fix); warn for charged structures."""
    total_charge = model.check(atoms, charge)
    if total_charge != 0 and warn:
        warnings.warn(_CHARGED.format(charge=total_charge), UserWarning, stacklevel=4)
    return total_charge


def _hamiltonians(
    model: HamiltonianModel, atoms_list: list[Atoms], charges: list[int] | None = None
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Model H (hartree) of every structure, features computed for the whole list at once:
    (H [nao, nao], None) for molecules, (H(T) [n_T, nao, nao], translations [n_T, 3]) for cells.
    Models whose output needs completing (Löwdin, self-consistent charges) go through
    :meth:`HamiltonianModel.finish` with the structure's total charge (``charges``)."""
    import torch

    from mlhcalc.features import systems_from_atoms

    with torch.no_grad():
        predictions = model.block_model(systems_from_atoms(list(atoms_list)))
    result = []
    charges = [None] * len(atoms_list) if charges is None else charges
    for (layout, hamiltonian), atoms, charge in zip(predictions, atoms_list, charges):
        matrix = hamiltonian.detach().numpy()
        if model.periodic:
            result.append((matrix, np.asarray(layout.translations, dtype=int)))
        else:
            matrix = matrix[0] if matrix.ndim == 3 else matrix
            result.append((model.finish(atoms, matrix, charge), None))
    return result


# ----------------------------------------------------------------------------- molecules


@dataclass
class _MolecularSystem:
    """Integrals and bookkeeping of one molecule at one geometry (atomic units)."""

    overlap: np.ndarray  # (nao, nao)
    dipole_ints: np.ndarray  # (3, nao, nao), about ``origin``
    nuclear_charges: np.ndarray  # (natm,)
    ao_atom: np.ndarray  # (nao,)
    occupations: np.ndarray  # (nao,) closed-shell aufbau, 2 or 0
    positions: np.ndarray  # (natm, 3) bohr
    origin: np.ndarray  # (3,) bohr

    @property
    def nao(self) -> int:
        return self.overlap.shape[0]


_MOLES: dict = {}
_MAX_CACHED_MOLES = 256


def _mole_at(atoms: Atoms, basis: str, charge: int):
    """A PySCF ``Mole`` of ``atoms``; built once per (species sequence, charge, basis) and moved with
    ``set_geom_`` afterwards (building parses the basis set, ~2 ms; moving costs ~0.1 ms), which is
    what MD and finite-difference drivers need."""
    key = (tuple(atoms.numbers), charge, basis)
    mol = _MOLES.get(key)
    if mol is None:
        if len(_MOLES) >= _MAX_CACHED_MOLES:
            _MOLES.clear()
        mol = _MOLES[key] = to_mole(atoms, basis, charge, validate=False)
    else:
        mol.set_geom_(positions_bohr(atoms), unit="Bohr")
    return mol


def _molecular_system(atoms: Atoms, basis: str, charge: int) -> _MolecularSystem:
    from mlhcalc.qm.eigen import aufbau_occupations

    mol = _mole_at(atoms, basis, charge)
    origin = dipole_origin(atoms, charge)
    with mol.with_common_orig(origin):
        dipole_ints = mol.intor("int1e_r", comp=3)
    ao_atom = ao_atom_map(mol)
    return _MolecularSystem(
        overlap=mol.intor("int1e_ovlp"),
        dipole_ints=dipole_ints,
        nuclear_charges=np.asarray(mol.atom_charges(), dtype=float),
        ao_atom=ao_atom,
        occupations=aufbau_occupations(mol.nelectron, mol.nao_nr()),  # ValueError if they do not fit
        positions=positions_bohr(atoms),
        origin=origin,
    )


_BUCKETS = (8, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024)
_MAX_CHUNK = 8


def _bucket(nao: int) -> int:
    """Padded matrix size for ``nao`` AOs: one compiled function per bucket, not per size."""
    for size in _BUCKETS:
        if size >= nao:
            return size
    return -(-nao // 256) * 256


class _MolecularQM:
    """Orbital energies, density and polarizability of many molecules: matrices padded to a size
    bucket (:func:`mlhcalc.qm.molecular.pad_system`) and stacked in chunks of 8 (1 for a lone
    structure; short chunks are filled with copies), one ahead-of-time compiled ``vmap`` per
    (bucket, chunk). Compilation time is accumulated in ``compile_seconds``."""

    def __init__(self):
        self._compiled: dict[tuple[int, int], object] = {}
        self.compile_seconds = 0.0

    @staticmethod
    def pad(size: int, fock, overlap, dipole_ints, occupations, padding_energy: float = 1.0e3) -> list[np.ndarray]:
        """:func:`mlhcalc.qm.molecular.pad_system` in numpy (equal to it, tested): the JAX version costs
        ~2 ms of dispatch eagerly, or one compilation per matrix size when jitted."""
        n = fock.shape[-1]
        padded_fock, padded_overlap = np.zeros((size, size)), np.zeros((size, size))
        padded_fock[:n, :n], padded_overlap[:n, :n] = fock, overlap
        padded = np.arange(n, size)
        padded_fock[padded, padded], padded_overlap[padded, padded] = padding_energy, 1.0
        padded_dipole, padded_occupations = np.zeros((3, size, size)), np.zeros(size)
        padded_dipole[:, :n, :n], padded_occupations[:n] = dipole_ints, occupations
        return [padded_fock, padded_overlap, padded_dipole, padded_occupations]

    def _function(self, bucket: int, chunk: int):
        key = (bucket, chunk)
        if key not in self._compiled:
            import jax

            from mlhcalc.qm.molecular import response_properties

            start = time.perf_counter()
            shapes = [(chunk, bucket, bucket), (chunk, bucket, bucket), (chunk, 3, bucket, bucket), (chunk, bucket)]
            specs = [jax.ShapeDtypeStruct(shape, np.float64) for shape in shapes]
            self._compiled[key] = jax.jit(jax.vmap(response_properties)).lower(*specs).compile()
            self.compile_seconds += time.perf_counter() - start
        return self._compiled[key]

    def __call__(self, systems: list[_MolecularSystem], focks: list[np.ndarray]) -> list[dict]:
        results: list[dict | None] = [None] * len(systems)
        by_bucket: dict[int, list[int]] = {}
        for index, system in enumerate(systems):
            by_bucket.setdefault(_bucket(system.nao), []).append(index)
        for bucket, indices in by_bucket.items():
            for start in range(0, len(indices), _MAX_CHUNK):
                members = indices[start : start + _MAX_CHUNK]
                chunk = 1 if len(members) == 1 else _MAX_CHUNK  # two compiled shapes per bucket, not eight
                padded = []
                for index in members:
                    system = systems[index]
                    arrays = (focks[index], system.overlap, system.dipole_ints, system.occupations)
                    padded.append(self.pad(bucket, *arrays))
                padded += [padded[-1]] * (chunk - len(members))  # filler rows, results discarded
                stacked = [np.stack([p[k] for p in padded]) for k in range(4)]
                mo_energy, density, alpha = (np.asarray(x) for x in self._function(bucket, chunk)(*stacked))
                for row, index in enumerate(members):
                    results[index] = _molecular_observables(
                        systems[index], mo_energy[row], density[row], alpha[row], stacked[3][row]
                    )
        return results


def _molecular_observables(system: _MolecularSystem, mo_energy, density, alpha, mo_occ) -> dict:
    """Unpad and finish (dipole, Mulliken charges) in atomic units."""
    n = system.nao
    density = density[:n, :n]
    dipole = -np.einsum("cmn,nm->c", system.dipole_ints, density) + system.nuclear_charges @ (
        system.positions - system.origin
    )
    populations = np.einsum("mn,nm->m", density, system.overlap)
    electrons_on_atom = np.bincount(system.ao_atom, weights=populations, minlength=len(system.nuclear_charges))
    return {
        "mo_energy": mo_energy[:n],
        "mo_occ": mo_occ[:n],
        "dipole": dipole,
        "polarizability": 0.5 * (alpha + alpha.T),
        "charges": system.nuclear_charges - electrons_on_atom,
    }


_MOLECULAR_QM = _MolecularQM()


def qm_compile_seconds() -> float:
    """Seconds spent so far compiling the batched molecular qm functions (this process)."""
    return _MOLECULAR_QM.compile_seconds


def _band_results(mo_energy_kn: np.ndarray, n_occupied: int, kfrac: np.ndarray) -> dict:
    """ASE band properties (eV) from orbital/band energies (nk, nbands) in hartree; closed shell: the
    ``n_occupied`` lowest bands are doubly occupied at every k; Fermi level midway between the highest
    occupied and lowest empty level."""
    nk, nbands = mo_energy_kn.shape
    occupations = np.zeros((1, nk, nbands))
    occupations[..., :n_occupied] = 2.0
    homo = mo_energy_kn[:, n_occupied - 1].max()
    lumo = mo_energy_kn[:, n_occupied].min() if n_occupied < nbands else np.nan
    fermi = 0.5 * (homo + lumo) if n_occupied < nbands else homo
    return {
        "eigenvalues": units.energy_ev(mo_energy_kn)[None],
        "occupations": occupations,
        "fermi_level": float(units.energy_ev(fermi)),
        "ibz_kpoints": np.asarray(kfrac, dtype=float).reshape(nk, 3),
        "kpoint_weights": np.full(nk, 1.0 / nk),
    }


def _molecule_results(observables: dict) -> dict:
    mo_energy = np.asarray(observables["mo_energy"])
    results = _band_results(mo_energy[None, :], int(round(observables["mo_occ"].sum())) // 2, np.zeros((1, 3)))
    results["dipole"] = units.dipole_e_angstrom(observables["dipole"])
    results["polarizability"] = units.polarizability_angstrom3(observables["polarizability"])
    results["charges"] = np.asarray(observables["charges"])
    return results


# ----------------------------------------------------------------------------- periodic cells


def _periodic_results(model: HamiltonianModel, atoms: Atoms, charge: int, hamiltonian_t, translations, kfrac) -> dict:
    """Bands, occupations, Fermi level and Mulliken charges of a cell on the k-points ``kfrac``.

    H(T) is Bloch-summed over the model's translations (pairs inside the feature cutoff), S(T) over
    its own, longer-ranged set (overlaps ≥ 1e-12). Charges average over the given k-points with
    uniform weights: meaningful for a full k-mesh, not along a band path.
    """
    from mlhcalc.qm.eigen import generalized_eigh
    from mlhcalc.qm.lattice import kpts_cartesian
    from mlhcalc.qm.periodic import bloch_sum

    cell, lattice, overlap_translations, overlap_t = _cell_and_overlaps(model, atoms, charge)
    kpts = kpts_cartesian(kfrac, lattice)
    hamiltonian_k = bloch_sum(hamiltonian_t, np.asarray(translations) @ lattice, kpts)
    overlap_k = bloch_sum(overlap_t, overlap_translations, kpts)
    # a model of H − μS (shorter-ranged than H; docs/direct_fit.md, silicon) gets μS back: bands + μ
    hamiltonian_k = hamiltonian_k + float(model.metadata.get("overlap_shift_ha", 0.0)) * overlap_k
    band_energy, coefficients = (np.asarray(x) for x in generalized_eigh(hamiltonian_k, overlap_k))
    n_occupied = int(cell.nelectron) // 2
    results = _band_results(band_energy, n_occupied, kfrac)
    occupied = coefficients[:, :, :n_occupied]
    density_k = 2.0 * np.einsum("kmi,kni->kmn", occupied, occupied.conj())
    populations = np.einsum("kmn,knm->m", density_k, np.asarray(overlap_k)).real / len(kfrac)
    ao_atom = ao_atom_map(cell)
    electrons_on_atom = np.bincount(ao_atom, weights=populations, minlength=len(atoms))
    results["charges"] = np.asarray(cell.atom_charges(), dtype=float) - electrons_on_atom
    return results


def _cell_and_overlaps(model: HamiltonianModel, atoms: Atoms, charge: int):
    """PySCF cell, lattice (bohr), and S(T) on its own translations (every overlap ≥ 1e-12)."""
    from mlhcalc.qm.lattice import lattice_translations, overlap_cutoff_bohr
    from mlhcalc.qm.periodic import overlap_images

    pseudo = model.metadata.get("pseudo", "gth-pade")
    cell = to_cell(atoms, model.basis, pseudo, charge, validate=False)
    lattice = lattice_bohr(atoms)
    _, overlap_translations = lattice_translations(lattice, positions_bohr(atoms), overlap_cutoff_bohr(cell))
    return cell, lattice, overlap_translations, overlap_images(cell, overlap_translations)


def _require_uniform_mesh(kpts, kfrac: np.ndarray) -> None:
    """``ValueError`` unless the fractional k-points are a full uniform n1×n2×n3 mesh (any offset:
    Γ-centred or Monkhorst–Pack), the sampling a Brillouin-zone average needs."""
    if hasattr(kpts, "kpts") or (isinstance(kpts, dict) and "path" in kpts):
        raise ValueError(_NOT_A_MESH.format(what="a band path"))
    wrapped = np.round(np.mod(kfrac, 1.0), 8) % 1.0
    sizes = []
    for axis in range(3):
        values = np.unique(wrapped[:, axis])
        spacing = np.diff(np.append(values, values[0] + 1.0))
        if not np.allclose(spacing, 1.0 / len(values), atol=1e-6):
            raise ValueError(_NOT_A_MESH.format(what=f"k-points unevenly spaced along b{axis + 1}"))
        sizes.append(len(values))
    if len({tuple(k) for k in wrapped.tolist()}) != len(kfrac) or len(kfrac) != np.prod(sizes):
        raise ValueError(_NOT_A_MESH.format(what=f"{len(kfrac)} k-points that are not a full {sizes} mesh"))


def _periodic_response(model: HamiltonianModel, atoms: Atoms, charge: int, hamiltonian_t, translations, kfrac) -> dict:
    """Clamped-ion polarizability per cell (Å³) and dielectric tensor ε∞ of the model H(T) on the
    uniform k-mesh ``kfrac`` (:mod:`mlhcalc.qm.periodic_response`; independent particles, no local fields)."""
    from mlhcalc.qm.lattice import kpts_cartesian
    from mlhcalc.qm.periodic_response import cell_polarizability, dielectric_tensor, position_images

    cell, lattice, overlap_translations, overlap_t = _cell_and_overlaps(model, atoms, charge)
    alpha = cell_polarizability(
        hamiltonian_t,
        np.asarray(translations) @ lattice,
        overlap_t,
        position_images(cell, overlap_translations),
        overlap_translations,
        kpts_cartesian(kfrac, lattice),
        int(cell.nelectron),
    )
    return {
        "polarizability": units.polarizability_angstrom3(alpha),
        "dielectric_tensor": np.asarray(dielectric_tensor(alpha, lattice)),
    }


# ----------------------------------------------------------------------------- batches


def electronic_results(
    model: HamiltonianModel,
    atoms_list: list[Atoms],
    *,
    kpts=None,
    charge: int | None = None,
    warn_charged: bool = True,
) -> list[dict | Exception]:
    """ASE-unit results of every structure (one feature pass for the whole list, JAX batched).

    Each entry is a results dict (the keys of :data:`BAND_PROPERTIES`, ``charges``, and for molecules
    ``dipole``, ``polarizability``), or the exception (``ValueError`` with the fix) that made that
    structure fail, so one bad structure does not stop a batch. ``kpts``: see
    :func:`resolve_kpoints` (periodic models only).
    """
    results: list[dict | Exception | None] = [None] * len(atoms_list)
    valid: list[tuple[int, Atoms, int, np.ndarray | None]] = []
    for index, atoms in enumerate(atoms_list):
        try:
            total_charge = _check(model, atoms, charge, warn_charged)
            kfrac = resolve_kpoints(kpts, atoms) if model.periodic else None
            valid.append((index, atoms, total_charge, kfrac))
        except (ValueError, TypeError) as err:
            results[index] = err
    if not valid:
        return results
    try:
        hamiltonians = _hamiltonians(model, [atoms for _, atoms, _, _ in valid], charges=[c for _, _, c, _ in valid])
    except Exception:  # find the structure that breaks the batch, keep the others
        hamiltonians = []
        for index, atoms, total_charge, _ in valid:
            try:
                hamiltonians.append(_hamiltonians(model, [atoms], charges=[total_charge])[0])
            except Exception as err:  # noqa: BLE001 - reported per structure
                results[index] = err
                hamiltonians.append(None)
    work = [(entry, h) for entry, h in zip(valid, hamiltonians) if h is not None]
    if model.periodic:
        for (index, atoms, total_charge, kfrac), (hamiltonian_t, translations) in work:
            try:
                results[index] = _periodic_results(model, atoms, total_charge, hamiltonian_t, translations, kfrac)
            except Exception as err:  # noqa: BLE001 - reported per structure
                results[index] = err
        return results
    systems, focks, indices = [], [], []
    for (index, atoms, total_charge, _), (fock, _) in work:
        try:
            systems.append(_molecular_system(atoms, model.basis, total_charge))
            focks.append(fock)
            indices.append(index)
        except Exception as err:  # noqa: BLE001 - reported per structure
            results[index] = err
    for index, observables in zip(indices, _MOLECULAR_QM(systems, focks)):
        results[index] = _molecule_results(observables)
    return results


# ----------------------------------------------------------------------------- derivatives


def _dipole_polarizability(template, with_polarizability: bool, fock, positions_bohr, origin_bohr):
    """Dipole (e·bohr, about the fixed ``origin_bohr``) and, optionally, α (a.u.): JAX, for the bridge."""
    from mlhcalc.qm.eigen import aufbau_occupations
    from mlhcalc.qm.integrals import ao_integrals
    from mlhcalc.qm.molecular import dipole_moment, response_properties

    overlap, dipole_ints = ao_integrals(template, positions_bohr, origin_bohr)
    occupations = aufbau_occupations(template.nelectron, template.nao)
    props = response_properties(fock, overlap, dipole_ints, occupations)
    dipole = dipole_moment(props.density, dipole_ints, template.nuclear_charges, positions_bohr, origin_bohr)
    return (dipole, props.polarizability) if with_polarizability else dipole


# ----------------------------------------------------------------------------- the calculator


class MLHamiltonian(Calculator, GetOutputsMixin):
    """ASE calculator for the electronic properties of a machine-learned minimal-basis Hamiltonian.

    ``MLHamiltonian(model="organic", kpts=None, charge=None)``: ``model`` is a name, a model
    directory or a :class:`~mlhcalc.model.HamiltonianModel`; ``charge`` overrides
    ``atoms.info['charge']`` (default 0); ``kpts`` (periodic models) in any ASE form, see
    :func:`resolve_kpoints`. Units are ASE's: eV, Å, e·Å, Å³, e. Energy, forces and stress are not
    provided (pair with a force calculator: :class:`PairedCalculator`). Results are cached until the
    atoms (positions, numbers, cell, pbc, ``info['charge']``) change; derivative properties are
    computed only when asked for. Property list, shapes and units: docs/calculator.md.
    """

    implemented_properties = [
        *BAND_PROPERTIES,
        "charges",
        *MOLECULAR_PROPERTIES,
        *DERIVATIVE_PROPERTIES,
        "dielectric_tensor",
    ]
    default_parameters = {"kpts": None, "charge": None}

    def __init__(self, model: str | HamiltonianModel = "organic", *, kpts=None, charge: int | None = None, **kwargs):
        self.model = model if isinstance(model, HamiltonianModel) else HamiltonianModel.load(model)
        self._bridges: dict = {}
        super().__init__(kpts=kpts, charge=charge, **kwargs)

    # -------------------------------------------------------------- ASE protocol
    def set(self, **kwargs):
        changed = super().set(**kwargs)
        if changed:
            self.reset()
        return changed

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and self.atoms.info.get("charge") != atoms.info.get("charge"):
            changes.append("charge")
        return changes

    def get_property(self, name: str, atoms: Atoms | None = None, allow_calculation: bool = True):
        if name in FORCE_PROPERTIES:
            raise PropertyNotImplementedError(_NO_FORCES)
        return super().get_property(name, atoms, allow_calculation)

    def calculate(self, atoms: Atoms | None = None, properties=("eigenvalues",), system_changes=all_changes):
        if atoms is not None and self.atoms is not None and self.check_state(atoms):
            self.results = {}  # a direct call with other atoms (get_property resets these itself)
        super().calculate(atoms, properties, system_changes)
        if self.atoms is None:
            raise ValueError("no atoms to compute: pass them, e.g. calc.get_property('eigenvalues', atoms)")
        for name in properties:
            if name in FORCE_PROPERTIES:
                raise PropertyNotImplementedError(_NO_FORCES)
            if self.model.periodic and name in ("dipole", *DERIVATIVE_PROPERTIES):
                raise PropertyNotImplementedError(_NOT_PERIODIC.format(name=name))
            if not self.model.periodic and name == "dielectric_tensor":
                raise PropertyNotImplementedError(_NOT_MOLECULAR.format(name=name))
        if "eigenvalues" not in self.results:
            (result,) = electronic_results(
                self.model, [self.atoms], kpts=self.parameters.kpts, charge=self.parameters.charge
            )
            if isinstance(result, Exception):
                raise result
            self.results.update(result)
        wanted = {name for name in properties if name in DERIVATIVE_PROPERTIES and name not in self.results}
        if wanted:
            self.results.update(self._derivatives(self.atoms, "polarizability_derivatives" in wanted))
        if self.model.periodic and any(
            name in PERIODIC_RESPONSE_PROPERTIES and name not in self.results for name in properties
        ):
            self.results.update(self._periodic_response(self.atoms))

    def _outputmixin_get_results(self):
        if "eigenvalues" not in self.results and self.atoms is None:
            raise PropertyNotPresent(
                "no structure computed yet: this calculator has no energy to trigger one, so call "
                "calc.get_property('eigenvalues', atoms) (or calc.calculate(atoms)) before get_eigenvalues(), "
                "get_fermi_level(), bandgap(calc) or DOS(calc)"
            )
        if "eigenvalues" not in self.results:
            self.calculate(self.atoms, ["eigenvalues"], [])
        return self.results

    # -------------------------------------------------------------- periodic response
    def _periodic_response(self, atoms: Atoms) -> dict:
        """α per cell and ε∞ on the calculator's k-points, which must be a full uniform mesh."""
        kpts = self.parameters.kpts
        kfrac = resolve_kpoints(kpts, atoms)
        _require_uniform_mesh(kpts, kfrac)
        charge = self.model.check(atoms, self.parameters.charge)
        ((hamiltonian_t, translations),) = _hamiltonians(self.model, [atoms])
        return _periodic_response(self.model, atoms, charge, hamiltonian_t, translations, kfrac)

    # -------------------------------------------------------------- derivatives
    def _derivatives(self, atoms: Atoms, with_polarizability: bool) -> dict:
        """Born charges (= dipole derivatives) and optionally dα/dR by autodiff: torch through the
        features and the model H, JAX through the integrals and the response, joined by the bridge.
        The dipole origin is held fixed in space (so Σ_a Z*_a = q·I also for ions)."""
        import torch

        from mlhcalc.qm.bridge import jax_to_torch
        from mlhcalc.qm.integrals import make_template

        charge = self.model.check(atoms, self.parameters.charge)
        key = (tuple(atoms.numbers), charge, with_polarizability)
        if key not in self._bridges:  # one jitted bridge (compiled once, ~1 s) per molecule and charge
            if len(self._bridges) >= 64:
                self._bridges.clear()
            template = make_template(atoms, self.model.basis, charge)
            self._bridges[key] = jax_to_torch(partial(_dipole_polarizability, template, with_polarizability))
        prediction = self.model.predict(atoms, positions_requires_grad=True)
        origin = torch.tensor(dipole_origin(atoms, charge), dtype=torch.float64)
        outputs = self._bridges[key](prediction.hamiltonian, prediction.positions_bohr, origin)
        dipole, alpha = outputs if with_polarizability else (outputs, None)
        components = list(dipole) + (list(alpha.reshape(-1)) if alpha is not None else [])
        rows = []
        for k, component in enumerate(components):
            (gradient,) = torch.autograd.grad(
                component, prediction.positions_bohr, retain_graph=k < len(components) - 1
            )
            rows.append(gradient.numpy())  # [natoms, 3]: d(component) / dR_aj
        born = np.stack(rows[:3], axis=-2)  # [a, i, j] = dμ_i / dR_aj, e (e·bohr / bohr)
        results = {"born_effective_charges": born, "dipole_derivatives": born.copy()}
        if alpha is not None:
            d_alpha = np.stack(rows[3:], axis=-2).reshape(len(atoms), 3, 3, 3)  # [a, i, j, k] = dα_ij / dR_ak
            d_alpha = 0.5 * (d_alpha + d_alpha.transpose(0, 2, 1, 3))
            results["polarizability_derivatives"] = units.polarizability_derivative_angstrom2(d_alpha)
        return results

    # -------------------------------------------------------------- convenience getters
    def get_polarizability(self, atoms: Atoms | None = None) -> np.ndarray:
        """Static polarizability α (3, 3), Å³: of the molecule, or per cell (clamped ions, k-mesh average)."""
        return self.get_property("polarizability", atoms)

    def get_dielectric_tensor(self, atoms: Atoms | None = None) -> np.ndarray:
        """ε∞ = 1 + 4π α_cell / V (3, 3), dimensionless (periodic models; clamped ions)."""
        return self.get_property("dielectric_tensor", atoms)

    def get_born_effective_charges(self, atoms: Atoms | None = None) -> np.ndarray:
        """Z*[a, i, j] = ∂μ_i/∂R_aj (natoms, 3, 3), e (molecules; origin fixed in space)."""
        return self.get_property("born_effective_charges", atoms)

    def get_dipole_derivatives(self, atoms: Atoms | None = None) -> np.ndarray:
        """∂μ_i/∂R_aj as [a, i, j] (natoms, 3, 3), e: the same array as the Born charges."""
        return self.get_property("dipole_derivatives", atoms)

    def get_polarizability_derivatives(self, atoms: Atoms | None = None) -> np.ndarray:
        """∂α_ij/∂R_ak as [a, i, j, k] (natoms, 3, 3, 3), Å² (molecules)."""
        return self.get_property("polarizability_derivatives", atoms)

    def get_homo_lumo(self, atoms: Atoms | None = None) -> tuple[float, float]:
        """(HOMO, LUMO) in eV; for cells (VBM, CBM) over the calculator's k-points."""
        eigenvalues = self.get_property("eigenvalues", atoms)[0]
        occupations = self.get_property("occupations", atoms)[0]
        occupied = occupations > 0
        homo = float(eigenvalues[occupied].max())
        lumo = float(eigenvalues[~occupied].min()) if (~occupied).any() else float("nan")
        return homo, lumo

    def get_dos(
        self, atoms: Atoms | None = None, *, width: float = 0.1, npts: int = 401, window=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian-smeared density of states: (energies eV, DOS states/eV per cell or molecule).

        Both spins, k-points weighted uniformly; energies are absolute (not shifted by the Fermi
        level, unlike ``ase.dft.dos.DOS``); ``window`` (emin, emax) eV defaults to the eigenvalue
        range ± 5 widths.
        """
        from mlhcalc.qm.periodic import density_of_states

        eigenvalues = self.get_property("eigenvalues", atoms)[0]
        weights = self.get_property("kpoint_weights", atoms)
        if window is None:
            window = (eigenvalues.min() - 5 * width, eigenvalues.max() + 5 * width)
        energies = np.linspace(window[0], window[1], npts)
        dos = density_of_states(eigenvalues, energies, width, weights=weights)
        return energies, np.asarray(dos)


# ----------------------------------------------------------------------------- pairing and Raman


class PairedCalculator(Calculator):
    """Forces from one calculator, electronic properties from another.

    ``PairedCalculator(forces=TBLite(method="GFN2-xTB"), electronic=MLHamiltonian("organic"))``
    routes energy, free energy, forces and stress (per-atom variants included) to ``forces`` and
    every other property (dipole, polarizability, charges, eigenvalues, ...) to ``electronic``,
    even when ``forces`` could compute it too. Methods this class lacks (``get_polarizability``,
    ``get_eigenvalues``, ``get_dos``, ...) are those of ``electronic``. Use it for MD and for
    ``ase.vibrations.Infrared``.
    """

    def __init__(self, forces: Calculator, electronic: Calculator, **kwargs):
        self.forces = forces
        self.electronic = electronic
        super().__init__(**kwargs)
        force_side = [p for p in forces.implemented_properties if p in FORCE_PROPERTIES]
        electronic_side = [p for p in electronic.implemented_properties if p not in FORCE_PROPERTIES]
        self.implemented_properties = force_side + electronic_side

    def _owner(self, name: str) -> Calculator:
        return self.forces if name in FORCE_PROPERTIES else self.electronic

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        for name in properties:
            self.results[name] = self._owner(name).get_property(name, self.atoms)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("forces", "electronic"):
            raise AttributeError(name)
        return getattr(self.electronic, name)


class StaticPolarizability(StaticPolarizabilityCalculator):
    """ASE's static-polarizability interface for ``ase.vibrations.raman.StaticRamanCalculator``:
    ``StaticPolarizability(calc)(atoms)`` is α in e²Å²/eV (ASE's
    ``StaticPolarizabilityCalculator`` unit; PlaczekStatic multiplies by Bohr·Hartree to get Å³).

    ``StaticRamanCalculator(atoms, StaticPolarizability, exkwargs={"calc": mlh}, name="raman")``,
    with ``atoms.calc`` a :class:`PairedCalculator` for the forces; then
    ``PlaczekStatic(atoms, name="raman").get_absolute_intensities()``.
    """

    def __init__(self, calc):
        self.calc = calc

    def __call__(self, atoms: Atoms, *args, **kwargs) -> np.ndarray:
        return self.calc.get_polarizability(atoms) * units.ANGSTROM3_TO_ASE_RAMAN
