"""IR and Raman spectra: from molecular-dynamics time series of the dipole and the polarizability
(autocorrelation functions), and harmonic ones from the analytic derivatives of the calculator.

MD route (classical nuclei): spectra are Fourier transforms of ⟨ẋ(0)·ẋ(t)⟩ with x the dipole (IR)
or the polarizability (Raman); the time derivative is taken by central differences, the
autocorrelation by FFT (Wiener–Khinchin, zero-padded so it is linear, not circular), with a Hann
window over the lags. Frequencies in cm⁻¹, time steps in fs, intensities in arbitrary units
(relative heights are meaningful). Quantum corrections (harmonic factor βħω / (1 − e^{−βħω})):
for IR absorption n(ω)α(ω) ∝ ω²·FT⟨μμ⟩_cl = FT⟨μ̇μ̇⟩_cl is already the harmonic-corrected result
(the factor cancels the detailed-balance factor 1 − e^{−βħω}; Ramírez et al., J. Chem. Phys. 121,
3973 (2004)), so :func:`ir` has no temperature; :func:`raman` with ``temperature`` turns the
classical spectrum into the harmonic-corrected Stokes line shape.

Harmonic route: :func:`harmonic_ir` / :func:`harmonic_raman` project dμ/dR and dα/dR (from
``MLHamiltonian.get_dipole_derivatives`` / ``get_polarizability_derivatives``) on the normal modes
of a Hessian, in the units of ASE's ``Infrared`` and ``PlaczekStatic``. Tutorial: docs/spectra.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units as ase_units

from mlhcalc.units import INVERSE_FS_TO_WAVENUMBER, KELVIN_TO_WAVENUMBER

__all__ = [
    "Spectrum",
    "autocorrelation",
    "spectral_density",
    "quantum_correction",
    "ir",
    "raman",
    "normal_modes",
    "harmonic_ir",
    "harmonic_raman",
    "broaden",
]


@dataclass
class Spectrum:
    """A spectrum on a wavenumber grid (cm⁻¹). ``intensity`` is the total; ``components`` holds the
    parts it is the sum of (Raman: ``isotropic`` and ``anisotropic``)."""

    wavenumber: np.ndarray
    intensity: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self) -> tuple[list[str], np.ndarray]:
        """Column names and a (n, 2 + len(components)) array for writing."""
        names = ["wavenumber_cm-1", "intensity", *self.components]
        return names, np.column_stack([self.wavenumber, self.intensity, *self.components.values()])


def autocorrelation(signal: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """C(τ) = ⟨x(t)·x(t+τ)⟩_t for τ = 0..max_lag−1, summed over the components of x.

    ``signal`` (nt,) or (nt, ...): time along axis 0. Wiener–Khinchin with zero padding to ≥ 2 nt
    (no circular wrap-around); each lag is averaged over its nt − τ available pairs (unbiased).
    """
    x = np.asarray(signal, dtype=float).reshape(len(signal), -1)
    nt = len(x)
    max_lag = nt if max_lag is None else int(min(max_lag, nt))
    n_fft = 1 << (2 * nt - 1).bit_length()
    transform = np.fft.rfft(x, n=n_fft, axis=0)
    correlation = np.fft.irfft((transform * transform.conj()).real, n=n_fft, axis=0)[:max_lag].sum(axis=1)
    return correlation / (nt - np.arange(max_lag))


def spectral_density(correlation: np.ndarray, dt_fs: float, *, window: str | None = "hann", pad: int = 4):
    """(wavenumber cm⁻¹, S) with S(ν̃) = Σ_τ w(τ) C(|τ|) cos(2πντ) dt, the Fourier transform of the
    even extension of a one-sided ``correlation`` (lags 0..L−1), multiplied by a one-sided window
    (``"hann"``: w = cos²(πτ / 2L); None: rectangular), zero-padded ``pad``-fold for a smoother grid."""
    c = np.asarray(correlation, dtype=float)
    lags = len(c)
    if window == "hann":
        c = c * np.cos(0.5 * np.pi * np.arange(lags) / lags) ** 2
    elif window is not None:
        raise ValueError(f"window must be 'hann' or None, got {window!r}")
    n = max(pad, 1) * 2 * lags
    even = np.zeros(n)
    even[:lags] = c
    even[n - lags + 1 :] = c[1:][::-1]
    density = np.fft.rfft(even).real * dt_fs
    frequency_per_fs = np.fft.rfftfreq(n, d=dt_fs)
    return frequency_per_fs * INVERSE_FS_TO_WAVENUMBER, density


def quantum_correction(wavenumber: np.ndarray, temperature: float) -> np.ndarray:
    """Harmonic quantum correction factor βħω / (1 − e^{−βħω}) (→ 1 as ω → 0), for a classical
    autocorrelation at ``temperature`` K."""
    x = np.asarray(wavenumber, dtype=float) / (KELVIN_TO_WAVENUMBER * temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(np.abs(x) < 1e-8, 1.0, x / -np.expm1(-x))
    return factor


def _time_derivative(series: np.ndarray, dt_fs: float) -> np.ndarray:
    if len(series) < 8:
        raise ValueError(f"need at least 8 time steps for a spectrum, got {len(series)}")
    return np.gradient(np.asarray(series, dtype=float), dt_fs, axis=0)


def _derivative_spectrum(series, dt_fs, window, max_lag):
    return spectral_density(autocorrelation(_time_derivative(series, dt_fs), max_lag), dt_fs, window=window)


def ir(dipoles: np.ndarray, dt_fs: float, *, window: str | None = "hann", max_lag: int | None = None) -> Spectrum:
    """IR absorption n(ν̃)α(ν̃) (arbitrary units) from a dipole series ``dipoles`` (nt, 3) every ``dt_fs`` fs.

    I(ν̃) = FT⟨μ̇(0)·μ̇(t)⟩ = ω² FT⟨μ(0)·μ(t)⟩ (classical): for a harmonic mode the band area is
    ∝ (∂μ/∂Q)² k_B T, i.e. proportional to the harmonic intensity (:func:`harmonic_ir`). This is also
    the absorption with the harmonic quantum correction (see the module docstring). ``max_lag``
    (steps) shortens the correlation: smoother, resolution 1/(max_lag·dt) instead of 1/(nt·dt).
    """
    dipoles = np.asarray(dipoles, dtype=float)
    if dipoles.ndim != 2 or dipoles.shape[1] != 3:
        raise ValueError(f"dipoles must have shape (nt, 3), got {dipoles.shape}")
    return Spectrum(*_derivative_spectrum(dipoles, dt_fs, window, max_lag))


def raman(
    polarizabilities: np.ndarray,
    dt_fs: float,
    *,
    window: str | None = "hann",
    max_lag: int | None = None,
    temperature: float | None = None,
) -> Spectrum:
    """Raman spectrum from a polarizability series (nt, 3, 3) or (nt, 9) every ``dt_fs`` fs.

    With a(t) = tr α / 3 and the traceless part β(t) = α − a·1: isotropic(ν̃) = 45 FT⟨ȧ(0) ȧ(t)⟩ and
    anisotropic(ν̃) = (21/2) FT⟨Tr β̇(0) β̇(t)⟩ (γ² = (3/2) Tr β²), so that intensity = isotropic +
    anisotropic weights each harmonic mode by its Raman activity 45 a'² + 7 γ'² (:func:`harmonic_raman`,
    ASE's ``get_absolute_intensities``) times k_B T. The polarized (VV, 45 a'² + 4 γ'²) and depolarized
    (VH, 3 γ'²) spectra are isotropic + (4/7)·anisotropic and (3/7)·anisotropic.

    ``temperature`` (K): return the Stokes line shape with the harmonic quantum correction instead,
    Q(ω)/ω²·(the classical spectrum above) ∝ activity·(n(ω) + 1)/ω per mode — the usual harmonic
    Raman intensity without the laser factor (ω_L − ω)⁴; its ν̃ = 0 point is set to 0.
    """
    alpha = np.asarray(polarizabilities, dtype=float)
    alpha = alpha.reshape(len(alpha), 3, 3)
    alpha = 0.5 * (alpha + alpha.transpose(0, 2, 1))
    mean = np.trace(alpha, axis1=1, axis2=2) / 3.0
    traceless = alpha - mean[:, None, None] * np.eye(3)
    wavenumber, iso = _derivative_spectrum(mean, dt_fs, window, max_lag)
    _, aniso = _derivative_spectrum(traceless, dt_fs, window, max_lag)
    components = {"isotropic": 45.0 * iso, "anisotropic": 10.5 * aniso}
    if temperature is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(wavenumber > 0, quantum_correction(wavenumber, temperature) / wavenumber**2, 0.0)
        components = {name: values * factor for name, values in components.items()}
    return Spectrum(wavenumber, components["isotropic"] + components["anisotropic"], components)


# ----------------------------------------------------------------------------- harmonic


def normal_modes(hessian: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wavenumbers cm⁻¹ (3N,), mass-weighted modes (3N, 3N), rows) of a Hessian (3N, 3N) in eV/Å²
    and masses in amu, as ASE's ``Vibrations``; imaginary frequencies come out negative."""
    inverse_root_mass = np.repeat(np.asarray(masses, dtype=float) ** -0.5, 3)
    hessian = np.asarray(hessian, dtype=float).reshape(len(inverse_root_mass), -1)
    hessian = 0.5 * (hessian + hessian.T)
    omega2, modes = np.linalg.eigh(inverse_root_mass[:, None] * hessian * inverse_root_mass[None, :])
    # eV/(Å² amu) → energy ħω in eV, as ase.vibrations: s = ħ·1e10/√(e·amu)
    s = ase_units._hbar * 1e10 / np.sqrt(ase_units._e * ase_units._amu)
    energy = s * np.sign(omega2) * np.sqrt(np.abs(omega2))
    return energy / ase_units.invcm, modes.T


def _per_mode(derivatives: np.ndarray, masses: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """d(tensor)/dQ per mode: derivatives [a, ..., j] (displacement index last) → [mode, ...]."""
    natoms = len(masses)
    d = np.asarray(derivatives, dtype=float)
    d = np.moveaxis(d, -1, 1).reshape(natoms * 3, -1)  # rows (a, j)
    d = d * np.repeat(np.asarray(masses, dtype=float) ** -0.5, 3)[:, None]
    return (modes @ d).reshape((len(modes),) + np.asarray(derivatives).shape[1:-1])


def harmonic_ir(hessian, masses, dipole_derivatives) -> tuple[np.ndarray, np.ndarray]:
    """(wavenumbers cm⁻¹, intensities (D/Å)²/amu) of every normal mode, ASE ``Infrared``'s units.

    ``dipole_derivatives`` [a, i, j] = ∂μ_i/∂R_aj in e (``MLHamiltonian.get_dipole_derivatives``).
    Multiply by 42.255 for km/mol (ASE's factor).
    """
    wavenumber, modes = normal_modes(hessian, masses)
    d_mu = _per_mode(dipole_derivatives, masses, modes)  # e / √amu
    return wavenumber, (d_mu**2).sum(axis=1) / ase_units.Debye**2


def harmonic_raman(hessian, masses, polarizability_derivatives) -> tuple[np.ndarray, np.ndarray]:
    """(wavenumbers cm⁻¹, Raman activities 45 a'² + 7 γ'² in Å⁴/amu) per normal mode, ASE
    ``PlaczekStatic.get_absolute_intensities()``'s definition and units.

    ``polarizability_derivatives`` [a, i, j, k] = ∂α_ij/∂R_ak in Å²
    (``MLHamiltonian.get_polarizability_derivatives``).
    """
    wavenumber, modes = normal_modes(hessian, masses)
    d_alpha = _per_mode(polarizability_derivatives, masses, modes)  # Å² / √amu, [mode, i, j]
    d_alpha = 0.5 * (d_alpha + d_alpha.transpose(0, 2, 1))
    mean = np.trace(d_alpha, axis1=1, axis2=2) / 3.0
    traceless = d_alpha - mean[:, None, None] * np.eye(3)
    gamma2 = 1.5 * np.einsum("qij,qij->q", traceless, traceless)
    return wavenumber, 45.0 * mean**2 + 7.0 * gamma2


def broaden(wavenumber, intensity, grid, width: float = 10.0) -> np.ndarray:
    """Stick spectrum → sum of Lorentzians of FWHM ``width`` cm⁻¹ (each of unit area × intensity)."""
    half = 0.5 * width
    grid = np.asarray(grid, dtype=float)[:, None]
    lorentz = half / np.pi / ((grid - np.asarray(wavenumber)[None, :]) ** 2 + half**2)
    return lorentz @ np.asarray(intensity, dtype=float)
