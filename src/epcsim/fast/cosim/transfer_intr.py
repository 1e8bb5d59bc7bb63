"""A user step interrupted by a wake-up preemption, moved between SimPy and the core (session
``cmany``; issue 9 row 10, PATHS.md "What is built: N6 ... (session ``n6user``)", Left
item 1).

``Machine._resched`` of a task in ``run_user`` interrupts its process: SimPy queues an
``Interruption`` (URGENT, its own eid) and, when that pops, removes the process's callback
from the step's timeout, which stays queued doing nothing until its time. The core has
both (``runqueue.interrupt``): an ``EV_INTR`` row, and the step's ``EV_RESUME`` row turned
``EV_END`` with the argument ``state.DEAD``. Until this session neither move carried them
(``to_simpy`` raised on ``TS_INTR`` or a dead row; ``to_core`` refused a preempted step).
Now, both ways:

* core -> SimPy (``to_simpy``): a ``TS_INTR`` task's process is ``run_user`` re-entered
  (``moved``: its ``t0``) waiting on its current step's dead timeout - the ``DEAD`` row of
  the greatest eid of that task - and the ``EV_INTR`` row becomes an ``Interruption`` of
  that process (``interruption``): popped, it takes the callback off and throws
  ``Interrupt`` into ``run_user``, whose ``except`` charges the time run and schedules,
  as SimPy's. Every ``DEAD`` row is an event nobody waits on (``dead_event``).
* SimPy -> core (``to_core``): a process in ``run_user`` whose task's ``_user_proc`` is
  no longer it, with its ``Interruption`` queued: ``TS_INTR``, ``T_USER_T0`` its ``t0``,
  the ``Interruption`` an ``EV_INTR`` row and its step's timeout a ``DEAD`` row. A queued
  event with no callback, ok and held by nothing but SimPy's queue (``is_dead``: a
  step's timeout after its ``Interruption`` popped) is a ``DEAD`` row too: popped, it
  does nothing either way; held by anyone else it could be waited on later, so the move
  is refused.

With ``C_MANY`` a machine takes the interruption itself: on the core from ``EV_INTR``
(``T_INTR`` 1: its ``cond_resched`` request, ``dispatch``), served from ``run_user``'s
answer (``served.user_ran``: ``T_INTR`` ``INTR_SERVED``, the ns run, ``_schedule`` done by
SimPy). A user step moved back to SimPy, interrupted or under way, is ``user_step``: the
re-entered ``run_user``, then ``user_ran`` as ``Served.serve`` does after a request.
"""

from __future__ import annotations

from typing import Any

from simpy.events import Event, Interruption, Process
from simpy.exceptions import Interrupt

from epcsim.engine.machine import Gen
from epcsim.fast.cosim.served import user_ran


def dead_event(env: Any) -> Event:
    """An interrupted user step's timeout (a ``DEAD`` row): triggered, no callback; SimPy
    pops it doing nothing."""
    ev = Event(env)
    ev._ok = True
    ev._value = None
    return ev


def interruption(env: Any, proc: Any) -> Interruption:
    """``proc.interrupt("resched")``'s event (``Machine._resched``), built without being
    scheduled: ``to_simpy`` queues it with the core's eid (``EV_INTR``)."""
    ev = Interruption.__new__(Interruption)
    ev.env = env
    ev.callbacks = [ev._interrupt]
    ev._value = Interrupt("resched")
    ev._ok = False
    ev._defused = True
    ev.process = proc
    return ev


def user_step(sv: Any, t: int, gen: Gen, ns: int) -> Gen:
    """Task ``t``'s user step of ``ns`` re-entered in SimPy (``gen``: ``run_user`` with
    ``moved``), then what ``Served.serve`` does after a served ``run_user`` (module
    docstring)."""
    ran = yield from gen
    user_ran(sv.st.tasks, sv.st.clk, t, ns, ran)
    return ran


def is_dead(ev: Any, held: int) -> bool:
    """``ev`` (a queued event) is an interrupted user step's timeout: ok, no callback
    (``Interruption._interrupt`` removed the process's) and held by SimPy's queue alone
    (``held``: its references beyond the scan's own, ``sys.getrefcount`` against a probe's
    in the same loop), so nothing can wait on it later (module docstring)."""
    return held <= 0 and ev.callbacks == [] and ev._ok and not isinstance(ev, Process)


__all__ = ["dead_event", "interruption", "is_dead", "user_step"]
