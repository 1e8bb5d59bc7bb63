"""The moves of ``LinuxMutex``'s sleeping half (``engine/mutex.py`` ``_sleeping``; the core's
``mutex_sleep.py``, ``clk[C_MANY]``), both ways (issue 9 row 10, session ``linuxmx``;
PATHS.md "What is built: Linux's mutex with more threads than CPUs on the user path").

With more tasks than CPUs a contender of ``encl->lock`` sleeps on the wait list, and the
core keeps where it is in ``_lock_slow`` as a phase (``T_LS``, ``state.LS_*``), its mutex
(``T_LS_M``), when its acquisition began (``T_LOCK_T0``) and its ``w.ev`` (``T_WEV``); the
wait list's order is ``wl``, HANDOFF ``M_HANDOFF``. The reference keeps the same as
``_sleeping``'s local ``at`` (``mutex.AFTER_SPIN`` ... ``SCHED2``), its ``t0`` and ``w``,
``mx._waiters`` and ``mx.handoff``. Each phase the core can wait in, and what it is on
each side:

=========================  ===========================  ===================================
core (``T_STATE``/``T_LS``)  reference (``_sleeping``)    ``to_simpy`` builds
=========================  ===========================  ===================================
``TS_LSLEEP``/``LS_SLEEP``  ``at`` ASLEEP, in            ``_sleeping(.., ASLEEP, w)``,
(``T_WEV`` pending, or      ``Task.sleep``'s wait on     ``w.ev`` the task's event
triggered: the wake-up      ``w.ev``
queued)
``TS_RUNQ``/``LS_WCPU``     ``acquire_cpu`` in           ``_picked`` then
(``K_LSLOW``)               ``Task.sleep``               ``_sleeping(.., WOKEN, w)``,
                                                         ``w.ev`` a processed event
``TS_RUN``/``LS_WRUN``      ``at`` WAKEUP, in            ``_sleeping(.., WAKEUP, w, ev)``
                            ``run(mutex_wakeup)``
``TS_SPIN``/``LS_WSPIN``    ``at`` WSPIN, in ``_spin``   ``_sleeping(.., WSPIN, w,
                            (a non-OSQ ``_Spinner``)     (rec, spin t0))``
``TS_RUNQ``/``LS_SCHED1``,  ``at`` SCHED1/SCHED2, in     ``_picked`` then
``LS_SCHED2`` (``K_LSLOW``)  ``_schedule``                ``_sleeping(.., SCHED1/2, w)``
``TS_SPIN``/``LS_SPIN``     ``_spin`` in ``_lock_slow``  ``_lock_slow``'s ``moved`` (as
                            (the OSQ spin)               before: ``transfer_to_simpy``)
=========================  ===========================  ===================================

A task picked from the run queue with its event queued is ``_picked``'s too. What is
read back and refused (``to_core`` answers False, nothing moved): a ``_sleeping`` frame
at a phase or in a frame the table does not name, a waiter whose ``w.ev`` is not the event
its process waits on, a waiter that is not a moved task (``transfer_to_core``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from simpy.events import Event

from epcsim.engine import mutex as MX
from epcsim.engine.machine import Gen, Task
from epcsim.engine.mutex import LinuxMutex, _Spinner, _Waiter
from epcsim.fast.cosim.frames import RUN as _RUN
from epcsim.fast.cosim.frames import SLEEP as _SLEEP
from epcsim.fast.cosim.frames import SLEEPING as _SLEEPING
from epcsim.fast.cosim.frames import SPIN as _SPIN
from epcsim.fast.cosim.request import RQ_LOCK
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    LS_SCHED1,
    LS_SCHED2,
    LS_SLEEP,
    LS_SPIN,
    LS_WCPU,
    LS_WRUN,
    LS_WSPIN,
    M_HANDOFF,
    M_WAITERS,
    SE_PENDING,
    SE_TRIGGERED,
    T_LOCK_T0,
    T_LS,
    T_LS_M,
    T_RQ,
    T_RQ_A,
    T_SPIN_T0,
    T_STATE,
    T_WEV,
    TS_LSLEEP,
    TS_RUN,
    TS_RUNQ,
    TS_SPIN,
)
from epcsim.fast.cosim.transfer_procs import _processed

#: the core's phase a ``TS_RUNQ`` row continues at (``K_LSLOW``) -> ``_sleeping``'s ``at``
_AT = {LS_WCPU: MX.WOKEN, LS_SCHED1: MX.SCHED1, LS_SCHED2: MX.SCHED2}
#: ``_sleeping``'s ``at`` while it waits in ``_schedule`` -> the core's phase after it
_SCHED_LS = {MX.SCHED1: LS_SCHED1, MX.SCHED2: LS_SCHED2}

#: what ``read`` answers: ``(T_STATE, T_LS, T_LS_M, T_LOCK_T0, T_WEV)``
LSlow = tuple[int, int, int, int, int]


# -- core -> SimPy -------------------------------------------------------------------------
def waiters(sv: Served, target: dict[int, Event]) -> dict[int, _Waiter]:
    """Each ``LinuxMutex``'s HANDOFF and wait list from the core (``M_HANDOFF``, ``wl``'s
    order), a ``_Waiter`` per sleeping contender; ``w.ev`` is the task's event while it
    sleeps (``TS_LSLEEP``), a processed event once woken and waiting for a CPU
    (``T_WEV`` triggered), else None. Returns them by task."""
    st = sv.st
    tasks = st.tasks
    out: dict[int, _Waiter] = {}
    for i, mx in enumerate(sv.mutexes):
        if not isinstance(mx, LinuxMutex):
            continue
        mx.handoff = bool(st.mtx[i, M_HANDOFF])
        n = int(st.mtx[i, M_WAITERS])
        for t in st.wl[i, :n].tolist():
            w = _Waiter(sv.tasks[t])
            if int(tasks[t, T_STATE]) == TS_LSLEEP:
                w.ev = target[t]
            elif int(tasks[t, T_WEV]) == SE_TRIGGERED:
                w.ev = _processed(sv.env)
            out[t] = w
        mx._waiters = deque(out[t] for t in st.wl[i, :n].tolist())
    return out


def osq(sv: Served, t: int) -> bool:
    """Whether spinner ``t``'s ``_Spinner`` is an OSQ one (not the first waiter's spin)."""
    return int(sv.st.tasks[t, T_LS]) != LS_WSPIN


def sleeping(
    sv: Served, t: int, ev: Event, ws: dict[int, _Waiter], rec: _Spinner | None
) -> Gen | None:
    """Task ``t``'s rest of ``_lock_slow`` from its phase, waiting on ``ev`` (the table's
    ``TS_LSLEEP``, ``LS_WRUN`` and ``LS_WSPIN`` rows), or None if it is at none of them."""
    tasks = sv.st.tasks
    ls = int(tasks[t, T_LS])
    s = int(tasks[t, T_STATE])
    if ls == 0 or ls == LS_SPIN or s == TS_RUNQ:
        return None  # not in the sleeping half, the OSQ spin, or ``_picked``'s
    mi = int(tasks[t, T_LS_M])
    mx = sv.mutexes[mi]
    assert isinstance(mx, LinuxMutex)
    task = sv.tasks[t]
    t0 = int(tasks[t, T_LOCK_T0])
    w = ws[t]
    tasks[t, T_RQ] = RQ_LOCK
    tasks[t, T_RQ_A] = mi
    if s == TS_LSLEEP and ls == LS_SLEEP:
        return mx._sleeping(task, t0, MX.ASLEEP, w)
    if s == TS_RUN and ls == LS_WRUN:
        return mx._sleeping(task, t0, MX.WAKEUP, w, ev)
    if s == TS_SPIN and ls == LS_WSPIN:
        assert rec is not None
        return mx._sleeping(task, t0, MX.WSPIN, w, (rec, int(tasks[t, T_SPIN_T0])))
    raise RuntimeError(f"to_simpy: task {t} in _lock_slow's phase {ls}, state {s}")


def picked(sv: Served, t: int) -> tuple[LinuxMutex, int, int, _Waiter | None]:
    """A ``K_LSLOW`` row's rest, read when ``_picked`` is built: the mutex, ``_sleeping``'s
    phase after the CPU is taken (``_AT``), ``t0`` and the task's waiter (None before the
    wait list: ``LS_SCHED1``)."""
    tasks = sv.st.tasks
    mx = sv.mutexes[int(tasks[t, T_LS_M])]
    assert isinstance(mx, LinuxMutex)
    at = _AT[int(tasks[t, T_LS])]
    task = sv.tasks[t]
    w = next((x for x in mx._waiters if x.task is task), None)
    if (w is None) != (at == MX.SCHED1):
        raise RuntimeError(f"to_simpy: task {t} picked in _lock_slow, its waiter {w}")
    return mx, at, int(tasks[t, T_LOCK_T0]), w


def after_pick(task: Task, rest: tuple[LinuxMutex, int, int, _Waiter | None]) -> Gen:
    """``_picked``'s continuation ``K_LSLOW``: ``_sleeping`` from ``picked``'s phase."""
    mx, at, t0, w = rest
    yield from mx._sleeping(task, t0, at, w)


# -- SimPy -> core -------------------------------------------------------------------------
def _chain(gen: Any) -> list[Any]:
    chain = []
    while gen is not None:
        chain.append(gen)
        gen = getattr(gen, "gi_yieldfrom", None)
    return chain


def _sleeping_frame(
    chain: list[Any], mix: dict[Any, int]
) -> tuple[int, dict[str, Any], int, int, int] | None:
    """``_sleeping``'s frame in ``chain``: its index, its locals, the mutex's index in
    ``mix``, its phase ``at`` and ``t0``; None when ``chain`` has no such frame or its mutex
    is not one the move carries (both readers refuse then)."""
    for k, g in enumerate(chain):
        if g.gi_code is _SLEEPING:
            loc = dict(g.gi_frame.f_locals)
            mi = mix.get(loc["self"])
            if mi is None:
                return None
            return k, loc, mi, loc["at"], int(loc["t0"])
    return None


def read(gen: Any, mix: dict[Any, int], target: Any) -> tuple[LSlow, Any] | None:
    """A task waiting inside ``_sleeping`` on ``target`` (not for a CPU: ``cpu_wait``),
    as ``(T_STATE, T_LS, T_LS_M, T_LOCK_T0, T_WEV)`` and its ``_Spinner`` (``LS_WSPIN``,
    else None); None where the table has no row for it (refused)."""
    chain = _chain(gen)
    found = _sleeping_frame(chain, mix)
    if found is None:
        return None
    k, loc, mi, at, t0 = found
    mx = loc["self"]
    w = loc["w"]
    inner = chain[-1].gi_code
    below = chain[k + 1].gi_code if k + 1 < len(chain) else None
    if at == MX.ASLEEP and below is _SLEEP and inner is _SLEEP:
        if w is None or w.ev is not target:
            return None
        wev = SE_TRIGGERED if target.triggered else SE_PENDING
        return (TS_LSLEEP, LS_SLEEP, mi, t0, wev), None
    if at == MX.WAKEUP and (inner is _RUN or (below is None and inner is _SLEEPING)):
        return (TS_RUN, LS_WRUN, mi, t0, 0), None
    if at == MX.WSPIN and below is _SPIN and inner is _SPIN:
        task = w.task if w is not None else None
        rec = mx._spin_ev.get(task)
        if rec is None or rec.osq or rec.ev is not target:
            return None
        return (TS_SPIN, LS_WSPIN, mi, t0, 0), rec
    return None


def cpu_wait(chain: list[Any], mix: dict[Any, int]) -> tuple[int, int, int] | None:
    """A task waiting for a CPU inside ``_sleeping`` (``acquire_cpu`` in its
    ``Task.sleep``: woken, ``LS_WCPU``; ``_schedule``: ``LS_SCHED1``/``LS_SCHED2``), as
    ``(T_LS, T_LS_M, T_LOCK_T0)``; None if ``chain`` is not in ``_sleeping`` or is at
    another point (refused)."""
    found = _sleeping_frame(chain, mix)
    if found is None:
        return None
    _, loc, mi, at, t0 = found
    if at == MX.ASLEEP:
        w = loc["w"]
        if w is None or w.ev is None or not w.ev.triggered:
            return None
        return LS_WCPU, mi, t0
    ls = _SCHED_LS.get(at)
    return None if ls is None else (ls, mi, t0)


def picked_wait(loc: dict[str, Any], mix: dict[Any, int]) -> tuple[int, int, int] | None:
    """``_picked``'s ``K_LSLOW`` rest (its local ``ls``, ``picked``'s answer) as
    ``cpu_wait``'s ``(T_LS, T_LS_M, T_LOCK_T0)``."""
    rest = loc.get("ls")
    if rest is None:
        return None
    mx, at, t0, _w = rest
    mi = mix.get(mx)
    phase = {v: k for k, v in _AT.items()}.get(at)
    return None if mi is None or phase is None else (phase, mi, int(t0))


def osq_spin(many: bool, mi: int) -> LSlow:
    """An OSQ spinner's row (``_lock_slow``'s ``_spin``): ``LS_SPIN`` with ``C_MANY`` (its
    failed spin goes on in ``mutex_sleep.go``), else none (the core hands back there)."""
    return (TS_SPIN, LS_SPIN if many else 0, mi if many else -1, 0, 0)


__all__ = [
    "after_pick", "cpu_wait", "osq", "osq_spin", "picked", "picked_wait", "read", "sleeping",
    "waiters",
]  # fmt: skip
