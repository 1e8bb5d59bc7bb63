"""Row 3's MODIFY_TYPES(TRIM) phase alone (issue 9, ``fast/PATHS.md`` "The MODIFY_TYPES
loop"): the removal stress test's build, then one ``modify_types(..., "trim")`` over the
heap, timed (host CPU of that call) and counted (the counters it changed, the pages the
fast engine's batch applied, the call's result), the engines alternated in one process
(this shared machine's load moves every figure by 10-20% between runs). ``--profile``
adds a cProfile of the last fast run's call, cumulative, for the loop's parts.

    PYTHONPATH=src .venv/bin/python benchmarks/trim_phase.py [--epc 4M] [--reps 2] [--profile]
        [--engines fast-core,fast+core,reference]   (``rows._system``'s engine names)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import rows
from epcsim.arch import PAGE_SIZE

_PARTS = "_page_loop|sgx_reclaim_direct|load_page|_ksgxd|per_page|sgx_enclave_etrack"


def trim(engine: str, epc: str, prof: cProfile.Profile | None = None) -> dict:
    """Build as ``rows.removal_stress`` does, then time MODIFY_TYPES(TRIM) alone."""
    system, encl, heap = rows.removal_build(engine, epc)
    c0 = rows._counters(system)
    b0 = system.sgx.batched_pages
    t0 = time.process_time()
    if prof is not None:
        prof.enable()
    r = encl.modify_types(rows.IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "trim")
    if prof is not None:
        prof.disable()
    cpu = time.process_time() - t0
    c1 = rows._counters(system)
    return {
        "heap": heap,
        "cpu_s": cpu,
        "ret": r.ret,
        "count_pages": r.count // PAGE_SIZE,
        "batched": system.sgx.batched_pages - b0,
        "delta": {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] != c0.get(k, 0)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epc", default="4M")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--engines", default="fast-core,fast+core,reference")
    a = ap.parse_args()
    engines = a.engines.split(",")
    for e in engines:  # imports and any compile outside the timed runs
        trim(e, "1M")
    base = None
    for _ in range(a.reps):
        for e in engines:
            x = trim(e, a.epc)
            us = x["cpu_s"] / x["heap"] * 1e6
            print(
                f"{e:9s} EPC {a.epc}: trim {x['cpu_s']:.3f} s, {us:.0f} µs/heap page; ret "
                f"{x['ret']}, {x['count_pages']} of {x['heap']} pages, batched {x['batched']}",
                flush=True,
            )
            if base is None:
                base = x["delta"]
                print(f"  counters of the call: {base}", flush=True)
            else:
                print(f"  counters equal to the first run's: {x['delta'] == base}", flush=True)
    if a.profile:
        prof = cProfile.Profile()
        trim("fast-core", a.epc, prof)
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(_PARTS)
        print(s.getvalue())


if __name__ == "__main__":
    main()
