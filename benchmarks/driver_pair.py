"""The enclave thread and ksgxd together on the compiled core (``run_pair``, row 1's regime)
against the SimPy engine on the same scenario (issue 9, DESIGN.md step 2 part 2): host CPU
time per fault.

The scenario of ``tests/fast/test_driver_pair.py``, larger: an enclave of a TCS page and
``--mult`` times the EPC's pages, the thread entered once, ksgxd asleep; then a stream of
``--accesses`` uniform accesses (``--hot``: the fraction drawn from a hot set of a quarter
of the EPC) with random writes. Two copies are built with the same seed; one runs
``access_pages(); env.run()`` on SimPy (``--engine``: the fast engine's elided steps, or
the reference's timeouts), the other ``run_pair``; the results are checked equal (clock,
counters, free pages, the outcome), then host CPU time (``time.process_time``) is
compared, best of ``--repeat`` pairs, per fault the thread took. The driver's first call
(compilation or cache load, numba's typed-list methods) is not timed; ``encl->lock``'s
trace is off.

    PYTHONPATH=src .venv/bin/python benchmarks/driver_pair.py [--epc 4M] [--accesses 20000]
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
from epcsim.fast.driver.thread_bridge import run_pair
from epcsim.units import parse_size


def build(seed: int, engine: str, epc: str, n: int, cpus: int):  # type: ignore[no-untyped-def]
    system = epcsim.System(epc=epc, cpus=cpus, seed=seed, content_mode="tag", engine=engine)
    encl = system.create_enclave(1 << (n.bit_length() + 12))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    system.machine.env.run()
    encl.access_pages([1])
    system.machine.env.run()
    return system, encl


def stream(seed: int, n: int, epc_pages: int, length: int, hot: float):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    hot_set = 1 + rng.integers(0, n, max(1, epc_pages // 4))
    pages = np.where(
        rng.random(length) < hot, rng.choice(hot_set, length), 1 + rng.integers(0, n, length)
    )
    return pages.astype(np.int64), rng.random(length) < 0.5


def scenario_args(description: str) -> argparse.ArgumentParser:
    """The scenario's options, shared with ``pair_profile.py`` (same defaults, so the two
    measure the same run)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--epc", default="4M")
    ap.add_argument("--mult", type=float, default=3.0)
    ap.add_argument("--accesses", type=int, default=20000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    return ap


def main() -> None:
    ap = scenario_args(__doc__.split("\n\n")[0])
    ap.add_argument("--hot", type=float, default=0.0)
    ap.add_argument("--engine", default="fast", choices=["fast", "reference"])
    a = ap.parse_args()
    epc_pages = parse_size(a.epc, "epc") // PAGE_SIZE
    n = int(epc_pages * a.mult)
    warm, wencl = build(a.seed, a.engine, "1M", 600, a.cpus)
    run_pair(warm, wencl._main_thread(), *stream(a.seed, 600, 256, 500, 0.0))
    best_ref = best_drv = float("inf")
    faults = 0
    for _ in range(a.repeat):
        ref, rencl = build(a.seed, a.engine, a.epc, n, a.cpus)
        drv, dencl = build(a.seed, a.engine, a.epc, n, a.cpus)
        pages, w = stream(a.seed, n, epc_pages, a.accesses, a.hot)
        before = drv.sgx.stats.page_faults
        t0 = time.process_time()
        out = rencl.access_pages(pages, write=w)
        ref.machine.env.run()
        t1 = time.process_time()
        res = run_pair(drv, dencl._main_thread(), pages, w)
        t2 = time.process_time()
        assert res.handed_back is None, res
        assert res.outcome == out
        assert ref.machine.env.now == drv.machine.env.now
        assert dataclasses.asdict(ref.sgx.stats) == dataclasses.asdict(drv.sgx.stats)
        assert ref.sgx.epc.nr_free_pages == drv.sgx.epc.nr_free_pages
        faults = drv.sgx.stats.page_faults - before
        best_ref = min(best_ref, t1 - t0)
        best_drv = min(best_drv, t2 - t1)
    s = drv.sgx.stats
    print(
        f"thread + ksgxd, {a.engine} engine, EPC {a.epc}, {n} pages, {a.accesses} accesses: "
        f"{faults} faults, {s.ksgxd_pages_reclaimed} pages written back by ksgxd"
    )
    print(f"  SimPy    {best_ref * 1e3:9.1f} ms  {best_ref / max(faults, 1) * 1e6:7.2f} us/fault")
    print(f"  driver   {best_drv * 1e3:9.1f} ms  {best_drv / max(faults, 1) * 1e6:7.2f} us/fault")
    print(f"  ratio    {best_ref / best_drv:9.1f}x")


if __name__ == "__main__":
    main()
