# memproxy — `make serve` runs the proxy, `make test` runs the whole suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install browser serve test lint bench-latency bench-locomo bench-longmemeval bench-facts clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, from the constraints file, so nothing pulls the CUDA build.
# llama.cpp is compiled for portable x86-64 (AVX2), not -march=native: the
# native build crashes in decode on CPUs with AMX (seen on this machine
# image); --no-cache-dir keeps a natively built wheel from pip's cache out.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt "torch==2.13.0"
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-cache-dir -c constraints.txt "llama-cpp-python==0.3.36"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[local,test]"
	touch $(STAMP)

install: $(STAMP) browser

# The inspector's browser tests drive Debian's chromium through Playwright
# (never `playwright install`, which downloads a browser). Idempotent; needs
# root (CI runs as root) the first time only.
browser:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

serve: $(STAMP)
	$(BIN)/memproxy serve $(ARGS)

test: $(STAMP) browser
	$(BIN)/python -m pytest $(ARGS)

# ruff (pyflakes, import order, bugbear, pyupgrade) on everything; mypy on the shipped packages.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The fake upstream lives in testing/ (source tree only, not in the wheel).
bench-latency: $(STAMP)
	PYTHONPATH=. $(BIN)/memproxy bench latency $(ARGS)

bench-longmemeval: $(STAMP)
	$(BIN)/memproxy bench longmemeval $(ARGS)

bench-facts: $(STAMP)
	PYTHONPATH=. $(BIN)/memproxy bench facts $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
