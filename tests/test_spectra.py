"""Spectra from time series, checked on synthetic signals whose spectra are known analytically."""

import numpy as np
import pytest

from mlhcalc import spectra
from mlhcalc.units import INVERSE_FS_TO_WAVENUMBER, KELVIN_TO_WAVENUMBER

DT = 0.5  # fs
NT = 8000  # 4 ps: resolution 1/(NT·DT) ≈ 8.3 cm⁻¹


def times():
    return np.arange(NT) * DT


def cosine(wavenumber, phase=0.0):
    """cos(2π ν t) with ν the frequency of ``wavenumber`` cm⁻¹ and t in fs."""
    return np.cos(2 * np.pi * wavenumber / INVERSE_FS_TO_WAVENUMBER * times() + phase)


def peaks(spectrum, count):
    """Wavenumbers and heights of the ``count`` highest local maxima."""
    y = spectrum.intensity
    local = np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] > y[2:])) + 1
    best = local[np.argsort(y[local])[::-1][:count]]
    best = np.sort(best)
    return spectrum.wavenumber[best], y[best]


def test_unit_conversions_are_the_textbook_values():
    assert INVERSE_FS_TO_WAVENUMBER == pytest.approx(33356.41, rel=1e-6)  # 1 fs⁻¹ = 10¹⁵ Hz / c
    assert KELVIN_TO_WAVENUMBER == pytest.approx(0.695035, rel=1e-5)


def test_autocorrelation_is_linear_not_circular():
    signal = np.random.default_rng(0).normal(size=(300, 3))
    direct = np.array([(signal[: 300 - lag] * signal[lag:]).sum() / (300 - lag) for lag in range(300)])
    np.testing.assert_allclose(spectra.autocorrelation(signal), direct, atol=1e-12)


def test_ir_of_a_sum_of_cosines_peaks_at_their_wavenumbers_with_omega_squared_weights():
    bands = {1000.0: 1.0, 1700.0: 0.5, 3100.0: 0.3}  # cm⁻¹: amplitude
    dipoles = np.zeros((NT, 3))
    for axis, (wavenumber, amplitude) in enumerate(bands.items()):
        dipoles[:, axis] = amplitude * cosine(wavenumber, phase=0.3 * axis)
    spectrum = spectra.ir(dipoles, DT)
    positions, heights = peaks(spectrum, 3)
    resolution = INVERSE_FS_TO_WAVENUMBER / (NT * DT)
    np.testing.assert_allclose(positions, list(bands), atol=resolution)
    # ⟨μ̇μ̇⟩ of A cos(ωt) is (Aω)²/2 cos(ωτ): heights ∝ (A ν̃)² (central differences: sinc² ≥ 0.95 here)
    expected = np.array([(a * w) ** 2 for w, a in bands.items()])
    np.testing.assert_allclose(heights / heights[0], expected / expected[0], rtol=0.1)
    far = np.abs(spectrum.wavenumber[:, None] - np.array(list(bands))[None]).min(axis=1) > 200
    assert np.abs(spectrum.intensity[far]).max() < 1e-3 * heights.max()


def test_isotropic_polarizability_gives_no_anisotropic_raman_and_vice_versa():
    mean = 10 + 0.2 * cosine(1500.0)
    isotropic_only = mean[:, None, None] * np.eye(3)
    result = spectra.raman(isotropic_only, DT)
    assert np.abs(result.components["anisotropic"]).max() == 0.0
    position, _ = peaks(result, 1)
    assert position[0] == pytest.approx(1500.0, abs=10)
    traceless = np.zeros((NT, 3, 3))
    traceless[:, 0, 1] = traceless[:, 1, 0] = 0.1 * cosine(800.0)
    traceless[:, 2, 2] = 0.05 * cosine(2200.0)
    traceless[:, 0, 0] = traceless[:, 1, 1] = -0.5 * traceless[:, 2, 2]
    result = spectra.raman(traceless, DT)
    assert np.abs(result.components["isotropic"]).max() < 1e-12 * np.abs(result.components["anisotropic"]).max()
    np.testing.assert_allclose(peaks(result, 2)[0], [800.0, 2200.0], atol=10)
    np.testing.assert_allclose(result.intensity, result.components["isotropic"] + result.components["anisotropic"])


