# Two commands on a fresh machine: `make train` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train lint test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# AFD on the built-in digits data (ARGS="method=at trainer.max_epochs=10" to change it).
train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

# ruff: lint rules and formatting, configured in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Lint, then the whole suite, slow (DDP, resume) tests included.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# CPU training-step benchmarks into benchmarks/results/ (docs/performance.md). Run on a quiet machine: any figure
# taken beside other work is flagged BUSY in the tables and the JSON. BENCH_ARGS="--threads 1" etc. to change them.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train_step.py --models digits --steps 40 --warmup 5 --repeats 3 \
	  --out benchmarks/results/train_step_cpu_digits.json $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_train_step.py --models cifar_resnet18 --steps 5 --warmup 1 --passes \
	  --out benchmarks/results/train_step_cpu.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) logs .pytest_cache
