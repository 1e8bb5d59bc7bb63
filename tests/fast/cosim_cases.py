"""The generated task programs the co-simulation tests share (``test_cosim.py``,
``test_cosim_run_user.py``, ``test_cosim_fifo.py``, ``test_served.py``,
``test_cosim_runq.py``): ``scenarios``
(2-3 tasks of runs, critical sections, waits, wakes, spawns and loops, their costs from
small sets built on ``mutex_pickup`` and ``mutex_spin_poll`` so that same-nanosecond ties
are frequent), ``user_scenarios`` (some ``RUN`` ops as ``USER``), ``crowded_scenarios``
(more tasks than CPUs: the run queue), ``picked_lock_scenarios`` (tasks queued inside
their locks: the hand-backs in a continuation, session ``spinfix``), ``EXAMPLES`` (their
hypothesis budget, larger under ``EPCSIM_LONG``) and ``programs_taking`` (how many drawn
programs take one of the core's shortcuts: the guards of ``test_resume_now.py`` and
``test_run_over.py``).

A helper module, not a test file (tests/README.md, "Rules for a new test"): moved from
``test_cosim.py`` and ``test_cosim_run_user.py`` by session ``tidy``, no code changed.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.engine.costs import Costs
from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_LOOP,
    OP_RESCHED,
    OP_RUN,
    OP_SPAWN,
    OP_UNLOCK,
    OP_USER,
    OP_WAIT,
    OP_WAKE,
    run_core,
)

LONG = bool(os.environ.get("EPCSIM_LONG"))
EXAMPLES = 1000 if LONG else 200

PICKUP = Costs().mutex_pickup
POLL = Costs().mutex_spin_poll
COSTS = (0, 0, 1, 50, POLL, PICKUP - 1, PICKUP, PICKUP + 1, 2 * PICKUP, 3 * PICKUP, 2_000)
cost = st.sampled_from(COSTS)


def _block(draw, n_tasks, nr_mutexes, spawnable, wait_in_lock):
    """One block of ops: a run, a critical section (maybe nested), a wait, a wake, a spawn."""
    kinds = ["run", "crit", "crit", "crit", "wait", "wake"] + (["spawn"] if spawnable else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "run":
        return [(OP_RUN, draw(cost), 0)]
    if kind == "wait":
        return [(OP_WAIT, 0, 0)]
    if kind == "wake":
        return [(OP_WAKE, 0, 0)]
    if kind == "spawn":
        return [(OP_SPAWN, draw(st.sampled_from(spawnable)), 0)]
    m = draw(st.integers(0, nr_mutexes - 1))
    body = [(OP_RUN, draw(cost), 0) for _ in range(draw(st.integers(0, 2)))]
    if nr_mutexes > 1 and draw(st.booleans()):
        inner = 1 - m
        body += [(OP_LOCK, inner, 0), (OP_RUN, draw(cost), 0), (OP_UNLOCK, inner, 0)]
    if wait_in_lock and draw(st.booleans()):
        body.insert(0, (OP_WAIT, 0, 0))
        body.append((OP_RUN, draw(cost), 0))
    return [(OP_LOCK, m, 0), *body, (OP_UNLOCK, m, 0)]


@st.composite
def scenarios(draw, wait_in_lock=False):
    """(programs, starts, nr_mutexes): 2-3 tasks; a task may start late, by another's SPAWN."""
    n = draw(st.integers(2, 3))
    nr_mutexes = draw(st.sampled_from([1, 1, 2]))
    starts = [True] + [draw(st.integers(0, 3)) > 0 for _ in range(n - 1)]
    late = [i for i in range(n) if not starts[i]]
    programs = []
    for i in range(n):
        ops: list[tuple[int, int, int]] = []
        heads = []  # where each block begins: a LOOP goes back to one
        for _ in range(draw(st.integers(1, 5))):
            heads.append(len(ops))
            ops += _block(draw, n, nr_mutexes, [t for t in late if t != i], wait_in_lock)
        if draw(st.integers(0, 2)) == 0:
            ops.append((OP_LOOP, draw(st.sampled_from(heads)), draw(st.integers(1, 3))))
        programs.append(ops)
    return programs, starts, nr_mutexes


