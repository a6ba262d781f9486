"""Issue 4's metrics for models of B3LYPG/STO-3G itself: every model is scored against the STO-3G
labels (``mo_energy_minimal``, ``dipole_minimal``) on the qm7like val and test splits and on
``data/larger`` (transfer). Used for the closed-form Fock fit (``models/organic-sto3g``) against the
same fit trained on STO-3G observables through the qm layer (``data.targets: minimal``,
docs/direct_fit.md, "Observable fit"):

    mlhcalc train configs/experiments/sto3g-observables.yaml
    OMP_NUM_THREADS=1 python benchmarks/observable_fit.py models/organic-sto3g runs/experiments/sto3g-observables

Each positional argument is a trainer output directory, a model directory or a shipped model name.
All structures with a minimal stage enter (every one of both sets). Metrics:
``mlhcalc.training.metrics`` (REFERENCE.md). Prints markdown; ``--output FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from design_space import COLUMNS as DESIGN_COLUMNS  # noqa: E402
from design_space import resolve_model  # noqa: E402

# the design-space columns up to the dipole (no α: the STO-3G CPKS α is not what the model's
# non-self-consistent α approximates)
COLUMNS = DESIGN_COLUMNS[: [key for key, _, _ in DESIGN_COLUMNS].index("dipole_mae_debye") + 1]


def minimal_targets(path: str | Path, split: str | None) -> list:
    """Structures of ``path`` (in ``split`` if given) with their STO-3G labels as the targets."""
    from mlhcalc.reference import read
    from mlhcalc.training.trainer import use_minimal_targets

    structures = [a for a in read(path) if split is None or a.info.get("split") == split]
    use_minimal_targets(structures)
    return [a for a in structures if "mo_energy_large" in a.info and "nocc" in a.info]


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name, values in rows:
        cells = [f"{values[key]:.{digits}f}" if key in values else "–" for key, _, digits in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from mlhcalc.training.evaluation import evaluate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="trainer run directories, model directories or shipped names")
    parser.add_argument("--labels", default="data/qm7like/labels.d")
    parser.add_argument("--larger", default="data/larger/labels.d")
    parser.add_argument("--output", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sets = {
        "val": minimal_targets(args.labels, "val"),
        "test": minimal_targets(args.labels, "test"),
        "larger": minimal_targets(args.larger, None),
    }
    models = [resolve_model(spec)[:2] for spec in args.models]
    out = [
        "Command: `OMP_NUM_THREADS=1 python benchmarks/observable_fit.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        + "`",
        "",
    ]
    for name, structures in sets.items():
        rows = [(model_name, evaluate(model, structures)) for model_name, model in models]
        out += [f"### {name} (against B3LYPG/STO-3G)", "", table(rows), ""]
    out.append(f"run time {time.perf_counter() - start:.0f} s")
    text = "\n".join(out)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
