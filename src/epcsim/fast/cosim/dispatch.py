"""The core's event loop (``Environment.step`` and the ``_resume`` of the waiting task).

``next_resume`` pops events in SimPy's order until one resumes a task's *own* code, and
returns that task: the caller's state machine then runs from the task's pc until it blocks
again (a primitive returns ``R_BLOCKED``). Events that resume only engine code are handled
here, as the engine's own generators and callbacks handle them: a spinner's timed poke
(``fire``), a spinner's wake-up (another pass of the spin loop; the task is returned only
once it owns the lock), a sleeper's wake-up (it takes a CPU first), a ``FifoMutex`` waiter's
wake-up (it takes a CPU, then owns the lock handed to it: the rest of
``FifoMutex._lock_slow``), a finished process's event (nothing); with the run queue
(``runqueue.py``, session ``onecpu``) a picked task's event (the rest of the request it
needed the CPU for: ``cont_after_pick``) and an interrupted user step's Interruption
(``EV_INTR``: ``run_user``'s ``except`` branch, then ``_schedule``). Every pop counts in
``clk[C_POPS]``, so ``C_POPS`` equals the number of events SimPy processes (``env.step``
calls) for the same run. A ``System.run(until=)`` deadline (``EV_STOP``) is never popped:
at the head of the queue it stops the core (``HB_DEADLINE``, ``cosim/deadline.py``).
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.flood_park import fire as flood_fire
from epcsim.fast.cosim.flood_park import lock_taken
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.mutex import lock, lock_take
from epcsim.fast.cosim.mutex_sleep import after_spin, go
from epcsim.fast.cosim.queue import pop
from epcsim.fast.cosim.run_over import step_over
from epcsim.fast.cosim.runqueue import yield_cpu
from epcsim.fast.cosim.spin import fire, spin_check
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_FL_PARKED,
    C_HB,
    C_MANY,
    C_NOW,
    C_POPS,
    C_QLEN,
    EV_FLOOD,
    EV_INIT,
    EV_INTR,
    EV_POKE,
    EV_RESUME,
    EV_STOP,
    H_PAYLOAD,
    HANDED_BACK,
    HB_BUDGET,
    HB_DEADLINE,
    IDLE,
    K_DONE,
    K_LOCK,
    K_LOCK_TAKE,
    K_LSLOW,
    K_MSLEEP,
    K_NONE,
    K_RUN,
    K_USER,
    M_WAIT_NS,
    R_BLOCKED,
    R_FAIL,
    R_OK,
    R_STOP,
    T_BUSY,
    T_CONT,
    T_CONT_A,
    T_INTR,
    T_LOCK_T0,
    T_LS,
    T_STATE,
    T_USER_T0,
    T_WAIT_M,
    TR_HANDOFF,
    TS_LSLEEP,
    TS_MSLEEP,
    TS_READY,
    TS_RUN,
    TS_RUNQ,
    TS_SLEEP,
    TS_SPIN,
)
from epcsim.fast.cosim.task import acquire_cpu, run, run_user
from epcsim.fast.cosim.trace import log


@core_jit
def handed_over(st, t):  # type: ignore[no-untyped-def]
    """``FifoMutex._lock_slow``'s tail once the woken waiter has a CPU: ``wait_ns``, the
    ``handoff`` trace row; the lock is the task's already (``unlock`` handed it over)."""
    tasks = st.tasks
    m = tasks[t, T_WAIT_M]
    tasks[t, T_WAIT_M] = -1
    st.mtx[m, M_WAIT_NS] += st.clk[C_NOW] - tasks[t, T_LOCK_T0]
    log(st, np.int64(TR_HANDOFF), t, m)
    if st.clk[C_FL_PARKED] > 0:
        lock_taken(st, m)  # Task.lock's hook, once ``_lock_slow`` returned


@core_jit
def cont_after_pick(st, t):  # type: ignore[no-untyped-def]
    """The rest of the request task ``t`` needed a CPU for, now that the run queue gave it
    one (``T_CONT``: ``state.K_*``): R_OK (the request is complete), R_BLOCKED, R_STOP.

    ``T_CONT`` is cleared (``K_NONE``) as it is taken - the rest may queue the task again
    with a continuation of its own (a lock's might_sleep point: ``K_LOCK_TAKE``) - and set
    back when the rest hands back (R_STOP): the task is then in the middle of this request,
    its machine's pc past it, and ``to_simpy`` finishes it on SimPy (``_cont``) before the
    machine goes on. Session ``spinfix``: without the mark, a ``HB_SPIN_RQ`` in a picked
    lock's rest was served from the machine's pc, the lock taken as done."""
    tasks = st.tasks
    k = tasks[t, T_CONT]
    a = tasks[t, T_CONT_A]
    tasks[t, T_CONT] = K_NONE
    tasks[t, T_STATE] = TS_READY
    r = R_OK
    if k == K_RUN:
        r = run(st, t, a)
    elif k == K_USER:
        r = run_user(st, t, a)
    elif k == K_LOCK:
        r = lock(st, t, a)
    elif k == K_LOCK_TAKE:
        r = lock_take(st, t, a)
    elif k == K_MSLEEP:
        handed_over(st, t)
        if st.clk[C_HB] != 0:
            r = R_STOP
    elif k == K_LSLOW:
        r = go(st, t)
    if r == R_STOP and tasks[t, T_CONT] == K_NONE:
        tasks[t, T_CONT] = k  # handed back inside the rest: ``to_simpy`` finishes it
    return r