@st.composite
def user_scenarios(draw):
    programs, starts, nr_mutexes = draw(scenarios())
    out = []
    for ops in programs:
        new = []
        for op, a, b in ops:
            if op == OP_RUN and draw(st.booleans()):
                op = OP_USER
            new.append((op, a, b))
        out.append(new)
    return out, starts, nr_mutexes


#: costs that reach the scheduler's scales (session ``onecpu``): the wake-up granularity
#: (1-2 ms at 1-2 CPUs), the tick (4 ms), the latency (6-12 ms), FIFO's 3 ms slice
BIG = (0, 1, PICKUP, 2_000, 400_000, 1_000_000, 1_000_001, 2_500_000, 4_000_000, 7_000_000)


@st.composite
def crowded_scenarios(draw, zero=False):
    """(programs, starts, nr_mutexes, nr_cpus): 2-4 tasks on fewer CPUs (1 or 2), so
    tasks wait in the run queue: runs and user steps long enough for wake-up preemption
    and the tick, ``cond_resched`` points, critical sections (a preemption point inside one
    - a nested lock's might_sleep - may leave the owner off its CPU), waits and wakes.

    ``zero`` (session ``xfix``, 2026-11-27): zero-length and 1 ns steps in about one draw
    in three, and a spawn followed by a user step the spawned task may interrupt at once
    (the example ``test_cosim_runq`` kept): many events at one instant, so a move between
    engines lands between a user step's start and its interrupt. Not the default: fewer
    long steps, fewer ticks and waiting tasks (``test_cosim_runq``'s guards)."""
    n = draw(st.integers(2, 4))
    nr_cpus = draw(st.sampled_from([1, 1, min(2, n - 1)]))
    nr_mutexes = draw(st.sampled_from([1, 1, 2]))
    starts = [True] + [draw(st.integers(0, 3)) > 0 for _ in range(n - 1)]
    late = [i for i in range(n) if not starts[i]]
    big = st.sampled_from(BIG)
    if zero:
        big = st.one_of(st.sampled_from((0, 0, 1)), big, big)
    programs = []
    for i in range(n):
        ops: list[tuple[int, int, int]] = []
        heads = []
        for _ in range(draw(st.integers(1, 5))):
            heads.append(len(ops))
            kinds = ["run", "user", "resched", "crit", "wait", "wake", "wake_user"]
            spawnable = [t for t in late if t != i]
            kind = draw(st.sampled_from(kinds + (["spawn"] if spawnable else [])))
            if kind == "run":
                ops.append((OP_RUN, draw(big), 0))
            elif kind == "user":
                ops.append((OP_USER, draw(big), 0))
            elif kind == "resched":
                ops += [(OP_RUN, draw(big), 0), (OP_RESCHED, 0, 0)]
            elif kind == "wait":
                ops.append((OP_WAIT, 0, 0))
            elif kind == "wake":
                ops.append((OP_WAKE, 0, 0))
            elif kind == "spawn":
                if not zero or draw(st.booleans()):
                    ops.append((OP_SPAWN, draw(st.sampled_from(spawnable)), 0))
                else:  # the example of 2026-11-27: the spawned task interrupts a user step
                    ops += [(OP_RUN, draw(st.sampled_from((1, PICKUP))), 0),
                            (OP_SPAWN, draw(st.sampled_from(spawnable)), 0),
                            (OP_RUN, 0, 0), (OP_USER, draw(big), 0)]  # fmt: skip
            elif kind == "wake_user":  # the woken task may interrupt the user step (S1)
                ops += [(OP_WAKE, 0, 0), (OP_USER, draw(big), 0)]
            else:
                m = draw(st.integers(0, nr_mutexes - 1))
                body = [(OP_RUN, draw(big), 0) for _ in range(draw(st.integers(0, 2)))]
                if nr_mutexes > 1 and draw(st.booleans()):
                    inner = 1 - m
                    body += [(OP_LOCK, inner, 0), (OP_RUN, draw(big), 0), (OP_UNLOCK, inner, 0)]
                ops += [(OP_LOCK, m, 0), *body, (OP_UNLOCK, m, 0)]
        if draw(st.integers(0, 2)) == 0:
            ops.append((OP_LOOP, draw(st.sampled_from(heads)), draw(st.integers(1, 3))))
        programs.append(ops)
    return programs, starts, nr_mutexes, nr_cpus


