"""``struct mutex`` as ``LinuxMutex`` models it, in the regime (``engine/mutex.py``).

``lock`` is ``Task.lock``: a might_sleep point (need_resched set only with a task waiting in
the run queue, ``runqueue.py``: the task yields its CPU there), the fast path (the ``owner``
cmpxchg of a free lock: no event), else the slow path, which spins on the OSQ while the
owner runs (``spin``). ``unlock`` is ``_unlock``: with nobody on the wait list there is
never a HANDOFF, so the lock becomes free at once, ``_free_since`` is now, and the OSQ head
is poked ``mutex_pickup`` later.

Hand-backs: a contender whose owner is off its CPU would sleep on the wait list
(``HB_MUTEX_SLEEP``, before the slow path counts the contention); a recursive lock and an
unlock by a non-owner are the reference's RuntimeErrors (``HB_RECURSIVE``,
``HB_BAD_UNLOCK``); a contender that would spin while a task waits for a CPU
(``HB_SPIN_RQ``). So the wait list stays empty, and ``steals`` and ``handoffs`` stay 0:
both need a sleeping waiter. With ``clk[C_MANY]`` (session ``runq64``) neither hands back:
the slow path is ``mutex_sleep.slow`` (the spin watching the tick, the wait list, HANDOFF),
the unlock wakes the first waiter or hands the lock to it, and a free lock taken while a
waiter is queued is a steal (``steal``, ``waitlist.take``).

``FifoMutex`` (``mtx[m, M_FIFO]``, ``Machine(mutex="fifo")``; session ``fifo``): a contender
never spins; it sleeps on the wait list at once (``_lock_slow``: counted contended,
``sleep`` traced, its CPU released) and the unlock hands the lock to the first waiter
(owner, ``handoffs``, its wake-up event now), which takes a CPU when that event is processed
and then owns the lock (``dispatch.next_resume``: ``wait_ns``, ``handoff`` traced). Nothing
of it leaves the regime: a sleeping contender needs no running owner.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.flood_park import came_first, lock_taken
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.mutex_sleep import slow, wake
from epcsim.fast.cosim.poke import poke
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.runqueue import need_resched, resched_clear, yield_cpu
from epcsim.fast.cosim.spin import spin_start
from epcsim.fast.cosim.state import (
    C_FL_PARKED,
    C_MANY,
    C_NOW,
    C_PICKUP,
    C_RQ_LEN,
    C_SPIN_POLL,
    EV_RESUME,
    HB_BAD_UNLOCK,
    HB_MUTEX_SLEEP,
    HB_RECURSIVE,
    HB_SPIN_RQ,
    K_LOCK,
    K_LOCK_TAKE,
    M_CONTENDED,
    M_FIFO,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFF,
    M_HANDOFFS,
    M_OSQ_LEN,
    M_OWNER,
    M_STEALS,
    M_WAITERS,
    NORMAL,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_CPU,
    T_FL_DECIDE,
    T_LOCK_T0,
    T_STATE,
    T_STEP_END,
    T_STEP_NS,
    T_WAIT_M,
    TR_SLEEP,
    TR_STEAL,
    TR_UNLOCK,
    TS_MSLEEP,
)
from epcsim.fast.cosim.task import acquire_cpu, release_cpu
from epcsim.fast.cosim.trace import log


@core_jit
def lock(st, t, m):  # type: ignore[no-untyped-def]
    """``mutex_lock``: R_OK when ``t`` owns ``m`` now, R_BLOCKED when it waits (for a CPU,
    spinning or asleep: the core resumes it at its pc once it owns the lock), R_STOP
    outside the regime. Its might_sleep point: with need_resched set the task yields its
    CPU first (``Task.lock``'s ``_schedule``; only with a task waiting for a CPU)."""
    if lock_fast(st, t, m):
        return R_OK
    tasks = st.tasks
    if tasks[t, T_CPU] < 0:
        r = acquire_cpu(st, t, np.int64(K_LOCK), m)
        if r != R_OK:
            return r
    if need_resched(st, t):
        r = yield_cpu(st, t, np.int64(K_LOCK_TAKE), m)
        if r != R_OK:
            return r
    return lock_take(st, t, m)


@core_jit(inline="always")
def lock_fast(st, t, m):  # type: ignore[no-untyped-def]
    """``lock`` when nothing but its fast path can happen: ``t`` on its CPU, need_resched
    clear for sure (``runqueue.resched_clear``) and ``m`` free - the owner cmpxchg, True.
    False (nothing written): ``lock`` decides. Inlined into ``lock`` and into
    ``request.perform``'s ``RQ_LOCK`` (session ``fault3``: no call of ``lock`` and
    ``lock_take`` for an uncontended ``encl->lock``, ~2.25 a fault on row 1)."""
    if st.tasks[t, T_CPU] < 0 or not resched_clear(st, t):
        return False
    mtx = st.mtx
    if mtx[m, M_OWNER] >= 0 or st.tasks[t, T_FL_DECIDE] != 0:
        return False  # (a parked retrier's decision: ``lock_take`` asks ``came_first``)
    mtx[m, M_OWNER] = t  # ``lock_take``'s fast path
    if mtx[m, M_WAITERS] > 0:  # ``_fast_taken``: a sleeper queued (``C_MANY``)
        steal(st, t, m)
    if st.clk[C_FL_PARKED] > 0:
        lock_taken(st, m)  # Task.lock's hook (fast/flood.py; cosim/flood_park.py)
    return True


@core_jit
def steal(st, t, m):  # type: ignore[no-untyped-def]
    """``Mutex._fast_taken``: the fast path took a free lock that has sleepers."""
    st.mtx[m, M_STEALS] += 1
    log(st, np.int64(TR_STEAL), t, m)


@core_jit
def lock_take(st, t, m):  # type: ignore[no-untyped-def]
    """``Task.lock`` after its might_sleep point: the fast path, or the slow path."""
    tasks = st.tasks
    mtx = st.mtx
    owner = mtx[m, M_OWNER]
    if owner < 0:
        if tasks[t, T_FL_DECIDE] == 0 or not came_first(st, t, m):
            mtx[m, M_OWNER] = t  # the fast path
            if mtx[m, M_WAITERS] > 0:
                steal(st, t, m)
            if st.clk[C_FL_PARKED] > 0:
                lock_taken(st, m)  # Task.lock's hook (fast/flood.py; cosim/flood_park.py)
            return R_OK
        # a parked retrier's decision found the lock released at this instant after its
        # retry (``came_first``): ``_lock_slow`` on a free lock - it spins (``late``: no
        # ``_can_spin``, only need_resched), and takes the lock ``mutex_pickup`` after the
        # release if it stays free (``threads_bridge`` takes the parked flood only with
        # every task on its own CPU, so need_resched stays clear)
        if st.clk[C_MANY] != 0:
            return slow(st, t, m)  # its ``late`` case
        mtx[m, M_CONTENDED] += 1
        tasks[t, T_LOCK_T0] = st.clk[C_NOW]
        return spin_start(st, t, m)
    if owner == t:
        return hand_back(st, np.int64(HB_RECURSIVE), t)
    if mtx[m, M_FIFO] != 0:
        # FifoMutex._lock_slow: onto the wait list's tail, asleep at once (``task.sleep``)
        mtx[m, M_CONTENDED] += 1
        n = mtx[m, M_WAITERS]
        st.wl[m, n] = t
        mtx[m, M_WAITERS] = n + 1
        log(st, np.int64(TR_SLEEP), t, m)
        tasks[t, T_LOCK_T0] = st.clk[C_NOW]
        tasks[t, T_WAIT_M] = m
        release_cpu(st, t)
        tasks[t, T_STATE] = TS_MSLEEP
        return R_BLOCKED
    if st.clk[C_MANY] != 0:  # the whole slow path, the sleeping half too
        return slow(st, t, m)
    if tasks[owner, T_CPU] < 0:  # ``_can_spin`` is false: it would sleep
        return hand_back(st, np.int64(HB_MUTEX_SLEEP), t)
    if st.clk[C_RQ_LEN] != 0:  # a spinner would watch the tick (runqueue.py)
        return hand_back(st, np.int64(HB_SPIN_RQ), t)
    mtx[m, M_CONTENDED] += 1
    tasks[t, T_LOCK_T0] = st.clk[C_NOW]
    return spin_start(st, t, m)


@core_jit
def unlock(st, t, m):  # type: ignore[no-untyped-def]
    """``mutex_unlock`` (``_unlock`` without waiters; ``FifoMutex._unlock`` with them):
    R_OK, or R_STOP if ``t`` is not the owner."""
    mtx = st.mtx
    if mtx[m, M_OWNER] != t:
        return hand_back(st, np.int64(HB_BAD_UNLOCK), t)
    log(st, np.int64(TR_UNLOCK), t, m)
    if mtx[m, M_FIFO] != 0:
        # FifoMutex._unlock: straight to the first waiter, whose event succeeds now
        n = mtx[m, M_WAITERS]
        if n == 0:
            mtx[m, M_OWNER] = -1
            return R_OK
        wl = st.wl
        nxt = wl[m, 0]
        for i in range(n - 1):
            wl[m, i] = wl[m, i + 1]
        wl[m, n - 1] = -1
        mtx[m, M_WAITERS] = n - 1
        mtx[m, M_OWNER] = nxt
        mtx[m, M_HANDOFFS] += 1
        if not schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), nxt, np.int64(0)):
            return R_STOP
        return R_OK
    now = st.clk[C_NOW]
    pickup = st.clk[C_PICKUP]
    tasks = st.tasks
    nw = mtx[m, M_WAITERS]
    if mtx[m, M_HANDOFF] != 0 and nw > 0:
        # __mutex_handoff: straight to the first waiter (``C_MANY``: HANDOFF is set only
        # by a waiter, ``mutex_sleep.go``)
        w = st.wl[m, 0]
        mtx[m, M_OWNER] = w
        mtx[m, M_HANDOFF] = 0
        mtx[m, M_HANDOFFS] += 1
        mtx[m, M_HANDED_AT] = now
        if not wake(st, w, m, pickup):
            return R_STOP
        if mtx[m, M_OSQ_LEN] > 0 and tasks[w, T_CPU] < 0:  # the new owner is not running
            poke(st, st.osq[m, 0], st.clk[C_SPIN_POLL])
        return R_OK
    mtx[m, M_OWNER] = -1
    mtx[m, M_HANDOFF] = 0
    mtx[m, M_FREE_SINCE] = now
    if tasks[t, T_STEP_END] == now:
        mtx[m, M_FREED_FROM] = now - tasks[t, T_STEP_NS]
    else:
        mtx[m, M_FREED_FROM] = now
    if nw > 0 and not wake(st, st.wl[m, 0], m, pickup):
        return R_STOP
    if mtx[m, M_OSQ_LEN] > 0:
        poke(st, st.osq[m, 0], pickup)
    return R_OK
