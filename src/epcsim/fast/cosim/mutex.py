"""``struct mutex`` as ``LinuxMutex`` models it, in the regime (``engine/mutex.py``).

``lock`` is ``Task.lock``: a might_sleep point (nothing happens: need_resched is false in
the regime), the fast path (the ``owner`` cmpxchg of a free lock: no event), else the slow
path, which spins on the OSQ while the owner runs (``spin``). ``unlock`` is ``_unlock``:
with nobody on the wait list there is never a HANDOFF, so the lock becomes free at once,
``_free_since`` is now, and the OSQ head is poked ``mutex_pickup`` later.

Hand-backs: a contender whose owner is off its CPU would sleep on the wait list
(``HB_MUTEX_SLEEP``, before the slow path counts the contention); a recursive lock and an
unlock by a non-owner are the reference's RuntimeErrors (``HB_RECURSIVE``,
``HB_BAD_UNLOCK``). So the wait list stays empty, and ``steals`` and ``handoffs`` stay 0:
both need a sleeping waiter.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.spin import poke, spin_start
from epcsim.fast.cosim.state import (
    C_NOW,
    C_PICKUP,
    HB_BAD_UNLOCK,
    HB_MUTEX_SLEEP,
    HB_RECURSIVE,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDOFF,
    M_OSQ_LEN,
    M_OWNER,
    R_OK,
    T_CPU,
    T_LOCK_T0,
    T_STEP_END,
    T_STEP_NS,
    TR_UNLOCK,
)
from epcsim.fast.cosim.task import acquire_cpu
from epcsim.fast.cosim.trace import log


@core_jit
def lock(st, t, m):  # type: ignore[no-untyped-def]
    """``mutex_lock``: R_OK when ``t`` owns ``m`` now, R_BLOCKED when it spins (the core
    resumes it at its pc once it owns the lock), R_STOP outside the regime."""
    tasks = st.tasks
    if tasks[t, T_CPU] < 0:
        r = acquire_cpu(st, t)
        if r != R_OK:
            return r
    mtx = st.mtx
    owner = mtx[m, M_OWNER]
    if owner < 0:
        mtx[m, M_OWNER] = t  # the fast path; no wait list, so no steal
        return R_OK
    if owner == t:
        return hand_back(st, np.int64(HB_RECURSIVE), t)
    if tasks[owner, T_CPU] < 0:  # ``_can_spin`` is false: it would sleep
        return hand_back(st, np.int64(HB_MUTEX_SLEEP), t)
    mtx[m, M_CONTENDED] += 1
    tasks[t, T_LOCK_T0] = st.clk[C_NOW]
    return spin_start(st, t, m)


@core_jit
def unlock(st, t, m):  # type: ignore[no-untyped-def]
    """``mutex_unlock`` (``_unlock`` without waiters): R_OK, or R_STOP if ``t`` is not the
    owner."""
    mtx = st.mtx
    if mtx[m, M_OWNER] != t:
        return hand_back(st, np.int64(HB_BAD_UNLOCK), t)
    log(st, np.int64(TR_UNLOCK), t, m)
    now = st.clk[C_NOW]
    mtx[m, M_OWNER] = -1
    mtx[m, M_HANDOFF] = 0
    mtx[m, M_FREE_SINCE] = now
    tasks = st.tasks
    if tasks[t, T_STEP_END] == now:
        mtx[m, M_FREED_FROM] = now - tasks[t, T_STEP_NS]
    else:
        mtx[m, M_FREED_FROM] = now
    if mtx[m, M_OSQ_LEN] > 0:
        poke(st, st.osq[m, 0], st.clk[C_PICKUP])
    return R_OK
