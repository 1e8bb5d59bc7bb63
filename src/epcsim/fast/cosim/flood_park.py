"""The parked NOPAGE flood on the core: ``fast/flood.py`` restated over the core's arrays.

``System(nopage_flood="bulk")`` (a named deviation, off by default; its definition, bound
and reasons are ``fast/flood.py``'s docstring) parks an enclave thread whose retry found no
free EPC page: it keeps its CPU and sleeps until the first *decision instant* at which a
retry may differ. This module is that parking as the core runs it (session ``flood6``,
PATHS.md "Several threads on the core", N7): each function below restates the
``NopageFlood`` method it is named after, step for step and in the same event order, so
the core's run with the option equals the fast engine's run in Python with it. A change to
``flood.py`` changes the function here in the same commit. The decision instants and timers
(``fast/flood_decision.py``'s ``DecisionInstants``) are ``flood_decision.py``'s here too
(split by session ``tidy``, no code changed).

The state: ``NopageFlood.parked`` is the task rows with ``T_FL`` set (their ``_Park`` the
``T_FL_*`` columns; the dict's insertion order is ``T_FL_SEQ``), ``_holds`` is
``mtx[m, M_FL_HOLDS]``, ``_deciding`` is ``T_FL_DECIDE``. A ``_Park.ev`` is ``T_FL_EV``
(pending: the row in ``TS_PARK``; its ``succeed`` an ``EV_RESUME`` now, so the machine goes
on at its park's pc, ``driver/thread.py``'s ``P_PARK``). The timers - ``_timer``'s and
``_chain``'s timeouts, whose callbacks resume no process - are ``EV_FLOOD`` events, their
callbacks ``fire``; a timer of an earlier park of the same row carries an older
``T_FL_GEN`` and never matches, as ``parked.get(thread) is p`` is false for it.

What the core takes (``threads_bridge.run_threads``' regime): since session ``floodq``
(2026-11-27) any number of threads on any number of CPUs, with the run queue
(``runqueue.py``, session ``runq64``). A parked row holds its CPU, so it is a running task
for CFS: its vruntime counts for ``min_vruntime`` and a waking task may preempt it. Then
``_resched_due`` is the row's ``T_RESCHED`` or the tick evaluated at the decision instant
(``rq_tick.tick_resched_at``, the queue as it is now), ``wake`` is ``runqueue.resched``'s
parked case (``Machine._resched``) and ``rq_changed`` is called where
``Machine._rq_changed`` is (``runqueue.enqueue``/``pick``). A row whose park ends with
need_resched due yields its CPU at its handler's ``mutex_lock`` (the might_sleep point),
with its skipped retries settled at the decision (``park_end``), as in Python. The TCS
fault's retries park too (``_fault_or_park(tcs, eresume=False)``: no ERESUME in the
cycle, so nothing to touch and no ``_tcs_zapped``; ``driver/flood_rows.parkable``). A
TCS zapped while its thread is parked on an access: ``tcs_zapped`` (``_tcs_zapped``'s
timer, ``FL_ERESUME``), ``driver/flood_rows.page_zapped``; the machine hands back when
that ERESUME finds the TCS blocked (``tcs_first``: its TCS fault at the decision is not
restated, never met). The kernel-state hooks
(``tcs_accessed``, ``page_changed``, the parkable test) are ``driver/flood_rows.py``'s:
they read the enclave's arrays.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.flood_decision import (
    FL_CHAIN,
    FL_ERESUME,
    FL_TIMER,
    force,
    next_decision,
    next_parked,
    plan_tick,
    resched_due,
    timer,
    trigger,
)
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.state import (
    C_FL_AEXF,
    C_FL_BULK,
    C_FL_PARKED,
    C_FL_PARKS,
    C_FL_RESCHED,
    C_FL_SEQ,
    C_FL_TCS_PARKS,
    C_FL_TCS_ZAPPED,
    C_FL_WOKEN,
    C_NOW,
    EV_FLOOD,
    M_FIFO,
    M_FL_HOLDS,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_OWNER,
    NORMAL,
    SE_NONE,
    SE_PENDING,
    T_BUSY,
    T_FL,
    T_FL_BASE,
    T_FL_COUNTED,
    T_FL_DECIDE,
    T_FL_ERESUME,
    T_FL_EV,
    T_FL_FORCED,
    T_FL_GEN,
    T_FL_IDX,
    T_FL_LOCK_CHECK,
    T_FL_M,
    T_FL_PERIOD,
    T_FL_SEQ,
    T_FL_TCS,
    T_FL_TCSBLK,
    T_FL_TCSFIRST,
    T_FL_TICK_AT,
    T_FL_TOUCHED,
    T_STATE,
    T_STEP_END,
    T_STEP_NS,
    TS_PARK,
)


@core_jit
def park_begin(st, t, m, idx, tcs, eresume_ns):  # type: ignore[no-untyped-def]
    """``park``'s start: row ``t`` (on its CPU, its retry on page ``idx`` just failed) parks
    on ``encl->lock`` ``m``; each retry cycle is ``eresume_ns + aex + fault_entry``. The
    row waits (``TS_PARK``) on its ``_Park.ev``; the caller returns R_BLOCKED."""
    tasks = st.tasks
    clk = st.clk
    now = clk[C_NOW]
    tasks[t, T_FL] = 1
    tasks[t, T_FL_BASE] = now
    tasks[t, T_FL_PERIOD] = clk[C_FL_AEXF] + eresume_ns
    tasks[t, T_FL_COUNTED] = 0
    tasks[t, T_FL_FORCED] = -1
    tasks[t, T_FL_LOCK_CHECK] = -1
    tasks[t, T_FL_TICK_AT] = 0
    tasks[t, T_FL_EV] = SE_NONE
    tasks[t, T_FL_GEN] += 1
    tasks[t, T_FL_SEQ] = clk[C_FL_SEQ]
    clk[C_FL_SEQ] += 1
    tasks[t, T_FL_ERESUME] = eresume_ns
    tasks[t, T_FL_TOUCHED] = now
    tasks[t, T_FL_M] = m
    tasks[t, T_FL_TCS] = tcs
    tasks[t, T_FL_IDX] = idx
    tasks[t, T_FL_TCSBLK] = 0
    tasks[t, T_FL_TCSFIRST] = 0
    clk[C_FL_PARKED] += 1
    clk[C_FL_PARKS] += 1
    if eresume_ns == 0:  # the TCS fault's retries (``eresume=False``)
        clk[C_FL_TCS_PARKS] += 1
    plan_tick(st, t)
    if st.mtx[m, M_OWNER] >= 0:  # parking inside another task's hold
        c = next_decision(tasks, t, now)
        tasks[t, T_FL_LOCK_CHECK] = c
        timer(st, t, c)
    tasks[t, T_FL_EV] = SE_PENDING
    tasks[t, T_STATE] = TS_PARK


@core_jit
def park_wait(st, t):  # type: ignore[no-untyped-def]
    """``park``'s loop body, the row resumed by its ``_Park.ev``: True at a decision
    instant where the retry runs for real (the loop's ``break``), else False with a new
    ``_Park.ev`` pending (the caller returns R_BLOCKED)."""
    tasks = st.tasks
    now = st.clk[C_NOW]
    f = tasks[t, T_FL_FORCED]
    if f >= 0 and f <= now:
        return True
    if tasks[t, T_FL_LOCK_CHECK] == now:
        m = tasks[t, T_FL_M]
        if st.mtx[m, M_OWNER] >= 0 or released_after_retry(st, m, now):
            return True
    if tasks[t, T_FL_TICK_AT] <= now:
        if resched_due(st, t, now):
            st.clk[C_FL_RESCHED] += 1
            return True
        plan_tick(st, t)
    tasks[t, T_FL_EV] = SE_PENDING
    tasks[t, T_STATE] = TS_PARK
    return False


@core_jit
def park_end(st, t):  # type: ignore[no-untyped-def]
    """``park``'s end at a decision instant (after ``_touch``, the driver's): the row
    leaves ``parked``, is ``_deciding``, its skipped retries up to the one deciding now
    are counted (``_count``: returned, the caller adds its counters and latencies) and
    every cycle is busy time."""
    tasks = st.tasks
    clk = st.clk
    now = clk[C_NOW]
    tasks[t, T_FL] = 0
    clk[C_FL_PARKED] -= 1
    tasks[t, T_FL_DECIDE] = now + 1
    period = tasks[t, T_FL_PERIOD]
    j = (now - tasks[t, T_FL_BASE]) // period
    n = j - 1 - tasks[t, T_FL_COUNTED]
    if n > 0:
        tasks[t, T_FL_COUNTED] = j - 1
        clk[C_FL_BULK] += n
    else:
        n = 0
    tasks[t, T_BUSY] += j * period
    return n


@core_jit
def fire(st, t, arg):  # type: ignore[no-untyped-def]
    """An ``EV_FLOOD`` popped: ``_timer``'s callback (``FL_TIMER``, row ``t``) or a hold's
    look (``FL_CHAIN``, ``t`` the mutex)."""
    datum = arg >> 2
    kind = arg & 3
    tasks = st.tasks
    if kind == FL_TIMER:
        if tasks[t, T_FL] != 0 and tasks[t, T_FL_GEN] == datum and tasks[t, T_FL_EV] == SE_PENDING:
            trigger(st, t)
    elif kind == FL_ERESUME:
        # ``eresume_ends``: the TCS (zapped, so unmapped) blocked or gone by now - once
        # blocked it stays so (only this thread maps it again), so the EBLOCK's flag
        if tasks[t, T_FL] != 0 and tasks[t, T_FL_GEN] == datum:
            tasks[t, T_FL_TCSFIRST] = tasks[t, T_FL_TCSBLK]
    else:
        chain_fire(st, t, datum)


@core_jit
def tcs_zapped(st, t):  # type: ignore[no-untyped-def]
    """``_tcs_zapped``: parked row ``t``'s TCS was zapped; the ERESUME of the cycle ending
    at its next decision instant completes ``aex + fault_entry`` before it, and fails if
    the TCS is blocked or gone by then (``fire``'s ``FL_ERESUME``). Nothing for the TCS
    fault's own retries (no ERESUME) or an ERESUME already completed."""
    tasks = st.tasks
    if tasks[t, T_FL_ERESUME] == 0:
        return
    now = st.clk[C_NOW]
    at = next_decision(tasks, t, now) - st.clk[C_FL_AEXF]
    if at <= now:
        return
    st.clk[C_FL_TCS_ZAPPED] += 1
    schedule(
        st, at - now, np.int64(NORMAL), np.int64(EV_FLOOD), t,
        np.int64(FL_ERESUME) | (tasks[t, T_FL_GEN] << 2),
    )  # fmt: skip


@core_jit
def page_freed(st):  # type: ignore[no-untyped-def]
    """``page_freed``: the parked retrier whose next decision comes first resumes there
    (the first in ``parked``'s order at a tie; one already resuming by then is passed)."""
    tasks = st.tasks
    now = st.clk[C_NOW]
    best = -1
    best_at = 0
    r = next_parked(tasks, np.int64(-1))
    while r >= 0:
        c = next_decision(tasks, r, now)
        f = tasks[r, T_FL_FORCED]
        if not (f >= 0 and f <= c) and (best < 0 or c < best_at):
            best = r
            best_at = c
        r = next_parked(tasks, tasks[r, T_FL_SEQ])
    if best >= 0:
        force(st, best)


@core_jit
def wake_all(st):  # type: ignore[no-untyped-def]
    """``wake_all``: every parked retrier resumes (the LRU emptied), in ``parked``'s order."""
    tasks = st.tasks
    r = next_parked(tasks, np.int64(-1))
    while r >= 0:
        force(st, r)
        r = next_parked(tasks, tasks[r, T_FL_SEQ])


@core_jit
def wake(st, t):  # type: ignore[no-untyped-def]
    """``wake``: parked row ``t`` resumes at its next decision instant (need_resched set
    by a wake-up preemption: ``runqueue.resched``, ``Machine._resched``'s parked case)."""
    if st.tasks[t, T_FL] != 0:
        st.clk[C_FL_WOKEN] += 1
        force(st, t)


@core_jit(inline="always")
def _rq_forces(st, r, now):  # type: ignore[no-untyped-def]
    """``rq_changed``'s test for parked row ``r``: its next decision instant comes before
    its forced one and would find need_resched due there."""
    tasks = st.tasks
    c = next_decision(tasks, r, now)
    f = tasks[r, T_FL_FORCED]
    return (f < 0 or c < f) and resched_due(st, r, c)


@core_jit
def rq_changed(st):  # type: ignore[no-untyped-def]
    """``rq_changed``: the run queue changed (``runqueue.enqueue``/``pick``, where
    ``Machine._rq_changed`` is called), so a tick check may answer yes sooner: each parked
    row ``_rq_forces`` holds for resumes at its next decision instant, in ``parked``'s
    order (their timers' eids). Whether one row is forced changes no other row's test, so
    a first pass over the rows in any order finds whether any is (the common case: none,
    and no ordered walk)."""
    tasks = st.tasks
    now = st.clk[C_NOW]
    k = 0
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0 and _rq_forces(st, r, now):
            k += 1
    if k == 0:
        return
    r = next_parked(tasks, np.int64(-1))
    while r >= 0 and k > 0:
        if _rq_forces(st, r, now):
            k -= 1
            force(st, r)
        r = next_parked(tasks, tasks[r, T_FL_SEQ])


@core_jit
def released_after_retry(st, m, at):  # type: ignore[no-untyped-def]
    """``_released_after_retry``: ``m`` was released at ``at`` by a step begun after a
    retry deciding at ``at`` began its last one (a ``FifoMutex`` has no ``_freed_from``)."""
    mtx = st.mtx
    if mtx[m, M_FIFO] != 0:
        return False
    return mtx[m, M_FREE_SINCE] == at and mtx[m, M_FREED_FROM] > at - st.clk[C_FL_AEXF]


@core_jit
def came_first(st, t, m):  # type: ignore[no-untyped-def]
    """``came_first``, asked by ``lock_take`` with ``m`` free: ``t`` resumed from a park at
    this decision instant and ``m`` was released at this very instant after the
    reference's retry found it held (``_deciding`` popped)."""
    tasks = st.tasks
    d = tasks[t, T_FL_DECIDE]
    if d == 0:
        return False
    tasks[t, T_FL_DECIDE] = 0
    now = st.clk[C_NOW]
    return d - 1 == now and released_after_retry(st, m, now)


@core_jit
def lock_taken(st, m):  # type: ignore[no-untyped-def]
    """``lock_taken``: ``m`` was just taken (by its owner) while retriers are parked; one
    chain of looks per hold, the first at the earliest decision instant, now included
    unless the locker's last step began before a retry's last step (a tie)."""
    mtx = st.mtx
    hold = mtx[m, M_FL_HOLDS] + 1
    mtx[m, M_FL_HOLDS] = hold
    now = st.clk[C_NOW]
    locker = mtx[m, M_OWNER]
    tasks = st.tasks
    if locker >= 0 and tasks[locker, T_STEP_END] == now:
        locker_from = now - tasks[locker, T_STEP_NS]
    else:
        locker_from = now
    retry_from = now - st.clk[C_FL_AEXF]
    chain(st, m, hold, now if locker_from <= retry_from else now + 1)


@core_jit
def chain(st, m, hold, after):  # type: ignore[no-untyped-def]
    """``_chain``: the hold's next look at the first decision instant at or after
    ``after`` of the retriers parked on ``m``."""
    tasks = st.tasks
    first = -1
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0 and tasks[r, T_FL_M] == m:
            c = next_decision(tasks, r, after)
            if first < 0 or c < first:
                first = c
    if first < 0:
        return
    schedule(
        st, first - st.clk[C_NOW], np.int64(NORMAL), np.int64(EV_FLOOD), m,
        np.int64(FL_CHAIN) | (hold << 2),
    )  # fmt: skip


@core_jit
def chain_fire(st, m, hold):  # type: ignore[no-untyped-def]
    """``_chain``'s callback at ``at`` = now: if the hold goes on (or was released at this
    instant after the retries), the retriers deciding now resume, in ``parked``'s order."""
    mtx = st.mtx
    if mtx[m, M_FL_HOLDS] != hold:
        return
    at = st.clk[C_NOW]
    if mtx[m, M_OWNER] < 0 and not released_after_retry(st, m, at):
        return
    tasks = st.tasks
    r = next_parked(tasks, np.int64(-1))
    while r >= 0:
        base = tasks[r, T_FL_BASE]
        if tasks[r, T_FL_M] == m and at > base and (at - base) % tasks[r, T_FL_PERIOD] == 0:
            tasks[r, T_FL_LOCK_CHECK] = at
            if tasks[r, T_FL_EV] == SE_PENDING:
                trigger(st, r)
        r = next_parked(tasks, tasks[r, T_FL_SEQ])
    chain(st, m, hold, at + 1)


@core_jit
def free_since(st, m, since, now):  # type: ignore[no-untyped-def]
    """``free_since``: when ``m`` was last released, counting each skipped retry's take and
    release at its decision instant (a spinner's pick-up wait restarts at each)."""
    tasks = st.tasks
    last = since
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0 and tasks[r, T_FL_M] == m:
            base = tasks[r, T_FL_BASE]
            period = tasks[r, T_FL_PERIOD]
            j = (now - base) // period
            if j >= 1:
                d = base + j * period
                if d > last:
                    last = d
    return last


@core_jit(inline="always")
def touched_since(tasks, t, now):  # type: ignore[no-untyped-def]
    """``_touch``'s test: a skipped retry's ERESUME completed after ``T_FL_TOUCHED`` and by
    ``now`` (the cycles start at ``base + k * period``, ERESUME ends ``eresume`` later).
    Moves ``T_FL_TOUCHED`` to ``now``; the caller sets the Accessed bit when True."""
    e = tasks[t, T_FL_ERESUME]
    hit = False
    if e != 0:
        first = tasks[t, T_FL_BASE] + e
        if now >= first:
            period = tasks[t, T_FL_PERIOD]
            last = first + (now - first) // period * period
            hit = last > tasks[t, T_FL_TOUCHED]
        tasks[t, T_FL_TOUCHED] = now
    return hit


__all__ = [
    "came_first",
    "fire",
    "free_since",
    "lock_taken",
    "next_parked",
    "page_freed",
    "park_begin",
    "park_end",
    "park_wait",
    "resched_due",
    "rq_changed",
    "tcs_zapped",
    "wake",
    "wake_all",
]
