"""Row 1's timed call split, trees alternated: the call's Python beside the compiled drive
(issue 9, session ``row1py``, 2026-11-27).

    PYTHONPATH=benchmarks python benchmarks/row1_split.py --rounds 10 base=/tmp/base/src \\
        new=src

Each round starts one process per tree (the order reversed every other round); a process
runs row 1's shape (``rows.fault_rate``'s: uniform accesses over 4x a 1,024-page EPC, ``tag``
mode, 2 CPUs, the warm-up call, then the timed call) ``--calls`` times (8) after one
untimed, and times with ``time.process_time`` the timed call, the compiled ``drive`` in it
(``StreamCore.drive``'s entry point) and the Python steps named in ``PARTS``. Printed per
tree and key: the median over processes of each process's median (and of its minimum), ms.

Why beside ``row1_ab.py``: a change of ~0.1 ms in an ~8-11 ms call is ~1%, below what row 1's
per-process minima resolve at load ~4 (the machine's slow mode, BENCHMARKS.md ``row1``); the
parts themselves move by tens of percent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

#: ``(module, attribute)`` of the Python steps timed (each where the call looks it up)
PARTS = (
    ("epcsim.fast.driver.thread_fold", "fold_kernel"),
    ("epcsim.fast.driver.thread_fold", "flush_latencies"),
    ("epcsim.fast.driver.core_stream", "fold_thread"),
    ("epcsim.fast.driver.core_stream", "to_simpy"),
    ("epcsim.fast.driver.stream_ksgxd", "_core_state_running"),
)


def child(calls: int) -> None:
    """One process: ``calls`` timed calls; prints one JSON line (a dict of ms per call)."""
    import importlib

    import numpy as np

    import epcsim.fast.driver.stream as stream_mod
    import epcsim.fast.driver.stream_entry as entry_mod
    import rows

    acc: dict[str, float] = defaultdict(float)
    on = [False]

    def wrap(mod: object, name: str) -> None:
        f = getattr(mod, name)

        def w(*a: object, **k: object) -> object:
            if not on[0]:
                return f(*a, **k)
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                acc[name] += time.process_time() - t

        setattr(mod, name, w)

    for modname, name in PARTS:
        wrap(importlib.import_module(modname), name)
    drive = stream_mod.StreamCore.drive

    def timed_drive(self, co, kt, ts, pending):  # type: ignore[no-untyped-def]
        lay = entry_mod._layout
        key = (entry_mod.drive, lay(co), self._slots_layout(kt), lay(ts))
        fn = entry_mod.ENTRIES.get(key)
        if fn is None:
            return drive(self, co, kt, ts, pending)
        t = time.process_time()
        r = int(fn(co, kt, ts, pending))
        acc["drive"] += time.process_time() - t
        return r

    stream_mod.StreamCore.drive = timed_drive  # type: ignore[method-assign]
    out = []
    n = 4 * 1024
    for k in range(calls + 1):
        system = rows._system(
            "fast+core", epc=1024 * rows.PAGE_SIZE, cpus=2, seed=1, content_mode="tag"
        )
        encl = system.create_enclave(rows._pow2(n * rows.PAGE_SIZE))
        assert encl.add_pages(0, n * rows.PAGE_SIZE).ok and encl.init().ok
        accesses = np.random.default_rng(1).integers(0, n, size=12_000)
        encl.access_pages(accesses[:3000])
        acc.clear()
        on[0] = bool(k)
        c0 = time.process_time()
        encl.access_pages(accesses[3000:])
        total = time.process_time() - c0
        on[0] = False
        if k:
            d = {key: v * 1e3 for key, v in acc.items()}
            d["python"] = total * 1e3 - d.get("drive", 0.0)
            out.append(d)
    print(json.dumps({"src": os.path.dirname(rows.epcsim.__file__), "calls": out}), flush=True)


def process(src: str, calls: int) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(src), here]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--calls", str(calls)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    d: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return d


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", help="NAME=SRC_DIR, the first is the base")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.calls)
        return
    trees = [t.split("=", 1) for t in a.trees]
    res: dict[str, list[list[dict]]] = {name: [] for name, _ in trees}
    loads = [os.getloadavg()[0]]
    for r in range(a.rounds):
        for name, src in trees if r % 2 == 0 else trees[::-1]:
            res[name].append(process(src, a.calls)["calls"])
        loads.append(os.getloadavg()[0])
    print(f"{a.rounds} rounds x {a.calls} calls, load {min(loads):.1f}-{max(loads):.1f}; ms a "
          "call: median over processes of the per-process median (of the minimum)")  # fmt: skip
    for name, _ in trees:
        keys = sorted({k for p in res[name] for c in p for k in c})
        parts = []
        for k in keys:
            med = statistics.median(statistics.median(c.get(k, 0) for c in p) for p in res[name])
            low = statistics.median(min(c.get(k, 0) for c in p) for p in res[name])
            parts.append(f"{k} {med:.3f} ({low:.3f})")
        print(f"{name}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
