# memproxy — `make serve` runs the proxy, `make test` runs the whole suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install serve test bench-latency bench-locomo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, from the constraints file, so nothing pulls the CUDA build.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[local,test]"
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/memproxy serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The fake upstream lives in testing/ (source tree only, not in the wheel).
bench-latency: $(STAMP)
	PYTHONPATH=. $(BIN)/memproxy bench latency $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