#: step lengths for ``picked_lock_scenarios``: ties, the pick-up and poll windows, a tick
PICKED = (0, 1, 50, POLL, PICKUP, 2 * PICKUP, 2_000, 400_000, 4_000_000)


@st.composite
def picked_lock_scenarios(draw):
    """(programs, starts, nr_mutexes, nr_cpus), session ``spinfix`` (2026-11-27): one or
    two tasks more than CPUs (1-2), all started at once. The first ``nr_cpus`` take the
    CPUs: a critical section or two (a short run first, or none), or a short run alone
    whose end releases its CPU (a pick). The others find no CPU and, their first op a LOCK
    (mostly), wait in the run queue *inside their lock* (``T_CONT`` = ``K_LOCK``; a nested
    lock's might_sleep point or a RESCHED queues a task with ``K_LOCK_TAKE`` or none). Once
    picked, the lock's rest may find the owner off its CPU (asleep in a WAIT, queued) or
    running while another task waits: a hand-back inside the continuation, which
    ``crowded_scenarios`` reaches about once in a thousand examples and these about once
    in ten (``test_cosim_runq``'s guard)."""
    nr_cpus = draw(st.sampled_from([1, 2, 2]))  # a spinner needs the owner on another CPU
    n = nr_cpus + draw(st.integers(1, 2))
    nr_mutexes = draw(st.sampled_from([1, 2]))
    step = st.sampled_from(PICKED)
    programs = []
    for i in range(n):
        ops: list[tuple[int, int, int]] = []
        if draw(st.integers(0, 3)) == 0:
            ops.append((OP_RUN, draw(step), 0))
        if i < nr_cpus and draw(st.integers(0, 2)) == 0:  # no lock: its end is a pick
            programs.append([*ops, (OP_RUN, draw(step), 0)])
            continue
        for _ in range(draw(st.integers(1, 2))):
            m = draw(st.integers(0, nr_mutexes - 1))
            body = [(OP_RUN, draw(step), 0)]
            kind = draw(st.sampled_from(["run", "wait", "wait", "nested", "resched"]))
            if kind == "wait":
                body.append((OP_WAIT, 0, 0))
            elif kind == "nested" and nr_mutexes > 1:
                body += [(OP_LOCK, 1 - m, 0), (OP_RUN, draw(step), 0), (OP_UNLOCK, 1 - m, 0)]
            elif kind == "resched":
                body.append((OP_RESCHED, 0, 0))
            ops += [(OP_LOCK, m, 0), *body, (OP_UNLOCK, m, 0)]
            if draw(st.booleans()):
                ops.append((OP_WAKE, 0, 0))
        programs.append(ops)
    return programs, [True] * n, nr_mutexes, nr_cpus


def programs_taking(counter: str) -> int:
    """Of 150 derandomized ``scenarios`` run on the core, how many took the shortcut whose
    count ``run_core`` reports in ``extra[counter]`` at least once (``resumed_now``,
    ``ran_over``): a guard that the properties drawing these programs exercise it."""
    seen = 0

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(scenarios())
    def probe(scenario):
        nonlocal seen
        programs, starts, nr_mutexes = scenario
        core = run_core(programs, len(programs), starts=starts, nr_mutexes=nr_mutexes)
        seen += core.extra[counter] > 0

    probe()
    return seen
