"""``LinuxMutex._lock_slow`` whole: the sleeping half (``engine/mutex.py``; session
``runq64``, PATHS.md "Several threads on the core", N5), with ``clk[C_MANY]``.

Without ``C_MANY`` the core's slow path is the optimistic spin only and hands back where a
contender would sleep (``HB_MUTEX_SLEEP``, ``mutex.lock_take``). With more tasks than
CPUs a contender sleeps: its owner is off its CPU (preempted at a preemption point, or
waiting for one), or it needs to reschedule. The reference's generator, step by step
(each a phase ``T_LS``, ``state.LS_*``, the contender's mutex in ``T_LS_M``, when its
acquisition began in ``T_LOCK_T0``):

* ``contended += 1``; ``_can_spin`` (the owner on a CPU and no need_resched) -> the OSQ
  spin (``LS_SPIN``, ``spin.py``): the lock (done) or ``False``;
* ``LS_AFTER_SPIN``: ``need_resched`` -> ``_schedule`` (``runqueue.yield_cpu``; the task
  may wait for a CPU, going on here once picked: ``K_LSLOW``);
* ``LS_SCHED1``: the trylock under ``wait_lock`` (``waitlist.take``: a steal when a waiter
  is first), else onto the wait list's tail, then the loop:
* asleep (``LS_SLEEP``, ``TS_LSLEEP``; ``T_WEV`` is ``w.ev``: pending, triggered by
  ``wake``), its wake-up taking a CPU (``Task.sleep``'s tail; ``LS_WCPU``: ``w.ev = None``),
  ``run(mutex_wakeup)`` (``LS_WRUN``): handed to it? free (take it)? the first waiter
  sets HANDOFF (``handoff_flag``) and spins if it can (``LS_WSPIN``: ``spin.py``, not on
  the OSQ, picking a handed lock up ``mutex_pickup`` after the HANDOFF);
  ``LS_AFTER_WSPIN``: ``need_resched`` -> ``_schedule``; ``LS_SCHED2``: handed? free?
  else asleep again;
* the end: off the wait list, ``wait_ns``.

``unlock`` (``mutex.py``) with waiters is ``_unlock``'s: with HANDOFF set straight to the
first waiter (``handoffs``, ``_handed_at``), else free and the first waiter woken
(``wake``: its event if it sleeps, a poke if it spins), and the OSQ head poked.

``go`` returns R_OK when the task owns the lock and is ready (its machine goes on at its
pc), R_BLOCKED when it waits for an event (``dispatch.next_resume`` calls ``go`` again at
it), R_STOP when the core handed back (a full heap or trace: a void run).
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.flood_park import lock_taken
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.poke import poke
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.runqueue import need_resched, yield_cpu
from epcsim.fast.cosim.spin import spin_start
from epcsim.fast.cosim.state import (
    C_FL_PARKED,
    C_HB,
    C_NOW,
    C_WAKEUP_NS,
    EV_RESUME,
    K_LSLOW,
    LS_AFTER_SPIN,
    LS_AFTER_WSPIN,
    LS_SCHED1,
    LS_SCHED2,
    LS_SLEEP,
    LS_SPIN,
    LS_WCPU,
    LS_WRUN,
    LS_WSPIN,
    M_CONTENDED,
    M_HANDOFF,
    M_OWNER,
    M_WAIT_NS,
    NORMAL,
    R_BLOCKED,
    R_FAIL,
    R_OK,
    R_STOP,
    SE_PENDING,
    SE_TRIGGERED,
    T_CPU,
    T_LOCK_T0,
    T_LS,
    T_LS_M,
    T_SPIN_M,
    T_STATE,
    T_WEV,
    TR_HANDOFF,
    TR_HANDOFF_FLAG,
    TR_SLEEP,
    TR_WAKE,
    TS_LSLEEP,
    TS_READY,
)
from epcsim.fast.cosim.task import acquire_cpu, release_cpu, run
from epcsim.fast.cosim.trace import log
from epcsim.fast.cosim.waitlist import append, remove, take


@core_jit(inline="always")
def _can_spin(st, t, m):  # type: ignore[no-untyped-def]
    """``LinuxMutex._can_spin``: the owner runs on a CPU and ``t`` need not reschedule."""
    owner = st.mtx[m, M_OWNER]
    return owner >= 0 and st.tasks[owner, T_CPU] >= 0 and not need_resched(st, t)


@core_jit
def slow(st, t, m):  # type: ignore[no-untyped-def]
    """``_lock_slow`` entered: counted contended, the OSQ spin if ``_can_spin``, else (or
    after a failed spin) ``go``. ``m`` is held by another task, or free: a parked retrier's
    decision found it released at this very instant after its retry (``mutex.lock_take``
    asked ``came_first``), the reference's ``late`` case - it spins if it need not
    reschedule, whoever owns the lock, and takes it ``mutex_pickup`` after the release."""
    tasks = st.tasks
    st.mtx[m, M_CONTENDED] += 1
    tasks[t, T_LOCK_T0] = st.clk[C_NOW]
    tasks[t, T_LS_M] = m
    late = st.mtx[m, M_OWNER] < 0
    if (not need_resched(st, t)) if late else _can_spin(st, t, m):
        tasks[t, T_LS] = LS_SPIN
        r = spin_start(st, t, m)
        if r != R_FAIL:
            return r
    tasks[t, T_LS] = LS_AFTER_SPIN
    return go(st, t)


@core_jit
def _done(st, t, m):  # type: ignore[no-untyped-def]
    """The end of ``_lock_slow``: off the wait list (if on it), ``wait_ns``; R_OK."""
    tasks = st.tasks
    if tasks[t, T_LS] >= LS_SLEEP:
        remove(st, t, m)
    tasks[t, T_LS] = 0
    tasks[t, T_LS_M] = -1
    st.mtx[m, M_WAIT_NS] += st.clk[C_NOW] - tasks[t, T_LOCK_T0]
    tasks[t, T_STATE] = TS_READY
    if st.clk[C_FL_PARKED] > 0:
        lock_taken(st, m)  # Task.lock's hook, once ``_lock_slow`` returned (fast/flood.py)
    return R_OK


@core_jit(inline="always")
def _got(st, t, m):  # type: ignore[no-untyped-def]
    """The wait loop's two ways out, after the wake-up's run and after its spin: the lock
    handed off to ``t`` while it slept (``handoff`` traced), or free (``take``: a steal if
    another waiter is first). True when ``t`` owns ``m`` now; False, nothing written."""
    owner = st.mtx[m, M_OWNER]
    if owner == t:
        log(st, np.int64(TR_HANDOFF), t, m)
        return True
    if owner < 0:
        take(st, t, m)
        return True
    return False


@core_jit
def _sleep(st, t, m):  # type: ignore[no-untyped-def]
    """One sleep of the loop: ``w.ev`` a new pending event, ``sleep`` traced, the CPU
    released (``Task.sleep``); R_BLOCKED until ``wake`` succeeds the event."""
    tasks = st.tasks
    tasks[t, T_WEV] = SE_PENDING
    log(st, np.int64(TR_SLEEP), t, m)
    tasks[t, T_LS] = LS_SLEEP
    release_cpu(st, t)
    tasks[t, T_STATE] = TS_LSLEEP
    if st.clk[C_HB] != 0:
        return R_STOP
    return R_BLOCKED


@core_jit
def go(st, t):  # type: ignore[no-untyped-def]
    """``_lock_slow`` from ``t``'s phase ``T_LS`` (module docstring): R_OK (owns the lock,
    ready), R_BLOCKED, R_STOP."""
    tasks = st.tasks
    mtx = st.mtx
    m = tasks[t, T_LS_M]
    while True:
        ph = tasks[t, T_LS]
        if st.clk[C_HB] != 0:
            return R_STOP
        if ph in (LS_AFTER_SPIN, LS_AFTER_WSPIN):
            # after the OSQ spin (before the trylock) or the first waiter's spin (before the
            # checks again): ``if need_resched() _schedule()``
            tasks[t, T_LS] = LS_SCHED1 if ph == LS_AFTER_SPIN else LS_SCHED2
            if need_resched(st, t):
                r = yield_cpu(st, t, np.int64(K_LSLOW), np.int64(0))
                if r != R_OK:
                    return r
            continue
        if ph == LS_SCHED1:
            if mtx[m, M_OWNER] < 0:  # the trylock under wait_lock
                take(st, t, m)
                return _done(st, t, m)
            append(st, t, m)
            return _sleep(st, t, m)
        if ph == LS_SLEEP:
            # its wake-up processed: ``Task.sleep``'s tail takes a CPU
            tasks[t, T_LS] = LS_WCPU
            r = acquire_cpu(st, t, np.int64(K_LSLOW), np.int64(0))
            if r != R_OK:
                return r
            continue
        if ph == LS_WCPU:
            tasks[t, T_WEV] = 0  # ``w.ev = None``
            tasks[t, T_LS] = LS_WRUN
            tasks[t, T_STATE] = TS_READY
            r = run(st, t, st.clk[C_WAKEUP_NS])
            if r != R_OK:
                return r
            continue
        if ph == LS_WRUN:
            tasks[t, T_STATE] = TS_READY
            if _got(st, t, m):
                return _done(st, t, m)
            first = st.wl[m, 0] == t
            if first and mtx[m, M_HANDOFF] == 0:
                mtx[m, M_HANDOFF] = 1
                log(st, np.int64(TR_HANDOFF_FLAG), t, m)
            tasks[t, T_LS] = LS_AFTER_WSPIN
            if first and _can_spin(st, t, m):
                tasks[t, T_LS] = LS_WSPIN
                r = spin_start(st, t, m)
                if r != R_FAIL:
                    return r  # R_OK: ``spin.spin_got`` ended the slow path
                tasks[t, T_LS] = LS_AFTER_WSPIN
            continue
        # LS_SCHED2
        tasks[t, T_STATE] = TS_READY
        if _got(st, t, m):
            return _done(st, t, m)
        return _sleep(st, t, m)


@core_jit
def after_spin(st, t):  # type: ignore[no-untyped-def]
    """A spin returned False (``spin.spin_fail``): the slow path goes on after the OSQ spin
    or the first waiter's spin."""
    tasks = st.tasks
    if tasks[t, T_LS] == LS_WSPIN:
        tasks[t, T_LS] = LS_AFTER_WSPIN
    else:
        tasks[t, T_LS] = LS_AFTER_SPIN
    return go(st, t)


@core_jit
def wake(st, w, m, pickup):  # type: ignore[no-untyped-def]
    """``LinuxMutex._wake`` of waiter ``w``: its event succeeds now if it sleeps (``wake``
    traced; nothing if already woken), a poke ``pickup`` later if it spins. False if the
    heap is full."""
    tasks = st.tasks
    if tasks[w, T_WEV] != 0:
        if tasks[w, T_WEV] == SE_PENDING:
            log(st, np.int64(TR_WAKE), w, m)
            tasks[w, T_WEV] = SE_TRIGGERED
            return schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), w, np.int64(0))
    elif tasks[w, T_SPIN_M] >= 0:
        poke(st, w, pickup)
    return st.clk[C_HB] == 0


__all__ = ["after_spin", "go", "slow", "wake"]
