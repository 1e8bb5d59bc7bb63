"""Optimistic spinning on a mutex (``mutex_optimistic_spin``, ``LinuxMutex._spin``).

The reference's spinner is a generator that waits on an event, re-checks the lock when it
is poked, and waits again. Here the spinner is a task in state ``TS_SPIN`` and its wait is
three columns: ``T_SPIN_EV`` (none / pending / triggered), ``T_SPIN_GEN`` (the wait's
number, ``_Spinner.gen``) and ``T_SPIN_M``. A poke is either an immediate ``succeed`` (an
``EV_RESUME`` now) or a timeout whose callback is ``fire`` (an ``EV_POKE`` carrying the
gen it was armed for). ``T_SPIN_GEN`` is never reset: a new spin's first wait takes a new
number, so a poke armed during an earlier spin never matches, as the reference's pokes of
an earlier ``_Spinner`` find its event triggered.

Regime without ``clk[C_MANY]``: only OSQ spinners (a contender that never slept) exist,
nobody waits on the wait list, and ``need_resched`` is false (every runnable task has its
own CPU, so no tick and no wake-up preemption). A spinner whose owner has left its CPU
would stop spinning and sleep: the core hands back (``HB_MUTEX_SLEEP``) at that re-check
instead, before the spinner gives up, so the reference resumes it at that re-check.

With ``clk[C_MANY]`` (session ``runq64``: more tasks than CPUs) the whole ``_spin``: a
spinner leaves on need_resched (set by a wake-up preemption or the tick, evaluated at
each re-check) or when the owner left its CPU (``spin_fail``: ``R_FAIL``, the slow path
goes on, ``mutex_sleep.py``); while a task waits for a CPU each wait also ends at the
next tick (``runqueue.next_tick``); the first waiter spins too (``T_LS`` =
``LS_WSPIN``: not on the OSQ), and picks a lock handed to it up ``mutex_pickup`` after
the HANDOFF.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.flood_park import free_since as flood_free_since
from epcsim.fast.cosim.flood_park import lock_taken
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.poke import poke
from epcsim.fast.cosim.queue import due_by, schedule
from epcsim.fast.cosim.runqueue import need_resched, next_tick, resched_clear
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_EID,
    C_FL_PARKED,
    C_MANY,
    C_NOW,
    C_PICKUP,
    C_POPS,
    C_QLEN,
    C_RESUMED_NOW,
    C_RQ_LEN,
    C_SPIN_SEQ,
    EV_RESUME,
    HB_MUTEX_SLEEP,
    LS_WSPIN,
    M_FREE_SINCE,
    M_HANDED_AT,
    M_OSQ_LEN,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_WAIT_NS,
    NORMAL,
    R_BLOCKED,
    R_FAIL,
    R_OK,
    SE_NONE,
    SE_PENDING,
    SE_TRIGGERED,
    T_BUSY,
    T_CPU,
    T_LOCK_T0,
    T_LS,
    T_LS_M,
    T_SPIN_EV,
    T_SPIN_GEN,
    T_SPIN_M,
    T_SPIN_SEQ,
    T_SPIN_T0,
    T_STATE,
    TR_HANDOFF,
    TR_SPIN,
    TR_SPIN_ACQUIRE,
    TR_SPIN_FAIL,
    TS_READY,
    TS_SPIN,
)
from epcsim.fast.cosim.trace import log
from epcsim.fast.cosim.waitlist import remove, take

#: ``rearm``'s answers: the poke is stale (a past wait's, or the wait triggered already)
FIRE_STALE = 0
#: the wait re-armed (a new gen, maybe a poke at the next tick): nobody resumed
FIRE_REARMED = 1
#: the wait succeeds with nothing else due at this instant (``resume_now``'s case)
FIRE_NOW = 2
#: the wait succeeds with another event due at this instant (its wake-up is queued)
FIRE_QUEUED = 3


@core_jit(inline="always")
def rearm(st, t, gen):  # type: ignore[no-untyped-def]
    """``LinuxMutex._fire``'s decision for ``t``'s poke of wait ``gen`` (``FIRE_*``),
    and the re-arm when that is the decision: when nothing else is due at this instant,
    need_resched is clear and the re-check would only wait again (the lock held by a
    running task, or ``t`` an OSQ spinner not at its head), the wait is re-armed (a new
    gen, and a poke at the next tick while a task waits for a CPU) without resuming the
    spinner; otherwise the wait succeeds, and nothing is written (but ``need_resched``'s
    own flag, set once its tick says so, as any later test at this instant would set it).
    Apart from ``fire`` so that ``run_over.over_pokes`` fires only the pokes that resume
    nobody (session ``row1keep``)."""
    tasks = st.tasks
    if tasks[t, T_SPIN_GEN] != gen or tasks[t, T_SPIN_EV] != SE_PENDING:
        return FIRE_STALE
    if due_by(st, st.clk[C_NOW]):
        return FIRE_QUEUED
    if resched_clear(st, t) or not need_resched(st, t):
        m = tasks[t, T_SPIN_M]
        owner = st.mtx[m, M_OWNER]
        osq = tasks[t, T_LS] != LS_WSPIN
        if (osq and st.osq[m, 0] != t) or (owner >= 0 and owner != t and tasks[owner, T_CPU] >= 0):
            tasks[t, T_SPIN_GEN] = gen + 1
            if st.clk[C_RQ_LEN] != 0:
                poke(st, t, next_tick(st, t) - st.clk[C_NOW])
            return FIRE_REARMED
    return FIRE_NOW


@core_jit
def fire(st, t, gen):  # type: ignore[no-untyped-def]
    """``LinuxMutex._fire``: a timed poke is due. Only the wait it was armed for counts;
    ``rearm`` decides (and re-arms).

    Returns True when the caller must resume the spinner *now*, its event already counted
    as popped (``resume_now``), False otherwise (nothing to do, or its event queued)."""
    k = rearm(st, t, gen)
    if k < FIRE_NOW:  # stale, or re-armed: nobody resumed
        return False
    st.tasks[t, T_SPIN_EV] = SE_TRIGGERED
    if k == FIRE_NOW and resume_now(st):
        return True
    schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), t, np.int64(0))
    return False


@core_jit(inline="always")
def resume_now(st):  # type: ignore[no-untyped-def]
    """The wait's ``succeed`` and its event's pop as one step, when nothing else is due at
    this instant (the caller checked ``due_by(now)`` false; issue 9 session ``fault3``).

    Why exact: the event ``succeed`` schedules is ``(now, NORMAL, eid)`` with a new eid,
    and every queued event is later than now, so SimPy's next pop is this event (time,
    then priority, then eid: ``queue.py``) - no other event, and so no other task, runs
    between the two. The core takes the eid (``C_EID``) and counts the pop (``C_POPS``)
    exactly as ``schedule`` and ``pop`` would, and the clock stays at now. Not taken when
    the pop would not happen at once: ``next_resume``'s budget would stop the core before
    it (``HB_BUDGET``, the event must then be in the queue that is handed back), or the
    heap is full (``schedule`` hands back ``HB_QUEUE_FULL``). A deadline (``EV_STOP``) or
    an observer's event at now is due, so the caller never gets here then.
    ``tests/fast/test_resume_now.py`` runs the core's programs with and without it."""
    clk = st.clk
    if clk[C_BUDGET] > 0 and clk[C_POPS] >= clk[C_BUDGET]:
        return False
    if clk[C_QLEN] >= st.heap.shape[0]:
        return False
    clk[C_EID] += 1
    clk[C_POPS] += 1
    clk[C_RESUMED_NOW] += 1
    return True


