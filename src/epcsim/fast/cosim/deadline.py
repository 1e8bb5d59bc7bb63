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

Only until events and observers' events are taken (``is_stop``): any other event the core
does not know still keeps it out (``to_core`` refuses). An observer's event (``observed``,
session ``sampler``: the scenario runner's ``Sampler`` wake-up - an
``engine.observer.ObserverTimeout`` - and the ``any_of`` that resumes it, and the runner's
``duration`` timeout) resumes a process the core does not hold, but one that only reads
the model: the core processes it itself, in Python, at its own clock and eids, and drives
on (``cosim/observe.py``, ``driver/observe.py``). A run's until condition
(``any_of([done, duration])`` once triggered) is an until event. An event that resumes a
model task the core does not hold would also be exact to stop before, but needs the
regime's checks to hold until it (not done).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.core import StopSimulation
from simpy.events import Condition

from epcsim.engine.observer import ObserverTimeout, resumes_observer
from epcsim.fast.cosim.state import C_QLEN, EV_STOP, KEY_SHIFT

if TYPE_CHECKING:
    from epcsim.fast.cosim.served import Served


def is_stop(ev: Any) -> bool:
    """``ev`` is a run's until event (its only callback stops the simulation), or an
    observer's event (``observed``)."""
    cbs = getattr(ev, "callbacks", None)
    if cbs is None:
        return False
    if len(cbs) == 1 and cbs[0] == StopSimulation.callback:
        return True
    return observed(ev) or _until_condition(ev, cbs)


def observed(ev: Any) -> bool:
    """``ev`` is an observer's pending event (session ``sampler``): an ``ObserverTimeout``
    (the scenario runner's ``Sampler`` wake-up, its ``duration``), or a condition whose
    processing builds its value and resumes only registered observers' processes (the
    ``Sampler``'s ``any_of``). The core processes it itself, in Python, at its own clock
    and eids (``cosim/observe.py``): nothing it runs changes the model."""
    cbs = getattr(ev, "callbacks", None)
    if cbs is None:
        return False
    if type(ev) is ObserverTimeout:
        return True
    return (
        isinstance(ev, Condition)
        and len(cbs) >= 2
        and cbs[0] == ev._build_value
        and all(resumes_observer(cb) for cb in cbs[1:])
    )


def _until_condition(ev: Any, cbs: list[Any]) -> bool:
    """A condition passed as ``run(until=)`` (the runner's ``any_of([done, duration])``),
    triggered: processing it builds its value and stops the simulation."""
    return (
        isinstance(ev, Condition)
        and len(cbs) == 2
        and cbs[0] == ev._build_value
        and cbs[1] == StopSimulation.callback
    )


def only_stops(queue: list[Any], also: Any = None) -> bool:
    """SimPy's queue holds nothing but until events (or nothing) - and events ``also``
    accepts: the parked flood's timers (``transfer_flood.is_flood_timer``, session
    ``uflood``), which ``take_stops`` takes in too."""
    return all(is_stop(e[3]) or (also is not None and also(e[3])) for e in queue)


def stop_row(sv: Served, time: float, prio: int, eid: int, ev: Any) -> tuple[int, int, int]:
    """The heap row of until event ``ev`` (queued at ``(time, prio, eid)``), kept in
    ``sv.stops`` for ``to_simpy`` to queue again."""
    sv.stops.append(ev)
    arg = len(sv.stops) - 1
    return (int(time), (int(prio) << KEY_SHIFT) | int(eid), EV_STOP | (arg << 16))


def take_stops(sv: Served, flood: Any = None) -> None:
    """Move SimPy's queue - until events only (``only_stops``, checked by the caller), and
    with ``flood`` (``NopageFlood``) its timers (``transfer_flood.flood_row``) - into the
    core's empty heap: the entry from ksgxd asleep (``Session.begin``), whose core is
    built with an empty queue (``engine_state.take_engine``)."""
    from epcsim.fast.cosim.transfer_flood import flood_row

    env = sv.env
    st = sv.st
    assert int(st.clk[C_QLEN]) == 0
    sv.stops = []
    tix = {task: i for i, task in enumerate(sv.tasks)}
    mix = {mx: i for i, mx in enumerate(sv.mutexes)}
    rows = []
    for t, p, e, ev in env._queue:
        if is_stop(ev):
            rows.append(stop_row(sv, t, p, e, ev))
            continue
        kind, task, arg = flood_row(sv, flood, ev, tix, mix)  # (``only_stops``' ``also``)
        rows.append((int(t), (int(p) << KEY_SHIFT) | int(e), kind | (task << 4) | (arg << 16)))
    rows.sort()
    if not rows:
        return
    st.heap[: len(rows)] = np.array(rows, np.int64)  # sorted: a valid heap
    st.clk[C_QLEN] = len(rows)
    env._queue.clear()


__all__ = ["is_stop", "observed", "only_stops", "stop_row", "take_stops"]
