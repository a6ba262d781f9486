"""mlhcalc: machine-learned minimal-basis electronic Hamiltonians, differentiable observables
through PySCFAD, served as an ASE calculator and a command line tool."""

import os as _os

# JAX reads this when it is first imported; the physics is float64 throughout.
_os.environ.setdefault("JAX_ENABLE_X64", "1")

__version__ = "0.1.0"

__all__ = ["__version__"]
