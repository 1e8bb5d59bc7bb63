"""Helpers of the tests of several enclave threads on the compiled core
(``test_threads_core.py``, ``test_threads_flood_core.py``): the entry instant (``build``),
the threads' streams (``streams``) and every observable after a run (``snap``). Moved out
of ``test_threads_core.py`` by session ``flood6`` (tests/README.md: helpers shared by test
files live in a module without the ``test_`` prefix)."""

from __future__ import annotations

import dataclasses

import numpy as np
from thread_cases import thread_snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.threads_bridge import run_threads, start_streams

EPC_PAGES = {"256K": 64, "512K": 128, "1M": 256}


def build(seed: int, engine: str, epc: str, n: int, cpus: int, nthreads: int, fifo: str = "", **kw):  # type: ignore[no-untyped-def]
    """The entry instant: ``nthreads`` TCS pages (0..nthreads-1) and ``n`` REG pages after
    them, each thread entered once (its TCS loaded) through the Python path. ``fifo``:
    "mutex" and/or "sched" for the model's FIFO mutex and CPUs (e.g. "mutex+sched");
    ``kw``: more ``System`` options (``fast_core``)."""
    system = epcsim.System(
        epc=epc, cpus=cpus, seed=seed, content_mode="tag", engine=engine,
        mutex="fifo" if "mutex" in fifo else "linux", sched="fifo" if "sched" in fifo else "cfs",
        **kw,
    )  # fmt: skip
    encl = system.create_enclave(1 << ((n + nthreads).bit_length() + 12))
    assert encl.add_pages(0, nthreads * PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(nthreads * PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    system.machine.env.run()
    threads = [encl.new_thread() for _ in range(nthreads)]
    for th in threads:
        system._call(th, th.access_stream(np.array([nthreads]), False))
        system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl, threads


def streams(seed: int, nthreads: int, n: int, epc_pages: int, length: int, hot: float):  # type: ignore[no-untyped-def]
    """Each thread's own stream over the REG pages: a fraction ``hot`` from its own hot
    set of an eighth of the EPC (long resident runs: LPs inside while ksgxd works), the
    rest uniform (faults); its writes a random mask. ``hot`` 1.0: every thread but the
    last only in its hot set, the last uniform (it keeps ksgxd busy while the others stay
    inside: ksgxd's IPI then finds several LPs inside)."""
    rng = np.random.default_rng(seed)
    out, writes = [], []
    for r in range(nthreads):
        if hot == 1.0 and r == nthreads - 1:
            hot = 0.0
        hot_set = nthreads + rng.integers(0, n, max(1, epc_pages // 8))
        k = int(rng.integers(length // 2, length + 1))
        pages = np.where(
            rng.random(k) < hot, rng.choice(hot_set, k), nthreads + rng.integers(0, n, k)
        )
        out.append(pages.astype(np.int64))
        writes.append(rng.random(k) < 0.5)
    return out, writes


def snap(system, encl, threads, outcomes):  # type: ignore[no-untyped-def]
    """``thread_snapshot`` and every thread's CPU accounting, entry state and outcome, the
    run queue's counters and need_resched flags, the mutex's HANDOFF and wait list."""
    s = thread_snapshot(system, encl, outcomes[0])
    m = system.machine
    lock = encl.encl.lock
    s["sched"] = (
        m.context_switches, getattr(m.rq, "wakeup_preemptions", 0), m.rq.waiting(),
        [t._resched for t in threads], getattr(lock, "handoff", False), len(lock._waiters),
    )  # fmt: skip
    s["threads"] = [
        (t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime,
         t.started, t.entered, t.aexed, t.entry_fault)
        for t in threads
    ]  # fmt: skip
    s["outcomes"] = [dataclasses.astuple(o) for o in outcomes]
    secs = system.cpu.secs_state(encl.encl.secs_epc)
    s["lp_masks"] = (sorted(secs.inside), sorted(secs.tracking), secs.epoch)
    return s


def run_both(seed, engine, epc, mult, cpus, nthreads, length, hot, fifo="", **kw):  # type: ignore[no-untyped-def]
    """The same entry built twice on ``engine`` with ``kw``'s ``System`` options: one run
    by ``start_streams`` and ``env.run()``, the other by ``run_threads``."""
    n = int(EPC_PAGES[epc] * mult)
    ref, rencl, rthreads = build(seed, engine, epc, n, cpus, nthreads, fifo, **kw)
    drv, dencl, dthreads = build(seed, engine, epc, n, cpus, nthreads, fifo, **kw)
    pages, w = streams(seed, nthreads, n, EPC_PAGES[epc], length, hot)
    procs = start_streams(ref, rthreads, pages, w)
    ref.machine.env.run()
    outs = [p.value for p in procs]
    result = run_threads(drv, dthreads, pages, w)
    return (ref, rencl, rthreads, outs), (drv, dencl, dthreads, result)


__all__ = ["EPC_PAGES", "build", "run_both", "snap", "streams"]
