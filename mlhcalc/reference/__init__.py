"""Reference labels from PySCF: resumable, parallel, one documented HDF5 format (``docs/data.md``).

- :func:`label` computes the labels of every structure, stage by stage (``minimal``: STO-3G or
  gth-szv with S and the Fock/H(k) matrices; ``large``: def2-TZVP or gth-dzvp; ``large_polarizability``:
  def2-TZVP CPKS), into ``OUT.d/`` (one atomic file per structure-stage); reruns compute only what is missing.
- :func:`read` returns ``ase.Atoms`` (Å) with the labels in ``atoms.info`` (atomic units).
- :func:`consolidate` packs ``OUT.d/`` into one compressed ``OUT.h5``; :func:`read_failures` lists errors.

The levels of theory are in :mod:`mlhcalc.reference.levels`; the calculations in
:mod:`mlhcalc.reference.compute`.
"""

from mlhcalc.reference.levels import LEVELS, MOLECULE_STAGES, SILICON_STAGES, MoleculeLevel, SiliconLevel
from mlhcalc.reference.runner import LabelError, LabelSummary, default_workers, label, parse_stages
from mlhcalc.reference.storage import FORMAT_VERSION, consolidate, read, read_failures, result_paths

__all__ = [
    "FORMAT_VERSION",
    "LEVELS",
    "MOLECULE_STAGES",
    "SILICON_STAGES",
    "MoleculeLevel",
    "SiliconLevel",
    "LabelError",
    "LabelSummary",
    "label",
    "read",
    "read_failures",
    "consolidate",
    "result_paths",
    "default_workers",
    "parse_stages",
]
