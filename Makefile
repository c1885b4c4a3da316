# Command index for plip-nn. `make install` once, then the targets below.
PY ?= .venv/bin/python
# The index torch is installed from. Empty: pip's own configuration decides (the default index
# serves the CUDA build on Linux). CPU-only: https://download.pytorch.org/whl/cpu; a CUDA build:
# https://download.pytorch.org/whl/cu124 (see README, Quick start).
TORCH_INDEX ?=
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1

.PHONY: help install test test-slow lint typecheck triangle bench bench-check bench-gpu model

help:               ## this list
	@grep -E "^[a-z-]+:.*##" Makefile | sed "s/:.*##/ -/"

install:            ## venv + torch 2.13 (from TORCH_INDEX, else pip's configuration) + project with dev extras
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(PY) -c "import torch; print(f'torch {torch.__version__} installed (CUDA build: {torch.version.cuda or \"none, CPU only\"})')"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@$(PY) -c "from analysis.sandbox import unavailable_reason as why; r = why(); \
	print('sandbox: bubblewrap works here; executes will be measured' if r is None else \
	f'sandbox: NOT available, executes will not be measured and its tests skip ({r})')"

test:               ## default test run (CPU, a few minutes)
	$(PY) -m pytest -q -m "not slow" -n 2

test-slow:          ## slow tests only
	$(PY) -m pytest -q -m slow

lint:               ## ruff (lint + format check) over the whole repository
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

typecheck:          ## mypy: plip_nn, analysis, experiments, benchmarks, scripts
	$(PY) -m mypy

triangle:           ## the main job on the embedded model
	.venv/bin/plip-nn triangle --out runs/triangle --resume

bench:              ## benchmarks -> benchmarks/RESULTS.md
	$(PY) -m benchmarks.run

bench-check:        ## lists RESULTS.md sections older than the code they measure; exit 1 if any
	$(PY) -m benchmarks.check

bench-gpu:          ## one CUDA GPU, <= 8 min -> benchmarks/GPU.md (+ benchmarks/_out/gpu.json)
	$(PY) -m benchmarks.gpu --device cuda

model:              ## retrain stage 1 of the embedded model (all stages: plip_nn/data/MODEL_CARD.md)
	$(PY) scripts/train_embedded_model.py
