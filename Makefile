# The README's two commands. Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test,hf,tensorboard,wandb]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded offline corpus: prepare, then the seven experiments (baseline; warmup,
# cosine, rmsnorm, rope, swiglu alone; all five) on the micro preset (0.85M params), two seeds each,
# each configuration at its own learning rate, tuned first on tuning runs (3 rates, half the budget,
# seeds and held-out windows of their own), all runs with the same 120k-token budget. Two runs at a
# time with one thread each: tiny models gain little from a second thread. The sample is Python source,
# tokenized as bytes (offline, 257 ids). A token budget, not a time limit, so the comparison does not
# depend on what else the machine is doing. Re-running skips what is done.
DEMO ?= demo
DEMO_JOBS ?= 2
demo: $(STAMP)
	$(BIN)/pileablate prepare --source sample --tokenizer bytes --out $(DEMO)/data
	$(BIN)/pileablate ablate --data $(DEMO)/data --runs-dir $(DEMO)/runs --preset micro \
		--max-tokens 120k --eval-every 20 --eval-tokens 16k --log-every 2 --seeds 2 \
		--tune-lr 3e-4,1e-3,3e-3 --tune-budget 1 --jobs $(DEMO_JOBS)
	@echo "demo: report $(DEMO)/runs/report.md · tables $(DEMO)/runs/summary.csv, $(DEMO)/runs/runs.csv · plots $(DEMO)/runs/plots/*.png|svg"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo
