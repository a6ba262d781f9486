"""The differentiable physics: pure JAX functions of arrays, built on PySCFAD.

Importing this package configures JAX for float64 and PySCFAD for implicit differentiation of
SCF (see ../shared/REFERENCE.md, pitfalls). Import the functions from the submodules.
"""

import jax

jax.config.update("jax_enable_x64", True)

try:  # PySCFAD's config module; present in pyscfad>=0.2
    from pyscfad import config as _pyscfad_config

    _pyscfad_config.update("pyscfad_scf_implicit_diff", True)
except Exception:  # pragma: no cover - older/newer pyscfad without this switch
    pass
