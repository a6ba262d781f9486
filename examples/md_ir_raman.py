"""IR and Raman spectra of a small molecule from molecular dynamics, with forces from GFN2-xTB
(tblite) and the dipole and polarizability from an mlhcalc model, next to the harmonic spectra
from autodiff dipole/polarizability derivatives.

    python examples/md_ir_raman.py                      # toy model fitted here (~1 min), ~2-3 min total
    python examples/md_ir_raman.py --model organic      # a shipped or saved model instead

Writes docs/figures/md_ir.png and docs/figures/md_raman.png (``--output-dir``). Steps:
1. optimise the molecule with GFN2-xTB; 2. get a model (``--model``, or fit a toy one to B3LYPG/STO-3G
Fock matrices of rattled geometries, the minimal-basis level of the reference data); 3. harmonic
spectra: GFN2-xTB Hessian (ase.vibrations) with mlhcalc's autodiff Born charges and dα/dR;
4. MD: Langevin equilibration, then NVE, recording μ and α with ``PairedCalculator``; 5. spectra with
``mlhcalc.spectra``. Needs tblite and matplotlib (``pip install -e ".[data,plot]"``).
The toy model describes this one molecule near its minimum only; it is a stand-in until a shipped
model exists, and its absolute intensities mean little. Tutorial: docs/spectra.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.build import molecule  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or directory (default: fit a toy model here)")
    parser.add_argument("--molecule", default="H2CO", help="ase.build.molecule name (default H2CO)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--dt", type=float, default=0.5, help="MD time step, fs")
    parser.add_argument("--equilibration", type=int, default=1000, help="Langevin steps")
    parser.add_argument("--steps", type=int, default=6000, help="NVE steps recorded for the spectra")
    parser.add_argument("--sample-every", type=int, default=2, help="record μ and α every this many steps")
    parser.add_argument("--training-structures", type=int, default=24, help="rattled geometries for the toy model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs" / "figures")
    parser.add_argument(
        "--trajectory",
        type=Path,
        default=None,
        help="also write the sampled frames with mlh_dipole / mlh_polarizability (extxyz), for `mlhcalc spectrum`",
    )
    return parser.parse_args()


def xtb():
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def optimised(name: str):
    from ase.optimize import BFGS

    atoms = molecule(name)
    atoms.calc = xtb()
    BFGS(atoms, logfile=None).run(fmax=1e-4, steps=200)
    atoms.calc = None
    return atoms


def toy_model(atoms, n_structures: int, seed: int):
    """Ridge fit of the block model to B3LYPG/STO-3G Fock matrices of rattled copies of ``atoms``."""
    import torch
    from pyscf import dft

    from mlhcalc.features import FeatureHypers, systems_from_atoms
    from mlhcalc.hamiltonian import fit_ridge
    from mlhcalc.model import HamiltonianModel
    from mlhcalc.structure import to_mole

    rng = np.random.default_rng(seed)
    structures, focks = [], []
    for _ in range(n_structures):
        rattled = atoms.copy()
        rattled.positions += rng.normal(scale=0.06, size=rattled.positions.shape)
        mf = dft.RKS(to_mole(rattled, "sto-3g"), xc="b3lypg")
        mf.conv_tol, mf.verbose = 1e-10, 0
        mf.kernel()
        structures.append(rattled)
        focks.append(torch.tensor(mf.get_fock()))
    species = tuple(sorted(set(int(z) for z in atoms.numbers)))
    hypers = FeatureHypers(species=species, cutoff=6.0, max_radial=3, max_angular=2, channels=4, pair_channels=2)
    model = HamiltonianModel.create(
        hypers, "sto-3g", periodic=False, level_of_theory="B3LYPG/STO-3G Fock (toy, one molecule)"
    )
    fit_ridge(model.block_model, systems_from_atoms(structures), focks)
    return model


def harmonic(atoms, electronic, workdir: Path):
    """Wavenumbers (cm⁻¹), IR intensities ((D/Å)²/amu) and Raman activities (Å⁴/amu) per mode."""
    from ase.vibrations import Vibrations

    from mlhcalc.calculator import PairedCalculator
    from mlhcalc.spectra import harmonic_ir, harmonic_raman

    atoms = atoms.copy()
    atoms.calc = PairedCalculator(forces=xtb(), electronic=electronic)
    vibrations = Vibrations(atoms, name=str(workdir / "vib"), delta=0.005)
    vibrations.run()
    hessian = vibrations.get_vibrations().get_hessian_2d()
    wavenumber, ir = harmonic_ir(hessian, atoms.get_masses(), electronic.get_dipole_derivatives(atoms))
    _, activity = harmonic_raman(hessian, atoms.get_masses(), electronic.get_polarizability_derivatives(atoms))
    keep = wavenumber > 200  # the 3N − 6 vibrations
    return wavenumber[keep], ir[keep], activity[keep]


def molecular_dynamics(atoms, electronic, args):
    """μ (e·Å) and α (Å³) from MLHamiltonian and μ from GFN2-xTB, every ``sample_every`` NVE steps."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    try:
        from ase.md.velocitydistribution import thermalize_momenta  # ASE ≥ 3.29
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

    from mlhcalc.calculator import PairedCalculator

    atoms = atoms.copy()
    forces = xtb()
    atoms.calc = PairedCalculator(forces=forces, electronic=electronic)
    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # no drift of the whole molecule (Langevin's own fixcm is deprecated)
    langevin = Langevin(atoms, args.dt * units.fs, temperature_K=args.temperature, friction=0.02, fixcm=False, rng=rng)
    langevin.run(args.equilibration)
    frames, ml_dipole, ml_alpha, xtb_dipole = [], [], [], []

    def record():
        ml_dipole.append(atoms.get_dipole_moment())  # routed to MLHamiltonian
        ml_alpha.append(atoms.calc.get_polarizability(atoms))
        xtb_dipole.append(forces.get_property("dipole", atoms))
        if args.trajectory is not None:
            frame = atoms.copy()
            frame.info.update(mlh_dipole=ml_dipole[-1], mlh_polarizability=ml_alpha[-1])
            frames.append(frame)

    dynamics = VelocityVerlet(atoms, args.dt * units.fs)
    dynamics.attach(record, interval=args.sample_every)
    energy_start = atoms.get_total_energy()
    dynamics.run(args.steps)
    drift = atoms.get_total_energy() - energy_start
    if args.trajectory is not None:
        import ase.io

        ase.io.write(args.trajectory, frames, format="extxyz")
    return np.array(ml_dipole), np.array(ml_alpha), np.array(xtb_dipole), drift


