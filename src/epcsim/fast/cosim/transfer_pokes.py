"""A spinner's queued timed pokes across a move (``LinuxMutex._poke``'s timeouts, each with
``partial(_fire, task, rec, gen)``): how ``to_core`` reads one as a core row, and the
stale ones past the core's horizon kept aside in Python (session ``pokes``).

**Why keep some aside.** With Linux's mutex and more threads than CPUs, each spinner arms
a poke at the next tick every time it re-checks while a task waits for a CPU, and a poke
stays queued until due, up to a tick (4 ms) ahead: at each move of row 10's group (200 us
slices) ~700 queued pokes at 16 threads (~270 at 64), almost all *stale* - armed for a
wait that is over, so ``_fire`` returns at once (``rec.gen != gen`` or ``rec`` not the
task's current record). Each crossed both ways every slice (read here, a heap row, then a
new event and a ``partial`` in ``to_simpy``): ~90% of a 16-thread slice's host time
(PATHS.md, session ``pokes``).

**What is kept aside, and why it is exact.** ``to_core`` leaves out of the core's heap
every stale poke whose key ``(time, priority, eid)`` is after the *horizon*: the key of
the first until event in the queue (``deadline.is_stop`` and not ``observed``; none, no
horizon, nothing kept aside). The core never pops an event after it: ``dispatch``
hands back (``HB_DEADLINE``) with that row at the head and never pops it, and every other
hand-back is earlier still; what the core reads of its heap besides popping is the head
(``queue.due_by``, ``peek``, ``dispatch``'s ``EV_STOP`` check, ``observe_head``) and the
length (``C_QLEN > 0``, the capacity): the until row is in the heap, so the head is the
same row with or without the kept entries (each orders after it), the length stays
positive, and a shorter heap only refuses less (``HB_QUEUE_FULL`` is a void run, not a
result). ``to_simpy`` pushes them back into ``env._queue`` with their own keys, so SimPy
pops them when and in the order it would have; eids are assigned at scheduling, so no
later event's eid changes either. A stale poke's firing changes nothing (``_fire``
returns before reading anything but ``rec``), so nothing SimPy does depends on *which*
no-op callback it holds - but a kept event must not keep its old ``rec``: a spin closed
by ``detach`` can leave a record with a pending ``ev`` and a matching ``gen``, where the
old callback would act (PATHS.md, session ``join``'s Left 1). So a poke set aside has its
callback replaced once by ``partial(_fire, task, STALE, -1)`` (``STALE``: a record no
task spins on, ``gen`` 0, never -1: a no-op forever), and a later move knows it by
identity (``Served.aside_t``, whose values hold the events alive, so no id is reused).

A live poke (the task's current wait, its ``gen``) always goes to the core, as do stale
pokes at or before the horizon: the core pops those, and a popped event counts
(``C_POPS``) and is seen by ``due_by`` - the reference's same-instant checks
(``_fire``'s ``env.peek() > env.now``) depend on it.

Why a module of its own: ``_poke_of`` was split from ``transfer_to_core.py`` by session
``pokes`` when that passed 500 lines (no code changed); the pokes kept aside are the same
concept, both directions here.
"""

from __future__ import annotations

from functools import partial
from heapq import heapify
from typing import Any

from epcsim.engine.machine import Task
from epcsim.engine.mutex import LinuxMutex, _Spinner
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import EV_POKE, KEY_SHIFT


def _poke_of(
    ev: Any,
    tix: dict[Task, int],
    mix: dict[Any, int],
    spin: dict[int, tuple[int, _Spinner, int, int]],
) -> tuple[int, int, int] | None:
    """A queued timed poke (``LinuxMutex._poke``'s ``partial(_fire, task, rec, gen)``) as
    ``(EV_POKE, task, gen)``; a poke of a wait that is no longer the task's current one
    gets gen -1, which no wait has (*stale*: ``_fire`` returns at once)."""
    cbs = ev.callbacks
    if cbs is None or len(cbs) != 1 or not isinstance(cbs[0], partial):
        return None
    fn: Any = cbs[0].func  # a bound ``LinuxMutex._fire``
    if getattr(fn, "__func__", None) is not LinuxMutex._fire or fn.__self__ not in mix:
        return None
    task, rec, gen = cbs[0].args
    t = tix.get(task)
    if t is None:
        return None
    cur = spin.get(t)
    # the current wait is the record's last (``rec.gen`` only grows): an earlier gen of the
    # same record is as stale as another record's (session ``pokes``)
    live = cur is not None and cur[1] is rec and gen == rec.gen
    return (EV_POKE, t, int(gen) if live else -1)


