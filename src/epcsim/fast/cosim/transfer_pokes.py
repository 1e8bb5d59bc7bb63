"""A spinner's queued timed pokes across a move (``LinuxMutex._poke``'s timeouts, each with
``partial(_fire, task, rec, gen)``): how ``to_core`` reads one as a core row.

Why a module of its own: split from ``transfer_to_core.py`` by session ``pokes`` when it
passed 500 lines (no code changed), before the pokes a move need not carry were kept
aside here.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from epcsim.engine.machine import Task
from epcsim.engine.mutex import LinuxMutex, _Spinner
from epcsim.fast.cosim.state import EV_POKE


def _poke_of(
    ev: Any,
    tix: dict[Task, int],
    mix: dict[Any, int],
    spin: dict[int, tuple[int, _Spinner, int, int]],
) -> tuple[int, int, int] | None:
    """A queued timed poke (``LinuxMutex._poke``'s ``partial(_fire, task, rec, gen)``) as
    ``(EV_POKE, task, gen)``; a poke of a wait that is no longer the task's current one
    gets gen -1, which no wait has."""
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
    return (EV_POKE, t, int(gen) if cur is not None and cur[1] is rec else -1)


__all__ = ["_poke_of"]