def test_raman_weights_match_the_harmonic_activity_45a2_plus_7gamma2():
    """One mode α(t) = α0 + α' q(t): the band's area ratio iso : aniso is 45 a'² : 7 γ'²."""
    derivative = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.2], [0.0, 0.2, -0.4]])
    alpha = np.eye(3) * 5 + derivative[None] * 0.01 * cosine(1200.0)[:, None, None]
    result = spectra.raman(alpha, DT, window=None)
    a = np.trace(derivative) / 3
    beta = derivative - a * np.eye(3)
    gamma2 = 1.5 * (beta * beta).sum()
    areas = {name: values.sum() for name, values in result.components.items()}
    assert areas["isotropic"] / areas["anisotropic"] == pytest.approx(45 * a**2 / (7 * gamma2), rel=1e-6)


def test_quantum_correction_is_the_harmonic_factor_and_gives_the_stokes_line_shape():
    wavenumber = np.array([0.0, 1.0, 208.5, 3000.0])
    factor = spectra.quantum_correction(wavenumber, 300.0)
    x = wavenumber / (KELVIN_TO_WAVENUMBER * 300.0)
    assert factor[0] == 1.0
    np.testing.assert_allclose(factor[1:], x[1:] / (1 - np.exp(-x[1:])), rtol=1e-12)
    assert factor[-1] > 14  # βħω ≈ 14.4 at 3000 cm⁻¹, 300 K
    alpha = np.eye(3)[None] * (5 + 0.1 * (cosine(1000.0) + cosine(3000.0)))[:, None, None]
    classical, stokes = spectra.raman(alpha, DT), spectra.raman(alpha, DT, temperature=300.0)
    nu = classical.wavenumber[1:]
    np.testing.assert_allclose(stokes.intensity[1:], classical.intensity[1:] * factor_at(nu, 300.0) / nu**2)
    assert stokes.intensity[0] == 0.0
    # equal classical bands: the Stokes line shape weights them by (n + 1)/ω
    bands = np.array([1000.0, 3000.0])
    heights, classical_heights = height_near(stokes, bands), height_near(classical, bands)
    expected = factor_at(bands, 300.0) / bands**2
    ratio = (heights[1] / heights[0]) / (classical_heights[1] / classical_heights[0])
    assert ratio == pytest.approx(expected[1] / expected[0], rel=0.05)


def height_near(spectrum, wavenumbers, width=20.0):
    return np.array([spectrum.intensity[np.abs(spectrum.wavenumber - w) < width].max() for w in wavenumbers])


def factor_at(wavenumber, temperature):
    x = wavenumber / (KELVIN_TO_WAVENUMBER * temperature)
    return x / (1 - np.exp(-x))


def test_max_lag_trades_resolution_for_smoothness():
    dipoles = np.column_stack([cosine(1000.0), np.zeros(NT), np.zeros(NT)])
    dipoles += np.random.default_rng(1).normal(scale=0.05, size=dipoles.shape)
    short = spectra.ir(dipoles, DT, max_lag=1000)
    assert peaks(short, 1)[0][0] == pytest.approx(1000.0, abs=INVERSE_FS_TO_WAVENUMBER / (1000 * DT))


def test_too_short_or_misshapen_input_is_rejected():
    with pytest.raises(ValueError, match="at least 8"):
        spectra.ir(np.zeros((5, 3)), DT)
    with pytest.raises(ValueError, match="shape"):
        spectra.ir(np.zeros((100, 2)), DT)


def test_normal_modes_of_a_diatomic_spring():
    """Two masses m1, m2 on a spring k: ω = √(k/μ) along the bond, five zero modes."""
    k, masses = 30.0, np.array([1.008, 15.999])  # eV/Å², amu
    hessian = np.zeros((6, 6))
    block = np.diag([0.0, 0.0, k])
    hessian[:3, :3] = hessian[3:, 3:] = block
    hessian[:3, 3:] = hessian[3:, :3] = -block
    wavenumber, modes = spectra.normal_modes(hessian, masses)
    from ase import units

    mu = masses.prod() / masses.sum()
    omega = np.sqrt(k * units._e / (mu * units._amu)) * 1e10  # rad/s
    assert wavenumber[-1] == pytest.approx(omega / (2 * np.pi * units._c * 100), rel=1e-9)
    np.testing.assert_allclose(wavenumber[:-1], 0.0, atol=1e-6)
    # a dipole derivative along the bond only: the stretch carries all the intensity
    born = np.zeros((2, 3, 3))
    born[0, 2, 2], born[1, 2, 2] = 0.4, -0.4
    _, intensities = spectra.harmonic_ir(hessian, masses, born)
    assert intensities[-1] > 0 and np.abs(intensities[:-1]).max() < 1e-12 * intensities[-1]