#: the record of a poke set aside (module docstring): no task spins on it, and its ``gen``
#: (0) is never a stale poke's -1, so ``_fire`` returns at once
STALE = _Spinner(True)

#: ``(time, priority, eid, event)``: a SimPy queue entry
Entry = tuple[Any, Any, int, Any]


def split(sv: Served, queue: list[Any]) -> tuple[list[Entry], list[Entry]]:
    """SimPy's queue as (the entries ``to_core`` reads, the pokes the last move set aside):
    those known by identity (``Served.aside_ids``), read no further."""
    ids = sv.aside_ids
    if not ids:
        return queue, []
    rest = [e for e in queue if id(e[3]) not in ids]
    if len(rest) == len(queue):
        return rest, []
    return rest, [e for e in queue if id(e[3]) in ids]


def set_aside(
    kept: list[Entry],
    stale: list[tuple[Entry, int]],
    horizon: tuple[Any, Any, int] | None,
    rows: list[Any],
    tix: dict[Task, int],
) -> tuple[list[Entry], list[Entry]]:
    """The stale pokes after ``horizon`` (module docstring) - ``kept`` (set aside by the
    last move) and ``stale`` (met now, with their task rows) - as (the kept ones still
    aside, the new ones to set aside); every other appended to ``rows`` as the core's
    ``(EV_POKE, task, -1)``."""
    if horizon is None:
        back = kept
        kept = []
        new: list[Entry] = []
    else:
        # an entry orders after ``horizon`` iff its first three fields do (eids are unique)
        back = [e for e in kept if e <= horizon]
        kept = [e for e in kept if e > horizon] if back else kept
        new = [e for e, _ in stale if e > horizon]
        if len(new) == len(stale):
            stale = []
    for e in back:
        t = tix[e[3].callbacks[0].args[0]]  # the task of a kept poke (``keep``'s partial)
        rows.append((int(e[0]), (int(e[1]) << KEY_SHIFT) | int(e[2]), _stale_payload(t)))
    for e, t in stale:
        if horizon is None or e <= horizon:
            rows.append((int(e[0]), (int(e[1]) << KEY_SHIFT) | int(e[2]), _stale_payload(t)))
    return kept, new


def _stale_payload(t: int) -> int:
    """The core's row payload of a stale poke of task ``t``: gen -1, no wait's."""
    return EV_POKE | (t << 4) | (-1 << 16)


def keep(sv: Served, kept: list[Entry], new: list[Entry]) -> None:
    """``to_core``, once everything is known: the pokes set aside held for ``to_simpy``,
    the ``new`` ones' callbacks replaced by the ``STALE`` one (module docstring)."""
    for e in new:
        cbs = e[3].callbacks
        cb = cbs[0]
        cbs[0] = partial(cb.func, cb.args[0], STALE, -1)
    aside = kept + new if new else kept
    sv.aside = aside
    sv.aside_ids = {id(e[3]) for e in aside}
    sv.aside_out = True


def put_back(sv: Served, heap: list[Any]) -> None:
    """``to_simpy``: the pokes set aside into SimPy's queue again, with their own keys
    (``Served.aside`` still holds them, so their ids stay theirs for the next move)."""
    if sv.aside_out:
        sv.aside_out = False
        if sv.aside:
            heap.extend(sv.aside)
            heapify(heap)


__all__ = ["STALE", "_poke_of", "keep", "put_back", "set_aside", "split"]
