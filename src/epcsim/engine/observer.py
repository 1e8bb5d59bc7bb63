"""A timeout that wakes only an observer of the model (issue 9, session ``sampler``).

The scenario runner samples the model's counters with a SimPy process
(``scenario/sampler.py``) and may cut the run with a ``duration`` timeout
(``scenario/runner.execute``). Neither changes the model: the sampler only reads state (and
calls the CLI's progress display), the duration timeout only ends ``env.run``. Their
timeouts are ``ObserverTimeout``s - a plain SimPy ``Timeout`` (same time, priority NORMAL,
the next eid: the queue's order is unchanged) whose type says so - so the compiled core can
hold them as stop rows and hand back just before one is popped, as it does before a
``System.run(until=)`` deadline (``fast/cosim/deadline.py``, PATHS.md "The scenario
runner's sampler on the core"). Stopping before an event is exact whatever the event does,
provided the core's regime holds up to it; what must hold for this type is only that the
event's processing does not change the model, so that the regime checked when the core is
entered again at the thread's next loop top sees the state the reference sees.

Use it only for such events: a timeout whose callbacks resume a model task or touch the
model's state must stay a plain ``Timeout`` (the core then declines while it is queued).
"""

from __future__ import annotations

import weakref
from typing import Any

from simpy.events import Process, Timeout

#: processes registered by ``observer``: they only read the model when resumed
_OBSERVERS: weakref.WeakSet[Process] = weakref.WeakSet()


class ObserverTimeout(Timeout):
    """``env.timeout(delay)`` for an observer's wake-up or the run's end (module
    docstring); the reference engine treats it as any ``Timeout``."""


def observer(proc: Process) -> Process:
    """Register ``proc`` as an observer's process (the ``Sampler``'s): resuming it only
    reads the model. Returns ``proc``."""
    _OBSERVERS.add(proc)
    return proc


def resumes_observer(cb: Any) -> bool:
    """``cb`` (an event's callback) resumes a registered observer's process."""
    return getattr(cb, "__func__", None) is Process._resume and cb.__self__ in _OBSERVERS


__all__ = ["ObserverTimeout", "observer", "resumes_observer"]
