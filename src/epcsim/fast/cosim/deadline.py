"""A ``System.run(until=)`` deadline on the compiled core (issue 9 row 10, session
``deadline``; PATHS.md "The regime", "A deadline inside the call").

``simpy.Environment.run(until=t)`` makes an *until event*: an ``Event``, already ok, whose
only callback is ``StopSimulation.callback``, scheduled at ``t`` with priority URGENT and
the next eid. SimPy orders its queue by ``(time, priority, eid)``, so the until event comes
after every event before ``t`` and after an URGENT event at ``t`` scheduled before it (a
process's Initialize), and before every NORMAL event at ``t`` (timeouts, ``succeed``) and
anything scheduled after it; when ``step`` pops it, ``StopSimulation`` ends ``run`` with
``env.now == t`` and every later event still queued. The reference's tasks therefore run
exactly the events before it, and the fast engine's elision sees it too: a step ending at
or after ``t`` is a timeout, not elided (``Task.run`` reads ``env._queue[0]``).

On the core it is one more row of the heap (``state.EV_STOP``, with its own time, priority
and eid), so the order and the elision (``queue.due_by``) stay SimPy's without a special
case; only ``dispatch.next_resume`` knows it: it never pops it, and with it at the head it
hands back (``HB_DEADLINE``) - every task is then waiting on an event, none is in the
middle of a resumption, the state is SimPy's just before its ``step`` pops the until event.
The event object is kept in ``Served.stops`` (the row's argument is its index) and goes
back into SimPy's queue with its eid at ``transfer_to_simpy.to_simpy``, where SimPy pops it.

Only until events are taken (``is_stop``): any other event the core does not know still
keeps it out (``to_core`` refuses). The same rule would serve any event that only stops
the run; an event that resumes a task the core does not hold would also be exact to stop
before, but needs the regime's checks to hold until it (not done: row 10's one thread
needs the until event only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.core import StopSimulation

from epcsim.fast.cosim.state import C_QLEN, EV_STOP, KEY_SHIFT

if TYPE_CHECKING:
    from epcsim.fast.cosim.served import Served


def is_stop(ev: Any) -> bool:
    """``ev`` is a run's until event: its only callback stops the simulation."""
    cbs = getattr(ev, "callbacks", None)
    return cbs is not None and len(cbs) == 1 and cbs[0] == StopSimulation.callback


def only_stops(queue: list[Any]) -> bool:
    """SimPy's queue holds nothing but until events (or nothing)."""
    return all(is_stop(e[3]) for e in queue)


def stop_row(sv: Served, time: float, prio: int, eid: int, ev: Any) -> tuple[int, int, int]:
    """The heap row of until event ``ev`` (queued at ``(time, prio, eid)``), kept in
    ``sv.stops`` for ``to_simpy`` to queue again."""
    sv.stops.append(ev)
    arg = len(sv.stops) - 1
    return (int(time), (int(prio) << KEY_SHIFT) | int(eid), EV_STOP | (arg << 16))


def take_stops(sv: Served) -> None:
    """Move SimPy's queue - until events only (``only_stops``, checked by the caller) - into
    the core's empty heap: the entry from ksgxd asleep (``Session.begin``), whose core is
    built with an empty queue (``engine_state.take_engine``)."""
    env = sv.env
    st = sv.st
    assert int(st.clk[C_QLEN]) == 0
    sv.stops = []
    rows = sorted(stop_row(sv, t, p, e, ev) for t, p, e, ev in env._queue)
    if not rows:
        return
    st.heap[: len(rows)] = np.array(rows, np.int64)  # sorted: a valid heap
    st.clk[C_QLEN] = len(rows)
    env._queue.clear()


__all__ = ["is_stop", "only_stops", "stop_row", "take_stops"]
