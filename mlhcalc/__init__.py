"""mlhcalc: machine-learned minimal-basis electronic Hamiltonians, differentiable observables
through PySCFAD, served as an ASE calculator and a command line tool.

``from mlhcalc import MLHamiltonian`` is resolved lazily, so ``import mlhcalc`` stays light (no
torch, JAX or PySCF until the calculator is used).
"""

import os as _os

# JAX reads this when it is first imported; the physics is float64 throughout.
_os.environ.setdefault("JAX_ENABLE_X64", "1")

__version__ = "0.1.0"

__all__ = ["__version__", "MLHamiltonian", "PairedCalculator"]

_LAZY = {"MLHamiltonian": "mlhcalc.calculator", "PairedCalculator": "mlhcalc.calculator"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlhcalc' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
