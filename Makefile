# Two commands on a fresh machine: `make train` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train lint typecheck test test-fast test-durations bench bench-square bench-m10k bench-soak clean reproduce ablate docs docs-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# AFD on the built-in digits data (ARGS="method=at trainer.max_epochs=10" to change it).
train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

# ruff (lint rules and formatting, [tool.ruff]), mypy over src/ ([tool.mypy]) and the import layers
# (import-linter, [tool.importlinter]: each package imports only the layers below it), all in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/lint-imports --no-cache

# mypy alone (also run by lint): about a minute cold on 2 busy cores, a few seconds with .mypy_cache.
typecheck: $(STAMP)
	$(BIN)/python -m mypy

# Tests run in TEST_JOBS processes (pytest-xdist), whole files to a process (--dist loadfile: a module's
# fixtures are built once), files with slow tests handed out first (tests/conftest.py; --no-loadscope-reorder
# keeps that order); the tests use one torch thread each. TEST_JOBS=0: all in this process.
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; n = min(4, len(os.sched_getaffinity(0))); print(n if n > 1 else 0)")
PYTEST = $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

# Lint and the docs site side by side (each runs on one core: mypy cold takes about 30 s of CPU, the site about
# 20 s), then the whole suite, slow tests included. Chromium (Debian's package, installed when missing) measures
# the built docs site (tests/test_docs_layout.py).
test: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target lint docs
	sh tools/ensure_chromium.sh
	$(PYTEST) $(PYTEST_ARGS)

# The documentation site from docs/ into site/ (mkdocs.yml); --strict: a broken link or API reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# The whole suite with every test's duration, kept in benchmarks/results/test_durations.txt (where a trim starts).
# Then tools/slow_marks.py lists the tests without the slow mark that took half a second or more (mark them).
test-durations: $(STAMP)
	$(PYTEST) --durations=0 --durations-min=0.1 -q $(PYTEST_ARGS) | tee benchmarks/results/test_durations.txt
	-$(BIN)/python tools/slow_marks.py benchmarks/results/test_durations.txt

