# Two entry points, each self-contained on a fresh machine with only Python 3.11 and pip:
#   make demo  - create .venv, install epcsim, run the seed scenario (epcsim demo)
#   make test  - create .venv, install epcsim with the dev extra, run ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint format bench clean clean-cache

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,sweep]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(VENV)/bin/epcsim demo

test: $(DEVSTAMP)
	@# the browser test of the HTML report needs chromium: install Debian's when root with apt
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium); } || true
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src/epcsim
	$(VENV)/bin/python -m pytest -q

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/epcsim

format: $(DEVSTAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(DEVSTAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py

clean: clean-cache
	rm -rf $(VENV) epcsim-out .pytest_cache

# numba's cached machine code: stale when a compiled function calls one changed in another
# file (src/epcsim/fast/README.md, "Compiled code and numba's cache")
clean-cache:
	find src benchmarks tests -name '*.nbi' -delete -o -name '*.nbc' -delete
