# Two entry points, each self-contained on a fresh machine with only Python 3.11 and pip:
#   make demo  - create .venv, install epcsim, run the seed scenario (epcsim demo)
#   make test  - create .venv, install epcsim with the dev extra, run ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo warm test test-lint test-part1 test-part2 browser lint format bench clean clean-cache

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `--no-compile` (decision, the lead, 2026-11-28): pip byte-compiles every file of every
# package it installs, most of which no test or demo imports (numba's, dask's, matplotlib's,
# scipy's test and tool trees); Python compiles what is imported on first import instead and
# writes it to the venv's __pycache__ (atomically, so make test's two parts may race on it).
# Measured in a fresh venv on this 2-core VM, idle: `pip install -e '.[dev,sweep]'` 42.1 s,
# with --no-compile 22.4 s; a fresh clone's `make test` 8:29 -> 7:32 wall in one pair
# (BENCHMARKS.md, "The session's end: main 0cb7fa5").
# That write needs PYTHONDONTWRITEBYTECODE unset, and some shells (this workplace's among
# them) set it: then every process compiled ~2,000 modules from source again (~3.4 s of
# CPU a process; a warm `make demo` 8 -> 11.4 s wall). The targets below run the project's
# own venv, so they unset it (a read-only tree only makes Python skip the write).
unexport PYTHONDONTWRITEBYTECODE
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --no-compile -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --no-compile -e '.[dev,sweep]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(VENV)/bin/epcsim demo

# Compile the compiled core's machines into numba's on-disk cache once (~1-2 min of CPU): until
# something has (this, or `make test`), fast_core="auto" keeps short runs such as the demo off
# the core - measured: make demo 34.9 s wall cold, 7.2 s warm (epcsim/fast/warm.py)
warm: $(STAMP)
	$(VENV)/bin/epcsim warm

# The browser test of the HTML report (tests/cli/test_report_browser.py) runs where chromium is
# installed and is skipped elsewhere; `make test` no longer installs it (decision, session
# `suite`, 2026-11-26): on a fresh Debian machine `apt-get update` + chromium and its 115
# dependencies (~110 MB) took ~35 s on this machine's fast mirror (apt's history.log, lists
# read 16:16:30, dpkg 16:16:34-16:17:05), minutes over a slow one, in every CI run. The
# report's content, its plots decoded as PNGs included, is checked without a browser
# (tests/cli/test_scenario_cli.py). `make browser` installs chromium (root, apt) and runs it.
test: $(DEVSTAMP)
	@$(MAKE) --no-print-directory -j2 -O test-part1 test-part2

# `make test` runs pytest as two processes started together, one per core of CI's 2 (decision,
# session `suite5`, 2026-11-27; tests/README.md, "Where the time goes"): one process left the
# second core idle but for the tests' children. Each runs one part (`--suite-part`,
# tests/suite_parts.py: by file, balanced by CPU; the two together run exactly the tests one
# process runs, tests/test_suite_parts.py). Part 1 holds most of the compiled core's tests
# and their cold compile; part 2 runs after ruff and mypy, its files that run the core last
# (`suite_parts.LATE`). Both share numba's cache (decision, the lead, 2026-11-27): part 2
# loads the machines part 1 compiled instead of compiling them again - before, part 2 had a
# cache directory of its own and compiled ~200 of part 1's functions a second time, and
# every test of the core had to be part 1's (~600 s of CPU against part 2's ~390). Sharing
# is safe: numba writes each cache file atomically (temp file + rename) and epcsim locks
# its index updates (src/epcsim/fast/numba_cache.py, session `tidy`). Part 2 sets
# EPCSIM_AUTO_IGNORE_CACHE=1 (src/epcsim/fast/driver/auto.py) so that its
# fast_core="auto" never depends on what part 1 has compiled. `-O` prints each target's
# output whole when it ends; either part failing fails `make test`.
# pytest's own cache (`.pytest_cache`: `--lf`'s last failures, `--nf`'s node ids) is part 2's
# own too, `.pytest_cache/part2` (decision, session `tidy`, 2026-11-27): pytest writes each
# cache file in place (`Cache.set`: `write_text`, no temp file), so two processes ending
# together could tear a file, and each writes back the last failures it read at its start
# less its own passes - the part that ends last drops the other's new failures. Its own
# directory, not no cache at all: `--lf` still reruns either part's failures (part 2's: its
# command below with `--lf`; part 1's and one process's: plain `pytest --lf`).
test-lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src/epcsim

test-part1: $(DEVSTAMP)
	$(VENV)/bin/python -m pytest -q --suite-part=1

test-part2: test-lint
	EPCSIM_AUTO_IGNORE_CACHE=1 $(VENV)/bin/python -m pytest -q --suite-part=2 -o cache_dir=.pytest_cache/part2

browser: $(DEVSTAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } || { echo "chromium is missing: install it (Debian: apt-get install chromium)" >&2; exit 1; }
	$(VENV)/bin/python -m pytest -q -m browser tests/cli/test_report_browser.py

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
	find src benchmarks tests -name '*.nbi' -delete -o -name '*.nbc' -delete -o -name 'numba-index.lock' -delete