# Every study's summary rebuilt from its committed per-run records (docs/results/<study>/runs: metrics.json,
# .hydra/*.yaml, eval_*/results.json) and its claims (tools/claims.py, where claims.yaml lists them), then every
# generated table, value and claim in README.md and docs/.
# A new study: run it into a sweep folder, `python tools/collect_runs.py <sweep> docs/results/<study>/runs`, then this.
docs-data: $(STAMP)
	for runs in docs/results/*/runs; do \
	  [ -d "$$runs" ] || continue; \
	  $(BIN)/afd-summarize $$runs --out $$(dirname $$runs) > /dev/null || exit 1; \
	  [ ! -f "$$(dirname $$runs)/claims.yaml" ] || $(BIN)/python tools/claims.py $$(dirname $$runs) || exit 1; \
	done
	$(BIN)/python tools/docs_tables.py --write

# Both recipes, 3 seeds, on the built-in digits (docs/recipes.md "Two recipes"): NT, AT, TRADES and AFD
# with the paper's recipe, AFD with the authors' code's (conf/train/experiment/{paper,official}_digits_*.yaml);
# each run evaluated with the quick suite and with AutoAttack on 200 test images; then afd-summarize writes
# summary.{md,csv,json} and the wall time goes to wall_time.txt, all in REPRO_DIR. Not part of `make test`.
# In parallel by default: REPRO_JOBS training runs at once (Hydra's joblib launcher,
# conf/train/hydra/launcher/local_parallel.yaml) and REPRO_JOBS evaluations at once (xargs -P), each with
# REPRO_THREADS torch threads (jobs x threads <= cores). One after another, with the same numbers:
#   make reproduce REPRO_LAUNCHER=basic REPRO_JOBS=1
REPRO_DIR ?= logs/reproduce
REPRO_SEEDS ?= 0,1,2
REPRO_PRESETS ?= paper_digits_nt,paper_digits_at,paper_digits_trades,paper_digits_afd,official_digits_afd
REPRO_ARGS ?=
REPRO_THREADS ?= 1
REPRO_JOBS ?= $(shell $(PYTHON) -c "import os; print(max(1, len(os.sched_getaffinity(0)) // $(REPRO_THREADS)))")
REPRO_LAUNCHER ?= local_parallel
# The evaluation suites run on every trained run (conf/eval/suite/), each into <run>/eval_<suite>/.
REPRO_SUITES ?= quick autoattack
# Test images per evaluation: 200 (the committed study), null for the whole digits test split (360).
REPRO_SAMPLES ?= 200
# workers=1: each evaluation in one process (REPRO_JOBS of them run at once already)
REPRO_EVAL := n_samples=$(REPRO_SAMPLES) progress=false plots=false threads=$(REPRO_THREADS) workers=1

reproduce: $(STAMP)
	@start=$$(date +%s); set -e; \
	$(BIN)/python train.py -m hydra/launcher=$(REPRO_LAUNCHER) experiment=$(REPRO_PRESETS) seed=$(REPRO_SEEDS) \
	  threads=$(REPRO_THREADS) logger=csv trainer.enable_progress_bar=false hydra.sweep.dir=$(REPRO_DIR) \
	  $(if $(filter local_parallel,$(REPRO_LAUNCHER)),hydra.launcher.n_jobs=$(REPRO_JOBS)) $(REPRO_ARGS); \
	ls -d $(REPRO_DIR)/*/ | xargs -P $(REPRO_JOBS) -n 1 sh -c \
	  'for suite in $(REPRO_SUITES); do \
	     $(BIN)/python eval.py ckpt_path=$${1}checkpoints/last.ckpt suite=$$suite $(REPRO_EVAL) output_dir=$${1}eval_$$suite > $${1}eval_$$suite.log 2>&1 || \
	     { echo "evaluation of $$1 failed: see $${1}eval_$$suite.log"; exit 1; }; \
	   done' sh; \
	$(BIN)/afd-summarize $(REPRO_DIR); \
	echo "make reproduce: $$(( $$(date +%s) - start )) s wall time ($$(getconf _NPROCESSORS_ONLN) cores, $(REPRO_JOBS) jobs x $(REPRO_THREADS) threads, launcher $(REPRO_LAUNCHER))" | tee $(REPRO_DIR)/wall_time.txt

