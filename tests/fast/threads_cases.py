"""Helpers of the tests of several enclave threads on the compiled core
(``test_threads_core.py``, ``test_threads_flood_core.py``): the entry instant (``build``),
the threads' streams (``streams``) and every observable after a run (``snap``). Moved out
of ``test_threads_core.py`` by session ``flood6`` (tests/README.md: helpers shared by test
files live in a module without the ``test_`` prefix)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from hypothesis import Phase
from thread_cases import thread_snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.cosim.state import HB_BUDGET, HB_NAMES
from epcsim.fast.driver.threads_bridge import ThreadsResult, run_threads, start_streams

EPC_PAGES = {"256K": 64, "512K": 128, "1M": 256}

#: no shrink phase (session ``suite4``, 2026-11-27): each example runs two enclaves for
#: seconds, and a failing one once shrank for more than 11 minutes (PATHS.md, session
#: ``tcsfault``'s mutations; session ``fixes``: the flood file's run-queue property
#: shrank a failure for 5 minutes). Every argument is an independent scalar (a seed, a
#: size, a count), so the first failing example is already a case to paste into a
#: directed test; hypothesis prints it at once.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


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


#: ``ThreadsResult.handed_back`` when the core's run spent its event budget
BUDGET_SPENT = HB_NAMES[HB_BUDGET]


def next_eid(env) -> int:  # type: ignore[no-untyped-def]
    """SimPy's next event id, left unconsumed: the events scheduled so far."""
    eid = next(env._eid)
    env._eid = itertools.count(eid)
    return eid


def run_python(system, threads, pages, writes) -> tuple[list, int]:  # type: ignore[no-untyped-def, type-arg]
    """``start_streams`` and ``env.run()``: the outcomes, and the events the run scheduled
    - as many as it processed, the queue empty before and after."""
    env = system.machine.env
    e0 = next_eid(env)
    procs = start_streams(system, threads, pages, writes)
    env.run()
    return [p.value for p in procs], next_eid(env) - e0


def checked(result: ThreadsResult, budget: int) -> ThreadsResult:
    """``result`` unless the core's run spent its budget: fails then, with the reason."""
    assert result.handed_back != BUDGET_SPENT, (
        f"the core's run did not end within its budget of {budget:,} events (from "
        f"Python's run of the same entry): a livelock or a run past Python's end "
        f"(tests/README.md, the core's event budget); the threads at {result.pcs}"
    )
    return result


def run_both(seed, engine, epc, mult, cpus, nthreads, length, hot, fifo="", **kw):  # type: ignore[no-untyped-def]
    """The same entry built twice on ``engine`` with ``kw``'s ``System`` options: one run
    by ``start_streams`` and ``env.run()``, the other by ``run_threads``, bounded by the
    first run's events (session ``fixes``): the core's ``C_POPS`` counts SimPy's
    ``env.step``s, so an exact run on the fast engine takes exactly as many and one on the
    reference (whose steps are not elided) no more; a run that goes on fails at once
    (``checked``) instead of hanging the suite."""
    n = int(EPC_PAGES[epc] * mult)
    ref, rencl, rthreads = build(seed, engine, epc, n, cpus, nthreads, fifo, **kw)
    drv, dencl, dthreads = build(seed, engine, epc, n, cpus, nthreads, fifo, **kw)
    pages, w = streams(seed, nthreads, n, EPC_PAGES[epc], length, hot)
    outs, events = run_python(ref, rthreads, pages, w)
    result = checked(run_threads(drv, dthreads, pages, w, budget=events), events)
    return (ref, rencl, rthreads, outs), (drv, dencl, dthreads, result)


__all__ = [
    "BUDGET_SPENT",
    "EPC_PAGES",
    "NO_SHRINK",
    "build",
    "checked",
    "next_eid",
    "run_both",
    "run_python",
    "snap",
    "streams",
]
