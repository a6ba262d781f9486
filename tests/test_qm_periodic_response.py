"""Periodic clamped-ion response (mlhcalc/qm/periodic_response.py): k-derivatives of Bloch sums,
interband position matrix elements against finite differences of PySCF's plane-wave overlaps of the
cell-periodic states, a molecule in a box (also cut by the cell boundary) against the molecular
sum-over-states α, and silicon's α per cell and ε∞ (symmetry, rotation, origin, k-mesh convergence).

The silicon Hamiltonian is a cached fixture, ``tests/data/si2_gth_szv_pbe_hamiltonian.npz`` (23 kB):
the Wigner–Seitz H(T) of PySCF's KRKS/PBE gth-szv Fock matrices of bulk Si (a = 5.43 Å) on the
Γ-centred 4×4×4 mesh. ``python tests/test_qm_periodic_response.py --regenerate`` rebuilds it (~80 s);
``python tests/test_qm_periodic_response.py`` prints the k-mesh convergence table of docs/periodic.md.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from scipy.linalg import eigh
from scipy.spatial.transform import Rotation

import mlhcalc.qm  # noqa: F401  (float64 JAX, PySCFAD config)
from mlhcalc.qm import lattice, periodic
from mlhcalc.qm.eigen import aufbau_occupations
from mlhcalc.qm.periodic_response import (
    bloch_sum_derivative,
    cell_polarizability,
    dielectric_tensor,
    interband_position,
    position_images,
)
from mlhcalc.qm.response import polarizability
from mlhcalc.structure import lattice_bohr, positions_bohr, to_cell, to_mole

FIXTURE = Path(__file__).parent / "data" / "si2_gth_szv_pbe_hamiltonian.npz"
BASIS = "gth-szv"
N_ELECTRONS = 8  # valence electrons per 2-atom cell with the gth-pade pseudopotential
A_SILICON = 5.43  # Å
FIXTURE_MESH = (4, 4, 4)
GENERIC_K = (0.2, 0.4, 0.6)  # fractional; no degenerate bands there, and on a 5×5×5 mesh for PySCF's ft_ao


def build_silicon_fixture(path: Path = FIXTURE) -> None:
    """KRKS/PBE gth-szv Si on the Γ-centred 4×4×4 mesh (21³ plane-wave mesh, FFTDF); the Fock matrices
    of the final density, Wigner–Seitz-transformed to a real H(T), and PySCF's band energies."""
    from pyscf.pbc import dft

    from mlhcalc.orbitals import structure_ao_slices

    atoms = bulk("Si", "diamond", a=A_SILICON)
    cell = to_cell(atoms, BASIS, mesh=[21, 21, 21])
    kpts = cell.make_kpts(FIXTURE_MESH)
    mf = dft.KRKS(cell, kpts, xc="pbe")
    mf.conv_tol, mf.conv_tol_grad = 1e-10, 1e-6
    mf.kernel()
    assert mf.converged
    fock = np.asarray(mf.get_fock(dm=mf.make_rdm1()))
    ao_slices = structure_ao_slices(atoms.get_chemical_symbols(), BASIS)
    images, hamiltonian_t = periodic.wigner_seitz_transform(
        fock, kpts, lattice_bohr(atoms), positions_bohr(atoms), ao_slices, FIXTURE_MESH
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, hamiltonian=np.asarray(hamiltonian_t), n_int=images.n_int, band_energy=np.asarray(mf.mo_energy)
    )


def silicon_system(atoms=None) -> dict:
    """The fixture's H(T) with exact S(T), R(T) (overlaps ≥ 1e-12) of ``atoms`` (default: the fixture's)."""
    atoms = bulk("Si", "diamond", a=A_SILICON) if atoms is None else atoms
    stored = np.load(FIXTURE)
    cell = to_cell(atoms, BASIS)
    lat = lattice_bohr(atoms)
    cutoff = lattice.overlap_cutoff_bohr(cell)
    _, overlap_translations = lattice.lattice_translations(lat, positions_bohr(atoms), cutoff)
    return {
        "atoms": atoms,
        "cell": cell,
        "lattice": lat,
        "hamiltonian_t": stored["hamiltonian"],
        "hamiltonian_translations": stored["n_int"] @ lat,
        "overlap_t": periodic.overlap_images(cell, overlap_translations),
        "position_t": position_images(cell, overlap_translations),
        "overlap_translations": overlap_translations,
        "band_energy": stored["band_energy"],
    }


