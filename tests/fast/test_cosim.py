"""The compiled co-simulation core against the SimPy engine, event for event (issue 9).

Generated task programs (``epcsim.fast.cosim.program``) of 2-3 tasks on as many CPUs run on
the core and as generators on ``engine.machine``; both must complete every op at the same
nanosecond in the same order, leave the same mutex traces and counters, busy_ns, CPUs and
vruntimes, end at the same time, and process the same number of events (the core's pops
are SimPy's ``env.step`` calls; with ``elide`` both elide the same ``run`` steps). Costs come
from small sets built on ``mutex_pickup`` and ``mutex_spin_poll`` (and 0), so that
same-nanosecond ties - where only SimPy's ``(time, priority, eid)`` order decides - are
frequent.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from cosim_cases import EXAMPLES, PICKUP, scenarios
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_LOOP,
    OP_RUN,
    OP_UNLOCK,
    OP_WAIT,
    OP_WAKE,
    run_core,
)
from epcsim.fast.cosim.queue import pop, schedule
from epcsim.fast.cosim.simpy_program import run_simpy
from epcsim.fast.cosim.state import C_NOW, H_PAYLOAD, KEY_SHIFT, NORMAL, URGENT, new_state


def _both(programs, starts, nr_mutexes, elide, via_requests=False):
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    return run_core(programs, n, **kw), run_simpy(programs, n, via_requests=via_requests, **kw)


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios(), st.booleans(), st.booleans())
def test_core_matches_simpy_event_for_event(scenario, elide, via_requests):
    """``via_requests``: the SimPy side performs the ops as engine requests
    (``perform_simpy``) instead of calling the engine directly: both must agree."""
    programs, starts, nr_mutexes = scenario
    core, ref = _both(programs, starts, nr_mutexes, elide, via_requests)
    assert core.handed_back is None
    assert core.done == ref.done  # every op's completion instant, in the same order
    assert core.traces == ref.traces
    assert core.comparable() == ref.comparable()


def test_generated_programs_exercise_contention_and_ties():
    """A guard on the generator: the property above is only as strong as what it draws."""
    seen = {"spin_acquire": 0, "tie": 0, "timed_out": 0, "elided": 0, "sleep": 0}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(scenarios())
    def probe(scenario):
        programs, starts, nr_mutexes = scenario
        core = run_core(programs, len(programs), starts=starts, nr_mutexes=nr_mutexes)
        events = [e for tr in core.traces for _, e, _ in tr]
        seen["spin_acquire"] += "spin_acquire" in events
        times = [ns for _, _, ns in core.done]
        seen["tie"] += len(times) != len(set(times))
        seen["elided"] += core.elided > 0
        seen["timed_out"] += core.pops > 2 * len(programs)
        seen["sleep"] += any(op == OP_WAIT for p in programs for op, _, _ in p)

    probe()
    assert all(v >= 15 for v in seen.values()), seen


def test_core_is_deterministic():
    programs = [
        [(OP_RUN, 0, 0), (OP_LOCK, 0, 0), (OP_RUN, PICKUP, 0), (OP_UNLOCK, 0, 0)] * 3,
        [(OP_LOCK, 0, 0), (OP_RUN, 1, 0), (OP_UNLOCK, 0, 0), (OP_LOOP, 0, 5)],
    ]
    a = run_core(programs, 2)
    b = run_core(programs, 2)
    assert a.comparable() == b.comparable()
    assert a.mutexes[0][1] > 0  # contended


def test_releaser_relocking_within_pickup_keeps_the_lock():
    """``mutex_pickup``: t0 releases and re-takes the lock 1 ns before the spinner could
    pick it up, each time; t1 gets it only after t0's last release."""
    hold = [(OP_LOCK, 0, 0), (OP_RUN, 1_000, 0), (OP_UNLOCK, 0, 0), (OP_RUN, PICKUP - 1, 0)]
    programs = [hold * 3, [(OP_RUN, 10, 0), (OP_LOCK, 0, 0), (OP_UNLOCK, 0, 0)]]
    core, ref = _both(programs, [True, True], 1, True)
    assert core.comparable() == ref.comparable()
    acquire = [ns for ns, e, who in core.traces[0] if e == "spin_acquire"]
    last_unlock = max(ns for ns, e, who in core.traces[0] if e == "unlock" and who == "t0")
    assert acquire == [last_unlock + PICKUP]


def test_wait_queue_wakes_onto_an_idle_cpu():
    """ksgxd's sleep: the sleeper releases its CPU, and the wake-up puts it back on its
    previous CPU if idle, else the lowest idle one."""
    programs = [
        [(OP_WAIT, 0, 0), (OP_RUN, 100, 0)],
        [(OP_RUN, 5, 0), (OP_WAKE, 0, 0), (OP_RUN, 500, 0)],
    ]
    core, ref = _both(programs, [True, True], 1, True)
    assert core.comparable() == ref.comparable()
    # t0 never had a CPU before its sleep, so it wakes onto the lowest idle CPU: 1 (t1 runs on 0)
    assert core.tasks[0][2] == 1 and core.tasks[1][2] == 0
    assert core.done[:2] == [(1, 3, 5), (1, 4, 5)]


