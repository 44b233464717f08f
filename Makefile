# Set-up and entry points.  Every target creates the virtual environment it needs (.venv) first.
# torch is pinned by constraints.txt to the CPU build available on this project's machines.

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xsbi-installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded default (no files needed)
	$(BIN)/xsbi demo --out xsbi-demo

test: $(STAMP)  ## the whole test suite, slow accuracy tests included
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  ## the suite without tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)  ## benchmarks (figures go in benchmarks/README.md)
	$(BIN)/python benchmarks/simulator_throughput.py

clean:
	rm -rf $(VENV) xsbi-demo build src/*.egg-info
