"""Speed of the periodic qm layer for bulk silicon, single-threaded.

Per system (2-atom fcc cell and 8-atom cubic cell; gth-szv and gth-dzvp):
  S(T) numpy     lattice_translations (overlaps ≥ 1e-12) + overlap_images (pyscf.gto.mole.intor_cross)
  S(T) PySCFAD   overlap_images_ad value, and value + gradient w.r.t. the coordinates
  WS transform   wigner_seitz_transform of H and S on the reference mesh (4×4×4 / 2×2×2)
  bands          band_energies (Bloch sum + complex generalized eigh) on a 200-point band path,
                 jitted: first call (compilation) and steady state (fastest of 5)
  grad           jax.grad of the occupied band-energy sum over the mesh w.r.t. H(T) and S(T)
H(k) is a stand-in (S(k) scaled), the cost does not depend on the values. Run:
``python benchmarks/qm_layer_periodic.py`` (about 1–2 min).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("PYSCFAD_HOME", os.path.join(os.path.expanduser("~"), ".cache", "mlhcalc-pyscfad"))

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

import mlhcalc.qm  # noqa: E402, F401  (x64)
from mlhcalc.orbitals import structure_ao_slices  # noqa: E402
from mlhcalc.qm import lattice, periodic  # noqa: E402
from mlhcalc.structure import lattice_bohr, positions_bohr, to_cell  # noqa: E402


def timed(function, *args, repeat: int = 1):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = jax.block_until_ready(function(*args))
        best = min(best, time.perf_counter() - start)
    return best, result


def run(name: str, atoms, basis: str, mesh: int) -> dict:
    cell = to_cell(atoms, basis)
    lat, pos = lattice_bohr(atoms), positions_bohr(atoms)
    row = {"system": name, "basis": basis, "nao": cell.nao, "mesh": f"{mesh}^3"}

    def numpy_overlaps():
        _, translations = lattice.lattice_translations(lat, pos, lattice.overlap_cutoff_bohr(cell))
        return translations, periodic.overlap_images(cell, translations)

    row["S(T) numpy s"], (translations, _) = timed(numpy_overlaps, repeat=3)
    row["nT"] = len(translations)

    mol_ad = periodic.translated_mole(cell, np.zeros((1, 3)), differentiable=True)
    row["S(T) PySCFAD s"], _ = timed(periodic.overlap_images_ad, mol_ad, translations)
    scalar = jax.value_and_grad(lambda m: jnp.sum(periodic.overlap_images_ad(m, translations) ** 2))
    row["S(T) PySCFAD+grad s"], _ = timed(scalar, mol_ad)

    kmesh = cell.make_kpts([mesh] * 3)
    overlap_k = np.asarray(cell.pbc_intor("int1e_ovlp", kpts=kmesh))
    stack = np.stack([0.3 * overlap_k, overlap_k])
    slices = structure_ao_slices(atoms.get_chemical_symbols(), basis)
    row["WS transform s"], (images, (h_t, s_t)) = timed(
        lambda: periodic.wigner_seitz_transform(stack, kmesh, lat, pos, slices, [mesh] * 3), repeat=3
    )
    row["nT(WS)"] = len(images.n_int)

    path = lattice.kpts_cartesian(atoms.cell.bandpath("GXWLGK", npoints=200).kpts, lat) if len(atoms) == 2 else None
    if path is None:  # the fcc path belongs to the primitive cell only: use the cubic cell's own path
        path = lattice.kpts_cartesian(atoms.cell.bandpath(npoints=200).kpts, lat)
    bands = jax.jit(periodic.band_energies)
    row["bands compile s"], _ = timed(bands, h_t, s_t, images.translations_bohr, path)
    row["bands steady s"], _ = timed(bands, h_t, s_t, images.translations_bohr, path, repeat=5)

    n_occ = 2 * len(atoms)  # 4 valence electrons per Si → 2 bands per atom
    grad = jax.jit(
        jax.grad(
            lambda h, s: periodic.band_energies(h, s, images.translations_bohr, kmesh)[:, :n_occ].sum(),
            argnums=(0, 1),
        )
    )
    timed(grad, h_t, s_t)
    row["grad steady s"], _ = timed(grad, h_t, s_t, repeat=3)
    return row


def main() -> None:
    primitive = bulk("Si", "diamond", a=5.43)
    cubic = bulk("Si", "diamond", a=5.43, cubic=True)
    rows = [
        run("Si2 fcc", primitive, "gth-szv", 4),
        run("Si2 fcc", primitive, "gth-dzvp", 4),
        run("Si8 cubic", cubic, "gth-szv", 2),
    ]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
