"""The run queue's leftmost task and the lazy tick (``engine/sched.py``'s ``CfsRunQueue``
``_rq[0]``/``tick_resched``, ``FifoRunQueue``'s), for ``runqueue.py`` and the parked flood.

Why a module of its own (session ``floodq``, 2026-11-27): the parked NOPAGE flood
(``flood_park.py`` and ``flood_decision.py``, restating ``fast/flood.py``) asks
``tick_resched`` *at a given instant* (``NopageFlood._resched_due(p, at)``:
``rq.tick_resched(thread, at=at)``, the queue as it is now), and the run queue calls the
flood's hooks (``Machine._rq_changed``, ``Machine._resched``'s parked case) - so
``runqueue.py`` imports ``flood_park.py``, and what both read lives here, below both: the
leftmost waiter, one CPU's share of the runnable tasks, and the tick's test. Moved from
``runqueue.py`` unchanged, but for ``tick_resched_at``'s ``at``.
"""

from __future__ import annotations

import numpy as np

from epcsim.engine.sched import SCHED_NR_LATENCY, TICK_NS
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.state import (
    C_FIFO_SCHED,
    C_FIFO_SLICE,
    C_LATENCY,
    C_MIN_GRAN,
    C_NONEMPTY_SINCE,
    C_RQ_LEN,
    T_RQ_SEQ,
    T_SLICE_START,
    T_VRUNTIME,
)

_TICK = np.int64(TICK_NS)
_NR_LATENCY = np.int64(SCHED_NR_LATENCY)


@core_jit
def leftmost(st):  # type: ignore[no-untyped-def]
    """The task the queue gives the next CPU (-1: empty): least ``(vruntime, seq)``
    (``CfsRunQueue._rq[0]``), or least ``seq`` (``FifoRunQueue._waiters[0]``)."""
    tasks = st.tasks
    fifo = st.clk[C_FIFO_SCHED] != 0
    best = -1
    for t in range(tasks.shape[0]):
        s = tasks[t, T_RQ_SEQ]
        if s <= 0:
            continue
        if best < 0:
            best = t
            continue
        b = tasks[best, T_RQ_SEQ]
        if fifo:
            if s < b:
                best = t
            continue
        v = tasks[t, T_VRUNTIME]
        bv = tasks[best, T_VRUNTIME]
        if v < bv or (v == bv and s < b):
            best = t
    return best


@core_jit
def nr_running_here(st, extra):  # type: ignore[no-untyped-def]
    """``CfsRunQueue._nr_running_here``: one CPU's share of the runnable tasks."""
    n = st.cpus.shape[0]
    return 1 + (st.clk[C_RQ_LEN] + extra + n - 1) // n


@core_jit
def tick_resched_at(st, t, at):  # type: ignore[no-untyped-def]
    """``CfsRunQueue.tick_resched(task, at=at)`` (``check_preempt_tick``, evaluated lazily
    at ``at`` with the queue as it is now) or ``FifoRunQueue.tick_resched`` (its fixed
    slice). ``runqueue.tick_resched`` is it at now."""
    clk = st.clk
    n = clk[C_RQ_LEN]
    if n == 0:
        return False
    tasks = st.tasks
    slice_start = tasks[t, T_SLICE_START]
    if clk[C_FIFO_SCHED] != 0:
        return at - slice_start >= clk[C_FIFO_SLICE]
    tick = at - at % _TICK
    if tick < clk[C_NONEMPTY_SINCE] or tick <= slice_start:
        return False
    nr = nr_running_here(st, np.int64(0))
    ideal = clk[C_LATENCY] // nr if nr <= _NR_LATENCY else clk[C_MIN_GRAN]
    delta = tick - slice_start
    if delta > ideal:
        return True
    if delta < clk[C_MIN_GRAN]:
        return False
    return tasks[t, T_VRUNTIME] + delta - tasks[leftmost(st), T_VRUNTIME] > ideal


__all__ = ["leftmost", "nr_running_here", "tick_resched_at"]
