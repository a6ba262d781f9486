"""The molecular qm layer against PySCF, pyscf-properties and finite differences.

References are B3LYPG/STO-3G Fock matrices built from the final density of a tightly converged
PySCF SCF (cached per session). Finite differences are central; steps and tolerances are stated
where used. Gradients are checked w.r.t. the Fock matrix and, at fixed Fock matrix, w.r.t.
nuclear positions (through S(R) and r(R)), including molecules with degenerate occupied levels.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from ase import Atoms
from ase.build import molecule

import mlhcalc.qm  # noqa: F401  (x64, PySCFAD config)
from mlhcalc.qm.eigen import (
    aufbau_occupations,
    band_energy,
    density_matrix,
    generalized_eigh,
    homo_lumo_gap,
    make_rdm1,
    n_occupied,
)
from mlhcalc.qm.integrals import (
    AOTemplate,
    ao_integrals,
    ao_integrals_pyscfad,
    dipole_origin,
    make_template,
)
from mlhcalc.qm.molecular import (
    electronic_dipole,
    lowdin_charges,
    molecule_properties,
    mulliken_charges,
    pad_system,
    response_properties,
    spd_sqrt,
)
from mlhcalc.qm.response import polarizability, polarizability_field, polarizability_sos
from mlhcalc.structure import dipole_origin as structure_dipole_origin
from mlhcalc.structure import positions_bohr, to_mole


def _hydroxide() -> Atoms:
    ion = Atoms("OH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    ion.info["charge"] = -1
    return ion


BUILDERS = {
    "H2O": lambda: molecule("H2O"),
    "C3H8": lambda: molecule("C3H8"),  # propane, 11 atoms
    "CH4": lambda: molecule("CH4"),  # triply degenerate occupied t2 (exact)
    "NH3": lambda: molecule("NH3"),  # doubly degenerate occupied e (split ~4e-7 Ha by the grid)
    "OH-": _hydroxide,  # charged: dipole about the centre of mass
    "C6H6": lambda: molecule("C6H6"),  # slow tests only
}


@dataclass(frozen=True)
class Reference:
    atoms: Atoms
    mf: object  # converged pyscf RKS, mo_energy/mo_coeff replaced by the eigenpairs of ``fock``
    fock: np.ndarray  # F from the final density
    mo_energy_pyscf: np.ndarray  # PySCF's own mo_energy at convergence
    dipole_pyscf: np.ndarray  # mf.dip_moment(unit='AU') at convergence
    template: AOTemplate
    positions: jax.Array  # bohr
    mo_occ: jax.Array


@functools.cache
def reference(name: str) -> Reference:
    from pyscf import dft

    atoms = BUILDERS[name]()
    mf = dft.RKS(to_mole(atoms), xc="b3lypg")
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert mf.converged
    mo_energy_pyscf = mf.mo_energy.copy()
    dipole_pyscf = np.asarray(mf.dip_moment(unit="AU", verbose=0))
    fock = mf.get_fock(dm=mf.make_rdm1())
    mf.mo_energy, mf.mo_coeff = scipy.linalg.eigh(fock, mf.get_ovlp())
    template = make_template(atoms)
    return Reference(
        atoms=atoms,
        mf=mf,
        fock=fock,
        mo_energy_pyscf=mo_energy_pyscf,
        dipole_pyscf=dipole_pyscf,
        template=template,
        positions=jnp.asarray(positions_bohr(atoms)),
        mo_occ=jnp.asarray(aufbau_occupations(template.nelectron, template.nao)),
    )


def matrices(ref: Reference):
    overlap, dipole_ints = ao_integrals(ref.template, ref.positions)
    return jnp.asarray(ref.fock), overlap, dipole_ints


def random_symmetric(n: int, seed: int) -> jax.Array:
    """Symmetric direction of unit Frobenius norm."""
    a = np.random.default_rng(seed).normal(size=(n, n))
    a = a + a.T
    return jnp.asarray(a / np.linalg.norm(a))


def central_difference(fun, x, direction, step):
    """(fun(x + h d) - fun(x - h d)) / 2h, for any pytree output."""
    plus, minus = fun(x + step * direction), fun(x - step * direction)
    return jax.tree.map(lambda p, m: (p - m) / (2 * step), plus, minus)


# --------------------------------------------------------------------------------------------
# integrals


def test_integrals_equal_pyscf_at_displaced_geometry():
    ref = reference("H2O")
    moved = ref.positions + jnp.asarray(np.random.default_rng(1).normal(scale=0.1, size=(3, 3)))
    origin = jnp.array([0.3, -0.2, 0.5])
    overlap, dipole_ints = ao_integrals(ref.template, moved, origin)
    mol = to_mole(ref.atoms).set_geom_(np.asarray(moved), unit="Bohr", inplace=False)
    np.testing.assert_allclose(overlap, mol.intor("int1e_ovlp"), atol=1e-13)
    with mol.with_common_orig(np.asarray(origin)):
        np.testing.assert_allclose(dipole_ints, mol.intor("int1e_r"), atol=1e-13)


def test_integral_jacobian_equals_pyscfad_and_finite_differences():
    """dS/dR and dr/dR (r about a fixed origin) from our JVP = PySCFAD's (1e-12) = FD (1e-8)."""
    ref = reference("H2O")
    origin = jnp.array([0.3, -0.2, 0.5])
    jac = jax.jacrev(lambda pos: ao_integrals(ref.template, pos, origin))(ref.positions)
    mol_ad = to_mole(ref.atoms, differentiable=True)
    jac_ad = jax.jacrev(lambda mol: ao_integrals_pyscfad(mol, origin))(mol_ad)
    for ours, theirs in zip(jac, jac_ad):
        np.testing.assert_allclose(ours, theirs.coords, atol=1e-12)
    step = 1e-4  # bohr; truncation error ~ step^2 ~ 1e-8
    direction = jnp.asarray(np.random.default_rng(2).normal(size=(3, 3)))
    fd = central_difference(lambda pos: ao_integrals(ref.template, pos, origin), ref.positions, direction, step)
    for ours, numeric in zip(jac, fd):
        np.testing.assert_allclose(jnp.einsum("...ax,ax->...", ours, direction), numeric, atol=1e-8)