@core_jit
def spin_start(st, t, m):  # type: ignore[no-untyped-def]
    """``_spin`` entered from the slow path: join the OSQ's tail (not the first waiter's
    spin, ``T_LS`` = ``LS_WSPIN``) and make the first check."""
    tasks = st.tasks
    mtx = st.mtx
    if tasks[t, T_LS] != LS_WSPIN:
        n = mtx[m, M_OSQ_LEN]
        st.osq[m, n] = t
        mtx[m, M_OSQ_LEN] = n + 1
    clk = st.clk
    tasks[t, T_SPIN_M] = m
    tasks[t, T_SPIN_SEQ] = clk[C_SPIN_SEQ]
    clk[C_SPIN_SEQ] += 1
    tasks[t, T_SPIN_EV] = SE_NONE
    tasks[t, T_SPIN_T0] = clk[C_NOW]
    tasks[t, T_STATE] = TS_SPIN
    log(st, np.int64(TR_SPIN), t, m)
    return spin_check(st, t)


@core_jit
def spin_check(st, t):  # type: ignore[no-untyped-def]
    """One pass of ``_spin``'s loop: take a lock left free for ``mutex_pickup``, or a lock
    handed to this waiter ``mutex_pickup`` after the HANDOFF (R_OK: the task owns it and
    is ready), or wait again (R_BLOCKED, with a timed poke when the lock is free or handed
    but not yet for long enough, or at the next tick while a task waits for a CPU), or
    stop: need_resched, or the owner left its CPU (``R_FAIL`` with ``C_MANY``, else the
    latter hands back)."""
    tasks = st.tasks
    mtx = st.mtx
    clk = st.clk
    now = clk[C_NOW]
    m = tasks[t, T_SPIN_M]
    if not resched_clear(st, t) and need_resched(st, t):
        return spin_fail(st, t)
    owner = mtx[m, M_OWNER]
    waiter = tasks[t, T_LS] == LS_WSPIN
    wake_at = -1
    if not waiter and st.osq[m, 0] != t:
        pass  # queued on the OSQ behind another spinner
    elif owner == t:  # handed to this waiter (HANDOFF): picked up after mutex_pickup
        handed = mtx[m, M_HANDED_AT]
        pickup = clk[C_PICKUP]
        if now - handed >= pickup:
            log(st, np.int64(TR_HANDOFF), t, m)
            spin_end(st, t)
            return spin_got(st, t, m)
        wake_at = handed + pickup
    elif owner < 0:
        pickup = clk[C_PICKUP]
        free_since = mtx[m, M_FREE_SINCE]
        if clk[C_FL_PARKED] > 0:
            # parked NOPAGE retriers take and release the lock at their retries'
            # instants too (``NopageFlood.free_since``; cosim/flood_park.py)
            free_since = flood_free_since(st, m, free_since, now)
        if now - free_since >= pickup:
            take(st, t, m)  # ``_take``: a steal if a waiter is first on the wait list
            mtx[m, M_SPIN_ACQUIRED] += 1
            log(st, np.int64(TR_SPIN_ACQUIRE), t, m)
            spin_end(st, t)
            return spin_got(st, t, m)
        wake_at = free_since + pickup
    elif tasks[owner, T_CPU] < 0:
        if clk[C_MANY] == 0:
            return hand_back(st, np.int64(HB_MUTEX_SLEEP), t)
        return spin_fail(st, t)
    if clk[C_RQ_LEN] != 0:  # ``m.rq.waiting()``: the spinner watches the tick
        tick = next_tick(st, t)
        wake_at = tick if wake_at < 0 else min(wake_at, tick)
    tasks[t, T_SPIN_EV] = SE_PENDING
    tasks[t, T_SPIN_GEN] += 1
    if wake_at >= 0:
        poke(st, t, wake_at - now)
    return R_BLOCKED


