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

# The main job on the embedded offline corpus: prepare, ablate (seven runs, equal budgets), report.
# The sample is Python source, tokenized as bytes (offline, 257 ids); the micro preset (0.85M params)
# at 300k tokens per run learns visibly (validation loss from ln 257 = 5.5 to about 2.3 nats/token)
# in 20-40 s per run on 2 CPU cores. A token budget, not a time limit, so the comparison does not
# depend on what else the machine is doing. Re-running skips what is done.
DEMO ?= demo
demo: $(STAMP)
	$(BIN)/pileablate prepare --source sample --tokenizer bytes --out $(DEMO)/data
	$(BIN)/pileablate ablate --data $(DEMO)/data --runs-dir $(DEMO)/runs --preset micro \
		--max-tokens 300k --eval-every 20 --eval-tokens 32k --log-every 2
	@echo "demo: report $(DEMO)/runs/report.md · tables $(DEMO)/runs/summary.csv, $(DEMO)/runs/runs.csv · plots $(DEMO)/runs/plots/*.png|svg"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo
