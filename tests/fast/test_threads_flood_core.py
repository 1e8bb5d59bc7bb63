"""The parked NOPAGE flood on the compiled core (``System(nopage_flood="bulk")`` with
``run_threads``; ``cosim/flood_park.py``, ``driver/flood_rows.py``; PATHS.md "Several
threads on the core", N7, session ``flood6``) against the fast engine in Python with the
same option.

The deviation is ``fast/flood.py``'s: the core restates it, so its run must equal the
Python one exactly - every array, record, counter, clock, each thread's CPU accounting and
outcome, the LPs, ``encl->lock``'s trace, the free timeline, the fault latencies in order,
and the flood's own counters (parks, retries charged in bulk). ``test_threads_core.py``'s
programs, more of them flooding (more uniform streams over 2-4x the EPC, up to 6
threads, each on its own CPU). And the deviation's bound (``flood_bound.py``) holds on the
core's runs against the reference, which runs every retry.
"""

from __future__ import annotations

import os

from flood_bound import assert_within_flood_bound
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ksgxd_cases import differ
from threads_cases import EPC_PAGES, build, run_both, snap, streams

from epcsim.fast.driver.threads_bridge import run_threads, start_streams

LONG = bool(os.environ.get("EPCSIM_LONG"))
BULK = {"nopage_flood": "bulk"}
#: where the regime ends and the core hands back (nothing is compared then): ksgxd takes
#: a thread's TCS (a parked one's too: ``_tcs_zapped`` is not restated) or the SECS
HANDED_BACK_OK = ("TCS fault", "SECS eviction")


def flood_counts(system) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return system.sgx.flood.parks, system.sgx.flood.bulk_retries


def agree(seed, epc, mult, nthreads, spare, length, hot, fifo):  # type: ignore[no-untyped-def]
    """Both runs with the option; the core's equal to Python's unless it handed back.
    Returns the core's run's flood counts ((-1, 0) after a hand-back)."""
    (ref, rencl, rth, outs), (drv, dencl, dth, result) = run_both(
        seed, "fast", epc, mult, nthreads + 1 + spare, nthreads, length, hot, fifo, **BULK
    )
    if result.handed_back is not None:
        assert result.handed_back in HANDED_BACK_OK, result
        return (-1, 0)
    assert result.outcomes == outs
    assert differ(snap(ref, rencl, rth, outs), snap(drv, dencl, dth, result.outcomes)) == []
    assert flood_counts(drv) == flood_counts(ref)
    assert drv.sgx.ksgxd_sleeping and not drv.machine.env._queue
    return flood_counts(drv)


@settings(max_examples=24 if LONG else 6, deadline=None, suppress_health_check=list(HealthCheck))
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
    parks, _ = agree(seed, epc, mult, nthreads, spare, length, hot, fifo)
    event("handed back" if parks < 0 else "parked on the core" if parks else "no park")


#: fixed cases (seed, epc, mult, nthreads, spare, length, hot, fifo): each parks on the core
GUARD_CASES = (
    (2, "1M", 3, 4, 0, 400, 0.0, ""),
    (2, "1M", 3, 4, 0, 400, 0.0, "mutex+sched"),
    (5, "512K", 4, 3, 1, 600, 0.0, ""),
    (7, "1M", 2, 4, 2, 800, 0.9, "sched"),
)


def test_rows_parked_and_settled_on_the_core() -> None:
    """A guard on the property above: in fixed cases threads park on the core and their
    skipped retries are settled there (the core's counters, folded into ``NopageFlood``),
    exactly as in Python."""
    parks = bulk = 0
    for case in GUARD_CASES:
        p, b = agree(*case)
        assert p > 0, case
        parks += p
        bulk += b
    assert parks > 100 and bulk > 100, (parks, bulk)


def test_the_flood_bound_holds_on_the_cores_runs() -> None:
    """``flood_bound.py``'s bound, the core's bulk runs against the reference (every retry
    simulated): the paging counters and the end within it."""
    for seed, epc, mult, nthreads, spare, length, hot, fifo in GUARD_CASES:
        n = int(EPC_PAGES[epc] * mult)
        cpus = nthreads + 1 + spare
        pages, w = streams(seed, nthreads, n, EPC_PAGES[epc], length, hot)
        ref, _, rth = build(seed, "reference", epc, n, cpus, nthreads, fifo)
        start_streams(ref, rth, pages, w)
        ref.machine.env.run()
        core, _, cth = build(seed, "fast", epc, n, cpus, nthreads, fifo, **BULK)
        result = run_threads(core, cth, pages, w)
        assert result.handed_back is None, result
        assert core.sgx.flood.bulk_retries > 0
        assert_within_flood_bound(ref.stats(), core.stats(), ref.now, core.now)
