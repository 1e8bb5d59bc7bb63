"""The parked NOPAGE flood on the compiled core (``System(nopage_flood="bulk")`` with
``run_threads``; ``cosim/flood_park.py``, ``driver/flood_rows.py``; PATHS.md "Several
threads on the core", N7, sessions ``flood6`` and ``floodq``) against the fast engine in
Python with the same option.

The deviation is ``fast/flood.py``'s: the core restates it, so its run must equal the
Python one exactly - every array, record, counter, clock, each thread's CPU accounting and
outcome, the LPs, ``encl->lock``'s trace, the free timeline, the fault latencies in order,
and the flood's own counters (parks, retries charged in bulk). ``test_threads_core.py``'s
programs, more of them flooding (more uniform streams over 2-4x the EPC, up to 6
threads), each on its own CPU and, since session ``floodq``, with more threads than CPUs:
the run queue beside the parked rows (need_resched at their decision instants, a parked
row preempted by a wake-up, its settlement when it yields its CPU at its handler's
``mutex_lock``) and the TCS fault's retries parked. And the deviation's bound
(``flood_bound.py``) holds on the core's runs against the reference, which runs every
retry.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from flood_bound import assert_within_flood_bound
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ksgxd_cases import differ
from threads_cases import (
    EPC_PAGES,
    NO_SHRINK,
    build,
    checked,
    run_both,
    run_python,
    snap,
    streams,
)

from epcsim.engine.costs import Costs
from epcsim.fast.driver.threads_bridge import run_threads
from epcsim.fast.flood import NopageFlood

LONG = bool(os.environ.get("EPCSIM_LONG"))
BULK = {"nopage_flood": "bulk"}
#: where the regime ends and the core hands back (nothing is compared then but the lock's
#: trace so far): ksgxd takes a parked thread's TCS (``_tcs_zapped`` is not restated) or
#: the SECS; with more tasks than CPUs the lock's trace buffer may fill (a void run)
HANDED_BACK_OK = ("TCS fault", "SECS eviction", "trace full")


def flood_counts(system) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return system.sgx.flood.parks, system.sgx.flood.bulk_retries


def agree(seed, epc, mult, nthreads, spare, length, hot, fifo, cpus=None):  # type: ignore[no-untyped-def]
    """Both runs with the option; the core's equal to Python's unless it handed back (then
    its lock trace is the start of Python's). ``cpus``: that many (default: each thread and
    ksgxd its own, ``spare`` idle besides). Returns the core's run's flood counts ((-1, 0)
    after a hand-back) and ``ThreadsResult.core``."""
    if cpus is None:
        cpus = nthreads + 1 + spare
    (ref, rencl, rth, outs), (drv, dencl, dth, result) = run_both(
        seed, "fast", epc, mult, cpus, nthreads, length, hot, fifo, **BULK
    )
    if result.handed_back is not None:
        assert result.handed_back in HANDED_BACK_OK, result
        assert prefix_agrees(rencl.encl.lock.trace, dencl.encl.lock.trace)
        return (-1, 0), result.core
    assert result.outcomes == outs
    assert differ(snap(ref, rencl, rth, outs), snap(drv, dencl, dth, result.outcomes)) == []
    assert flood_counts(drv) == flood_counts(ref)
    assert drv.sgx.ksgxd_sleeping and not drv.machine.env._queue
    return flood_counts(drv), result.core


def prefix_agrees(ref_trace: list, core_trace: list) -> bool:  # type: ignore[type-arg]
    """After a hand-back the core's run stopped early: its lock trace must be the start of
    Python's, event for event."""
    return len(core_trace) <= len(ref_trace) and ref_trace[: len(core_trace)] == core_trace


@settings(
    max_examples=24 if LONG else 6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=NO_SHRINK,
)
@given(
    seed=st.integers(0, 2**16),
    epc=st.sampled_from(["256K", "512K", "1M", "1M"]),
    mult=st.sampled_from([2, 3, 4]),
    nthreads=st.integers(2, 6),
    spare=st.integers(0, 1),
    length=st.integers(100, 800),
    hot=st.sampled_from([0.0, 0.0, 0.0, 0.9, 1.0]),
    fifo=st.sampled_from(["", "", "mutex", "sched", "mutex+sched"]),
)
def test_the_parked_flood_on_the_core_matches_it_in_python(
    seed: int, epc: str, mult: int, nthreads: int, spare: int, length: int, hot: float,
    fifo: str,
) -> None:  # fmt: skip
    """2-6 threads each on its own CPU, ``nopage_flood="bulk"``: the core's run (parks,
    decision instants, the hooks) is the fast engine's in Python, every observable."""
    (parks, _), _core = agree(seed, epc, mult, nthreads, spare, length, hot, fifo)
    event("handed back" if parks < 0 else "parked on the core" if parks else "no park")


