"""Engine requests: the one vocabulary kernel state machines use to ask for engine actions.

``PATHS.md`` (2026-11-26) decided that the kernel paths become compiled state machines that
*ask* for engine actions - run, lock, unlock, sleep on / wake a wait queue - so that either
engine can drive them: the compiled core here, or one request at a time a SimPy process on
``engine.machine`` (``simpy_request.perform_simpy``, the same requests as ``Task`` calls).
``perform`` is the core's side: the request's primitive, with its ``R_*`` answer.

===========  =======================================================================
RQ_RUN       ``Task.run(a)``
RQ_LOCK      ``Task.lock(mutex a)``
RQ_UNLOCK    ``Task.unlock(mutex a)``
RQ_SLEEP     one turn of ``WaitQueue.wait_event``'s loop on queue ``a``: the caller checked
             its condition false and checks it again once resumed
RQ_WAKE      ``WaitQueue.wake_up()`` of queue ``a``
RQ_SPAWN     start task ``a`` (``env.process``) unless it was started already
RQ_EXIT      ``Task.exit()`` and the end of the task's process
RQ_RUN_USER  ``Task.run_user(a)``: user-mode time (the enclave thread's resident run);
             in the regime nothing preempts it, so it runs all ``a`` ns (with the run
             queue, ``runqueue.py``, a wake-up preemption may interrupt it)
RQ_RESCHED   ``Task.cond_resched()``: a preemption point (session ``onecpu``)
===========  =======================================================================

Served mode (``clk[C_SERVED]``, ``served.py``): ``perform`` does nothing but record the
request in the task's row (``T_RQ``, ``T_RQ_A``) and answer ``R_BLOCKED``, so the machine
saves its pc and returns, exactly as after a request the core blocks on; the SimPy process
serving it performs the request with ``perform_simpy`` and calls the machine again at that
pc. So a machine that asks for *every* engine action through ``perform`` and treats
``R_BLOCKED`` from any request as "resumed at this pc once it is done" runs on either engine
unchanged. A request's answer that the machine needs (RQ_WAKE: whether anyone slept) is in
``T_RQ_RET`` in both modes.

A request the core refuses (decision 2026-11-27, session ``tcsuser``; PATHS.md "One
CPU", *Fixed by session* ``spinfix``). ``run``, ``run_user`` and ``lock`` hand back with
nothing of the request applied after the point they stopped at (``HB_NO_CPU`` before a CPU
is taken; ``HB_SPIN_RQ``, ``HB_MUTEX_SLEEP`` in ``lock_take``, past the lock's might_sleep
point). The driver's machines park *past* a request on ``R_STOP`` as on ``R_BLOCKED``
(``ksgxd._blocked``: their next pc is "the request is done"), so ``perform`` records
where the request stopped as the task's continuation (``T_CONT``: ``K_RUN``, ``K_USER``,
``K_LOCK`` with no CPU, ``K_LOCK_TAKE`` on one), as ``dispatch.cont_after_pick`` records
a hand-back inside a picked task's rest, and ``to_simpy`` runs that rest on SimPy
(``transfer_runqueue._cont``) before the machine at its pc: the order a served request
has (performed, then the machine resumed past it), so parking past is exact. A caller
that stays at the request instead and asks for it again (the task programs,
``program.resume``) clears ``T_CONT``.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.mutex import lock, lock_fast, unlock
from epcsim.fast.cosim.runqueue import cond_resched, resched_clear
from epcsim.fast.cosim.state import (
    C_HB_TASK,
    C_SERVED,
    K_LOCK,
    K_LOCK_TAKE,
    K_NONE,
    K_RUN,
    K_USER,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_CONT,
    T_CONT_A,
    T_CPU,
    T_RQ,
    T_RQ_A,
    T_RQ_RET,
    T_STATE,
    TS_NEW,
    TS_READY,
)
from epcsim.fast.cosim.task import exit_task, run, run_elided, run_user, spawn
from epcsim.fast.cosim.waitqueue import sleep_on, wake_up

RQ_RUN = 1
RQ_LOCK = 2
RQ_UNLOCK = 3
RQ_SLEEP = 4
RQ_WAKE = 5
RQ_SPAWN = 6
RQ_EXIT = 7
RQ_RUN_USER = 8
RQ_RESCHED = 9


@core_jit(inline="always")
def refused(st, t, r, k, a):  # type: ignore[no-untyped-def]
    """``r`` from a request of task ``t``: on ``R_STOP`` by ``t`` itself with no
    continuation recorded, the request's rest from where it stopped (``k``, ``a``) becomes
    ``t``'s continuation, for ``to_simpy`` to run before the machine (module docstring)."""
    tasks = st.tasks
    if r == R_STOP and st.clk[C_HB_TASK] == t and tasks[t, T_CONT] == K_NONE:
        if tasks[t, T_STATE] != TS_READY:
            return r  # stopped inside a wait (a spinner's check): to_simpy goes on from it
        tasks[t, T_CONT] = k
        tasks[t, T_CONT_A] = a
    return r


@core_jit
def perform(st, t, rq, a):  # type: ignore[no-untyped-def]
    """Do request ``rq`` (argument ``a``) for task ``t``: ``R_OK`` (done, go on),
    ``R_BLOCKED`` (the core resumes the task when it is done; for RQ_SLEEP, when it is
    woken) or ``R_STOP`` (handed back). Served mode: recorded, ``R_BLOCKED``."""
    if st.clk[C_SERVED] != 0:
        st.tasks[t, T_RQ] = rq
        st.tasks[t, T_RQ_A] = a
        return R_BLOCKED
    # the common cases first, in place (session ``fault3``): an elided step, an idle lock,
    # a ``cond_resched`` with nothing to do - each one out-of-line call fewer
    if rq == RQ_RUN:
        if st.tasks[t, T_CPU] >= 0 and run_elided(st, t, a):
            return R_OK
        return refused(st, t, run(st, t, a), np.int64(K_RUN), a)
    if rq == RQ_LOCK:
        if lock_fast(st, t, a):
            return R_OK
        r = lock(st, t, a)
        k = K_LOCK_TAKE if st.tasks[t, T_CPU] >= 0 else K_LOCK  # past might_sleep: a CPU
        return refused(st, t, r, np.int64(k), a)
    if rq == RQ_UNLOCK:
        return unlock(st, t, a)
    if rq == RQ_SLEEP:
        return sleep_on(st, t, a)
    if rq == RQ_WAKE:
        st.tasks[t, T_RQ_RET] = wake_up(st, a)
        return R_OK
    if rq == RQ_SPAWN:
        if st.tasks[a, T_STATE] == TS_NEW:
            spawn(st, a)
        return R_OK
    if rq == RQ_RUN_USER:
        return refused(st, t, run_user(st, t, a), np.int64(K_USER), a)
    if rq == RQ_RESCHED:
        if resched_clear(st, t):
            return R_OK
        return cond_resched(st, t)
    # RQ_EXIT
    exit_task(st, t)
    return R_OK
