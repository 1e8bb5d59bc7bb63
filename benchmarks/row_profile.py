"""Where a fault's host time goes on rows 1 and 2 (issue 9, PATHS.md "Per fault on the
core", session ``fault1``): row 1's timed stream (``rows.fault_rate``'s scenario) and row
2's ~10% replay (``run.py``'s Zipf stream, alpha 1.0), each with ``fast_core=True``.

Per fault: the host CPU of the timed ``access_pages`` and of the compiled ``drive`` inside
it (``StreamCore.drive`` wrapped), and what the core did, counted inside each ``drive`` call
(the ``CoState``/``KState`` counters before and after it): the events it processed
(``C_POPS``: each a ``next_resume`` and, but for a spinner's timed poke, a machine entry),
the runs it elided, the contended ``encl->lock`` acquisitions (each two events: the
poke, then the spinner's resumption), the EWBs, the pages ksgxd isolated and found young,
its batches and the ELDUs of records the core wrote (no MAC check; the others are checked
with the ``tag`` mode's crypto), and the ``drive`` calls (each stop for Python's service
or fold is one more; session ``fault5``). With ``--perf``, Linux ``perf`` over ``--runs`` timed
calls, self time by compiled function (``pair_perf.py``'s symbol map; the numba cache
must be warm, and ``perf`` installed).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/row_profile.py [--perf] [--runs 20]

It profiles the tree its ``PYTHONPATH`` names (or ``--src DIR``; ``src_tree.py``), not the
checkout it is run from (it did until session ``fixes``: ``pair_perf.py`` put its own
checkout's ``src`` first), and prints which.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pair_perf  # noqa: I001  (first: it keeps the object code numba loads)

import numpy as np

import epcsim
import rows
from epcsim.arch import PAGE_SIZE
from epcsim.fast.cosim import state as cs
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import stream as stream_mod

_CN = ("CN_EWB", "CN_SCANNED", "CN_YOUNG", "CN_BATCHES")
_acc: dict[str, Any] = {"t": 0.0, "n": 0, "d": {}}
_real_drive = stream_mod.StreamCore.drive


def _snap(co: Any, kt: Any) -> dict[str, int]:
    # ``kt``: the slots' ``KState``s (session ``twoencl2``); the counters are slot 0's
    ks = kt if hasattr(kt, "kc") else kt[0]
    d = {
        "events": int(co.clk[cs.C_POPS]),
        "elided runs": int(co.clk[cs.C_ELIDED]),
        "contended locks": int(co.mtx[0, cs.M_CONTENDED]),
        "ELDUs without MAC check": int(ks.kc[K.K_DEFER_LOADS]),
    }
    if hasattr(cs, "C_RESUMED_NOW"):  # session ``fault3``: the spinner's wake-up unqueued
        d["spinners resumed at once"] = int(co.clk[cs.C_RESUMED_NOW])
    if hasattr(cs, "C_RAN_OVER"):  # session ``row1keep``: a step's timeout after the pokes
        d["timeouts popped in place"] = int(co.clk[cs.C_RAN_OVER])
    for name in _CN:
        d[name[3:].lower()] = int(ks.cnt[getattr(K, name)])
    return d


def _drive(self: Any, co: Any, ks: Any, ts: Any, pending: int) -> int:
    a = _snap(co, ks)
    t0 = time.process_time()
    r = _real_drive(self, co, ks, ts, pending)
    _acc["t"] += time.process_time() - t0
    _acc["n"] += 1
    for k, v in _snap(co, ks).items():
        _acc["d"][k] = _acc["d"].get(k, 0) + v - a[k]
    return r


def row1() -> tuple[Any, Any, np.ndarray]:
    """``rows.fault_rate``'s scenario after its warm-up, and its timed stream."""
    epc_pages, accesses = 1024, 12_000
    system = rows._system(
        "fast+core", epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, content_mode="tag"
    )
    n = 4 * epc_pages
    encl = system.create_enclave(rows._pow2(n * PAGE_SIZE))
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    stream = np.random.default_rng(1).integers(0, n, size=accesses)
    encl.access_pages(stream[: accesses // 4])
    return system, encl, stream[accesses // 4 :]


def row2() -> tuple[Any, Any, np.ndarray]:
    """``run.py``'s row 2 at ~10% misses (``rows.replay_epcsim`` before its timed call)."""
    epc_pages = 4096
    n_pages = 2 * epc_pages
    stream = rows.zipf_stream(n_pages, 200_000, 1.0, 0)
    system = rows._system("fast+core", epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, policy="lru")
    encl = system.create_enclave(rows._pow2(n_pages * PAGE_SIZE))
    assert encl.add_pages(0, n_pages * PAGE_SIZE).ok and encl.init().ok
    system.run(until="100ms")
    return system, encl, stream


def counts(name: str, make: Any, repeat: int) -> None:
    stream_mod.StreamCore.drive = _drive  # type: ignore[method-assign]
    try:
        for rep in range(repeat):
            system, encl, stream = make()
            st0 = system.stats()
            _acc.update(t=0.0, n=0, d={})
            c0 = time.process_time()
            assert encl.access_pages(stream).ok
            cpu = time.process_time() - c0
            st = system.stats()
            f = st["page_faults"] - st0["page_faults"]
            print(
                f"{name} run {rep}: {stream.size} accesses, {f} faults, "
                f"{system.fast_core_accesses} accesses on the core; "
                f"{cpu / f * 1e6:.2f} us a fault ({cpu / stream.size * 1e9:.0f} ns an access), "
                f"inside drive {_acc['t'] / f * 1e6:.2f} ({_acc['n']} calls)"
            )
        print("  per fault: " + ", ".join(f"{k} {v / f:.2f}" for k, v in _acc["d"].items()))
    finally:
        stream_mod.StreamCore.drive = _real_drive  # type: ignore[method-assign]


def perf(name: str, make: Any, runs: int) -> None:
    _, encl, stream = make()
    encl.access_pages(stream)  # every compiled function loaded before the map is written
    cases = [make() for _ in range(runs)]

    def work() -> None:
        for _, e, s in cases:
            e.access_pages(s)

    cpu, self_pc = pair_perf.perf_self_time(work)
    print(f"{name}: {runs} timed calls under perf, {cpu:.2f} s CPU; self time by function:")
    for fn, pc in sorted(self_pc.items(), key=lambda x: -x[1])[:30]:
        print(f"  {pc:6.2f}%  {fn}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--src", help="the sources to profile (default: PYTHONPATH's epcsim)")
    a = ap.parse_args()  # ``--src`` was read by ``src_tree`` when ``pair_perf`` was imported
    print(f"profiling the sources in {os.path.dirname(os.path.dirname(epcsim.__file__))}")
    for name, make in (("row 1", row1), ("row 2 at ~10%", row2)):
        counts(name, make, a.repeat)
        if a.perf:
            perf(name, make, a.runs)


if __name__ == "__main__":
    main()