def test_default_origin_is_structure_convention():
    for name in ("H2O", "OH-"):
        ref = reference(name)
        np.testing.assert_allclose(
            dipole_origin(ref.template, ref.positions), structure_dipole_origin(ref.atoms), atol=1e-12
        )


# --------------------------------------------------------------------------------------------
# PySCF identities on PySCF's own Fock matrix


@pytest.mark.parametrize("name", ["H2O", "C3H8"])
def test_orbital_energies_equal_scipy_and_pyscf(name):
    ref = reference(name)
    fock, overlap, _ = matrices(ref)
    mo_energy, mo_coeff = generalized_eigh(fock, overlap)
    np.testing.assert_allclose(mo_energy, scipy.linalg.eigh(ref.fock, ref.mf.get_ovlp())[0], atol=1e-10, rtol=0)
    np.testing.assert_allclose(mo_energy, ref.mo_energy_pyscf, atol=1e-7, rtol=0)
    np.testing.assert_allclose(mo_coeff.T @ overlap @ mo_coeff, np.eye(len(mo_energy)), atol=1e-12)


@pytest.mark.parametrize("name", ["H2O", "C3H8"])
def test_dipole_equals_pyscf(name):
    ref = reference(name)
    props = molecule_properties(ref.template, ref.positions, jnp.asarray(ref.fock))
    np.testing.assert_allclose(props["dipole"], ref.dipole_pyscf, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["H2O", "C3H8"])