def alpha_on_kpoints(system: dict, kfrac, n_electrons: int = N_ELECTRONS) -> np.ndarray:
    """α per cell (bohr³) of a :func:`silicon_system` on fractional k-points."""
    kpts = lattice.kpts_cartesian(kfrac, system["lattice"])
    return np.asarray(
        cell_polarizability(
            system["hamiltonian_t"],
            system["hamiltonian_translations"],
            system["overlap_t"],
            system["position_t"],
            system["overlap_translations"],
            kpts,
            n_electrons,
        )
    )


def alpha_on_mesh(system: dict, mesh) -> np.ndarray:
    """α per cell (bohr³) on the Γ-centred ``mesh``."""
    return alpha_on_kpoints(system, lattice.gamma_centred_mesh(mesh))


@pytest.fixture(scope="module")
def silicon():
    return silicon_system()


# ----------------------------------------------------------------------------- ingredients


def test_fixture_hamiltonian_reproduces_pyscf_bands_on_its_mesh(silicon):
    """The cached H(T) with the exact S(T) is PySCF's Hamiltonian on the 4×4×4 mesh (mo_energy comes
    from the previous SCF iteration's Fock: ~1e-8 Ha)."""
    kpts = lattice.kpts_cartesian(lattice.gamma_centred_mesh(FIXTURE_MESH), silicon["lattice"])
    bands = periodic.band_energies_k(
        periodic.bloch_sum(silicon["hamiltonian_t"], silicon["hamiltonian_translations"], kpts),
        periodic.bloch_sum(silicon["overlap_t"], silicon["overlap_translations"], kpts),
    )
    np.testing.assert_allclose(np.asarray(bands), silicon["band_energy"], atol=1e-6)


def test_k_derivatives_of_bloch_sums_equal_central_differences(silicon):
    """∂_k M(k) = Σ_T iT e^{ik·T} M(T) for H and S at a generic k; step 1e-5 bohr⁻¹."""
    kpt = lattice.kpts_cartesian(GENERIC_K, silicon["lattice"])[0]
    step = 1e-5
    for matrices_t, translations in (
        (silicon["hamiltonian_t"], silicon["hamiltonian_translations"]),
        (silicon["overlap_t"], silicon["overlap_translations"]),
    ):
        analytic = np.asarray(bloch_sum_derivative(matrices_t, translations, kpt))[:, 0]
        for axis in range(3):
            shift = step * np.eye(3)[axis]
            plus, minus = (periodic.bloch_sum(matrices_t, translations, kpt + s)[0] for s in (shift, -shift))
            central = np.asarray(plus - minus) / (2 * step)
            assert np.abs(analytic[axis] - central).max() <= 1e-7 * np.abs(analytic).max()


def test_position_images_are_ket_centred_position_integrals(silicon):
    """R(T) = <φ_μ|r − T|φ_ν(r − T)>: at T = 0 PySCF's int1e_r about 0; every R(T) equals the integral
    about the image's origin T (checked on a few images against a cell moved by −T)."""
    cell = silicon["cell"]
    translations = silicon["overlap_translations"]
    with cell.with_common_orig(np.zeros(3)):
        np.testing.assert_allclose(silicon["position_t"][:, 0], cell.intor("int1e_r", comp=3), atol=1e-12)
    from pyscf.gto.mole import intor_cross

    for index in (1, 7, 40):
        home = periodic.translated_mole(cell, -translations[index][None])
        image = periodic.translated_mole(cell, np.zeros((1, 3)))
        expected = intor_cross("int1e_r", home, image, comp=3)  # <φ_μ(r + T)| r |φ_ν(r)>
        np.testing.assert_allclose(silicon["position_t"][:, index], expected, atol=1e-12)