def plot(path: Path, curves: list, sticks, title: str, xmax: float = 4000.0) -> None:
    """``curves``: (wavenumber, values, label, style, scale); each is divided by ``scale``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for wavenumber, values, label, style, scale in curves:
        keep = (wavenumber > 200) & (wavenumber < xmax)
        ax.plot(wavenumber[keep], values[keep] / scale, style, lw=1.1, label=label)
    wavenumber, height, label = sticks
    ax.vlines(wavenumber, 0, height / height.max(), colors="tab:red", lw=2, alpha=0.6, label=label)
    ax.set_xlim(200, xmax)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("intensity (normalised)")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def peak_scale(spectrum) -> float:
    return spectrum.intensity[spectrum.wavenumber > 200].max()


def main() -> None:
    import torch

    from mlhcalc import MLHamiltonian, spectra

    torch.set_num_threads(1)
    args = parse_args()
    start = time.perf_counter()
    atoms = optimised(args.molecule)
    if args.model is None:
        model = toy_model(atoms, args.training_structures, args.seed)
        print(
            f"toy model fitted to {args.training_structures} B3LYPG/STO-3G Fock matrices "
            f"[{time.perf_counter() - start:.0f} s]"
        )
    else:
        from mlhcalc.model import HamiltonianModel

        model = HamiltonianModel.load(args.model)
    electronic = MLHamiltonian(model)

    with tempfile.TemporaryDirectory() as workdir:
        wavenumber, ir_intensity, raman_activity = harmonic(atoms, electronic, Path(workdir))
    print("harmonic (GFN2-xTB Hessian, mlhcalc autodiff derivatives):")
    print("  cm-1      IR (D/Å)²/amu   Raman Å⁴/amu")
    for w, i, r in zip(wavenumber, ir_intensity, raman_activity):
        print(f"  {w:7.1f}   {i:10.4f}     {r:10.4f}")
    print(f"[{time.perf_counter() - start:.0f} s]")

    ml_dipole, ml_alpha, xtb_dipole, drift = molecular_dynamics(atoms, electronic, args)
    dt_sample = args.dt * args.sample_every
    n_frames = len(ml_dipole)
    print(
        f"MD: {args.steps} NVE steps of {args.dt} fs, {n_frames} frames recorded, energy drift {drift:.2e} eV "
        f"[{time.perf_counter() - start:.0f} s]"
    )

    max_lag = n_frames // 2  # smoother, resolution 2/(n·dt)
    # classical derivative spectra: band areas ∝ harmonic intensities / activities × k_B T (docs/spectra.md)
    ir_ml = spectra.ir(ml_dipole, dt_sample, max_lag=max_lag)
    ir_xtb = spectra.ir(xtb_dipole, dt_sample, max_lag=max_lag)
    raman_ml = spectra.raman(ml_alpha, dt_sample, max_lag=max_lag)
    resolution = spectra.INVERSE_FS_TO_WAVENUMBER / (max_lag * dt_sample)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    name = args.molecule
    model_label = "toy model" if args.model is None else f"model {args.model}"
    plot(
        args.output_dir / "md_ir.png",
        [
            (ir_ml.wavenumber, ir_ml.intensity, f"MD, μ from mlhcalc ({model_label})", "k-", peak_scale(ir_ml)),
            (ir_xtb.wavenumber, ir_xtb.intensity, "MD, μ from GFN2-xTB", "tab:blue", peak_scale(ir_xtb)),
        ],
        (wavenumber, ir_intensity, "harmonic, mlhcalc Born charges"),
        f"IR of {name}: GFN2-xTB MD at {args.temperature:.0f} K, {n_frames * dt_sample / 1000:.1f} ps, "
        f"resolution {resolution:.0f} cm$^{{-1}}$",
    )
    scale = peak_scale(raman_ml)
    plot(
        args.output_dir / "md_raman.png",
        [
            (raman_ml.wavenumber, raman_ml.intensity, f"MD, α from mlhcalc ({model_label})", "k-", scale),
            (raman_ml.wavenumber, raman_ml.components["isotropic"], "isotropic part", "tab:green", scale),
            (raman_ml.wavenumber, raman_ml.components["anisotropic"], "anisotropic part", "tab:purple", scale),
        ],
        (wavenumber, raman_activity, "harmonic, mlhcalc dα/dR"),
        f"Raman of {name}: GFN2-xTB MD at {args.temperature:.0f} K, {n_frames * dt_sample / 1000:.1f} ps",
    )
    print(
        f"wrote {args.output_dir / 'md_ir.png'} and {args.output_dir / 'md_raman.png'} "
        f"[{time.perf_counter() - start:.0f} s]"
    )


if __name__ == "__main__":
    main()