@settings(
    max_examples=24 if LONG else 6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=NO_SHRINK,
)
@given(
    seed=st.integers(0, 2**16),
    epc=st.sampled_from(["256K", "512K", "1M", "1M"]),
    mult=st.sampled_from([2, 3, 4]),
    nthreads=st.integers(2, 8),
    short=st.integers(1, 6),
    length=st.integers(100, 800),
    hot=st.sampled_from([0.0, 0.0, 0.9, 1.0]),
    fifo=st.sampled_from(["", "", "mutex", "sched", "mutex+sched"]),
)
def test_the_parked_flood_beside_the_run_queue_matches_it_in_python(
    seed: int, epc: str, mult: int, nthreads: int, short: int, length: int, hot: float,
    fifo: str,
) -> None:  # fmt: skip
    """Session ``floodq``: threads + ksgxd exceed the CPUs (``short`` fewer, at least one),
    ``nopage_flood="bulk"``: parked rows hold CPUs others wait for - need_resched at their
    decision instants (the tick with the queue as it is, ``rq_changed``), a wake-up
    preempting a parked row (``wake``), the row yielding its CPU at its handler's
    ``mutex_lock`` - and the TCS fault's retries park; each mutex, CFS and FIFO CPUs. The
    core's run is the fast engine's in Python, every observable; after a hand-back (the
    regime's end) the lock's trace so far is Python's beginning."""
    cpus = max(1, nthreads + 1 - short)
    try:
        (parks, _), _core = agree(seed, epc, mult, nthreads, 0, length, hot, fifo, cpus=cpus)
    except ValueError as e:  # the build's entries left the SECS written back: refused
        assert "outside the driver's regime" in str(e)
        return
    event("handed back" if parks < 0 else "parked on the core" if parks else "no park")


#: the fixed cases, each run once (session ``tidy``: three tests ran each case's core run
#: twice): (seed, epc, mult, nthreads, spare, length, hot, fifo, cpus, seen). ``cpus`` None:
#: each thread and ksgxd its own CPU, ``spare`` idle besides; else more threads than CPUs
#: (session ``floodq``). ``seen``: the core's counters (``ThreadsResult.core``) the case is
#: there for, each > 0 in its run; together they name every one the guards need.
FIXED_CASES = (
    (2, "1M", 3, 4, 0, 400, 0.0, "", None, ()),
    (2, "1M", 3, 4, 0, 400, 0.0, "mutex+sched", None, ()),
    (5, "512K", 4, 3, 1, 600, 0.0, "", None, ()),
    (7, "1M", 2, 4, 2, 800, 0.9, "sched", None, ()),
    # a parked row preempted by a wake-up
    (30398, "512K", 4, 7, 0, 499, 0.0, "", 6, ("flood_woken", "switches")),
    # need_resched at decisions, TCS faults parked
    (21377, "1M", 4, 7, 0, 685, 0.0, "", 2, ("flood_resched", "flood_tcs_parks", "switches")),
    (5562, "1M", 3, 4, 0, 468, 0.0, "sched", 3, ("switches",)),  # FIFO CPUs: the fixed slice
    (17094, "1M", 4, 3, 0, 585, 0.0, "mutex+sched", 1, ("switches",)),  # FIFO mutex, one CPU
)
#: what the guards need seen across the cases with more threads than CPUs
QUEUE_SEEN = ("flood_woken", "flood_resched", "flood_tcs_parks", "switches")
#: each case's parks and retries charged in bulk at least (the guard wanted more than 100
#: of each over the first four cases: 98-2,184 parks, 57-555 retries measured)
MIN_PARKS = MIN_BULK = 26


def test_the_fixed_cases_name_every_counter_the_guards_need() -> None:
    """The union of the cases' ``seen`` covers the queue guard's counters, and the four
    cases each on their own CPUs at ``MIN_PARKS``/``MIN_BULK`` make more than 100 of each."""
    assert {k for c in FIXED_CASES for k in c[-1]} == set(QUEUE_SEEN)
    assert 4 * MIN_PARKS > 100 and 4 * MIN_BULK > 100