@core_jit
def spin_go(st, t):  # type: ignore[no-untyped-def]
    """A spinner's re-check (``spin.spin_check``), and the slow path after a failed spin
    (``mutex_sleep.after_spin``, ``C_MANY``): R_OK (owns the lock), R_BLOCKED, R_STOP."""
    r = spin_check(st, t)
    if r == R_FAIL:
        return after_spin(st, t)
    return r


@core_jit
def next_resume(st):  # type: ignore[no-untyped-def]
    """The next task whose state machine continues now (>= 0), or ``IDLE`` (the queue is
    empty) or ``HANDED_BACK`` (``clk[C_HB]`` says why)."""
    clk = st.clk
    tasks = st.tasks
    while True:
        if clk[C_HB] != 0:
            return HANDED_BACK
        if clk[C_QLEN] == 0:
            return IDLE
        if clk[C_BUDGET] > 0 and clk[C_POPS] >= clk[C_BUDGET]:
            hand_back(st, np.int64(HB_BUDGET), np.int64(-1))
            return HANDED_BACK
        if (st.heap[0, H_PAYLOAD] & 15) == EV_STOP:
            # a ``run(until=)`` deadline is next (``cosim/deadline.py``): SimPy pops it,
            # not the core - every task waits on an event, none is mid-resumption
            hand_back(st, np.int64(HB_DEADLINE), np.int64(-1))
            return HANDED_BACK
        payload = pop(st)
        kind = payload & 15
        t = (payload >> 4) & 4095
        # each kind sets ``r``, what the task's continuation answered: R_OK (the task goes
        # on now: returned), R_STOP (the core handed back), else (R_BLOCKED: it waits for
        # another event, or the event resumed no task) the next event
        if kind == EV_RESUME:
            state = tasks[t, T_STATE]
            if state == TS_SPIN:
                r = spin_go(st, t)
            elif tasks[t, T_LS] != 0 and state in (TS_LSLEEP, TS_RUN):
                # ``LinuxMutex._lock_slow``'s sleeping half (``C_MANY``): the waiter's
                # wake-up, or its ``mutex_wakeup`` step over (``mutex_sleep.go``)
                r = go(st, t)
            elif state == TS_RUNQ:
                # picked by the run queue (its event succeeded at the pick): the request
                # it needed the CPU for goes on
                r = cont_after_pick(st, t)
                if r == R_OK:
                    tasks[t, T_STATE] = TS_READY
            else:
                r = R_OK
                if state == TS_SLEEP:
                    r = acquire_cpu(st, t, np.int64(K_DONE), np.int64(0))
                elif state == TS_MSLEEP:
                    # FifoMutex._lock_slow after ``task.sleep``: a CPU, then the lock is ours
                    r = acquire_cpu(st, t, np.int64(K_MSLEEP), np.int64(0))
                    if r != R_STOP and r != R_BLOCKED:
                        handed_over(st, t)
                        r = R_STOP if clk[C_HB] != 0 else R_OK  # (R_STOP: the trace is full)
                if r != R_STOP and r != R_BLOCKED:
                    step_over(st, t)
                    r = R_OK
        elif kind == EV_INTR:
            # ``run_user``'s ``except simpy.Interrupt``: the time run is busy time, then
            # ``_schedule`` (the queue has the waker, so the task may wait for its CPU)
            tasks[t, T_BUSY] += clk[C_NOW] - tasks[t, T_USER_T0]
            if clk[C_MANY] != 0:
                # the machine takes it (its switch-out AEX before the yield, the accesses
                # run so far after it: ``driver/thread.py``'s ``P_USER_RUN``)
                tasks[t, T_INTR] = 1
                r = R_OK
            else:
                r = yield_cpu(st, t, np.int64(K_DONE), np.int64(0))
            if r == R_OK:
                tasks[t, T_STATE] = TS_READY
        elif kind == EV_POKE:
            # the spinner's wake-up, popped at once (``spin.resume_now``): the
            # ``EV_RESUME`` branch's spinner case above
            r = spin_go(st, t) if fire(st, t, payload >> 16) else R_BLOCKED
        elif kind == EV_INIT:
            tasks[t, T_STATE] = TS_READY
            r = R_OK
        else:
            # EV_FLOOD: a parked NOPAGE retrier's timer: its callback runs no process
            # (``cosim/flood_park.py``); EV_END: a finished process, nobody waits for it
            if kind == EV_FLOOD:
                flood_fire(st, t, payload >> 16)
            r = R_BLOCKED
        if r == R_OK:
            return t
        if r == R_STOP:
            return HANDED_BACK
