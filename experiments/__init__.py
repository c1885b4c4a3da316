"""plip-nn experiments: one module per experiment (Config + ``main(cfg) -> Path``).

Experiments call :mod:`plip_nn` and write records; they compute no statistics (see
:mod:`analysis`).
"""
