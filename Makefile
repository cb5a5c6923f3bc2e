# `make demo` and `make test` work on a fresh machine: they create .venv, install torch first
# (GPU users: install your CUDA build of torch into .venv before running make), then the project.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.att3d-installed
TORCH ?= torch==2.13.0

.PHONY: setup demo test extension clean

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[mesh,serve,train,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/att3d demo --out out

test: $(STAMP)
	$(BIN)/python -m pytest -q

extension: $(STAMP)
	$(BIN)/python -m blender_att3d.build --out dist

clean:
	rm -rf out dist build .pytest_cache