@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[7] or 'linux'}")
def test_fixed_cases_park_settle_and_stay_within_the_bound(case: tuple) -> None:  # type: ignore[type-arg]
    """Each fixed case once, three runs: the core's run equals the fast engine's in Python,
    every observable, to its end (no hand-back); threads parked on the core and their
    skipped retries were settled there (``MIN_PARKS``, ``MIN_BULK``), and with more
    threads than CPUs (session ``floodq``) parked rows held CPUs others waited for - the
    case's ``seen``: a wake-up preempting a parked row (``flood_woken``), parks ended at
    a decision instant with need_resched due (``flood_resched``: the row yields its CPU at
    its handler's ``mutex_lock``, its skipped retries settled), the TCS fault's retries
    parked (``flood_tcs_parks``), the run queue switched. And ``flood_bound.py``'s bound,
    the core's bulk run against the reference (every retry simulated): the paging
    counters and the end within it. (Before session ``tidy``: three tests, the guards
    and the bound, each running the cases' core runs again.)"""
    seed, epc, mult, nthreads, spare, length, hot, fifo, cpus, seen = case
    if cpus is None:
        cpus = nthreads + 1 + spare
    (py, pencl, pth, outs), (drv, dencl, dth, result) = run_both(
        seed, "fast", epc, mult, cpus, nthreads, length, hot, fifo, **BULK
    )
    assert result.handed_back is None, result
    assert result.outcomes == outs
    assert differ(snap(py, pencl, pth, outs), snap(drv, dencl, dth, result.outcomes)) == []
    parks, bulk = flood_counts(drv)
    assert (parks, bulk) == flood_counts(py)
    assert drv.sgx.ksgxd_sleeping and not drv.machine.env._queue
    assert parks >= MIN_PARKS and bulk >= MIN_BULK, (parks, bulk)
    assert all(result.core[k] > 0 for k in seen), (seen, result.core)
    n = int(EPC_PAGES[epc] * mult)
    pages, w = streams(seed, nthreads, n, EPC_PAGES[epc], length, hot)
    ref, _, rth = build(seed, "reference", epc, n, cpus, nthreads, fifo)
    run_python(ref, rth, pages, w)
    assert_within_flood_bound(ref.stats(), drv.stats(), ref.now, drv.now)


def _tie_case(order: tuple[int, int]) -> tuple:  # type: ignore[type-arg]
    """Two threads on three CPUs (with ksgxd), every EPC page taken (a consumer outside
    the model takes the free pages, as ``ksgxd_cases.build`` does), each thread's stream of
    absent pages, and a long retry cycle (``eresume`` 200 us): both first faults end at the
    same instant and fail (-EBUSY), and both threads park at that instant with the same
    period, so each decision instant of one is the other's, and ksgxd frees its first page
    well inside the first cycle. ``order``: which thread starts (and parks) first. Returns
    the Python run (system, enclave, threads, outcomes), the core's (..., result), the
    ties ``page_freed`` met in Python."""
    built = []
    for _ in range(2):
        system, encl, threads = build(
            3, "fast", "1M", 768, 3, 2, **BULK, costs=Costs(eresume=200_000)
        )
        epc = system.sgx.epc
        while epc.nr_free_pages > 0:
            epc.alloc(epc.nodes[0])
        e = encl.encl
        absent = [i for i in range(2, e.nr_pages) if e.present[i] and e.epc[i] < 0]
        pages = [np.array(absent[r::2][:40], np.int64) for r in order]
        built.append((system, encl, [threads[r] for r in order], pages))
    return tuple(built)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_parked_rows_tying_at_a_page_free(monkeypatch, order) -> None:  # type: ignore[no-untyped-def]
    """``page_freed``'s tie (PATHS.md, session ``flood6``'s left item): two parked rows
    whose next decision instants coincide when a page is freed - the retrier parked first
    resumes there (the first in ``parked``'s order), the other at the next page. Both
    orders of parking (which thread starts first): the core's run equals Python's, every
    observable, and the tie was met."""
    ties = []
    freed = NopageFlood.page_freed

    def page_freed(self):  # type: ignore[no-untyped-def]
        now = self.m.now
        cs = [
            self._next_decision(p, now)
            for p in self.parked.values()
            if p.forced is None or p.forced > self._next_decision(p, now)
        ]
        if len(cs) > 1 and cs.count(min(cs)) > 1:
            ties.append(now)
        return freed(self)

    monkeypatch.setattr(NopageFlood, "page_freed", page_freed)
    (ref, rencl, rth, pages), (drv, dencl, dth, _) = _tie_case(order)
    outs, events = run_python(ref, rth, pages, None)
    assert ties, "no tie at a page free in Python's run"
    result = checked(run_threads(drv, dth, pages, budget=events), events)
    assert result.handed_back is None, result
    assert result.outcomes == outs
    assert differ(snap(ref, rencl, rth, outs), snap(drv, dencl, dth, result.outcomes)) == []
    assert flood_counts(drv) == flood_counts(ref)
