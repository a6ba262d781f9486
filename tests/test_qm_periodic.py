"""Periodic qm layer: image overlaps S(T), Bloch sums, band energies, DOS, band edges and the
Wigner–Seitz inverse transform, checked against PySCF for gth-szv silicon.

One PySCF calculation is shared by the module: KRKS/PBE on the Γ-centred 2×2×2 mesh (plane-wave
mesh 21³, FFTDF; non-SCF Fock matrices on other k from the same density, which is what
``mf.get_bands`` does). ~1 min on one core.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr, Hartree

import mlhcalc.qm  # noqa: F401  (float64 JAX, PySCFAD config)
from mlhcalc.orbitals import structure_ao_slices
from mlhcalc.qm import lattice, periodic
from mlhcalc.structure import lattice_bohr, positions_bohr, to_cell

BASIS = "gth-szv"
N_ELECTRONS = 8  # valence electrons per 2-atom cell with the gth-pade pseudopotential
A_SILICON = 5.43  # Å


def _silicon():
    return bulk("Si", "diamond", a=A_SILICON)


def _ao_slices(atoms):
    return structure_ao_slices(atoms.get_chemical_symbols(), BASIS)


def _ws(matrices_k, kpts, atoms, mesh, **kwargs):
    return periodic.wigner_seitz_transform(
        matrices_k, kpts, lattice_bohr(atoms), positions_bohr(atoms), _ao_slices(atoms), mesh, **kwargs
    )


def _off_mesh_path(atoms, mesh):
    """Points of the fcc band path Γ–X–W–L–Γ–K that are not on the Γ-centred ``mesh``."""
    kfrac = atoms.cell.bandpath("GXWLGK", npoints=30).kpts
    scaled = kfrac * mesh
    return kfrac[np.abs(scaled - np.rint(scaled)).max(axis=1) > 1e-6]


@pytest.fixture(scope="module")
def silicon_scf():
    from pyscf.pbc import dft

    atoms = _silicon()
    # 21³ plane-wave mesh instead of the default 35³: total energy within 1e-6 Ha, 4× cheaper
    cell = to_cell(atoms, BASIS, mesh=[21, 21, 21])
    kpts = cell.make_kpts([2, 2, 2])
    mf = dft.KRKS(cell, kpts, xc="pbe")
    mf.conv_tol = 1e-10
    mf.conv_tol_grad = 1e-6
    mf.kernel()
    assert mf.converged
    dm = mf.make_rdm1()
    kpts4 = cell.make_kpts([4, 4, 4])
    path = _off_mesh_path(atoms, 4)
    kpts_path = cell.get_abs_kpts(path)
    band_energies_path = np.asarray(mf.get_bands(kpts_path)[0])
    return {
        "atoms": atoms,
        "cell": cell,
        "mf": mf,
        "kpts": kpts,
        "fock": np.asarray(mf.get_fock(dm=dm)),
        "overlap": np.asarray(mf.get_ovlp()),
        # the same (non-SCF) Fock operator on the 4×4×4 mesh: H(k) = h(k) + V[ρ_2×2×2](k)
        "kpts4": kpts4,
        "fock4": np.asarray(mf.get_hcore(cell, kpts4) + mf.get_veff(cell, dm, kpts=kpts, kpts_band=kpts4)),
        "overlap4": np.asarray(cell.pbc_intor("int1e_ovlp", kpts=kpts4)),
        "kpts_path": kpts_path,
        "band_energies_path": band_energies_path,
    }


@pytest.fixture(scope="module")
def silicon_real_space(silicon_scf):
    """WS real-space H(T), S(T) of the converged 2×2×2 SCF, plus the discarded imaginary part."""
    s = silicon_scf
    images, complex_hs = _ws(np.stack([s["fock"], s["overlap"]]), s["kpts"], s["atoms"], [2, 2, 2], real=False)
    complex_hs = np.asarray(complex_hs)
    return images, complex_hs[0].real, complex_hs[1].real, np.abs(complex_hs.imag).max()


@pytest.fixture(scope="module")
def exact_overlap_images():
    atoms = _silicon()
    cell = to_cell(atoms, BASIS)
    cutoff = lattice.overlap_cutoff_bohr(cell, precision=1e-12)
    _, translations = lattice.lattice_translations(lattice_bohr(atoms), positions_bohr(atoms), cutoff)
    return translations, periodic.overlap_images(cell, translations)


# ----------------------------------------------------------------------------- S(T) and conventions


def test_overlap_cutoff_keeps_every_overlap_above_precision():
    atoms = _silicon()
    cell = to_cell(atoms, BASIS)
    lat, pos = lattice_bohr(atoms), positions_bohr(atoms)
    cutoff = lattice.overlap_cutoff_bohr(cell, precision=1e-12)
    _, wide = lattice.lattice_translations(lat, pos, cutoff + 6.0)
    overlaps = periodic.overlap_images(cell, wide)
    owner = lattice.atom_index_of_ao(_ao_slices(atoms))
    bond = np.linalg.norm(pos[None, None, :] - pos[None, :, None] + wide[:, None, None, :], axis=-1)
    outside = bond[:, owner[:, None], owner[None, :]] > cutoff[owner[:, None], owner[None, :]]
    assert outside.any() and (~outside).any()
    assert np.abs(overlaps[outside]).max() < 1e-12
    # and the bound is not absurdly loose: overlaps just inside are far above the precision
    assert np.abs(overlaps[~outside]).max() > 0.1


def test_bloch_sum_of_image_overlaps_is_pyscf_overlap_at_any_k(exact_overlap_images):
    translations, overlaps = exact_overlap_images
    atoms = _silicon()
    # PySCF's own lattice sum truncates at cell.precision (1e-8 by default, ~1e-11 error here): tighten it
    cell = to_cell(atoms, BASIS, precision=1e-14)
    kfrac = np.vstack([[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5], np.random.default_rng(0).random((3, 3))])
    kpts = lattice.kpts_cartesian(kfrac, lattice_bohr(atoms))
    reference = np.asarray(cell.pbc_intor("int1e_ovlp", kpts=kpts))
    ours = np.asarray(periodic.bloch_sum(overlaps, translations, kpts))
    assert np.abs(ours - reference).max() < 5e-12  # measured 1.1e-12: our own 1e-12 cutoff, summed
    # the opposite convention (T on the bra, e^{-ik·T}) is measurably different off the time-reversal points
    flipped = np.asarray(periodic.bloch_sum(overlaps, -translations, kpts))
    assert np.abs(flipped - reference)[3:].max() > 0.1


def test_overlap_images_through_pyscfad_match_pyscf_and_finite_differences():
    import jax
    import jax.numpy as jnp

    atoms = _silicon()
    atoms.positions[1] += [0.05, -0.03, 0.02]  # break symmetry so the gradient is not trivially zero
    cell = to_cell(atoms, BASIS)
    _, translations = lattice.lattice_translations(lattice_bohr(atoms), positions_bohr(atoms), 12.0)
    mol_ad = periodic.translated_mole(cell, np.zeros((1, 3)), differentiable=True)
    reference = periodic.overlap_images(cell, translations)
    assert np.abs(np.asarray(periodic.overlap_images_ad(mol_ad, translations)) - reference).max() < 1e-14

    weights = np.random.default_rng(1).standard_normal(reference.shape)
    gradient = np.asarray(
        jax.grad(lambda m: jnp.sum(weights * periodic.overlap_images_ad(m, translations)))(mol_ad).coords
    )
    step = 1e-4  # bohr
    finite = np.zeros_like(gradient)
    for atom in range(len(atoms)):
        for axis in range(3):
            values = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * step * Bohr
                values.append(np.sum(weights * periodic.overlap_images(to_cell(moved, BASIS), translations)))
            finite[atom, axis] = (values[0] - values[1]) / (2 * step)
    assert np.abs(gradient).max() > 0.1
    assert np.abs(gradient - finite).max() < 1e-8


def test_fractional_kpoints_follow_ase_and_pyscf_conventions():
    atoms = _silicon()
    cell = to_cell(atoms, BASIS)
    lat = lattice_bohr(atoms)
    for mesh in ([2, 2, 2], [2, 3, 4]):
        ours = lattice.kpts_cartesian(lattice.gamma_centred_mesh(mesh), lat)
        assert np.abs(ours - cell.make_kpts(mesh)).max() < 1e-14  # same points, same order, Γ first
    path = atoms.cell.bandpath("GXWLGK", npoints=25)
    kpts = lattice.kpts_cartesian(path.kpts, lat)
    assert np.abs(kpts - cell.get_abs_kpts(path.kpts)).max() < 1e-14
    assert np.abs(lattice.kpts_fractional(kpts, lat) - path.kpts).max() < 1e-14
    # fcc Brillouin zone of the primitive cell: |X| = 2π/a, |L| = √3 π/a, |W| = √5 π/a, |K| = 3√2 π/(2a)
    a = A_SILICON / Bohr
    expected = {
        "G": 0.0,
        "X": 2 * np.pi / a,
        "L": np.sqrt(3) * np.pi / a,
        "W": np.sqrt(5) * np.pi / a,
        "K": 3 * np.sqrt(2) * np.pi / (2 * a),
    }
    for label, length in expected.items():
        k = lattice.kpts_cartesian(path.special_points[label], lat)
        assert abs(np.linalg.norm(k) - length) < 1e-12, label


def test_bloch_sum_is_hermitian_exactly_when_real_space_is_transpose_symmetric(exact_overlap_images):
    translations, _ = exact_overlap_images
    atoms = _silicon()
    n_int = np.rint(translations @ np.linalg.inv(lattice_bohr(atoms))).astype(int)
    rng = np.random.default_rng(2)
    raw = rng.standard_normal((len(translations), 8, 8))
    kpts = lattice.kpts_cartesian(rng.random((4, 3)), lattice_bohr(atoms))
    symmetric = periodic.symmetrize_real_space(raw, n_int)
    opposite = lattice.opposite_translation_index(n_int)
    assert np.abs(symmetric[opposite] - np.swapaxes(symmetric, 1, 2)).max() < 1e-15
    for matrices, hermitian in ((symmetric, True), (raw, False)):
        mk = np.asarray(periodic.bloch_sum(matrices, translations, kpts))
        deviation = np.abs(mk - np.conj(np.swapaxes(mk, 1, 2))).max()
        assert (deviation < 1e-12 * np.abs(mk).max()) == hermitian


# ----------------------------------------------------------------------------- Wigner–Seitz transform


def test_wigner_seitz_recovers_a_real_space_matrix_that_fits_the_supercell(exact_overlap_images):
    """A matrix whose bonds are shorter than half the 4×4×4 supercell is recovered from its 64 Bloch sums,
    and hence interpolates exactly at any k."""
    translations, overlaps = exact_overlap_images
    atoms = _silicon()
    lat, pos = lattice_bohr(atoms), positions_bohr(atoms)
    owner = lattice.atom_index_of_ao(_ao_slices(atoms))
    bond = np.linalg.norm(pos[None, None, :] - pos[None, :, None] + translations[:, None, None, :], axis=-1)
    short = overlaps * (bond[:, owner[:, None], owner[None, :]] < 12.0)  # supercell vectors are ≥ 29 bohr
    mesh = [4, 4, 4]
    kmesh = lattice.kpts_cartesian(lattice.gamma_centred_mesh(mesh), lat)
    images, recovered = _ws(periodic.bloch_sum(short, translations, kmesh), kmesh, atoms, mesh)
    kpts = lattice.kpts_cartesian(np.random.default_rng(3).random((6, 3)), lat)
    exact = np.asarray(periodic.bloch_sum(short, translations, kpts))
    interpolated = np.asarray(periodic.bloch_sum(recovered, images.translations_bohr, kpts))
    assert np.abs(exact).max() > 1.0
    assert np.abs(interpolated - exact).max() < 1e-12


def test_wigner_seitz_weights_split_each_supercell_class_evenly():
    atoms = _silicon()
    images = lattice.wigner_seitz_images(lattice_bohr(atoms), positions_bohr(atoms), [2, 2, 2])
    natm = len(atoms)
    for r in range(len(images.supercell_n)):
        in_class = images.supercell_index == r
        assert np.allclose(images.weights[in_class].sum(axis=0), np.ones((natm, natm)), atol=1e-14)
    # fcc 2×2×2: many bonds sit on the Wigner–Seitz boundary, so some classes are shared
    assert (images.weights[images.weights > 0] < 1).any()
    opposite = lattice.opposite_translation_index(images.n_int)
    assert np.array_equal(images.weights[opposite], np.swapaxes(images.weights, 1, 2))


def test_wigner_seitz_hamiltonian_reproduces_pyscf_bands_on_the_mesh(silicon_scf, silicon_real_space):
    s = silicon_scf
    images, h_t, s_t, discarded_imaginary = silicon_real_space
    translations = images.translations_bohr
    assert discarded_imaginary < 1e-10  # time reversal: H(−k) = H(k)*, so H(T) is real
    opposite = lattice.opposite_translation_index(images.n_int)
    assert np.abs(h_t[opposite] - np.swapaxes(h_t, 1, 2)).max() < 1e-12
    assert np.abs(s_t[opposite] - np.swapaxes(s_t, 1, 2)).max() < 1e-12
    assert np.abs(np.asarray(periodic.bloch_sum(h_t, translations, s["kpts"])) - s["fock"]).max() < 1e-10
    assert np.abs(np.asarray(periodic.bloch_sum(s_t, translations, s["kpts"])) - s["overlap"]).max() < 1e-10
    bands = np.asarray(periodic.band_energies(h_t, s_t, translations, s["kpts"]))
    direct = np.asarray(periodic.band_energies_k(s["fock"], s["overlap"]))
    assert np.abs(bands - direct).max() < 1e-10
    # mf.mo_energy comes from the previous iteration's Fock (REFERENCE.md): 1e-6 Ha, not 1e-10
    assert np.abs(bands - np.asarray(s["mf"].mo_energy)).max() < 1e-6


def test_off_mesh_band_energies_converge_with_the_mesh(silicon_scf, silicon_real_space, exact_overlap_images):
    """Off the mesh the WS H(T) is an interpolation. gth-szv AOs are diffuse (overlaps reach 32 bohr), so a
    2×2×2 supercell (WS radius ≈ 7 bohr) aliases badly: measured max error 6.2 eV along Γ–X–W–L–Γ–K.
    From the same operator on 4×4×4 (WS H with exact S(T)): max 0.14 eV, MAE 0.02 eV (6×6×6: 0.2 meV)."""
    s = silicon_scf
    translations, overlaps = exact_overlap_images
    reference = s["band_energies_path"]
    overlap_path = periodic.bloch_sum(overlaps, translations, s["kpts_path"])
    errors = {}
    for mesh, fock, kpts in (([2, 2, 2], s["fock"], s["kpts"]), ([4, 4, 4], s["fock4"], s["kpts4"])):
        images, h_t = _ws(fock, kpts, s["atoms"], mesh)
        hamiltonian_path = periodic.bloch_sum(h_t, images.translations_bohr, s["kpts_path"])
        bands = np.asarray(periodic.band_energies_k(hamiltonian_path, overlap_path))
        errors[mesh[0]] = np.abs(bands - reference).max() * Hartree
    assert errors[4] < 0.25  # eV; measured 0.14
    assert errors[2] > 10 * errors[4]  # the 2×2×2 aliasing documented above


def test_band_energies_do_not_depend_on_which_periodic_image_of_an_atom_is_listed(silicon_scf):
    s = silicon_scf
    atoms, cell = s["atoms"], s["cell"]
    slices = _ao_slices(atoms)
    shift = atoms.cell[0] - 2 * atoms.cell[2]  # a lattice vector, Å
    moved = atoms.copy()
    moved.positions[1] += shift
    # PySCF's Bloch AOs of the moved atom pick up e^{ik·L}: M'(k) = D M(k) D*, D = e^{ik·L} on its AOs
    kpts4 = s["kpts4"]
    gauge = np.ones((len(kpts4), cell.nao), dtype=complex)
    gauge[:, slices[1]] = np.exp(1j * kpts4 @ (shift / Bohr))[:, None]
    rotate = gauge[:, :, None] * np.conj(gauge[:, None, :])
    moved_cell = to_cell(moved, BASIS, mesh=[21, 21, 21])
    assert np.abs(moved_cell.pbc_intor("int1e_ovlp", kpts=kpts4) - rotate * s["overlap4"]).max() < 1e-10

    kpts = s["kpts_path"]
    bands = []
    for structure, fock, overlap in (
        (atoms, s["fock4"], s["overlap4"]),
        (moved, rotate * s["fock4"], rotate * s["overlap4"]),
    ):
        images, (h_t, s_t) = _ws(np.stack([fock, overlap]), kpts4, structure, [4, 4, 4])
        bands.append(np.asarray(periodic.band_energies(h_t, s_t, images.translations_bohr, kpts)))
    assert np.abs(bands[0] - bands[1]).max() < 1e-9


def test_band_energies_do_not_depend_on_atom_order(silicon_scf):
    s = silicon_scf
    atoms = s["atoms"]
    swapped = atoms[[1, 0]]
    slices = _ao_slices(atoms)
    order = np.concatenate([np.arange(slices[1].start, slices[1].stop), np.arange(slices[0].start, slices[0].stop)])
    bands = []
    for structure, perm in ((atoms, np.arange(len(order))), (swapped, order)):
        hs = np.stack([s["fock4"], s["overlap4"]])[:, :, perm][:, :, :, perm]
        images, (h_t, s_t) = _ws(hs, s["kpts4"], structure, [4, 4, 4])
        bands.append(np.asarray(periodic.band_energies(h_t, s_t, images.translations_bohr, s["kpts_path"])))
    assert np.abs(bands[0] - bands[1]).max() < 1e-9


# ----------------------------------------------------------------------------- gradients, DOS, band edges


@pytest.mark.parametrize("perturbed", ["hamiltonian", "overlap"])
@pytest.mark.parametrize("observable", ["occupied_sum_over_mesh", "degenerate_valence_top_at_gamma"])
def test_gradient_of_band_energy_sums_matches_finite_differences(
    silicon_scf, silicon_real_space, observable, perturbed
):
    import jax

    images, h_t, s_t, _ = silicon_real_space
    translations = images.translations_bohr
    kpts = silicon_scf["kpts"]  # Γ first: silicon's valence top is triply degenerate there
    gamma = np.asarray(periodic.band_energies(h_t, s_t, translations, kpts[:1]))[0]
    assert gamma[3] - gamma[1] < 1e-8  # the degeneracy the gradient has to survive

    def value(h, s):
        bands = periodic.band_energies(h, s, translations, kpts)
        if observable == "occupied_sum_over_mesh":
            return bands[:, : N_ELECTRONS // 2].sum()
        return bands[0, 1:4].sum()

    # a random direction that keeps H(−T) = H(T)ᵀ (so H(k) stays Hermitian), small enough that the
    # O(step²) error of central differences is ~1e-8 relative
    rng = np.random.default_rng(4)
    direction = [np.zeros_like(h_t), np.zeros_like(s_t)]
    index = 0 if perturbed == "hamiltonian" else 1
    direction[index] = 0.01 * np.asarray(periodic.symmetrize_real_space(rng.standard_normal(h_t.shape), images.n_int))
    dh, ds = direction
    grad_h, grad_s = jax.grad(value, argnums=(0, 1))(h_t, s_t)
    analytic = float(np.sum(grad_h * dh) + np.sum(grad_s * ds))
    step = 1e-4
    finite = float(value(h_t + step * dh, s_t + step * ds) - value(h_t - step * dh, s_t - step * ds)) / (2 * step)
    assert abs(finite) > 1e-4
    assert abs(analytic - finite) < 1e-6 * abs(finite)


def test_dos_counts_states_and_electrons_and_band_edges_are_silicon_like(silicon_scf, silicon_real_space):
    bands = np.asarray(silicon_scf["mf"].mo_energy)  # (8 k, 8 bands) on the 2×2×2 mesh
    sigma = 0.005
    energies = np.arange(bands.min() - 12 * sigma, bands.max() + 12 * sigma, sigma / 20)
    dos = np.asarray(periodic.density_of_states(bands, energies, sigma))
    assert abs(np.trapezoid(dos, energies) - 2 * bands.shape[1]) < 1e-8

    vbm, cbm = (float(e) for e in periodic.band_edges(bands, N_ELECTRONS))
    fermi = float(periodic.fermi_level(bands, N_ELECTRONS))
    assert np.argmax(bands[:, 3]) == 0  # valence-band maximum at Γ
    # the minimal basis puts the lowest conduction state of this mesh at L (2.3 eV above Γ), not near X
    assert 1.5 < (cbm - vbm) * Hartree < 3.0
    assert vbm < fermi < cbm
    below = energies <= fermi
    assert abs(np.trapezoid(dos[below], energies[below]) - N_ELECTRONS) < 1e-6
    with pytest.raises(ValueError):
        periodic.band_edges(bands, 7)
