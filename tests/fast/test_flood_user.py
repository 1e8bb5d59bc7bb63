"""The parked NOPAGE flood on the user path's compiled core (``System(nopage_flood="bulk")``;
issue 9 row 10, session ``uflood``; ``fast/cosim/transfer_flood.py``, PATHS.md "What is
built: the parked flood on the user path").

One ``Enclave.start`` thread, its retries parked by ``NopageFlood`` (a named deviation,
off by default: ``fast/flood.py``; its bound against the reference is
``test_flood.py``'s), run by ``System.run(until=)`` slices at drawn instants and then
``System.run()``: after every slice the fast engine with the core equals the fast engine
in Python *with the same option* in every observable (``threads_user_cases._snap``: the
thread's CPU accounting and entry state, the LPs, the run queue, the lock's trace and
counters, the latencies in order, the event queue and the next eid) and the flood's own
counters. CPUs fewer than, as many as and more than the thread and ksgxd; Linux's and the
FIFO mutex, CFS and FIFO CPUs, direct reclaim on and off.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from threads_user_cases import _differ, user_run

LONG = bool(os.environ.get("EPCSIM_LONG"))


def _both(seed, epc, mult, cpus, hot, fifo, direct, deadlines, length=1500):  # type: ignore[no-untyped-def]
    """The run in Python with bulk, then with the core: every slice's snapshot equal (the
    flood's counters and parked retriers too: ``threads_user_cases._snap``); returns the
    core's ``StreamCore``."""
    args = (seed, epc, mult, cpus, 1, length, hot, fifo, direct, deadlines)
    py, _ = user_run("fast", *args, fast_core=False, nopage_flood="bulk")
    core, sc = user_run("fast", *args, fast_core=True, nopage_flood="bulk")
    assert len(py) == len(core)
    for k, (a, b) in enumerate(zip(py, core, strict=True)):
        assert _differ(a, b) == [], f"slice {k}: {_differ(a, b)}"
    return sc


@settings(
    max_examples=30 if LONG else 4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc=st.sampled_from(["256K", "512K"]),
    mult=st.sampled_from([3, 4]),
    cpus=st.integers(1, 3),
    hot=st.sampled_from([0.0, 0.5]),
    fifo=st.sampled_from(["", "mutex", "sched", "mutex+sched"]),
    direct=st.booleans(),
    deadlines=st.lists(st.integers(1, 3_000_000), max_size=12).map(sorted),
)
def test_the_users_thread_parked_on_the_core_matches_python_with_bulk(
    seed: int, epc: str, mult: int, cpus: int, hot: float, fifo: str, direct: bool,
    deadlines: list[int],
) -> None:  # fmt: skip
    """After every slice (module docstring): fast with bulk == fast with bulk and the core."""
    _both(seed, epc, mult, cpus, hot, fifo, direct, deadlines)


#: fixed runs (seed, CPUs, FIFO variants, deadlines in ns from the threads' start): a
#: deadline in the middle of a park on the core, found from the run in Python (the
#: slices change nothing, so its parks' instants are the core's), after which ksgxd's
#: machine goes on served with the thread's park in Python; on one CPU; and 200-odd
#: slices in which the served thread's retry would park (``KB_PARK``)
GUARD = (
    (1, 2, "mutex+sched", [4_911_600, 4_963_100]),
    (4, 2, "mutex", [4_270_400, 4_321_900]),
    (0, 1, "mutex+sched", [1_788_000, 3_050_000]),
    (2, 2, "mutex+sched", list(range(20_000, 3_000_000, 9_622))),
)


def test_parks_ran_on_the_core_and_moved_back_from_the_user_path() -> None:
    """The guard: each ``GUARD`` run equal to Python's with bulk after every slice, and
    between them the paths this file is for were taken - parks on the core, parks
    handed back under way at a deadline (``flood.moved``), ksgxd's served steps with the
    park written into the thread row (``flood_mirrors``), a served thread's park left to
    Python (``park_stops``), moves onto the core with the flood's timers queued
    (``flood.timers_in``)."""
    core = moved = mirrors = stops = timers = 0
    for seed, cpus, fifo, deadlines in GUARD:
        sc = _both(seed, "256K", 4, cpus, 0.0, fifo, False, deadlines)
        flood = sc.system.sgx.flood
        core += flood.core_parks
        moved += flood.moved
        mirrors += sc.flood_mirrors
        stops += sc.park_stops
        timers += flood.timers_in
    assert core >= 300 and moved >= 3 and mirrors >= 20 and stops >= 1 and timers >= 10, (
        core, moved, mirrors, stops, timers,
    )  # fmt: skip
