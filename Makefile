# The README's two commands: `make demo` and `make test`. Both create .venv and install
# the package with pinned versions (install/constraints.txt) the first time; a re-run
# reinstalls only when setup.cfg or the constraints change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The tests run in parallel processes (pytest-xdist): most of them wait on real processes (a training run, a
# server, Slurm), so more workers than cores pays (3 on 2 cores). `make test TEST_WORKERS=0`: all in one process.
TEST_WORKERS ?= 3

.PHONY: install demo test test-fast bench image docs docs-build claims clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml install/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint install/constraints.txt --editable '.[test,bench,spark,edge,docs,research]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py
	$(BIN)/experiments-manager list experiments/examples/curve_fitting

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast tier for the edit-run loop: tests/unit/ (in-process, no real daemons; tests/e2e/ holds the rest).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup tests/unit $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/): `make docs` serves it on http://127.0.0.1:8000 and rebuilds it as
# docs/ changes; `make docs-build` writes it to site/ (strict: a broken link fails). tools/docs/gen_reference.py
# regenerates the command-line and settings reference pages first.
docs: $(STAMP)
	$(BIN)/python tools/docs/gen_reference.py
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: $(STAMP)
	$(BIN)/python tools/docs/gen_reference.py
	$(BIN)/mkdocs build --strict --site-dir site

# tests/README.md, the map of what the tests prove, from tests/claims.md and the tests' @pytest.mark.claim markers.
claims:
	python3 tools/claims_map.py

# The Apptainer image as a sandbox root folder (tools/image/build.py: debootstrap, %files, %post, %test, as
# `apptainer build --sandbox` runs them), for machines without Apptainer; needs root, debootstrap and bubblewrap.
# The Slurm tests run their jobs in it when EM_IMAGE_ROOT names it (.ci/run does). IMAGE_ARGS: e.g. the GPU wheels,
# `make image IMAGE_ARGS="--build-arg CUDA_WHEELS=yes"`.
IMAGE_ROOT ?= build/image
IMAGE_ARGS ?= --build-arg CUDA_WHEELS=no
image: $(STAMP)
	$(BIN)/python tools/image/build.py install/experiments_manager_debian.def $(IMAGE_ROOT) $(IMAGE_ARGS) \
		--cache build/image-cache --force

bench: $(STAMP)
	$(BIN)/python tools/bench_train.py
	$(BIN)/python tools/bench_ema.py
	$(BIN)/python tools/bench_serving.py
	$(BIN)/python tools/bench_kafka.py
	$(BIN)/python tools/bench_federated.py
	$(BIN)/python tools/bench_sweep.py
	$(BIN)/python tools/bench_multiworker.py
	$(BIN)/python tools/bench_edge.py

clean:
	rm -rf $(VENV) build *.egg-info
