"""Band structure (Γ–X–W–L–Γ–K) and DOS of a periodic model against the PySCF reference of a held-out cell.

The reference comes from ``scripts/silicon_reference_bands.py INDEX`` (PBE/gth-dzvp, committed as
``data/silicon/bandpath_<id>.npz``); the model bands from the ASE calculator at the same k-points.
Writes ``band_structure.png`` and ``dos.png`` into ``--output`` and prints the path and mesh MAE
(valence + conduction to CBM + 1.5 eV, by the reference energy of each state).

    python benchmarks/silicon_plots.py silicon --compare silicon-szv --reference data/silicon/bandpath_000000.npz \
        --output models/silicon
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase.io import read

if TYPE_CHECKING:
    from mlhcalc.model import HamiltonianModel

REPO = Path(__file__).resolve().parent.parent
SIGMA_EV = 0.25


def model_bands_ev(model: str | HamiltonianModel, atoms, kpts_frac) -> np.ndarray:
    from mlhcalc.calculator import MLHamiltonian

    calc = MLHamiltonian(model=model, kpts=np.asarray(kpts_frac))
    calc.calculate(atoms, ["eigenvalues"])
    return calc.results["eigenvalues"][0]


def window_mae_ev(pred_ev, ref_ev, nocc: int, window_ev: float = 1.5) -> float:
    from mlhcalc.training import metrics

    n = pred_ev.shape[1]
    return metrics.band_window_mae_ev(
        [pred_ev / metrics.HARTREE_TO_EV], [ref_ev[:, :n] / metrics.HARTREE_TO_EV], nocc, window_ev
    )


def dos(bands_ev, energies, sigma=SIGMA_EV) -> np.ndarray:
    """States per eV per cell, both spins, uniform k weights (``mlhcalc.qm.periodic.density_of_states``
    in eV: it is per unit of the energies it is given)."""
    from mlhcalc.qm.periodic import density_of_states

    return np.asarray(density_of_states(bands_ev, energies, sigma))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlhcalc.training.metrics import HARTREE_TO_EV

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model name or directory (e.g. silicon)")
    parser.add_argument("--reference", default=str(REPO / "data/silicon/bandpath_000000.npz"))
    parser.add_argument("--compare", help="a second model drawn dashed (e.g. the direct fit silicon-szv)")
    parser.add_argument("--output", default=".", help="directory for the PNGs")
    parser.add_argument("--dos-mesh", type=int, default=12, help="model DOS also on this n×n×n Γ-centred mesh")
    args = parser.parse_args()

    ref = np.load(args.reference)
    index = int(Path(args.reference).stem.split("_")[-1])
    atoms = read(REPO / "data/silicon/primitive.extxyz", index=index)
    nocc = int(ref["nocc"])
    ref_path, ref_mesh = ref["bands"] * HARTREE_TO_EV, ref["mesh_bands"] * HARTREE_TO_EV
    vbm = ref_mesh[:, nocc - 1].max()
    models = [(args.model, "-", "C3")] + ([(args.compare, "--", "C2")] if args.compare else [])
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = ref["x"]
    for n in range(ref_path.shape[1]):
        ax.plot(x, ref_path[:, n] - vbm, color="k", lw=1.2, label="PBE/gth-dzvp (PySCF)" if n == 0 else None)
    print(f"cell {atoms.info.get('name')} ({atoms.info.get('split')} split); energies relative to the reference VBM")
    print("| model | path window MAE (eV) | mesh window MAE (eV) | mesh gap (eV) | reference gap (eV) |")
    print("|---|---|---|---|---|")
    ref_gap = ref_mesh[:, nocc].min() - vbm
    mesh = {}  # model → its bands on the reference mesh (the DOS plot uses the first)
    for name, style, color in models:
        path_bands = model_bands_ev(name, atoms, ref["kpts_frac"])
        mesh_bands = mesh[name] = model_bands_ev(name, atoms, ref["mesh_kpts_frac"])
        for n in range(path_bands.shape[1]):
            ax.plot(
                x,
                path_bands[:, n] - vbm,
                style,
                color=color,
                lw=1.2,
                label=f"model {Path(name).name}" if n == 0 else None,
            )
        gap = mesh_bands[:, nocc].min() - mesh_bands[:, nocc - 1].max()
        print(
            f"| {name} | {window_mae_ev(path_bands, ref_path, nocc):.3f} | "
            f"{window_mae_ev(mesh_bands, ref_mesh, nocc):.3f} | {gap:.3f} | {ref_gap:.3f} |"
        )
    ax.axhspan(ref_gap, ref_gap + 1.5, color="0.9", zorder=0, label="fitted window (CBM + 1.5 eV)")
    for xs in ref["special_x"]:
        ax.axvline(xs, color="0.6", lw=0.6)
    labels = ["Γ" if s == "G" else str(s) for s in ref["special_labels"]]
    ax.set_xticks(ref["special_x"], labels)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-13.5, 8)
    ax.set_ylabel("E − VBM (eV)")
    ax.set_title(f"Si, held-out cell {atoms.info.get('name')}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(output / "band_structure.png", dpi=130)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    energies = np.linspace(-14, 8, 1200)
    ax.plot(energies, dos(ref_mesh - vbm, energies), color="k", label="PBE/gth-dzvp, 4×4×4 (PySCF)")
    ax.plot(energies, dos(mesh[args.model] - vbm, energies), color="C3", label=f"model {Path(args.model).name}, 4×4×4")
    from mlhcalc.calculator import resolve_kpoints

    dense = resolve_kpoints({"size": (args.dos_mesh,) * 3, "gamma": True}, atoms)
    dense_model = model_bands_ev(args.model, atoms, dense)
    ax.plot(energies, dos(dense_model - vbm, energies), ":", color="C3", label=f"model, {args.dos_mesh}³")
    ax.set_xlabel("E − VBM (eV)")
    ax.set_ylabel(f"DOS (states/eV/cell, σ = {SIGMA_EV} eV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output / "dos.png", dpi=130)
    print(f"wrote {output / 'band_structure.png'} and {output / 'dos.png'}")


if __name__ == "__main__":
    main()
