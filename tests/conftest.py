"""Shared test setup: PySCFAD writes its config under $PYSCFAD_HOME, threads are capped so
tests do not fight over the 2 cores of CI."""

import os
import tempfile

os.environ.setdefault("PYSCFAD_HOME", tempfile.mkdtemp(prefix="pyscfad-home-"))
os.environ.setdefault("JAX_ENABLE_X64", "1")
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
