"""ksgxd's compiled machine served by SimPy, per request, against the reference (issue 9).

The scenario of ``tests/fast/test_driver_ksgxd.py``: a thread sweeps more pages than the
EPC, ksgxd sleeps, a consumer outside the model takes every free page; then ksgxd is woken
and runs to sleep three ways, each on a fresh copy: the reference's generators
(``wake_ksgxd(); env.run()``), the compiled core (``run_ksgxd``), and the machine served by
SimPy after one event on the core (``run_ksgxd_switching(system, [1])``). The reference
engine (no elision) makes every step an event, so the served run serves every request.
Host CPU time (``time.process_time``), best of ``--repeat``; the served mode's cost is
reported per request over the reference's generators.

    PYTHONPATH=src .venv/bin/python benchmarks/served_ksgxd.py [--epc 2M] [--pages 912]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import numpy as np

import epcsim
import epcsim.fast.cosim.served as served
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.bridge import run_ksgxd
from epcsim.fast.driver.served_ksgxd import run_ksgxd_switching


def build(seed: int, epc: str, n: int) -> epcsim.System:
    system = epcsim.System(epc=epc, cpus=2, seed=seed, content_mode="tag", engine="reference")
    encl = system.create_enclave("8M")
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    encl.access_pages(np.random.default_rng(seed).permutation(n).tolist(), write=True)
    system.run()
    system.machine.env.run()
    pool = system.sgx.epc
    while pool.nr_free_pages > 0:
        pool.alloc(pool.nodes[0])
    return system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epc", default="2M")
    ap.add_argument("--pages", type=int, default=912)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    requests = [0]
    perform = served.perform_simpy

    def counting(*a):  # type: ignore[no-untyped-def]
        requests[0] += 1
        return perform(*a)

    served.perform_simpy = counting  # type: ignore[assignment]
    run_ksgxd_switching(build(7, args.epc, args.pages), [1])  # compile or load: not timed

    def reference(s: epcsim.System) -> None:
        s.sgx.wake_ksgxd()
        s.machine.env.run()

    ways = {
        "reference generators": reference,
        "compiled core (run_ksgxd)": run_ksgxd,
        "served by SimPy (run_ksgxd_switching, [1])": lambda s: run_ksgxd_switching(s, [1]),
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, fn in ways.items():
            s = build(7, args.epc, args.pages)
            requests[0] = 0
            t0 = time.process_time()
            fn(s)
            dt = time.process_time() - t0
            best[name] = min(best.get(name, dt), dt)
            if requests[0]:
                n_req = requests[0]
    print(f"ksgxd woken with every free page taken, {args.epc} EPC, best of {args.repeat}")
    print()
    print("| way | host ms |")
    print("|---|---:|")
    for name, secs in best.items():
        print(f"| {name} | {secs * 1e3:.2f} |")
    extra = best["served by SimPy (run_ksgxd_switching, [1])"] - best["reference generators"]
    print()
    print(
        f"served: {n_req:,} requests, {extra / n_req * 1e9:,.0f} ns per request over the reference"
    )


if __name__ == "__main__":
    main()
