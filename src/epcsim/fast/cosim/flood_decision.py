"""A parked row's decision instants and timers on the core: ``fast/flood_decision.py``
restated over the core's arrays (split from ``flood_park.py`` by session ``tidy``, no code
changed).

Each function restates the ``DecisionInstants`` method it is named after (the first
decision instant at or after an instant, a timer there, the tick that may set need_resched,
a forced resume), plus the walk of ``NopageFlood.parked`` in its order (``next_parked``)
and ``_Park.ev``'s ``succeed`` (``trigger``). The timers are ``EV_FLOOD`` events whose
argument's low two bits are their kind (``FL_TIMER``, ``FL_CHAIN``, ``FL_ERESUME``) and the
rest their datum; ``flood_park.fire`` is their callback. The state and the parking itself:
``flood_park.py``'s docstring.
"""

from __future__ import annotations

import numpy as np

from epcsim.engine.sched import TICK_NS
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.rq_tick import tick_resched_at
from epcsim.fast.cosim.state import (
    C_FIFO_SCHED,
    C_FIFO_SLICE,
    C_NOW,
    EV_FLOOD,
    EV_RESUME,
    NORMAL,
    SE_TRIGGERED,
    T_FL,
    T_FL_BASE,
    T_FL_EV,
    T_FL_FORCED,
    T_FL_GEN,
    T_FL_PERIOD,
    T_FL_SEQ,
    T_FL_TICK_AT,
    T_RESCHED,
    T_SLICE_START,
)

FL_TIMER = 0  #: ``EV_FLOOD``'s arg: a row's ``_timer`` (datum: its park's ``T_FL_GEN``)
FL_CHAIN = 1  #: a hold's ``_chain`` look (the event's task field is the mutex; datum: hold)
#: ``_tcs_zapped``'s ``eresume_ends``: the cycle's ERESUME ends (datum: the park's gen)
FL_ERESUME = 2
_TICK = np.int64(TICK_NS)


@core_jit(inline="always")
def next_decision(tasks, t, at):  # type: ignore[no-untyped-def]
    """``_next_decision``: the first decision instant at or after ``at`` (never the one the
    park began at)."""
    base = tasks[t, T_FL_BASE]
    period = tasks[t, T_FL_PERIOD]
    j = -(-(at - base) // period)
    if j < 1:
        j = 1
    return base + j * period


@core_jit
def next_parked(tasks, after_seq):  # type: ignore[no-untyped-def]
    """The parked row next in ``NopageFlood.parked``'s order after the one whose
    ``T_FL_SEQ`` is ``after_seq`` (-1: the first), or -1: how ``for p in parked.values()``
    walks the dict (a row parked again is re-inserted at its end)."""
    best = -1
    best_seq = 0
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0:
            s = tasks[r, T_FL_SEQ]
            if s > after_seq and (best < 0 or s < best_seq):
                best = r
                best_seq = s
    return best


@core_jit
def timer(st, t, at):  # type: ignore[no-untyped-def]
    """``_timer``: a timeout at ``at`` whose callback succeeds row ``t``'s ``_Park.ev``
    if that park is still on and its event pending (``fire``)."""
    gen = st.tasks[t, T_FL_GEN]
    schedule(
        st, at - st.clk[C_NOW], np.int64(NORMAL), np.int64(EV_FLOOD), t,
        np.int64(FL_TIMER) | (gen << 2),
    )  # fmt: skip


@core_jit
def trigger(st, t):  # type: ignore[no-untyped-def]
    """``p.ev.succeed()``: the parked row resumes at an ``EV_RESUME`` now."""
    st.tasks[t, T_FL_EV] = SE_TRIGGERED
    schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), t, np.int64(0))


@core_jit
def next_tick(st, t, at):  # type: ignore[no-untyped-def]
    """``rq.next_tick(thread, at=at)``: CFS's next tick after ``at``, or the FIFO policy's
    ``max(at + 1, slice_start + sched_slice_ns)``."""
    clk = st.clk
    if clk[C_FIFO_SCHED] != 0:
        return max(at + 1, st.tasks[t, T_SLICE_START] + clk[C_FIFO_SLICE])
    return at - at % _TICK + _TICK


@core_jit
def resched_due(st, t, at):  # type: ignore[no-untyped-def]
    """``_resched_due``: would ``need_resched()`` be true at the decision instant ``at``?
    The flag, or the tick evaluated at ``at`` with the run queue as it is now."""
    return st.tasks[t, T_RESCHED] != 0 or tick_resched_at(st, t, at)


@core_jit
def plan_tick(st, t):  # type: ignore[no-untyped-def]
    """``_plan_tick``: a timer at the next decision instant where a tick may set
    need_resched."""
    tasks = st.tasks
    c = next_decision(tasks, t, st.clk[C_NOW])
    if not resched_due(st, t, c):
        c = next_decision(tasks, t, next_tick(st, t, c))
    tasks[t, T_FL_TICK_AT] = c
    timer(st, t, c)


@core_jit
def force(st, t):  # type: ignore[no-untyped-def]
    """``_force``: row ``t`` resumes at its next decision instant."""
    tasks = st.tasks
    c = next_decision(tasks, t, st.clk[C_NOW])
    f = tasks[t, T_FL_FORCED]
    if f < 0 or c < f:
        tasks[t, T_FL_FORCED] = c
        timer(st, t, c)


__all__ = [
    "FL_CHAIN",
    "FL_ERESUME",
    "FL_TIMER",
    "force",
    "next_decision",
    "next_parked",
    "next_tick",
    "plan_tick",
    "resched_due",
    "timer",
    "trigger",
]
