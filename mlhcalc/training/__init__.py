"""Training: metrics shared by tests, model cards and benchmarks (:mod:`mlhcalc.training.metrics`)
and the direct ridge fit of minimal-basis Fock matrices (:mod:`mlhcalc.training.direct`).

Import the submodules directly; this package imports nothing heavy by itself (the metrics need
numpy and ASE only).
"""