def test_polarizability_field_derivative_equals_sum_over_states(name):
    fock, overlap, dipole_ints = matrices(ref := reference(name))
    field = polarizability_field(fock, overlap, dipole_ints, ref.mo_occ)
    sos = polarizability_sos(*generalized_eigh(fock, overlap), dipole_ints, ref.mo_occ)
    np.testing.assert_allclose(field, sos, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", ["H2O", "C3H8"])
def test_polarizability_equals_pyscf_properties(name):
    from pyscf.prop.polarizability.rks import Polarizability

    ref = reference(name)
    fock, overlap, dipole_ints = matrices(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Polarizability(ref.mf).polarizability(with_cphf=False)
    np.testing.assert_allclose(polarizability(fock, overlap, dipole_ints, ref.mo_occ), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["H2O", "C3H8", "CH4"])
def test_polarizability_is_symmetric_positive_definite(name):
    fock, overlap, dipole_ints = matrices(ref := reference(name))
    alpha = np.asarray(polarizability(fock, overlap, dipole_ints, ref.mo_occ))
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-12)
    assert np.linalg.eigvalsh(alpha).min() > 1e-3


def test_polarizability_does_not_depend_on_the_origin():
    fock, overlap, dipole_ints = matrices(ref := reference("H2O"))
    _, shifted = ao_integrals(ref.template, ref.positions, jnp.array([3.0, -1.0, 2.0]))
    np.testing.assert_allclose(
        polarizability(fock, overlap, shifted, ref.mo_occ),
        polarizability(fock, overlap, dipole_ints, ref.mo_occ),
        atol=1e-10,
    )


# --------------------------------------------------------------------------------------------
# charges


@pytest.mark.parametrize("name", ["H2O", "OH-"])
def test_mulliken_charges_equal_pyscf_and_sum_to_total_charge(name):
    ref = reference(name)
    fock, overlap, _ = matrices(ref)
    density = density_matrix(fock, overlap, ref.mo_occ)
    charges = mulliken_charges(density, overlap, ref.template.ao_atom, ref.template.nuclear_charges)
    _, expected = ref.mf.mulliken_pop(dm=np.asarray(density), verbose=0)
    np.testing.assert_allclose(charges, expected, atol=1e-10)
    assert abs(float(charges.sum()) - ref.template.charge) < 1e-10


@pytest.mark.parametrize("name", ["H2O", "OH-"])
def test_lowdin_charges_equal_scipy_sqrtm_and_sum_to_total_charge(name):
    ref = reference(name)
    fock, overlap, _ = matrices(ref)
    density = density_matrix(fock, overlap, ref.mo_occ)
    charges = lowdin_charges(density, overlap, ref.template.ao_atom, ref.template.nuclear_charges)
    root = np.real(scipy.linalg.sqrtm(np.asarray(overlap)))
    populations = np.diag(root @ np.asarray(density) @ root)
    expected = ref.template.nuclear_charges - np.bincount(ref.template.ao_atom, populations)
    np.testing.assert_allclose(charges, expected, atol=1e-10)
    assert abs(float(charges.sum()) - ref.template.charge) < 1e-10


def test_overlap_square_root_derivative_equals_finite_differences():
    """d S^1/2 from the Sylvester-equation JVP vs FD (step 1e-5, tolerance 1e-9)."""
    _, overlap, _ = matrices(reference("CH4"))
    direction = random_symmetric(overlap.shape[0], 3)
    tangent = jax.jvp(spd_sqrt, (overlap,), (direction,))[1]
    np.testing.assert_allclose(tangent, central_difference(spd_sqrt, overlap, direction, 1e-5), atol=1e-9)


# --------------------------------------------------------------------------------------------
# gradients against finite differences

FOCK_STEP = 1e-4  # hartree, along a unit-norm symmetric direction: truncation ~1e-8 relative
POSITION_STEP = 1e-4  # bohr
GRADIENT_RTOL = 1e-6  # |analytic - FD| <= GRADIENT_RTOL * max(1, |FD|)


def observables(fock, overlap, dipole_ints, mo_occ, with_gap):
    """Scalar observables (fixed random contractions of vectors/matrices) of the package path."""
    rng = np.random.default_rng(7)
    props = response_properties(fock, overlap, dipole_ints, mo_occ)
    out = {
        "occupied_energy_sum": band_energy(props.mo_energy, mo_occ) / 2,
        "density": jnp.sum(rng.normal(size=props.density.shape) * props.density),
        "dipole": jnp.dot(rng.normal(size=3), electronic_dipole(props.density, dipole_ints)),
        "polarizability": jnp.sum(rng.normal(size=(3, 3)) * props.polarizability),
    }
    if with_gap:
        out["homo_lumo_gap"] = homo_lumo_gap(props.mo_energy, mo_occ)
    return out


def assert_close_to_fd(analytic, numeric):
    for key in numeric:
        error = abs(float(analytic[key]) - float(numeric[key]))
        assert error <= GRADIENT_RTOL * max(1.0, abs(float(numeric[key]))), (key, analytic[key], numeric[key])


@pytest.mark.parametrize("name", ["H2O", "CH4", "NH3"])
@pytest.mark.parametrize("wrt", ["fock", "overlap", "dipole_ints"])
def test_gradients_wrt_matrices_equal_finite_differences(name, wrt):
    ref = reference(name)
    args = dict(zip(("fock", "overlap", "dipole_ints"), matrices(ref)))
    with_gap = name == "H2O"  # the gap is not differentiable at CH4's degenerate HOMO

    @jax.jit
    def fun(x):
        return observables(**{**args, wrt: x}, mo_occ=ref.mo_occ, with_gap=with_gap)

    n = args["fock"].shape[0]
    direction = random_symmetric(n, 4)
    if wrt == "dipole_ints":
        direction = jnp.stack([random_symmetric(n, seed) for seed in (5, 6, 7)])
    grads = jax.jacrev(fun)(args[wrt])
    analytic = {key: jnp.sum(g * direction) for key, g in grads.items()}
    numeric = {key: central_difference(lambda x, k=key: fun(x)[k], args[wrt], direction, FOCK_STEP) for key in grads}
    assert_close_to_fd(analytic, numeric)


@functools.cache
def position_gradients(name: str):
    """(analytic, finite-difference) gradients w.r.t. all coordinates of the observables of
    :func:`molecule_properties` at fixed Fock matrix."""
    ref = reference(name)
    fock = jnp.asarray(ref.fock)
    rng = np.random.default_rng(8)
    weights = {"dipole": rng.normal(size=3), "polarizability": rng.normal(size=(3, 3))}
    weights["mulliken_charges"] = weights["lowdin_charges"] = rng.normal(size=len(ref.positions))
    keys = ["band_energy", "dipole", "polarizability", "mulliken_charges", "lowdin_charges"]
    keys += ["homo_lumo_gap"] if name == "H2O" else []

    @jax.jit
    def fun(pos):
        props = molecule_properties(ref.template, pos, fock)
        return {k: jnp.sum(weights.get(k, 1.0) * props[k]) for k in keys}

    analytic = jax.jacrev(fun)(ref.positions)
    numeric = {k: np.zeros(ref.positions.shape) for k in keys}
    for atom in range(len(ref.positions)):
        for x in range(3):
            direction = jnp.zeros(ref.positions.shape).at[atom, x].set(1.0)
            plus, minus = fun(ref.positions + POSITION_STEP * direction), fun(ref.positions - POSITION_STEP * direction)
            for k in keys:
                numeric[k][atom, x] = (plus[k] - minus[k]) / (2 * POSITION_STEP)
    return analytic, numeric


@pytest.mark.parametrize("name", ["H2O", "CH4", "NH3", "OH-"])
def test_gradients_wrt_positions_equal_finite_differences(name):
    analytic, numeric = position_gradients(name)
    for key in numeric:
        scale = max(1.0, float(np.abs(numeric[key]).max()))
        np.testing.assert_allclose(analytic[key], numeric[key], atol=GRADIENT_RTOL * scale, rtol=0, err_msg=key)


def test_charged_dipole_about_centre_of_mass_is_translation_invariant():
    """OH-: with the default origin (centre of mass) the dipole does not change when the ion is
    translated (at fixed AO Fock matrix), so its position gradient sums to zero over atoms."""
    ref = reference("OH-")
    fock = jnp.asarray(ref.fock)
    shift = jnp.array([1.3, -0.7, 2.1])
    dipole = jax.jit(lambda pos: molecule_properties(ref.template, pos, fock)["dipole"])
    np.testing.assert_allclose(dipole(ref.positions + shift), dipole(ref.positions), atol=1e-10)
    jac = jax.jit(jax.jacrev(dipole))(ref.positions)
    np.testing.assert_allclose(jac.sum(axis=1), np.zeros((3, 3)), atol=1e-9)


# --------------------------------------------------------------------------------------------
# degenerate occupied levels: projector form vs autodiff through eigh


def _alpha_gradient_errors(name: str):
    fock, overlap, dipole_ints = matrices(ref := reference(name))
    weights = jnp.asarray(np.random.default_rng(9).normal(size=(3, 3)))
    direction = random_symmetric(fock.shape[0], 10)

    def projector(f):
        return jnp.sum(weights * polarizability(f, overlap, dipole_ints, ref.mo_occ))

    def through_eigh(f):
        return jnp.sum(weights * polarizability_sos(*generalized_eigh(f, overlap), dipole_ints, ref.mo_occ))

    numeric = central_difference(jax.jit(projector), fock, direction, FOCK_STEP)
    errors = {
        label: abs(float(jnp.sum(jax.jit(jax.grad(fun))(fock) * direction) - numeric))
        for label, fun in (("projector", projector), ("eigh", through_eigh))
    }
    return errors, abs(float(numeric))


def test_ch4_occupied_levels_are_degenerate():
    fock, overlap, _ = matrices(ref := reference("CH4"))
    mo_energy = np.asarray(generalized_eigh(fock, overlap)[0])
    t2 = mo_energy[2:5]
    assert t2.max() - t2.min() < 1e-9 and n_occupied(ref.template.nelectron, len(mo_energy)) == 5


def test_projector_gradient_is_right_where_autodiff_through_eigh_is_wrong():
    """CH4 (exactly degenerate occupied t2 and virtual t2*): PySCFAD's eigh VJP masks the
    degenerate pairs, which drops finite terms of d alpha / dF; the projector form has no such
    pairs and matches finite differences."""
    errors, scale = _alpha_gradient_errors("CH4")
    assert errors["projector"] <= GRADIENT_RTOL * max(1.0, scale)
    assert errors["eigh"] > 1e-2 * scale


def test_density_gradient_does_not_see_occupied_degeneracy():
    """dD/dF is the same for F and for F with its degenerate occupied levels split by 1e-7 Ha
    in a rotated basis: no 1/(e_i - e_j) amplification (tolerance 1e-6 relative)."""
    fock, overlap, _ = matrices(ref := reference("CH4"))
    mo_energy, mo_coeff = generalized_eigh(fock, overlap)
    c_inv_t = overlap @ mo_coeff  # F = S C e C^T S
    split = jnp.zeros_like(mo_energy).at[2:5].set(jnp.array([-1e-7, 0.0, 1e-7]))
    fock_split = fock + c_inv_t @ jnp.diag(split) @ c_inv_t.T
    cotangent = random_symmetric(fock.shape[0], 11)

    grad = jax.jit(jax.grad(lambda x: jnp.sum(cotangent * density_matrix(x, overlap, ref.mo_occ))))

    np.testing.assert_allclose(grad(fock_split), grad(fock), atol=1e-6 * float(jnp.abs(grad(fock)).max()))


@pytest.mark.slow
def test_benzene_gradients_equal_finite_differences():
    """Benzene (degenerate e1g/e2g pairs): projector-form d alpha/dF vs FD."""
    errors, scale = _alpha_gradient_errors("C6H6")
    assert errors["projector"] <= GRADIENT_RTOL * max(1.0, scale)


# --------------------------------------------------------------------------------------------
# batching, padding, bad input


def test_padding_changes_no_result_or_gradient():
    fock, overlap, dipole_ints = matrices(ref := reference("H2O"))
    n = fock.shape[0]
    padded = pad_system(n + 9, fock, overlap, dipole_ints, ref.mo_occ)

    def loss(f, system):
        f_padded = jnp.zeros_like(system[0]).at[:n, :n].set(f) + system[0].at[:n, :n].set(0.0)
        props = response_properties(f_padded, *system[1:])
        return props.polarizability.trace() + props.density[:n, :n].sum() + props.mo_energy[:n].sum()

    plain = response_properties(fock, overlap, dipole_ints, ref.mo_occ)
    wide = response_properties(*padded)
    np.testing.assert_allclose(wide.mo_energy[:n], plain.mo_energy, atol=1e-11)
    np.testing.assert_allclose(wide.density[:n, :n], plain.density, atol=1e-12)
    np.testing.assert_allclose(wide.density[n:], 0.0, atol=1e-12)
    np.testing.assert_allclose(wide.polarizability, plain.polarizability, atol=1e-11)
    grad = jax.jit(jax.grad(loss))
    np.testing.assert_allclose(grad(fock, padded), grad(fock, (fock, overlap, dipole_ints, ref.mo_occ)), atol=1e-10)


def test_vmap_and_jit_equal_single_calls():
    ref = reference("H2O")
    positions = jnp.stack([ref.positions, ref.positions * 1.01])

    @jax.jit
    def dipoles(pos):
        return jax.vmap(lambda p: molecule_properties(ref.template, p, jnp.asarray(ref.fock))["dipole"])(pos)

    expected = [molecule_properties(ref.template, p, jnp.asarray(ref.fock))["dipole"] for p in positions]
    np.testing.assert_allclose(dipoles(positions), np.stack(expected), atol=1e-13)


def test_density_matrix_from_orbitals_equals_projector_version():
    fock, overlap, _ = matrices(ref := reference("H2O"))
    mo_coeff = generalized_eigh(fock, overlap)[1]
    np.testing.assert_allclose(density_matrix(fock, overlap, ref.mo_occ), make_rdm1(mo_coeff, ref.mo_occ), atol=1e-13)
    assert abs(float(jnp.trace(density_matrix(fock, overlap, ref.mo_occ) @ overlap)) - 10) < 1e-10


@pytest.mark.parametrize(("nelectron", "nmo", "message"), [(9, 7, "odd"), (16, 7, "does not fit"), (-2, 7, "negative")])
def test_bad_electron_counts_raise(nelectron, nmo, message):
    with pytest.raises(ValueError, match=message):
        aufbau_occupations(nelectron, nmo)
