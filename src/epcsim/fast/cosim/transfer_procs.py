"""The SimPy processes ``to_simpy`` (``transfer_to_simpy.py``) builds, re-points or resumes
when it moves the core's tasks back: a ``Process`` waiting on its task's event without an
Initialize (``_process``), a finished one (``_finished``), an own process
(``Served.serve_own``) re-pointed at its new serving generator (``_repoint``) or ended
(``_end_own``), and a hand-back's own process whose machine stopped for good, resumed at
once (``_stopped_now``, with ``_returns`` and ``_processed``).

Why a module of its own: split from ``transfer_to_simpy.py`` by session ``many64`` when it
passed 500 lines; no code changed. The move's reading of the core's arrays is there, the
SimPy and CPython internals of a process (``transfer.py``'s docstring) here.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simpy.events import PENDING, Event, Process

from epcsim.fast.cosim.served import Served


def _triggered(env: Any) -> Event:
    ev = Event(env)
    ev._ok = True
    ev._value = None
    return ev


def _process(env: Any, gen: Generator[Any, Any, None], target: Event, primed: bool) -> Process:
    """A ``Process`` waiting on ``target``, built without its Initialize event (which would
    take an eid and a pop the reference does not have). ``primed``: ``gen`` has run to
    its first ``yield`` (of ``target``) already."""
    proc = Process.__new__(Process)
    proc.env = env
    proc.callbacks = []
    proc._value = PENDING
    proc._generator = gen
    proc._target = target
    target.callbacks.append(proc._resume)
    return proc


def _repoint(sv: Served, t: int, gen: Generator[Any, Any, None], ev: Event) -> None:
    """Task ``t``'s own process (``Served.serve_own``, parked by ``to_core``) waits on
    ``ev`` again, driving ``gen`` (its new serving generator, run to its first ``yield``
    of ``ev``): the same ``Process``, no Initialize, no eid."""
    proc = sv.procs[t]
    sv.own[t] = gen
    proc._target = ev
    ev.callbacks.append(proc._resume)
    sv.repointed += 1


def _end_own(sv: Served, t: int, queued: bool) -> Process:
    """Task ``t``'s own process whose machine ended on the core (``RQ_EXIT``): its
    serving generator returned there, so the process's code after ``serve_own`` runs now
    - it must return at once, as it would have at that instant (nothing else ran in it:
    an enclave thread's machine never ends on the core, N6) - and the process is the one
    finished, queued (``EV_END``) or already processed by the core."""
    proc = sv.procs[t]
    env = sv.env
    env._active_proc = proc
    try:
        proc._generator.send(None)
    except StopIteration as stop:
        value = stop.args[0] if stop.args else None
    else:
        raise RuntimeError(f"task {t}: its own process goes on after its machine ended")
    finally:
        env._active_proc = None
    if not queued:
        if proc.callbacks:
            raise RuntimeError(f"task {t}: its own process's end, waited on, processed on the core")
        proc.callbacks = None  # type: ignore[assignment]
    proc._ok = True
    proc._value = value
    proc._target = None
    sv.own_ended += 1
    return proc


def _returns(value: Any) -> Generator[Any, Any, Any]:
    """A serving generator that has nothing left to serve: sent to, it returns ``value``
    (a finished generator re-sent would raise a ``StopIteration`` without it)."""
    return value
    yield  # a generator


def _processed(env: Any) -> Event:
    """An event SimPy has processed already (ok, no value, callbacks None): a process
    yielding it, or resumed with it, goes on at once."""
    ev = _triggered(env)
    ev.callbacks = None  # type: ignore[assignment]
    return ev


def _stopped_now(
    sv: Served, h: int, inline: int, value: Any
) -> tuple[Generator[Any, Any, Any], Event] | None:
    """The hand-back's task ``h``, whose serving generator returned ``value`` in its
    resumption (``on_stop`` returned: an enclave thread's machine at a stop it cannot
    pass, PATHS.md N6 item 2's last part, session ``n6user``): its own process's Python
    code after ``serve_own`` runs now, at the instant and before the next event, as the
    reference runs it at that event. The driver (``inline``) gets back a serving generator
    returning ``value`` and a processed event, which its trampoline yields and goes on from
    at once; a parked own process is resumed now (``Process._resume``'s body, with a
    processed event), ``env.active_process`` given back to the driver after (``_resume``
    leaves it None). A task served in a process of ``Served``'s own (not its own code)
    has nothing to go on with: a defect guard."""
    env = sv.env
    sv.own_stops += 1
    if h == inline:
        sv.procs[h] = env.active_process
        sv.inline_handbacks += 1
        return _returns(value), _processed(env)
    if sv.own[h] is None:
        raise RuntimeError(f"task {h}: its serving generator returned at the hand-back")
    proc = sv.procs[h]
    sv.own[h] = _returns(value)
    active = env._active_proc
    try:
        proc._resume(_processed(env))
    finally:
        env._active_proc = active
    return None


def _finished(env: Any, queued: bool) -> Process:
    """A process whose generator has returned: its own event triggered, and still to be
    processed (``queued``: callbacks, nobody's) or processed (callbacks None)."""
    proc = Process.__new__(Process)
    proc.env = env
    proc.callbacks = [] if queued else None  # type: ignore[assignment]
    proc._ok = True
    proc._value = None
    return proc


__all__ = [
    "_end_own",
    "_finished",
    "_process",
    "_processed",
    "_repoint",
    "_returns",
    "_stopped_now",
    "_triggered",
]
