# Command index for plip-nn. `make install` once, then the targets below.
PY ?= .venv/bin/python
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1

.PHONY: help install test test-slow lint typecheck triangle bench bench-gpu model

help:               ## this list
	@grep -E "^[a-z-]+:.*##" Makefile | sed "s/:.*##/ -/"

install:            ## venv + CPU torch + project with dev extras
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q torch==2.13.0
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

bench-gpu:          ## one CUDA GPU, <= 8 min -> benchmarks/GPU.md (+ benchmarks/_out/gpu.json)
	$(PY) -m benchmarks.gpu --device cuda

model:              ## retrain stage 1 of the embedded model (all stages: plip_nn/data/MODEL_CARD.md)
	$(PY) scripts/train_embedded_model.py
