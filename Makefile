# The README's two commands: `make demo` and `make test`. Both create .venv and install
# the package with pinned versions (install/constraints.txt) the first time; a re-run
# reinstalls only when setup.cfg or the constraints change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := test,bench,spark,edge,docs,research,mlflow
# uv (pinned: Flower depends on it) installs the same pinned set as pip in a third of the time (issue 56: 50 s against
# 2-3 min on a fresh machine), compiling the bytecode as pip does; where uv cannot install (an index that only pip's
# own configuration names, say), pip does it. Each install builds pyspark's sdist again into a new revision of uv's
# cache (1.9 GB, never reused: ~/.cache/uv grew by that at every fresh clone, 11 GB after three): `uv cache prune`
# after it drops what nothing reaches any more (4.1 GB of those 11), so a machine's cache stays one build's size.
PYTEST_ARGS ?=
# The tests run in parallel processes (pytest-xdist), 3 on 2 cores: many wait on real processes (a training run, a
# server, Slurm, Flower), yet the machine's CPU is busy throughout (issue 56: 4 workers took 13 % more CPU and longer),
# in the order tests/conftest.py hands units out (--no-loadscope-reorder keeps it). `make test TEST_WORKERS=0`: all in
# one process.
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: install demo test test-fast bench image docs docs-build claims clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml install/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install --quiet --constraint install/constraints.txt uv && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode --constraint install/constraints.txt \
	    --editable '.[$(EXTRAS)]' && { $(BIN)/uv cache prune --quiet || true; } ) || \
	$(BIN)/python -m pip install --quiet --constraint install/constraints.txt --editable '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py
	$(BIN)/experiments-manager list experiments/examples/curve_fitting

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs $(XDIST) $(PYTEST_ARGS)

# The fast tier for the edit-run loop (a few minutes): every test not marked `slow` (by cost: over ~5 s, or a real
# daemon; tests/conftest.py), wherever it lives, with one command-line train -> serve -> resume. CI runs `make test`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs $(XDIST) -m "not slow" $(PYTEST_ARGS)

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
# `make image IMAGE_ARGS="--build-arg CUDA_WHEELS=yes"`. Its cache lives outside the checkout ($EM_IMAGE_CACHE, else
# ~/.cache/experiments_manager/image): the bare Debian, and the root %post made, keyed by the recipe and the pins
# below, which a later build (a fresh clone too) updates with this checkout's package instead of installing everything
# (%post's pip install of the package adds a dependency setup.cfg gained since; the pins change with any version),
# from hard links to the kept root with an overlay taking what the build writes: seconds and megabytes, not a copy.
IMAGE_ROOT ?= build/image
IMAGE_ARGS ?= --build-arg CUDA_WHEELS=no
image: $(STAMP)
	$(BIN)/python tools/image/build.py install/experiments_manager_debian.def $(IMAGE_ROOT) $(IMAGE_ARGS) \
		--cache-key install/constraints.txt --force

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
