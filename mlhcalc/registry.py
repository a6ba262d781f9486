"""Where shipped and user models live, and how a model is found by name.

A model is a directory holding ``model.json`` (metadata) next to its weights. Search order:
the directories in ``$MLHCALC_MODELS`` (``os.pathsep``-separated), then the repository's ``models/``
beside the package (a source checkout or editable install).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["model_search_paths", "list_models", "find_model"]

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def model_search_paths() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("MLHCALC_MODELS", "").split(os.pathsep) if p]
    paths.append(REPO_MODELS)
    return paths


def list_models() -> dict[str, Path]:
    """Name → directory of every model found on the search path (first hit wins)."""
    found: dict[str, Path] = {}
    for root in model_search_paths():
        if not root.is_dir():
            continue
        for meta in sorted(root.glob("*/model.json")):
            found.setdefault(meta.parent.name, meta.parent)
    return found


def find_model(name_or_path: str | os.PathLike) -> Path:
    """Directory of a model given by name (``"organic"``) or by path; ``FileNotFoundError`` otherwise."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "model.json").is_file():
        return path
    if path.is_file() and path.name == "model.json":
        return path.parent
    models = list_models()
    if str(name_or_path) in models:
        return models[str(name_or_path)]
    known = ", ".join(sorted(models)) or "none"
    raise FileNotFoundError(
        f"no model {str(name_or_path)!r}: give a model directory (containing model.json) or one of the "
        f"installed models ({known}); more search directories can be added with $MLHCALC_MODELS"
    )


def read_metadata(model_dir: Path) -> dict:
    with open(Path(model_dir) / "model.json") as handle:
        return json.load(handle)
