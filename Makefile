# edge-prune: the two commands a user types are `make model TARGET=...` and `make test`.
# Both create the virtualenv (.venv) from pyproject.toml when it is missing or out of date.

# Python 3.13: the TFLM wheel built from the TFLM tree's commit (tflite-micro 0.dev20260820164721)
# imports on 3.13 only. Taken from PATH, else from pyenv's versions.
PYTHON ?= $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 \
	/usr/local/bin/python3.13 /usr/bin/python3.13; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && \
	{ command -v "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TARGET ?= cortex-m4

.PHONY: venv model device test check lint format bench sweep search clean

$(STAMP): pyproject.toml
	@test -n '$(PYTHON)' || { echo "Python 3.13 is needed (python3.13 on PATH or in pyenv); none found" >&2; exit 2; }
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || \
		{ rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(STAMP)

model: $(STAMP)
	$(BIN)/edge-prune model --target '$(TARGET)' \
		$(if $(MODEL),--model '$(MODEL)') $(if $(DATA),--data '$(DATA)') \
		$(if $(CONFIG),--config '$(CONFIG)') $(if $(OUT),--out '$(OUT)') $(ARGS)

# The model on a real TFLM build for the target's core, in QEMU (README "On the device").
device: $(STAMP)
	$(BIN)/edge-prune device '$(or $(MODEL),build/$(TARGET))' --target '$(TARGET)' \
		$(if $(TFLM),--tflm '$(TFLM)') $(if $(KERNELS),--kernels '$(KERNELS)') \
		$(if $(BUILD),--build '$(BUILD)') $(if $(DATA),--data '$(DATA)') $(ARGS)

# The suite on one pytest-xdist worker per core (at most 4; one process on a 1-core machine):
# tests/conftest.py says which tests run together and which start first. TEST_WORKERS=0 runs it
# in one process; PYTEST_ARGS adds pytest options or picks tests.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; \
	[ $$n -lt 2 ] && n=0; echo $$n)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) \
		--dist loadscope) $(PYTEST_ARGS)

# The inner loop: lint and the quick tier (no TensorFlow training or conversion, no toolchain;
# tests/conftest.py says which tests that is). `make test` runs every test and is what CI runs.
check: $(STAMP)
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q -m 'not slow and not device' \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edge_prune tests bench
	$(BIN)/ruff format --check edge_prune tests bench
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix edge_prune tests bench
	$(BIN)/ruff format edge_prune tests bench

sweep: $(STAMP)
	$(BIN)/edge-prune sweep --target '$(TARGET)' $(ARGS)

search: $(STAMP)
	$(BIN)/edge-prune search --target '$(TARGET)' $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf build
