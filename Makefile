# The README's two commands. Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test,hf]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded offline corpus: prepare, ablate (seven runs, equal budgets), report.
DEMO ?= demo
demo: $(STAMP)
	$(BIN)/pileablate prepare --source sample --tokenizer bytes --out $(DEMO)/data
	$(BIN)/pileablate ablate --data $(DEMO)/data --runs-dir $(DEMO)/runs --preset micro --time-limit 20s
	$(BIN)/pileablate report $(DEMO)/runs --out $(DEMO)/report

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo
