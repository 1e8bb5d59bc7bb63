"""An observer's event processed by the core itself (issue 9, session ``sampler``; PATHS.md
"The scenario runner's sampler on the core").

The scenario runner's ``Sampler`` (``scenario/sampler.py``) is a SimPy process that wakes
every ``interval`` ns: its ``ObserverTimeout`` is popped, its callback triggers the
sampler's ``any_of`` (scheduled NORMAL, delay 0: the next eid), that one popped resumes the
process, which reads the model and makes its next timeout (the next eid). Two queue rows,
two pops, two eids per sample; what the sample reads depends on where it falls among the
model's events. Both rows are stop rows on the core (``deadline.is_stop``,
``deadline.observed``), so the core stops just before one is popped (``HB_DEADLINE``),
with every task waiting on an event - SimPy's state just before its ``step`` pops it.

Instead of handing the queue back to SimPy for it (a hand-back per sample costs the thread
served to its next loop top, ~1 ms of host time, more than the samples' Python), the
event is processed *here*, as ``Environment.step`` would: popped off the core's heap
(``clk[C_NOW]`` its time, one more ``C_POPS``), its callbacks run with SimPy's clock at
that time and SimPy's eid counter at the core's (``C_EID``), and whatever they schedule -
the ``any_of``, the next ``ObserverTimeout``, or the run's until condition - goes into the
core's heap as a stop row with the eid SimPy gave it. The machines never leave the core;
the caller drives on (``driver/observe.py``). What the resumed observer reads must be the
model as the core holds it, not the Python objects folded at the call's entry: the caller
provides that view for the time of the call (``StreamCore.observed``).

Exact by construction: the same events popped in the same order at the same times, the
same eids given out, the observer's own code run unchanged. An event that is not an
observer's (an until event) is left at the head: the caller hands back as before.
"""

from __future__ import annotations

from itertools import count
from typing import TYPE_CHECKING

import numpy as np
from simpy.events import Process

from epcsim.fast.cosim.deadline import is_stop, observed, stop_row
from epcsim.fast.cosim.state import C_EID, C_NOW, C_POPS, C_QLEN, EV_STOP, H_PAYLOAD, H_TIME

if TYPE_CHECKING:
    from epcsim.fast.cosim.served import Served


def observe_head(sv: Served) -> bool:
    """If the head of the core's heap is an observer's stop row, process its event as
    SimPy's ``step`` would (module docstring) and return True; else change nothing."""
    st = sv.st
    clk = st.clk
    n = int(clk[C_QLEN])
    if n == 0:
        return False
    payload = int(st.heap[0, H_PAYLOAD])
    if payload & 15 != EV_STOP:
        return False
    ev = sv.stops[payload >> 16]
    if not observed(ev):
        return False
    env = sv.env
    if env._queue:
        raise RuntimeError("fast_core: SimPy's queue is not empty while the core runs")
    t = int(st.heap[0, H_TIME])
    rest = st.heap[1:n].copy()
    # ``Environment.step``: the pop, then the callbacks, at SimPy's clock and eid counter
    saved = env._now, env._active_proc
    env._now = t
    env._eid = count(int(clk[C_EID]))
    clk[C_NOW] = t
    clk[C_POPS] += 1
    callbacks, ev.callbacks = ev.callbacks, None
    sv.stops[payload >> 16] = None  # popped: no row names it any more
    try:
        for cb in callbacks:
            cb(ev)
    finally:
        env._now, env._active_proc = saved
    for *_key, e in env._queue:
        if isinstance(e, Process) and e._ok is False:
            # the observer raised (a Ctrl-C in the sampler's or the progress bar's Python):
            # SimPy fails its process and ``step`` raises the error when it pops that event;
            # the run is over either way, so it is raised here, as itself
            raise e._value
        if not is_stop(e):  # an observer only reads the model: a defect guard
            raise RuntimeError(f"fast_core: an observer scheduled {e!r}, not a stop row")
    new = [stop_row(sv, time, prio, eid, e) for time, prio, eid, e in env._queue]
    env._queue.clear()
    clk[C_EID] = next(env._eid)
    rows = sorted([(int(r[0]), int(r[1]), int(r[2])) for r in rest] + new)  # sorted: a valid heap
    if len(rows) > st.heap.shape[0]:
        raise RuntimeError("fast_core: the core's heap is full")
    if rows:
        st.heap[: len(rows)] = np.array(rows, np.int64)
    clk[C_QLEN] = len(rows)
    return True


__all__ = ["observe_head"]
