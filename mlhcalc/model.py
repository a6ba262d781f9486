"""``HamiltonianModel``: equivariant features + per-block model → H in the model basis, with the
metadata that makes a model file self-describing, and safe save/load.

A model lives in a directory: ``model.json`` (metadata, human readable) and ``weights.pt`` (read with
``torch.load(weights_only=True)``: tensors and strings only, never pickled code). Metadata holds
the basis, species, periodicity, level of theory of the targets, feature hypers, package version,
training-data hash, training command and measured metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

import mlhcalc
from mlhcalc.features import FeatureHypers, systems_from_atoms
from mlhcalc.hamiltonian.model import BlockModel, load_block_model, overlap_power, save_block_model
from mlhcalc.registry import find_model
from mlhcalc.structure import validate_atoms

__all__ = ["HamiltonianModel", "Prediction", "ModelFileError", "hash_files", "MODEL_FORMAT"]

MODEL_FORMAT = 1
SCC_TOLERANCE = 1e-10  # e: self-consistent charges at prediction time (cheap with Anderson mixing)
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "model.json"


class ModelFileError(ValueError):
    """A model directory that is missing, corrupt or written by an incompatible version."""


@dataclass
class Prediction:
    """The model Hamiltonian of one structure (hartree, PySCF AO order of the model basis).

    Molecules: ``hamiltonian`` [nao, nao], ``translations`` None. Periodic cells: ``hamiltonian``
    [n_T, nao, nao] = H(T) between the home cell and image T, ``translations`` [n_T, 3] integer
    cell shifts (T = n @ lattice). ``positions_bohr`` is the leaf tensor to differentiate with
    respect to when the prediction was made with ``positions_requires_grad=True``.
    """

    hamiltonian: torch.Tensor
    translations: np.ndarray | None
    positions_bohr: torch.Tensor


def hash_files(paths) -> str:
    """SHA-256 over the bytes of ``paths`` in the given order: the training-data fingerprint."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class HamiltonianModel(torch.nn.Module):
    """Structure → model-basis Hamiltonian, plus the metadata that describes it."""

    def __init__(self, block_model: BlockModel, metadata: dict):
        super().__init__()
        self.block_model = block_model
        self.metadata = dict(metadata)
        self.metadata.setdefault("basis", block_model.basis)
        self.metadata.setdefault("species", [chemical_symbols[z] for z in block_model.features.hypers.species])
        self.metadata.setdefault("periodic", False)

    @classmethod
    def create(
        cls,
        hypers: FeatureHypers,
        basis: str,
        *,
        periodic: bool,
        level_of_theory: str,
        gated: bool = False,
        representation: str = "ao",
        electrostatics: str = "none",
        **metadata,
    ) -> HamiltonianModel:
        """A new (zero-weight) model; fit it with :func:`mlhcalc.hamiltonian.fit_ridge` or train it.
        ``representation="lowdin"``: the model predicts S^-1/2 H S^-1/2; ``electrostatics="scc"``:
        H_ML plus self-consistent-charge electrostatics (:class:`BlockModel`)."""
        if electrostatics != "none" and periodic:
            raise ValueError("electrostatics='scc' is implemented for molecules only")
        meta = {"periodic": periodic, "level_of_theory": level_of_theory, **metadata}
        block = BlockModel(hypers, basis, gated=gated, representation=representation, electrostatics=electrostatics)
        return cls(block, meta)

    @property
    def basis(self) -> str:
        return self.metadata["basis"]

    @property
    def species(self) -> list[str]:
        return list(self.metadata["species"])

    @property
    def periodic(self) -> bool:
        return bool(self.metadata["periodic"])

    def check(self, atoms: Atoms, charge: int | None = None) -> int:
        """Validate ``atoms`` for this model (elements, periodicity, closed shell); returns the charge."""
        symbols = atoms.get_chemical_symbols()
        for index, symbol in enumerate(symbols):
            if symbol not in self.species:
                raise ValueError(
                    f"atom {index} is {symbol}, which this model does not cover (species: "
                    f"{', '.join(self.species)}): remove it or use a model trained on {symbol}"
                )
        return validate_atoms(atoms, self.basis, charge, periodic=self.periodic)

    @property
    def post_processed(self) -> bool:
        """True when the block model's output is not yet the AO Hamiltonian (see :meth:`finish`)."""
        return self.block_model.representation != "ao" or self.block_model.electrostatics != "none"

    def predict(self, atoms: Atoms, *, positions_requires_grad: bool = False, charge: int | None = None) -> Prediction:
        """Model Hamiltonian of one structure (call :meth:`check` first for friendly errors;
        ``charge``: total charge, default from :func:`mlhcalc.structure.validate_atoms`).

        Without ``positions_requires_grad`` no autograd graph is recorded (not even for the weights),
        so the pair features of a large structure are freed chunk by chunk."""
        scc = self.block_model.electrostatics == "scc"
        if self.block_model.representation == "lowdin" and (positions_requires_grad or self.periodic):
            raise ValueError(
                "this model predicts the Löwdin-basis Hamiltonian (an experiment, docs/training.md): position "
                "derivatives and periodic cells are not implemented for it; use an AO-representation model"
            )
        if scc and self.periodic:
            raise ValueError("self-consistent charges (electrostatics='scc') are implemented for molecules only")
        (system,) = systems_from_atoms([atoms], positions_requires_grad=positions_requires_grad)
        with torch.set_grad_enabled(positions_requires_grad and torch.is_grad_enabled()):
            ((layout, hamiltonian),) = self.block_model([system])
        translations = np.asarray(layout.translations) if self.periodic else None
        if not self.periodic and hamiltonian.dim() == 3:
            hamiltonian = hamiltonian[0]
        if scc and positions_requires_grad:  # the charges' position derivatives through S(R), γ(R), q*
            hamiltonian = self._scc_differentiable(atoms, hamiltonian, system.positions, charge)
        elif self.post_processed:
            hamiltonian = torch.from_numpy(self.finish(atoms, hamiltonian.detach().numpy(), charge))
        return Prediction(hamiltonian=hamiltonian, translations=translations, positions_bohr=system.positions)

    def _scc_differentiable(self, atoms: Atoms, h_model: torch.Tensor, positions: torch.Tensor, charge) -> torch.Tensor:
        """H_ML + H_es(q*) as a function of the positions: S(R) and γ(R) carry their derivatives and q*
        its implicit-function one (:func:`mlhcalc.hamiltonian.electrostatics.scc_hamiltonian`)."""
        from mlhcalc.hamiltonian.electrostatics import gamma_torch, overlap_of_positions, scc_hamiltonian
        from mlhcalc.structure import ao_atom_map, to_mole

        mol = to_mole(atoms, self.basis, charge)
        ao_atom = ao_atom_map(mol)
        numbers = atoms.get_atomic_numbers()
        overlap = overlap_of_positions(positions, mol)
        gamma = gamma_torch(numbers, positions)
        hamiltonian, _ = scc_hamiltonian(
            h_model, overlap, gamma, ao_atom, numbers, mol.nelectron // 2, tolerance=SCC_TOLERANCE
        )
        return hamiltonian

    def finish(self, atoms: Atoms, hamiltonian: np.ndarray, charge: int | None = None) -> np.ndarray:
        """The block model's output for a molecule → the AO Hamiltonian every consumer expects:
        S^1/2 H_L S^1/2 for a Löwdin-representation model, H_ML + H_es(q) with self-consistent charges
        for an SCC model (:func:`mlhcalc.hamiltonian.electrostatics.solve_scc`), unchanged otherwise."""
        if not self.post_processed:
            return hamiltonian
        from mlhcalc.structure import ao_atom_map, positions_bohr, to_mole

        mol = to_mole(atoms, self.basis, charge)
        overlap = mol.intor("int1e_ovlp")
        if self.block_model.representation == "lowdin":
            root = overlap_power(overlap, 0.5)
            hamiltonian = root @ hamiltonian @ root
        if self.block_model.electrostatics == "scc":
            from mlhcalc.hamiltonian.electrostatics import gamma_matrix, solve_scc

            numbers = atoms.get_atomic_numbers()
            gamma = gamma_matrix(numbers, positions_bohr(atoms))
            hamiltonian, _, _ = solve_scc(
                hamiltonian, overlap, gamma, ao_atom_map(mol), numbers, mol.nelectron // 2, tolerance=SCC_TOLERANCE
            )
        return hamiltonian

    def forward(self, atoms: Atoms) -> torch.Tensor:
        return self.predict(atoms).hamiltonian

    # ---------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike, **extra_metadata) -> Path:
        """Write ``model.json`` and ``weights.pt`` into ``directory`` (created if needed), atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.metadata.update(extra_metadata)
        meta = {
            **self.metadata,
            "format": MODEL_FORMAT,
            "mlhcalc_version": mlhcalc.__version__,
            "config": self.block_model.config(),
            "hypers": self.block_model.features.hypers.to_dict(),  # the feature hypers, readable at the top
        }
        weights_tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_block_model(self.block_model, weights_tmp, metadata={"format": MODEL_FORMAT})
        meta["weights_sha256"] = hash_files([weights_tmp])
        meta_tmp = directory / (METADATA_FILE + ".tmp")
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(weights_tmp, directory / WEIGHTS_FILE)
        os.replace(meta_tmp, directory / METADATA_FILE)
        return directory

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> HamiltonianModel:
        """Load a model by name (``"organic"``, see :mod:`mlhcalc.registry`) or directory.

        Raises ``FileNotFoundError`` for an unknown model and :class:`ModelFileError` for a corrupt
        or incompatible one, saying what to do.
        """
        directory = find_model(name_or_path)
        fix = "re-install mlhcalc or re-train/re-download the model"
        try:
            meta = json.loads((directory / METADATA_FILE).read_text())
        except (OSError, ValueError) as err:
            message = f"{directory / METADATA_FILE} is unreadable or not valid JSON ({err}): {fix}"
            raise ModelFileError(message) from None
        if meta.get("format") != MODEL_FORMAT:
            raise ModelFileError(
                f"{directory} has model format {meta.get('format')!r}, this mlhcalc reads format {MODEL_FORMAT}: "
                f"use the mlhcalc version that wrote it ({meta.get('mlhcalc_version', 'unknown')}) or {fix}"
            )
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFileError(f"{weights} is missing: {fix}")
        expected = meta.get("weights_sha256")
        if expected and hash_files([weights]) != expected:
            raise ModelFileError(f"{weights} does not match the checksum in model.json (corrupt or truncated): {fix}")
        try:
            block_model, _ = load_block_model(weights)
        except Exception as err:  # torch raises several types for damaged/incompatible archives
            raise ModelFileError(f"cannot load the weights in {weights} ({type(err).__name__}: {err}): {fix}") from None
        meta.pop("config", None)
        return cls(block_model, meta)