# The ablation of issue 21 (docs/findings.md): paper_digits_afd changed one ingredient at a time toward the
# authors' recipe, the paper's AFD + AT / AFD + TRADES, Da width and LR_E either side of the default
# (conf/train/experiment/ablation/), with both recipes as end points; 3 seeds each, evaluated and summarised
# like `make reproduce` (whose target runs it) into ABLATE_DIR, plus gap_vs_saturation.png. Hours on a CPU.
ABLATE_DIR ?= logs/ablate
ABLATE_PRESETS ?= paper_digits_afd,official_digits_afd,$(subst $(eval) ,$(comma),$(addprefix ablation/,$(basename $(notdir $(sort $(wildcard conf/train/experiment/ablation/*.yaml))))))
comma := ,

# The ablation needs AutoAttack (with its PGD-L∞ for the gap) and saturation only: the autoattack suite.
ABLATE_SUITES ?= autoattack

ablate: $(STAMP)
	$(MAKE) reproduce REPRO_PRESETS=$(ABLATE_PRESETS) REPRO_DIR=$(ABLATE_DIR) REPRO_SUITES="$(ABLATE_SUITES)"

# Every benchmark whose results are committed under benchmarks/results/, rerun with the command that made it
# (each results file records its command; docs/performance.md). Run on a quiet machine: any figure taken beside
# other work is flagged BUSY in the tables and the JSON. The evaluation benchmarks use the `make train` checkpoint
# (trained once into BENCH_DIR, threads=1). `make bench-soak` (30 minutes) reruns the memory soak.
BENCH_DIR ?= logs/bench
BENCH_CKPT := $(BENCH_DIR)/afd/checkpoints/last.ckpt
bench: $(STAMP) $(BENCH_CKPT)
	$(BIN)/python benchmarks/bench_train_step.py --models digits --steps 40 --warmup 5 --repeats 3 \
	  --out benchmarks/results/train_step_cpu_digits.json
	$(BIN)/python benchmarks/bench_train_step.py --models cifar_resnet18 --methods at,afd --steps 5 --warmup 1 --passes \
	  --out benchmarks/results/train_step_cpu.json
	$(BIN)/python benchmarks/bench_threads.py --out benchmarks/results/threads_cpu.json
	$(BIN)/python benchmarks/bench_eval.py --ckpt $(BENCH_CKPT) --n-samples 50 --threads 1 --out benchmarks/results/eval_speed
	$(BIN)/python benchmarks/bench_eval_attacks.py --ckpt $(BENCH_CKPT) --threads 1 --repeats 1 --n-samples 100 \
	  --out benchmarks/results/eval_attacks
	$(BIN)/python benchmarks/bench_eval_default.py --ckpt $(BENCH_CKPT) --out benchmarks/results/eval_default.json
	$(BIN)/python benchmarks/bench_reproduce.py --presets paper_digits_at,paper_digits_afd --seeds 0,1 --suites quick \
	  --args '' --out benchmarks/results/reproduce_parallel.json
	@if [ -n "$(wildcard $(REPRO_DIR)/*experiment-paper_digits_afd__seed-0/checkpoints/last.ckpt)" ]; then \
	  $(MAKE) bench-square; else echo "bench-square skipped: run make reproduce first (REPRO_DIR=$(REPRO_DIR))"; fi
	@if [ -f "$(M10K_CKPT)" ]; then $(MAKE) bench-m10k; \
	  else echo "bench-m10k skipped: train $(M10K_CKPT) first (docs/results.md, MNIST-10k)"; fi

$(BENCH_CKPT): | $(STAMP)
	$(BIN)/python train.py threads=1 logger=csv trainer.enable_progress_bar=false hydra.run.dir=$(BENCH_DIR)/afd

# Square (the paper suite's gradient-free check) against SPSA, per sample, on the seed-0 checkpoints of `make reproduce`
# (benchmarks/results/square_vs_spsa_{baselines,afd}.md were made this way from REPRO_DIR=/work/runs/reproduce).
SEED0 = $(foreach p,paper_digits_nt paper_digits_at paper_digits_trades,--ckpt $(wildcard $(REPRO_DIR)/*experiment-$(p)__seed-0/checkpoints/last.ckpt))
SEED0_AFD = $(foreach p,paper_digits_afd official_digits_afd,--ckpt $(wildcard $(REPRO_DIR)/*experiment-$(p)__seed-0/checkpoints/last.ckpt))
bench-square: $(STAMP)
	PYTHONPATH=benchmarks $(BIN)/python benchmarks/square_vs_spsa.py $(SEED0) --name NT --name AT --name TRADES \
	  --n-samples 200 --threads 1 --out benchmarks/results/square_vs_spsa_baselines.json
	PYTHONPATH=benchmarks $(BIN)/python benchmarks/square_vs_spsa.py $(SEED0_AFD) --name "AFD (paper)" --name "AFD (authors)" \
	  --n-samples 200 --threads 1 --out benchmarks/results/square_vs_spsa_afd.json

# AutoAttack over image shards, workers=1 against workers=2 (same per-sample results), and Square against SPSA, on one
# MNIST-10k AFD checkpoint (M10K_DIR: the runs of docs/results.md's MNIST-10k commands; 500 and 200 test images).
M10K_DIR ?= runs/m10k
M10K_CKPT = $(M10K_DIR)/afd_s0/checkpoints/last.ckpt
bench-m10k: $(STAMP)
	$(BIN)/python benchmarks/bench_autoattack_shards.py --ckpt $(M10K_CKPT) --n-samples 500 \
	  --out benchmarks/results/autoattack_shards.json
	PYTHONPATH=benchmarks $(BIN)/python benchmarks/square_vs_spsa.py --ckpt $(M10K_CKPT) --name "AFD (paper, MNIST-10k)" \
	  --n-samples 200 --threads 1 --out benchmarks/results/square_vs_spsa_mnist10k.json

bench-soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --epochs 200 +trainer.limit_train_batches=3 dataset.meta.eval_attack_steps=5

clean:
	rm -rf $(VENV) logs .pytest_cache