def test_interband_position_is_i_u_c_dk_u_v_from_pyscf_plane_wave_overlaps(silicon):
    """r_cv = i<u_c|∂_k u_v> against an independent route: central differences of
    <u_c(k+δ)|u_v(k)> = C_c(k+δ)† M C_v(k), M = Σ_T e^{ik·T} ∫ φ_λ e^{iδ·r} φ_μ(r−T) from PySCF's
    lattice-summed AO-pair Fourier transform (ft_aopair_kpts, q = −δ), the states at k+δ
    parallel-transported (<u_c(k+δ)|u_c(k)> > 0). Compared gauge-invariantly: r^a_cv conj(r^b_cv),
    complex, to 1e-6 relative (measured 3e-7, from the step)."""
    from pyscf.pbc.df.ft_ao import ft_aopair_kpts

    cell = to_cell(silicon["atoms"], BASIS, precision=1e-13)
    kpt = lattice.kpts_cartesian(GENERIC_K, silicon["lattice"])[0]
    h_t, h_translations = silicon["hamiltonian_t"], silicon["hamiltonian_translations"]
    s_t, s_translations = silicon["overlap_t"], silicon["overlap_translations"]
    energy, position_cv = interband_position(
        periodic.bloch_sum(h_t, h_translations, kpt),
        periodic.bloch_sum(s_t, s_translations, kpt),
        bloch_sum_derivative(h_t, h_translations, kpt),
        bloch_sum_derivative(s_t, s_translations, kpt),
        periodic.bloch_sum(silicon["position_t"], s_translations, kpt),
        N_ELECTRONS // 2,
    )
    position_cv = np.asarray(position_cv)[:, 0]
    assert np.diff(np.asarray(energy)[0]).min() > 1e-3  # no degeneracy at this k: the FD gauge is smooth

    def states(k):  # H(k) of the model, S(k) from PySCF's own lattice sum
        hamiltonian_k = np.asarray(periodic.bloch_sum(h_t, h_translations, k))[0]
        return eigh(hamiltonian_k, cell.pbc_intor("int1e_ovlp", kpts=k))

    _, c0 = states(kpt)
    step = 2e-5  # FD error ∝ step², measured 2.7e-5 relative at 2e-4 and 4e-7 at 2.5e-5
    finite_difference = np.zeros_like(position_cv)
    for axis in range(3):
        overlaps = []
        for sign in (1, -1):
            shift = sign * step * np.eye(3)[axis]
            _, c1 = states(kpt + shift)
            pair_ft = ft_aopair_kpts(cell, np.zeros((1, 3)), q=-shift, kptjs=kpt[None], bvk_kmesh=np.array([5, 5, 5]))
            u_overlap = c1.conj().T @ pair_ft[0, 0] @ c0  # <u_p(k+δ)|u_q(k)>
            diagonal = np.diag(u_overlap)
            u_overlap = (diagonal / np.abs(diagonal)).conj()[:, None] * u_overlap  # parallel transport
            overlaps.append(u_overlap[N_ELECTRONS // 2 :, : N_ELECTRONS // 2])
        # d/dk <u_c(k+δ)|u_v(k)> = <∂u_c|u_v> = −<u_c|∂u_v>, so r_cv = −i d/dk <u_c(k+δ)|u_v(k)>
        finite_difference[axis] = -1j * (overlaps[0] - overlaps[1]) / (2 * step)
    # the test side's eigenvectors have other phases: compare r^a_cv conj(r^b_cv)
    formula = np.einsum("acv,bcv->abcv", position_cv, position_cv.conj())
    reference = np.einsum("acv,bcv->abcv", finite_difference, finite_difference.conj())
    assert np.abs(reference).max() > 1.0  # bohr²: the elements are not small
    np.testing.assert_allclose(formula, reference, atol=1e-6 * np.abs(reference).max())


# ----------------------------------------------------------------------------- molecule in a box


def molecular_crystal(shift_angstrom, box_angstrom=15.0):
    """A rotated water molecule (RHF/STO-3G Fock F as the fixed Hamiltonian) placed at ``shift`` in a
    cubic box, wrapped into the cell: the crystal of non-overlapping copies has H(T) = F on the atom-pair
    blocks (a, b) at T = (n_b − n_a)·L, where atom a was wrapped by −n_a cells, and zero elsewhere.
    Returns (molecular α of F by sum over states, the crystal's real-space matrices and lattice)."""
    from pyscf import scf

    atoms = molecule("H2O")
    atoms.positions = atoms.positions @ Rotation.from_euler("zyx", [30, 50, 70], degrees=True).as_matrix().T
    atoms.positions += shift_angstrom
    mol = to_mole(atoms, "sto-3g")
    mf = scf.RHF(mol)
    mf.conv_tol, mf.verbose = 1e-10, 0
    mf.kernel()
    fock, overlap = mf.get_fock(), mf.get_ovlp()
    with mol.with_common_orig(np.zeros(3)):
        dipole_ints = mol.intor("int1e_r", comp=3)
    alpha_molecule = polarizability(fock, overlap, dipole_ints, aufbau_occupations(mol.nelectron, mol.nao))

    lat = lattice_bohr(Atoms(cell=np.eye(3) * box_angstrom, pbc=True))
    cell_shift = np.floor(positions_bohr(atoms) @ np.linalg.inv(lat)).astype(int)  # n_a
    wrapped = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions - cell_shift @ np.eye(3) * box_angstrom)
    wrapped_mol = to_mole(wrapped, "sto-3g")
    n_int, translations = lattice.lattice_translations(
        lat, positions_bohr(wrapped), lattice.overlap_cutoff_bohr(wrapped_mol)
    )
    index = {tuple(n): i for i, n in enumerate(n_int.tolist())}
    hamiltonian_t = np.zeros((len(n_int), mol.nao, mol.nao))
    aos = [slice(a0, a1) for _, _, a0, a1 in mol.aoslice_by_atom()]
    for a, b in np.ndindex(len(atoms), len(atoms)):
        hamiltonian_t[index[tuple(cell_shift[b] - cell_shift[a])], aos[a], aos[b]] = fock[aos[a], aos[b]]
    crystal = {
        "lattice": lat,
        "hamiltonian_t": hamiltonian_t,
        "hamiltonian_translations": translations,
        "overlap_t": periodic.overlap_images(wrapped_mol, translations),
        "position_t": position_images(wrapped_mol, translations),
        "overlap_translations": translations,
        "cell_shift": cell_shift,
    }
    return np.asarray(alpha_molecule), crystal


@pytest.mark.parametrize(
    "shift, cut",
    [((7.5, 7.5, 7.5), False), ((0.1, 0.2, 0.3), True)],
    ids=["centred", "cut-by-the-cell-boundary"],
)
def test_molecule_in_a_box_has_the_molecular_polarizability(shift, cut):
    """Images 15 Å apart do not overlap (< 1e-15), so α per cell is the molecule's sum-over-states α of
    the same F, on any k-mesh. Cut by the cell boundary, the copies' H(T), S(T) live on T ≠ 0 and
    ∂_k H, ∂_k S and the image positions all contribute (a sign error in any term breaks it)."""
    alpha_molecule, crystal = molecular_crystal(shift)
    assert bool((crystal["cell_shift"] != 0).any()) == cut
    n_electrons = 10
    for mesh in (1, 2):
        kpts = lattice.kpts_cartesian(lattice.gamma_centred_mesh(mesh), crystal["lattice"])
        alpha_cell = cell_polarizability(
            crystal["hamiltonian_t"],
            crystal["hamiltonian_translations"],
            crystal["overlap_t"],
            crystal["position_t"],
            crystal["overlap_translations"],
            kpts,
            n_electrons,
        )
        np.testing.assert_allclose(np.asarray(alpha_cell), alpha_molecule, atol=1e-8 * np.abs(alpha_molecule).max())


# ----------------------------------------------------------------------------- silicon


def test_silicon_alpha_is_isotropic_positive_and_epsilon_converges_with_the_mesh(silicon):
    """Cubic Si: α per cell = α₀·1 (off-diagonal and anisotropy ≤ 1e-8 α₀), α₀ > 0, ε∞ > 1, and ε∞
    decreases towards its limit with shrinking steps on the Γ-centred meshes 2, 3, 4, 6 (values in
    docs/periodic.md, where the table continues to 20×20×20)."""
    epsilon = []
    for mesh in (2, 3, 4, 6):
        alpha = alpha_on_mesh(silicon, mesh)
        alpha0 = np.trace(alpha) / 3
        assert alpha0 > 0
        np.testing.assert_allclose(alpha, alpha0 * np.eye(3), atol=1e-8 * alpha0)
        epsilon.append(float(np.asarray(dielectric_tensor(alpha, silicon["lattice"]))[0, 0]))
    steps = -np.diff(epsilon)
    assert min(epsilon) > 1 and (steps > 0).all() and (np.diff(steps) < 0).all(), epsilon
    np.testing.assert_allclose(epsilon, [38.428, 20.521, 14.481, 10.488], atol=2e-3)  # pins the numbers in the docs


def test_polarizability_rotates_as_a_tensor_and_ignores_where_the_crystal_sits():
    """A distorted (non-cubic) Si cell with the fixture's H(T) as model: rotating structure and AO blocks
    (s invariant, (px, py, pz) as a vector: the exact S(T) of the rotated cell confirms the block
    rotation to 1e-12) gives Q α Qᵀ; a rigid translation (R(T) → R(T) + d S(T)) leaves α unchanged
    (1e-9 relative). 3×3×3 mesh."""
    atoms = bulk("Si", "diamond", a=A_SILICON)
    atoms.positions[1] += [0.05, -0.03, 0.02]
    atoms.set_cell(atoms.cell[:] @ np.diag([1.02, 0.99, 1.0]), scale_atoms=True)
    reference = silicon_system(atoms)
    alpha = alpha_on_mesh(reference, 3)
    assert np.abs(alpha - np.trace(alpha) / 3 * np.eye(3)).max() > 1e-3 * np.trace(alpha)  # anisotropic

    rotation = Rotation.from_euler("zyx", [20, -35, 65], degrees=True).as_matrix()
    rotated_atoms = atoms.copy()
    rotated_atoms.set_cell(atoms.cell[:] @ rotation.T, scale_atoms=True)
    rotated = silicon_system(rotated_atoms)
    ao_rotation = np.kron(np.eye(2), np.block([[np.ones((1, 1)), np.zeros((1, 3))], [np.zeros((3, 1)), rotation]]))
    np.testing.assert_allclose(rotated["overlap_t"], ao_rotation @ reference["overlap_t"] @ ao_rotation.T, atol=1e-12)
    rotated["hamiltonian_t"] = ao_rotation @ reference["hamiltonian_t"] @ ao_rotation.T
    tolerance = 1e-9 * np.abs(alpha).max()
    np.testing.assert_allclose(alpha_on_mesh(rotated, 3), rotation @ alpha @ rotation.T, atol=tolerance)

    moved_atoms = atoms.copy()
    moved_atoms.positions += [0.3, -0.2, 0.5]
    moved = silicon_system(moved_atoms)
    np.testing.assert_allclose(alpha_on_mesh(moved, 3), alpha, atol=tolerance)


def test_metallic_bands_are_refused(silicon):
    """No gap, no finite response: 6 electrons per cell would put the Fermi level inside silicon's
    triply degenerate valence-band top at Γ; a ValueError, not a division by a zero gap."""
    with pytest.raises(ValueError, match="insulator"):
        alpha_on_kpoints(silicon, lattice.gamma_centred_mesh(2), n_electrons=6)


def print_convergence_table(meshes=(1, 2, 3, 4, 6, 8, 10, 12, 16, 20)) -> None:
    """α₀ (bohr³ per cell) and ε∞ of the fixture's Si Hamiltonian on Γ-centred and Monkhorst–Pack n×n×n
    meshes (Markdown rows for docs/periodic.md)."""
    import time

    from ase.dft.kpoints import monkhorst_pack

    system = silicon_system()
    print("| n | Γ-centred α₀ (bohr³) | Γ-centred ε∞ | Monkhorst–Pack α₀ (bohr³) | Monkhorst–Pack ε∞ | seconds |")
    print("|---|---|---|---|---|---|")
    for n in meshes:
        start = time.perf_counter()
        row = []
        for kfrac in (lattice.gamma_centred_mesh(n), monkhorst_pack((n, n, n))):
            alpha = alpha_on_kpoints(system, kfrac)
            epsilon = np.asarray(dielectric_tensor(alpha, system["lattice"]))
            row += [f"{np.trace(alpha) / 3:.2f}", f"{np.trace(epsilon) / 3:.3f}"]
        print(f"| {n} | " + " | ".join(row) + f" | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        build_silicon_fixture()
    print_convergence_table()
