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


def _both(seed, epc, mult, cpus, hot, fifo, direct, deadlines, length=1500, at=None):  # type: ignore[no-untyped-def]
    """The run in Python with bulk, then with the core: every slice's snapshot equal (the
    flood's counters and parked retriers too: ``threads_user_cases._snap``); returns the
    core's ``StreamCore``. ``at``: ``user_run``'s hook after each slice, on both runs."""
    args = (seed, epc, mult, cpus, 1, length, hot, fifo, direct, deadlines)
    py, _ = user_run("fast", *args, fast_core=False, nopage_flood="bulk", at=at)
    core, sc = user_run("fast", *args, fast_core=True, nopage_flood="bulk", at=at)
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


def test_a_moved_in_timer_fires_inside_a_later_park(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """uflood's directed case "a moved-in timer inside a later park" (PATHS.md, session
    ``uflood``'s Left item 3; session ``tidy``): one thread on 2 CPUs, the FIFO mutex and
    CPUs, seed 0. The first deadline falls inside a park on the core, which is handed back
    and ends in Python; the next park's timer at a later tick is left queued in SimPy. The
    second deadline, before the park that tick falls in, ends the slice so the session
    re-enters the core with that timer queued: ``flood_row`` takes it in with the row's
    current ``T_FL_GEN``, the next park passes it, so when it fires inside that park its
    callback matches nothing - as Python's finds its park gone. Python with bulk == the
    core with bulk after every slice; the guard (the Python run's instants are the core's):
    a timer moved in whose instant lies inside a park that began after the move."""
    from epcsim.fast import flood as F
    from epcsim.fast.cosim import transfer_flood, transfer_to_core

    parks: list[list[int]] = []  # the Python run's parks: [start, end]
    due: dict[int, list[int]] = {}  # its timers' instants, by their park's start
    moved_in: list[tuple[int, int]] = []  # the core run's: (its park's start, when)
    park, rest, timer = F.NopageFlood.park, F.NopageFlood.parked_rest, F.NopageFlood._timer

    def record_park(self, thread, index, eresume=True):  # type: ignore[no-untyped-def]
        parks.append([self.m.now, -1])
        return (yield from park(self, thread, index, eresume))

    def record_rest(self, p, decided=False):  # type: ignore[no-untyped-def]
        try:
            return (yield from rest(self, p, decided))
        finally:
            parks[-1][1] = self.m.now

    def record_timer(self, p, at):  # type: ignore[no-untyped-def]
        due.setdefault(p.base, []).append(at)
        return timer(self, p, at)

    flood_row = transfer_flood.flood_row

    def record_row(sv, flood, ev, tix, mix):  # type: ignore[no-untyped-def]
        row = flood_row(sv, flood, ev, tix, mix)
        tag = getattr((ev.callbacks or [None])[0], "flood", None)
        if row is not None and tag[0] == "timer":
            moved_in.append((tag[1].base, flood.m.now))
        return row

    t0 = 3_665_750  # the threads' start (``user_run``'s)
    args = (0, "256K", 4, 2, 1, 1500, 0.0, "mutex+sched", False)
    deadlines = [12_778_750 - t0, 15_600_000 - t0]
    with monkeypatch.context() as mp:
        mp.setattr(F.NopageFlood, "park", record_park)
        mp.setattr(F.NopageFlood, "parked_rest", record_rest)
        mp.setattr(F.NopageFlood, "_timer", record_timer)
        py, _ = user_run("fast", *args, deadlines, fast_core=False, nopage_flood="bulk")
    monkeypatch.setattr(transfer_flood, "flood_row", record_row)  # (``take_stops``')
    monkeypatch.setattr(transfer_to_core, "flood_row", record_row)
    core, sc = user_run("fast", *args, deadlines, fast_core=True, nopage_flood="bulk")
    for k, (a, b) in enumerate(zip(py, core, strict=True)):
        assert _differ(a, b) == [], f"slice {k}: {_differ(a, b)}"
    flood = sc.system.sgx.flood
    assert flood.moved >= 1 and flood.core_parks > 0, (flood.moved, flood.core_parks)
    inside = [
        (base, when, at, s, e)
        for base, when in moved_in
        for at in due.get(base, [])
        for s, e in parks
        if when < s < at < e
    ]
    assert inside, (moved_in, parks)


def test_a_mirrored_young_test_brings_the_parked_tcs_up_to_date(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """uflood's directed case "a mirrored young test" (PATHS.md, session ``uflood``'s Left
    item 3; session ``tidy``): the shape above. The first deadline (11,223,250 ns) falls
    inside a park on the core, handed back to Python; ksgxd's machine, served with the
    thread parked there, tests the TCS's Accessed bit with the park written into the
    thread row (``mirror_in``): the compiled hook applies the skipped ERESUMEs' bit first
    (``flood_rows.tcs_accessed``), the test clears it, and the second deadline (11,226,300
    ns) snapshots the bit before anything sets it again. Python with bulk == the core with
    bulk after every slice; the guard: a mirrored step whose hook brought the park's
    ``touched`` over a completed ERESUME. (The TCS was young at that test: a test that
    finds it old, where the touch decides the eviction, was not met; PATHS.md.)"""
    from epcsim.fast.driver import stream_ksgxd

    touched: list[tuple[int, int]] = []
    mirror_in, mirror_out = stream_ksgxd.mirror_in, stream_ksgxd.mirror_out
    before: list[int] = []

    def record_in(sv, flood, row):  # type: ignore[no-untyped-def]
        p = mirror_in(sv, flood, row)
        before[:] = [] if p is None else [p.touched]
        return p

    def record_out(sv, flood, row, p):  # type: ignore[no-untyped-def]
        mirror_out(sv, flood, row, p)
        first = p.base + p.eresume_ns
        last = first + (p.touched - first) // p.period * p.period
        if before and p.eresume_ns and p.touched >= first and last > before[0]:
            touched.append((before[0], p.touched))

    monkeypatch.setattr(stream_ksgxd, "mirror_in", record_in)
    monkeypatch.setattr(stream_ksgxd, "mirror_out", record_out)
    t0 = 3_665_750  # the threads' start (``user_run``'s)
    sc = _both(0, "256K", 4, 2, 0.0, "mutex+sched", False, [11_223_250 - t0, 11_226_300 - t0])
    assert sc.flood_mirrors > 0 and touched, (sc.flood_mirrors, touched)


def test_a_mirrored_young_test_of_an_old_tcs_applies_the_skipped_eresumes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """uflood's directed case "a mirrored young test" of an *old* TCS (PATHS.md, session
    ``tidy``'s Left; session ``tidy2``): the shape above, the first deadline (11,222,250 ns)
    earlier in the same park (base 11,221,750, a cycle every 3,000 ns, its ERESUME 1,000 ns
    in), before the first skipped ERESUME completes. There, on both runs, the TCS's
    Accessed bit is brought up to date (``NopageFlood.tcs_accessed``) and cleared by hand -
    as a clear of the PTEs' Accessed bits (``/proc/PID/clear_refs``) would leave it; no
    searched run met an old TCS in a park (PATHS.md). ksgxd's machine, served with the
    thread parked in Python, tests the TCS at 11,223,500: the bit is clear, and only the
    skipped ERESUME completed at 11,222,750 - applied by the compiled hook from the park
    written into the thread row (``mirror_in``) - makes it young, so the touch decides
    whether the TCS is evicted. Python with bulk == the core with bulk after every slice;
    the guard: a mirrored step whose hook found the TCS's bit clear and brought ``touched``
    over a completed ERESUME."""
    from epcsim.fast.driver import stream_ksgxd

    old: list[tuple[int, int]] = []
    mirror_in, mirror_out = stream_ksgxd.mirror_in, stream_ksgxd.mirror_out
    before: list[int] = []

    def record_in(sv, flood, row):  # type: ignore[no-untyped-def]
        p = mirror_in(sv, flood, row)
        t = None if p is None else p.thread
        before[:] = [] if p is None else [p.touched, int(t.encl.pte_young[t.tcs_index])]
        return p

    def record_out(sv, flood, row, p):  # type: ignore[no-untyped-def]
        mirror_out(sv, flood, row, p)
        first = p.base + p.eresume_ns
        last = first + (p.touched - first) // p.period * p.period
        if before and not before[1] and p.touched >= first and last > before[0]:
            old.append((before[0], p.touched))

    def clear(k, system, encl, threads):  # type: ignore[no-untyped-def]
        if k == 0:
            flood = system.sgx.flood
            (t,) = threads
            assert t in flood.parked and encl.pte_young[t.tcs_index]  # parked, in Python
            flood.tcs_accessed(encl, t.tcs_index)  # the skipped ERESUMEs so far (none)
            encl.pte_young[t.tcs_index] = False

    monkeypatch.setattr(stream_ksgxd, "mirror_in", record_in)
    monkeypatch.setattr(stream_ksgxd, "mirror_out", record_out)
    t0 = 3_665_750  # the threads' start (``user_run``'s)
    deadlines = [11_222_250 - t0, 11_226_300 - t0]
    sc = _both(0, "256K", 4, 2, 0.0, "mutex+sched", False, deadlines, at=clear)
    assert sc.flood_mirrors > 0 and old, (sc.flood_mirrors, old)
