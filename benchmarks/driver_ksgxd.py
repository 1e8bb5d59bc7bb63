"""ksgxd's compiled state machine (``epcsim.fast.driver``) against the reference's ksgxd
(issue 9, DESIGN.md step 2 part 2): host time of one wake-up's batches, ksgxd alone.

The scenario of ``tests/fast/test_driver_ksgxd.py``, larger: an enclave thread sweeps
``--pages`` pages of an ``--epc`` EPC, ksgxd sleeps, a consumer takes every free page, so a
woken ksgxd writes back until the high watermark (``--high``, set before the first run,
so a larger one means more pages per wake-up). Two copies are built with the same seed;
one runs ``wake_ksgxd(); env.run()`` on SimPy (``--engine``: the fast engine's elided
steps, or the reference's timeouts), the other ``run_ksgxd``; the results are checked equal
(clock, counters, free pages), then host CPU time (``time.process_time``) is compared, best
of ``--repeat`` pairs. The driver's first call (compilation or cache load) is not timed.

    PYTHONPATH=src .venv/bin/python benchmarks/driver_ksgxd.py [--epc 16M] [--high 2048]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.bridge import run_ksgxd


def build(seed: int, engine: str, epc: str, pages: int, high: int) -> epcsim.System:
    system = epcsim.System(epc=epc, cpus=2, seed=seed, content_mode="tag", engine=engine)
    system.sgx.high_pages = high  # before ksgxd's first run: its loop reads it then
    system.sgx.low_pages = min(system.sgx.low_pages, high)
    encl = system.create_enclave(1 << ((pages - 1).bit_length() + 12))
    assert encl.add_pages(0, pages * PAGE_SIZE).ok and encl.init().ok
    encl.access_pages(np.random.default_rng(seed).permutation(pages).tolist(), write=True)
    system.run()
    system.machine.env.run()
    epc_pages = system.sgx.epc
    while epc_pages.nr_free_pages > 0:
        epc_pages.alloc(epc_pages.nodes[0])
    return system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epc", default="16M")
    ap.add_argument("--pages", type=int, default=6144)
    ap.add_argument("--high", type=int, default=2048)
    ap.add_argument("--engine", default="fast", choices=["fast", "reference"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    run_ksgxd(build(a.seed, a.engine, "1M", 300, 64))  # compile / load the cache
    best_ref = best_drv = float("inf")
    pages = 0
    for _ in range(a.repeat):
        ref = build(a.seed, a.engine, a.epc, a.pages, a.high)
        drv = build(a.seed, a.engine, a.epc, a.pages, a.high)
        before = drv.sgx.stats.ksgxd_pages_reclaimed
        t0 = time.process_time()
        ref.sgx.wake_ksgxd()
        ref.machine.env.run()
        t1 = time.process_time()
        res = run_ksgxd(drv)
        t2 = time.process_time()
        assert res.handed_back is None, res
        assert ref.machine.env.now == drv.machine.env.now
        assert dataclasses.asdict(ref.sgx.stats) == dataclasses.asdict(drv.sgx.stats)
        assert ref.sgx.epc.nr_free_pages == drv.sgx.epc.nr_free_pages
        pages = drv.sgx.stats.ksgxd_pages_reclaimed - before
        best_ref = min(best_ref, t1 - t0)
        best_drv = min(best_drv, t2 - t1)
    print(f"ksgxd alone, {a.engine} engine, {pages} pages written back by one wake-up")
    print(f"  SimPy    {best_ref * 1e3:9.1f} ms  {best_ref / max(pages, 1) * 1e6:7.2f} us/page")
    print(f"  driver   {best_drv * 1e3:9.1f} ms  {best_drv / max(pages, 1) * 1e6:7.2f} us/page")
    print(f"  ratio    {best_ref / best_drv:9.1f}x")


if __name__ == "__main__":
    main()
