# Every target sets up what it needs: a fresh clone needs only Python 3.11+, make and Node.js.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_ARGS ?=
# The pip that installs everything is pinned too: a new pip can change resolution.
PIP_VERSION := 26.3

.PHONY: install demo test test-slow test-loaded lint unit conformance bench synth docs clean wheel

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(BIN)/python -m pip install -q -e '.[local,dev,cdk,docs]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/orchestrator demo

# The artifact a datacenter installs: dist/dynamo_durable_workflows-<version>-py3-none-any.whl
# (the packages orchestrator and worker, the dashboard's files, the `orchestrator` command).
wheel: install
	$(BIN)/python -m build --wheel --outdir dist .

# mypy checks tests/fakes and tests/contract too: it proves the in-memory fake
# satisfies the store interface (RunStore). The rest of tests/ is left out: mypy
# finds some 66 errors in 21 of its files (Optional narrowing, loosely typed helpers).
lint: install
	$(BIN)/ruff check orchestrator worker infra examples tests benchmarks
	$(BIN)/ruff format --check orchestrator worker infra examples tests benchmarks
	$(BIN)/mypy --explicit-package-bases orchestrator worker tests/fakes tests/contract

# Four xdist workers even on two cores: the tests mostly wait (leases, sleeps,
# moto round trips). 1,441 tests take 15 minutes beside `make test-loaded`'s CPU
# hog (2026-12-07); 1,320 took 8.5 minutes on two quiet cores and 16 beside the
# hog before the test stacks swept once a second instead of five times.
# `--dist loadgroup` with tests/conftest.py's scheduler: a conformance module's
# tests run together in one process, so its scenarios run once, not once per
# process that drew one of its tests.
test: lint
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup

# The slow tier alone (soaks, campaigns, the long configuration property run):
# every test `make test` deselects.
test-slow: install
	$(BIN)/python -m pytest -q -n 2 -m slow

# `make test` beside a CPU hog of twice the cores (busy-loop processes,
# tests/cpu_hog.py), stopped when the suite ends, whatever its result, Ctrl-C
# included. LOADED_SUITE replaces the suite, e.g. LOADED_SUITE='sleep 5' to see
# the hog start and stop.
LOADED_SUITE ?= $(MAKE) --no-print-directory test
test-loaded: install
	$(BIN)/python -m tests.cpu_hog -- $(LOADED_SUITE)

# The conformance tier alone (docs/conformance.md), with one summary line per suite.
# loadfile: a suite module's scenarios share one stack, so each module runs in one process.
conformance: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -p tests.conformance.summary tests/conformance

bench: install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.flow_control
	$(BIN)/python -m benchmarks.handoff

# The site with the SDK reference, built offline into site/ (strict: a broken
# reference or link fails the build).
docs: install
	$(BIN)/mkdocs build --strict

synth: install
	npm ci --no-audit --no-fund --silent
	npx cdk synth

clean:
	rm -rf $(VENV) cdk.out benchmarks/out site
