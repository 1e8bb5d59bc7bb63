"""CFS: fair sharing, idle CPUs, sleeper placement, wake-up preemption, the tick."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.engine.machine import Machine, Task
from epcsim.engine.sched import TICK_NS, CfsRunQueue, tunable_factor

MS = 1_000_000


def _cpu_hog(task, until, step, user=False):
    while task.m.now < until:
        if user:
            yield from task.run_user(step)
        else:
            yield from task.run(step)
        yield from task.cond_resched()
    task.exit()


def test_wakeup_granularity_scales_with_the_cpu_count():
    assert [tunable_factor(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 2, 2, 3, 4, 4]
    rq = Machine(4).rq
    assert isinstance(rq, CfsRunQueue)
    assert rq.wakeup_granularity_ns == 3 * MS and rq.latency_ns == 18 * MS


@pytest.mark.parametrize("user", [False, True])
def test_two_cpu_bound_tasks_share_one_cpu_evenly(user):
    m = Machine(1)
    a, b = Task(m, "a"), Task(m, "b")
    m.spawn(_cpu_hog(a, 200 * MS, 10_000, user))
    m.spawn(_cpu_hog(b, 200 * MS, 10_000, user))
    m.env.run()
    # 200 ms of one CPU: each gets half, within one slice (3 ms) rounded up to the tick
    assert a.busy_ns + b.busy_ns >= 200 * MS
    assert abs(a.busy_ns - b.busy_ns) <= TICK_NS + 10_000
    assert m.context_switches > 20


def test_fifo_sched_keeps_the_fixed_slice():
    m = Machine(1, sched="fifo", sched_slice_ns=MS)
    a, b = Task(m, "a"), Task(m, "b")
    m.spawn(_cpu_hog(a, 20 * MS, 100_000))
    m.spawn(_cpu_hog(b, 20 * MS, 100_000))
    m.env.run()
    assert abs(a.busy_ns - b.busy_ns) <= MS and m.context_switches >= 18


def test_an_idle_cpu_takes_a_waking_task_at_once():
    m = Machine(2)
    a, b = Task(m, "a"), Task(m, "b")
    started = []

    def sleeper():
        yield from b.run(10)
        yield from b.sleep(m.env.timeout(1_000))
        started.append(m.now)
        yield from b.run(10)
        b.exit()

    m.spawn(_cpu_hog(a, 10 * MS, 100_000))
    m.spawn(sleeper())
    m.env.run()
    assert started == [1_010]


def _wake_against(user: bool, sleeper_ran: int, sleep_ns: int):
    """One CPU: ``b`` runs ``sleeper_ran`` ns, then sleeps ``sleep_ns``; ``a`` runs from
    when b sleeps, in 20 ms steps with a preemption point between steps. Returns when b ran
    again, a's vruntime minus b's at the wake-up, when a left its CPU, the granularity."""
    m = Machine(1)
    a, b = Task(m, "a"), Task(m, "b")
    switched = []
    a.on_switch_out = lambda t, cpu: switched.append(m.now)
    seen = {}

    def hog():
        while m.now < sleeper_ran + sleep_ns + 50 * MS:
            if user:
                yield from a.run_user(20 * MS)
            else:
                yield from a.run(20 * MS)
            yield from a.cond_resched()
        a.exit()

    def sleeper():
        yield from b.run(sleeper_ran)
        yield from b.sleep(m.env.timeout(sleep_ns))
        seen["start"] = m.now
        b.exit()

    orig = m.rq.wake

    def wake(task):
        ev = orig(task)
        if task is b and "gap" not in seen and m.now > 0:
            seen["gap"] = m.rq.vruntime_now(a) - b.vruntime
        return ev

    m.rq.wake = wake
    m.spawn(sleeper())
    m.spawn(hog())
    m.env.run()
    return seen["start"], seen["gap"], switched, m.rq.wakeup_granularity_ns


@settings(max_examples=40, deadline=None)
@given(
    ran=st.integers(1, 8 * MS),
    sleep=st.integers(1, 30 * MS),
    user=st.booleans(),
)
def test_wakeup_preemption_exactly_when_the_gap_exceeds_the_granularity(ran, sleep, user):
    woke_at = ran + sleep
    start, gap, switched, gran = _wake_against(user, ran, sleep)
    if gap > gran:
        if user:  # user mode: the interrupt preempts at once (an AEX through the hook)
            assert start == woke_at and switched[0] == woke_at
        else:  # kernel mode: at a's next preemption point, the end of its 20 ms step
            # (at its end exactly when the wake-up lands there: ran=1, sleep=20 ms)
            assert start >= woke_at and (start - ran) % (20 * MS) == 0
            assert start - woke_at <= 20 * MS
    else:  # no wake-up preemption: b waits for the tick to end a's slice
        assert start > woke_at and woke_at not in switched


def test_sleeper_credit_is_half_a_latency():
    m = Machine(1)
    rq = m.rq
    a, b = Task(m, "a"), Task(m, "b")

    def hog():
        yield from a.run(100 * MS)
        a.exit()

    def sleeper():
        yield from b.sleep(m.env.timeout(50 * MS))
        b.exit()

    b.started = True  # an old task that has slept since t=0
    m.spawn(hog())
    m.spawn(sleeper())
    m.env.run(until=50 * MS + 1)
    # b woke at 50 ms, 1 ns ago, placed half a latency behind min_vruntime (a's vruntime)
    assert b.vruntime == rq.vruntime_now(a) - 1 - rq.latency_ns // 2
    assert b.vruntime == rq.latency_ns + 50 * MS - rq.latency_ns // 2  # a: START_DEBIT


def test_the_tick_hands_the_cpu_to_the_leftmost_waiter():
    m = Machine(1)
    a, b = Task(m, "a"), Task(m, "b")
    first_b = []

    def second():
        yield from b.run(1)
        first_b.append(m.now)
        b.exit()

    m.spawn(_cpu_hog(a, 30 * MS, 100_000))
    m.spawn(second())
    m.env.run()
    # b, forked behind a (START_DEBIT), waits for the tick after a's 3 ms slice (4 ms), when
    # a is at a preemption point (its 100 us steps end there), then runs 1 ns
    assert first_b == [4 * MS + 1]


def test_run_user_returns_what_ran_when_preempted():
    m = Machine(1)
    a, b = Task(m, "a"), Task(m, "b")
    out = []
    out_b = []

    def user():
        ran = yield from a.run_user(10 * MS)
        out.append((ran, m.now))
        a.exit()

    def waker():
        yield from b.sleep(m.env.timeout(2 * MS))
        out_b.append(m.now)
        yield from b.run(1_000)
        b.exit()

    b.started = True  # an old task with no runtime: the most sleeper credit
    m.spawn(user())
    m.spawn(waker())
    m.env.run()
    assert out_b == [2 * MS]
    assert out == [(2 * MS, 2 * MS + 1_000)]


def test_bad_scheduler_and_mutex_names_are_rejected():
    with pytest.raises(ValueError, match="sched"):
        Machine(1, sched="eevdf")
    with pytest.raises(ValueError, match="mutex"):
        Machine(1, mutex="rt")
