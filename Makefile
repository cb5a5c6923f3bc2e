# `make demo` and `make test` work on a fresh machine: they create .venv, install torch first
# (GPU users: install your CUDA build of torch into .venv before running make), then the project.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.att3d-installed
TORCH ?= torch==2.13.0
# The add-on supports Blender 4.2 LTS to 5.0: the suite runs on bpy 5.0.1 (in .venv), then the
# Blender tests again on the 4.2 LTS module. That venv holds only bpy; everything else comes from
# .venv, added after its own site-packages so that its bpy wins.
LTS_VENV := .venv-blender-lts
LTS_BPY ?= bpy>=4.2,<4.3
LTS_STAMP := $(LTS_VENV)/.att3d-installed

# The Khronos glTF validator (npm) for the export tests, in .tools/ (git-ignored). Without Node
# the target says so and the tests that need it skip with that reason.
GLTF_VALIDATOR ?= gltf-validator@2.0.0-dev.3.10
TOOLS_STAMP := .tools/node_modules/gltf-validator/package.json

.PHONY: setup demo lint test test-fast test-main test-blender-lts wheel extension clean tools

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[mesh,serve,studio,train,test,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/att3d demo --out out

$(LTS_STAMP): $(STAMP)
	$(PY) -m venv $(LTS_VENV)
	$(LTS_VENV)/bin/python -m pip install -q "$(LTS_BPY)"
	$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
		> "$$($(LTS_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/att3d-main-venv.pth"
	touch $(LTS_STAMP)

# ruff (config in pyproject.toml) over the whole repository, then mypy over backend/ and blender_att3d/wire/.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: test-main test-blender-lts

# The inner loop: every test but those marked slow (training runs, several processes, backend cold
# starts; `make test` runs them too). It needs the same tools as `make test` (the glTF validator).
test-fast: $(STAMP) tools
	$(BIN)/python -m pytest -q -m "not slow"

tools:
	@if command -v npm >/dev/null 2>&1; then \
		test -f $(TOOLS_STAMP) || npm install --prefix .tools --no-audit --no-fund $(GLTF_VALIDATOR) || \
		echo "could not install $(GLTF_VALIDATOR) (offline?): the glTF validator tests will fail until it is"; \
	else echo "npm not found: the glTF validator tests will be skipped (they need Node.js)"; fi

test-main: $(STAMP) tools
	$(BIN)/python -m pytest -q

test-blender-lts: $(LTS_STAMP)
	$(LTS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/blender

# dist/att3d-*.whl: the backend with the demo model and the teacher (pip install / pipx install it)
wheel: $(STAMP)
	$(BIN)/python -m blender_att3d.build --wheel-only --out dist

# dist/att3d-*.zip: the extension, carrying that wheel for *Set Up Local Backend*
extension: $(STAMP)
	$(BIN)/python -m blender_att3d.build --out dist

clean:
	rm -rf out dist build .pytest_cache .mypy_cache .ruff_cache .tools
