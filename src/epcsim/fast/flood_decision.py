"""A parked retrier of the NOPAGE flood and its decision instants (``fast/flood.py``'s
deviation, ``System(nopage_flood="bulk")``; split from ``flood.py`` by session ``tidy``, no
code changed).

``_Park`` is one parked retrier; ``DecisionInstants`` (a mixin of ``NopageFlood``) finds the
instants at which a parked retry may differ - the ends of its retry cycles - and plans the
timers that resume it there: at the next tick that may set need_resched (``_plan_tick``) or
at the next decision instant at all (``_force``). Why a thread parks, what the instants are
and what is not the reference's: ``flood.py``'s docstring. The compiled core restates these
methods in ``cosim/flood_decision.py``, a function per method, named after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epcsim.engine.machine import Machine, Task


class _Park:
    """One parked retrier: its retry cycles end at ``base + j * period`` (j >= 1)."""

    __slots__ = (
        "base",
        "counted",
        "eresume_ns",
        "ev",
        "forced",
        "index",
        "lock",
        "lock_check",
        "period",
        "tcs_first",
        "thread",
        "tick_at",
        "touched",
    )

    def __init__(self, thread: Any, index: int, base: int, period: int):
        self.thread = thread
        self.index = index
        self.lock: Any = None  # encl->lock, which each retry takes (set by ``park``)
        self.base = base
        self.period = period
        self.counted = 0  # skipped retries already counted (``settle``)
        self.forced: int | None = None  # earliest decision instant it must resume at
        self.lock_check = -1  # decision instant at which encl->lock is checked
        self.tick_at = 0  # decision instant at which need_resched is checked next
        self.tcs_first = False  # the ERESUME of the cycle ending at the next decision fails
        self.ev: Any = None
        #: each cycle's ERESUME completes ``eresume_ns`` after the cycle starts (0: a TCS
        #: fault's retries, no ERESUME); ``touched``: the TCS Accessed bit is up to date to
        #: this instant (``tcs_accessed``)
        self.eresume_ns = 0
        self.touched = base


class DecisionInstants:
    """The decision instants and timers of ``NopageFlood``'s parked retriers (a mixin: the
    methods read the flood's ``m``, the machine, and ``parked``)."""

    m: Machine
    parked: dict[Task, _Park]

    def _next_decision(self, p: _Park, at: int) -> int:
        """The first decision instant at or after ``at`` (never the one the park began at)."""
        j = max(1, -(-(at - p.base) // p.period))
        return p.base + j * p.period

    def _timer(self, p: _Park, at: int) -> None:
        self.m.env.timeout(at - self.m.now).callbacks.append(self.timer_fire(p))

    def timer_fire(self, p: _Park) -> Callable[[object], None]:
        """``_timer``'s callback: ``p.ev`` succeeds if ``p`` is still parked and its event
        pending (a timer of an earlier park finds ``p`` gone: nothing). A factory, so the
        compiled core's move back builds the same callback for its queued timers, and
        tagged (``flood``: what it is for), so a move onto the core can read a queued one
        (``cosim/transfer_flood.py``)."""

        def fire(_e: object) -> None:
            if self.parked.get(p.thread) is p and p.ev is not None and not p.ev.triggered:
                p.ev.succeed()

        fire.flood = ("timer", p)  # type: ignore[attr-defined]  # (what the core reads)
        return fire

    def _resched_due(self, p: _Park, at: int) -> bool:
        """Would ``need_resched()`` be true at the decision instant ``at``?"""
        t = p.thread
        return bool(t._resched) or self.m.rq.tick_resched(t, at=at)

    def _plan_tick(self, p: _Park) -> None:
        """A timer at the next decision instant where a tick may set need_resched."""
        rq = self.m.rq
        c = self._next_decision(p, self.m.now)
        if not self._resched_due(p, c):
            c = self._next_decision(p, rq.next_tick(p.thread, at=c))
        p.tick_at = c
        self._timer(p, c)

    def _force(self, p: _Park) -> None:
        c = self._next_decision(p, self.m.now)
        if p.forced is None or c < p.forced:
            p.forced = c
            self._timer(p, c)


__all__ = ["DecisionInstants", "_Park"]
