"""The ``mlhcalc`` command line: a thin shell over the library (nothing imports this module)."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata

import click

import mlhcalc
from mlhcalc.registry import find_model, list_models, read_metadata

_DEPENDENCIES = (
    "numpy",
    "scipy",
    "torch",
    "jax",
    "jaxlib",
    "pyscf",
    "pyscfad",
    "pyscf-properties",
    "ase",
    "featomic",
    "featomic-torch",
    "metatensor-core",
    "metatensor-torch",
    "h5py",
    "click",
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _thread_settings() -> dict:
    settings = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    settings["cpu_count"] = os.cpu_count()
    try:
        import torch

        settings["torch_num_threads"] = torch.get_num_threads()
    except ImportError:
        settings["torch_num_threads"] = None
    return settings


def collect_info() -> dict:
    """Everything ``mlhcalc info`` prints, as a JSON-serialisable dict."""
    return {
        "mlhcalc": mlhcalc.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dependencies": {name: _version(name) for name in _DEPENDENCIES},
        "threads": _thread_settings(),
        "models": {name: str(path) for name, path in list_models().items()},
    }


@click.group()
@click.version_option(mlhcalc.__version__, prog_name="mlhcalc")
def main() -> None:
    """Machine-learned minimal-basis Hamiltonians: predict, train, label, spectra."""


@main.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model: str | None, as_json: bool) -> None:
    """Package, dependency and thread information, and the models found (or one MODEL's metadata)."""
    if model is not None:
        try:
            data = read_metadata(find_model(model))
        except FileNotFoundError as err:
            raise click.ClickException(str(err)) from None
        except (OSError, ValueError) as err:
            raise click.ClickException(f"cannot read the metadata of model {model!r}: {err}") from None
        click.echo(json.dumps(data, indent=2) if as_json else _format_model(model, data))
        return
    data = collect_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"mlhcalc {data['mlhcalc']}  (Python {data['python']}, {data['platform']})")
    click.echo("dependencies:")
    for name, version in data["dependencies"].items():
        click.echo(f"  {name:18s} {version or 'not installed'}")
    click.echo("threads:")
    for name, value in data["threads"].items():
        click.echo(f"  {name:18s} {value if value is not None else 'unset'}")
    click.echo("models:")
    if not data["models"]:
        click.echo("  (none found; see mlhcalc.registry for the search path)")
    for name, path in data["models"].items():
        click.echo(f"  {name:18s} {path}")


def _format_model(name: str, data: dict) -> str:
    lines = [f"model {name}"]
    for key, value in data.items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        lines.append(f"  {key:22s} {text}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
