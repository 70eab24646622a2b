# Every target sets up what it needs: a fresh clone needs only Python 3.11+, make and Node.js.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_ARGS ?=

.PHONY: install demo test lint unit bench synth clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cdk]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/orchestrator demo

lint: install
	$(BIN)/ruff check orchestrator worker infra examples tests benchmarks
	$(BIN)/ruff format --check orchestrator worker infra examples tests benchmarks
	$(BIN)/mypy orchestrator worker

test: lint
	$(BIN)/python -m pytest -q -n 2

bench: install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.flow_control

synth: install
	npm install --no-audit --no-fund --silent
	npx cdk synth

clean:
	rm -rf $(VENV) cdk.out benchmarks/out
