"""Where the test suite's time goes: a pytest plugin that records every numba compile.

    git clone /work/main /tmp/clone && cd /tmp/clone
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=src:benchmarks python -m pytest -q \\
        -p no:cacheprovider -p suite_probe --durations=40

(an empty numba cache, as CI's fresh clone has; tests/README.md gives the budget). At the
end it prints the compile time (wall, so it grows with the machine's load) per test file,
and each function numba compiled for more than one signature: a machine compiled twice
because two callers pass different argument types (an int vs an int64, a ``CoState`` by
value vs a ``Borrowed`` one, an array's layout or read-only flag, a ``Literal[int]``
constant) pays its compile twice. It also prints the tests that took the most CPU (user +
system of pytest and of the processes a test started and waited for, ``os.times``: less
moved by the other engineers' load than ``--durations``' wall time; session ``suite4``).
``SUITE_PROBE_JSON=path`` also writes every compile (function, signature, inclusive and
own time, the test that caused it) and every test's duration and CPU as JSON.

Measurement only: it hooks numba's documented event API (``numba.core.event``, the
``numba:compile`` event, fired only for a real compile, not for a load from the cache) and
changes nothing the tests see.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import pytest

_current = ["<collection>"]
_stack: list[list[float]] = []
_compiles: list[dict[str, Any]] = []
_durations: dict[str, float] = collections.defaultdict(float)
_cpu: dict[str, float] = collections.defaultdict(float)
_cpu0 = [0.0]


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _install() -> None:
    from numba.core import event

    class Listener(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: Any) -> None:
            _stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev: Any) -> None:
            t0, children = _stack.pop()
            dt = time.perf_counter() - t0
            if _stack:
                _stack[-1][1] += dt
            disp = ev.data["dispatcher"]
            fn = getattr(disp, "py_func", None)
            name = f"{fn.__module__}.{fn.__qualname__}" if fn else repr(disp)
            _compiles.append(
                {
                    "fn": name,
                    "sig": str(ev.data["args"]),
                    "incl": dt,
                    "self": dt - children,
                    "test": _current[0],
                    "depth": len(_stack),
                }
            )

    event.register("numba:compile", Listener())


def pytest_configure(config: pytest.Config) -> None:
    _install()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current[0] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    c0 = _cpu_now()
    yield
    _cpu[item.nodeid] += _cpu_now() - c0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tr = terminalreporter
    own = sum(c["self"] for c in _compiles)
    tr.write_sep("=", f"numba: {len(_compiles)} compiles, {own:.1f} s (wall)")
    per_file: collections.Counter[str] = collections.Counter()
    for c in _compiles:
        if c["depth"] == 0:
            per_file[c["test"].split("::")[0]] += c["incl"]
    for f, t in per_file.most_common(12):
        tr.write_line(f"{t:7.1f} s  {f}")
    by_fn: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for c in _compiles:
        by_fn[c["fn"]].append(c)
    extra = {f: sum(c["self"] for c in cs[1:]) for f, cs in by_fn.items() if len(cs) > 1}
    tr.write_sep(
        "-", f"compiled more than once: {len(extra)} functions, {sum(extra.values()):.1f} s"
    )
    for f, t in sorted(extra.items(), key=lambda kv: -kv[1])[:15]:
        tr.write_line(f"{t:7.1f} s  {len(by_fn[f]):3d} signatures  {f}")
    n = int(os.environ.get("SUITE_PROBE_CPU_TOP", "40"))
    tr.write_sep("-", f"CPU (user + sys, children waited for included): {sum(_cpu.values()):.1f} s")
    for nodeid, t in sorted(_cpu.items(), key=lambda kv: -kv[1])[:n]:
        tr.write_line(f"{t:7.1f} s  {nodeid}")
    out = os.environ.get("SUITE_PROBE_JSON")
    if out:
        with open(out, "w") as fh:
            json.dump({"compiles": _compiles, "durations": _durations, "cpu": _cpu}, fh)