@core_jit
def spin_got(st, t, m):  # type: ignore[no-untyped-def]
    """``_lock_slow`` after a spin that got the lock: ``wait_ns`` (and the first waiter
    leaves the wait list, ``_waiters.remove(w)``); the task is ready, R_OK."""
    tasks = st.tasks
    if tasks[t, T_LS] == LS_WSPIN:
        remove(st, t, m)
    tasks[t, T_LS] = 0
    tasks[t, T_LS_M] = -1
    st.mtx[m, M_WAIT_NS] += st.clk[C_NOW] - tasks[t, T_LOCK_T0]
    tasks[t, T_STATE] = TS_READY
    if st.clk[C_FL_PARKED] > 0:
        lock_taken(st, m)  # Task.lock's hook, once ``_lock_slow`` returned (fast/flood.py)
    return R_OK


@core_jit
def spin_fail(st, t):  # type: ignore[no-untyped-def]
    """``_spin`` returning False (``C_MANY``): its ``finally`` (``spin_end``) and the
    ``spin_fail`` trace row; ``R_FAIL`` (the slow path goes on, ``mutex_sleep.go``)."""
    m = st.tasks[t, T_SPIN_M]
    spin_end(st, t)
    log(st, np.int64(TR_SPIN_FAIL), t, m)
    st.tasks[t, T_STATE] = TS_READY
    return R_FAIL


@core_jit
def spin_end(st, t):  # type: ignore[no-untyped-def]
    """``_spin``'s ``finally``: leave ``Machine.spinning``, charge the spin as busy time,
    and an OSQ spinner leaves the OSQ (a new head is poked at once)."""
    tasks = st.tasks
    m = tasks[t, T_SPIN_M]
    tasks[t, T_SPIN_M] = -1
    tasks[t, T_BUSY] += st.clk[C_NOW] - tasks[t, T_SPIN_T0]
    if tasks[t, T_LS] == LS_WSPIN:
        return
    osq = st.osq
    n = st.mtx[m, M_OSQ_LEN]
    head = osq[m, 0] == t
    j = 0
    for i in range(n):
        if osq[m, i] != t:
            osq[m, j] = osq[m, i]
            j += 1
    osq[m, j] = -1
    st.mtx[m, M_OSQ_LEN] = j
    if head and j > 0:
        poke(st, osq[m, 0], np.int64(0))