@settings(max_examples=100, deadline=None)
@given(scenarios(wait_in_lock=True))
def test_outside_the_regime_the_core_hands_back_before_diverging(scenario):
    """A lock owner that sleeps (WAIT inside a critical section) sends contenders to the
    wait list. The core never guesses that: it either agrees with SimPy to the end, or
    hands back, and everything it did before is what SimPy did."""
    programs, starts, nr_mutexes = scenario
    core, ref = _both(programs, starts, nr_mutexes, True)
    if core.handed_back is None:
        assert core.comparable() == ref.comparable()
        return
    assert core.handed_back == "mutex wait list"
    assert ref.done[: len(core.done)] == core.done
    hb_now = core.extra["hb_now"]
    assert all(ns <= hb_now for _, _, ns in core.done)
    # the reference did go outside the regime: someone slept on a mutex's wait list
    events = [e for tr in ref.traces for _, e, _ in tr]
    assert "sleep" in events or "spin_fail" in events


def test_more_tasks_than_cpus_hands_back_without_the_run_queue():
    """``runq=False`` (the machines' regime until they check need_resched; the run queue
    itself: ``test_cosim_runq.py``)."""
    programs = [[(OP_RUN, 100, 0)], [(OP_RUN, 100, 0)], [(OP_RUN, 100, 0)]]
    core = run_core(programs, 2, runq=False)
    assert core.handed_back == "no idle CPU"
    assert core.extra["hb_task"] == 2
    assert run_simpy(programs, 2).now == 200  # the reference queues t2 behind one of them


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([URGENT, NORMAL]), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_queue_pops_in_simpys_order(ops):
    """``(time, priority, eid)``: earliest, then URGENT, then scheduled first - interleaved
    pushes and pops against ``heapq`` over the same tuples."""
    s = new_state(1, 1, heap_capacity=64)
    ref: list[tuple[int, int, int]] = []
    eid = 0
    for delay, prio, do_pop in ops:
        if do_pop and ref:
            want = heapq.heappop(ref)
            payload = pop(s)
            assert (int(s.clk[C_NOW]), want[2]) == (want[0], payload >> 16)
            continue
        assert schedule(s, delay, prio, 1, 0, eid)
        heapq.heappush(ref, (int(s.clk[C_NOW]) + delay, prio, eid))
        eid += 1
    while ref:
        want = heapq.heappop(ref)
        assert pop(s) >> 16 == want[2]
        assert int(s.clk[C_NOW]) == want[0]


def test_queue_full_hands_back():
    s = new_state(1, 1, heap_capacity=2)
    assert schedule(s, 1, NORMAL, 1, 0, 0) and schedule(s, 1, NORMAL, 1, 0, 0)
    assert not schedule(s, 1, NORMAL, 1, 0, 0)
    assert s.clk[11] == 3  # C_HB = HB_QUEUE_FULL
    assert s.heap[0, H_PAYLOAD] >> 16 == 0 and s.heap[1, 1] >> KEY_SHIFT == NORMAL


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_new_state_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="nr_cpus"):
        new_state(bad, 1)


def test_loop_target_outside_the_program_is_rejected():
    with pytest.raises(ValueError, match="programs"):
        run_core([[(OP_LOOP, 5, 1)]], 1)


def test_counters_agree_with_reference_on_a_long_ping_pong():
    ping = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * PICKUP, 0)]
    programs = [[*ping, (OP_LOOP, 0, 200)], [(OP_RUN, 7, 0), *ping, (OP_LOOP, 1, 200)]]
    for elide in (True, False):
        core, ref = _both(programs, [True, True], 1, elide)
        assert core.comparable() == ref.comparable()
    assert np.array(core.mutexes[0])[[1, 5]].min() > 100  # contended, spin_acquired


def test_event_budget_stops_the_core():
    ping = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * PICKUP, 0)]
    programs = [[*ping, (OP_LOOP, 0, 50)], [(OP_RUN, 7, 0), *ping, (OP_LOOP, 1, 50)]]
    core = run_core(programs, 2, max_pops=40)
    assert core.handed_back == "event budget spent"
    assert core.pops == 40
    full = run_core(programs, 2)
    assert full.handed_back is None and full.pops > 40
    assert full.done[: len(core.done)] == core.done


def test_waker_returns_to_its_previous_cpu_when_idle():
    """``select_idle_sibling``: t1 went to sleep from CPU 1; when t2 wakes it, CPU 0 is
    idle too (t0 exited), and t1 takes CPU 1 again, not the lowest idle CPU."""
    programs = [
        [(OP_RUN, 10, 0)],
        [(OP_RUN, 5, 0), (OP_WAIT, 0, 0), (OP_RUN, 100, 0), (OP_WAIT, 0, 0)],
        [(OP_RUN, 50, 0), (OP_WAKE, 0, 0), (OP_RUN, 1_000, 0)],
    ]
    core, ref = _both(programs, [True, True, True], 1, True)
    assert core.comparable() == ref.comparable()
    assert [t[1:3] for t in core.tasks] == [(-1, 0), (-1, 1), (-1, 2)]


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(scenarios(), st.booleans(), st.integers(1, 80), st.booleans())
def test_core_stopped_after_n_events_is_simpy_after_n_steps(scenario, elide, n, via_requests):
    """Stopped by its event budget, the core's whole state - the ops done, the traces and
    counters, *and the events still queued with SimPy's own eids* - is SimPy's after as
    many ``env.step`` calls: what a hand-back moves into SimPy's queue (``PATHS.md``)."""
    programs, starts, nr_mutexes = scenario
    k = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    core = run_core(programs, k, max_pops=n, **kw)
    ref = run_simpy(programs, k, max_steps=n, via_requests=via_requests, **kw)
    assert core.handed_back in (None, "event budget spent")
    assert core.comparable() == ref.comparable()
