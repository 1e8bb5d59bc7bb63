"""Row 5 run by run and phase by phase: where ``epcsim demo``'s CPU goes (issue 9 session
``demo5``; BENCHMARKS.md, "Row 5: the regression checked, found and fixed").

    PYTHONPATH=src python benchmarks/demo_phases.py [--runs row5|row5-38|all|I,J,...] [--core auto]

``--runs row5`` (default) is ``rows.demo``'s runs: the 40 runs ``epcsim demo`` makes
(``demo_configs``' four seed runs - the seed pair on the default Linux mutex and CFS, then
the FIFO pair - then the 36 flip cells), the same as ``all``. ``row5-38`` is the 38 runs
``rows.demo`` measured before 2026-11-26's session ``rowdemo`` (the FIFO pair left out),
for comparisons with the entries that used it (``demo5``, ``eagain``, ``fifo``,
``addcore``). A list picks runs of ``all`` by index (0-3 seed, 4-39 flip). ``--core`` is
``System(fast_core=...)``.
One JSON line per run (host CPU of the run and of each ``on_phase`` phase, the compiled
core's counters, EWB/ELDU, the MODIFY_TYPES calls), then a total line with the CPU, the
numba compiles the process made (``numba.core.event``'s ``numba:compile``: with a warm
cache a dozen small ones, no machine) and a digest of every run's summary, equal in two
trees that give the same results. Timing only: compare trees alternated, each tree's
numba cache warmed first by a ``--core True`` run (``--runs 0,1``: the machines compile).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import time
from typing import Any

from numba.core import event

_compiles: list[str] = []


class _Compiles(event.Listener):  # type: ignore[misc]
    def on_start(self, ev: Any) -> None:
        pass

    def on_end(self, ev: Any) -> None:
        fn = getattr(ev.data["dispatcher"], "py_func", None)
        _compiles.append(f"{fn.__module__}.{fn.__qualname__}" if fn else "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs", default="row5", help="row5 (= all), row5-38, all, or indices of all's runs"
    )
    ap.add_argument("--core", default="auto", choices=["auto", "True", "False"])
    args = ap.parse_args()
    event.register("numba:compile", _Compiles())
    from epcsim import demo
    from epcsim.cli import flip_configs
    from epcsim.demo import demo_configs, run_seed
    from epcsim.system import System

    made: list[Any] = []
    core: Any = {"True": True, "False": False}.get(args.core, args.core)

    def system(*a: Any, **kw: Any) -> Any:
        made.append(System(*a, **kw))
        return made[-1]

    demo.System = system  # type: ignore[misc]  # keep each run's System for its core counters
    runs = demo_configs() + [cfg for *_, cfg in flip_configs("8M", 2.0, 0)]
    if args.runs == "row5-38":
        idx = [0, 1, *range(4, len(runs))]
    elif args.runs in ("row5", "all"):
        idx = list(range(len(runs)))
    else:
        idx = [int(i) for i in args.runs.split(",")]
    summaries = []
    c0 = time.process_time()
    for i in idx:
        cfg = runs[i]
        marks: list[tuple[str, float]] = []

        def on_phase(name: str, marks: list[tuple[str, float]] = marks) -> None:
            marks.append((name, time.process_time()))

        a = time.process_time()
        r = run_seed(dataclasses.replace(cfg, fast_core=core), on_phase=on_phase)
        b = time.process_time()
        marks.append(("end", b))
        sc = made[-1].sgx.stream_core
        summaries.append(r.summary())
        line = {
            "run": i,
            "label": cfg.label,
            "cpus": cfg.cpus,
            "epc": cfg.epc,
            "cpu_s": round(b - a, 3),
            "phases": {m[0]: round(n[1] - m[1], 3) for m, n in itertools.pairwise(marks)},
            "modify_calls": r.modify.calls,
            "ewb": r.stats.get("ewb"),
            "eldu": r.stats.get("eldu"),
            "core": None
            if sc is None
            else {
                "accesses": sc.accesses,
                "trims": sc.trims,
                "eaccepts": sc.eaccepts,
                # the runtime's calls the core made itself (session ``eagain``)
                "retries": getattr(sc, "ioctl_retries", None),
                "entries": sc.entries,
                "adds": getattr(sc, "adds", None),
            },
        }
        print(json.dumps(line), flush=True)
    digest = hashlib.sha256(json.dumps(summaries, sort_keys=True, default=str).encode())
    total = {
        "runs": len(idx),
        "core": args.core,
        "cpu_s": round(time.process_time() - c0, 2),
        "compiles": len(_compiles),
        "summaries": digest.hexdigest()[:12],
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(total), flush=True)


if __name__ == "__main__":
    main()
