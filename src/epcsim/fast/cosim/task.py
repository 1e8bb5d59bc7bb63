"""A task's CPU and its ``run`` steps (``engine.machine.Task``, CFS's idle-CPU wake-up).

The wake-up onto an idle CPU is here: ``select_idle_sibling``'s choice (the task's
previous CPU if it is idle, else the lowest-numbered idle CPU), the vruntime placement
(START_DEBIT for a new task, GENTLE_FAIR_SLEEPERS for a sleeper) and ``min_vruntime``. A
wake-up that finds no idle CPU queues the task (``runqueue.py``, session ``onecpu``) when
``clk[C_RUNQ]`` is set; else the core hands back (``HB_NO_CPU``) before it. A request that
needed the CPU goes on once the queue picks the task (``T_CONT``: ``dispatch``).

``run(ns)`` is the fast engine's ``Task.run`` when ``clk[C_ELIDE]`` is set: the clock
advances in place when no event is due up to and including the step's end (nothing can
run before it ends, so the order is SimPy's; ``epcsim/fast/README.md``), else a timeout
resumes the task. With ``C_ELIDE`` clear every step is a timeout (``Machine(elide=False)``).

``FifoRunQueue`` (``clk[C_FIFO_SCHED]``, session ``fifo``): its wake-up onto an idle CPU
takes the head of its free-CPU deque (``cpuq``) and places nothing (no vruntime, no
``started``); a released CPU goes to the deque's tail. Its user steps are never
preempted, so ``run_user`` counts one as busy time when it starts, as the reference's
``sched != "cfs"`` branch does. Each branch is next to CFS's in the function below.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import due_by, schedule
from epcsim.fast.cosim.run_over import over_pokes, pokes_first
from epcsim.fast.cosim.runqueue import leave_cpu, on_cpu, pick, update_min_vruntime, wake_queued
from epcsim.fast.cosim.state import (
    C_CPUQ_LEN,
    C_ELIDE,
    C_ELIDED,
    C_FIFO_SCHED,
    C_LATENCY,
    C_NOW,
    C_RUNQ,
    EV_END,
    EV_INIT,
    EV_RESUME,
    HB_NO_CPU,
    K_RUN,
    K_USER,
    NORMAL,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_BUSY,
    T_CPU,
    T_LAST_CPU,
    T_STARTED,
    T_STATE,
    T_STEP_END,
    T_STEP_NS,
    T_USER_NS,
    T_USER_T0,
    T_VRUNTIME,
    TS_DONE,
    TS_RUN,
    TS_STARTING,
    URGENT,
)


@core_jit
def acquire_cpu(st, t, cont, arg):  # type: ignore[no-untyped-def]
    """``Task.acquire_cpu`` -> ``CfsRunQueue.wake`` (or ``FifoRunQueue.wake``) onto an idle
    CPU (R_OK); with none idle, the run queue (``runqueue.wake_queued``: R_BLOCKED, the
    task goes on with ``cont``/``arg`` once picked) when ``clk[C_RUNQ]`` is set, else
    hand back (R_STOP; nothing changed)."""
    tasks = st.tasks
    if tasks[t, T_CPU] >= 0:
        return R_OK
    cpus = st.cpus
    clk = st.clk
    if clk[C_FIFO_SCHED] != 0:
        # FifoRunQueue.wake: the free-CPU deque's head (``popleft``), no placement
        n = clk[C_CPUQ_LEN]
        if n == 0:
            if clk[C_RUNQ] != 0:
                return wake_queued(st, t, cont, arg)
            return hand_back(st, np.int64(HB_NO_CPU), t)
        cpuq = st.cpuq
        cpu = cpuq[0]
        for i in range(n - 1):
            cpuq[i] = cpuq[i + 1]
        cpuq[n - 1] = -1
        clk[C_CPUQ_LEN] = n - 1
        on_cpu(st, t, cpu)
        return R_OK
    cpu = tasks[t, T_LAST_CPU]
    if cpu < 0 or cpus[cpu] >= 0:
        cpu = -1
        for c in range(cpus.shape[0]):
            if cpus[c] < 0:
                cpu = c
                break
        if cpu < 0:
            if clk[C_RUNQ] != 0:
                return wake_queued(st, t, cont, arg)
            return hand_back(st, np.int64(HB_NO_CPU), t)
    min_vr = update_min_vruntime(st)
    latency = st.clk[C_LATENCY]
    if tasks[t, T_STARTED] == 0:
        tasks[t, T_STARTED] = 1
        # START_DEBIT: one slice (sched_slice(1) = the whole latency) after min_vruntime
        tasks[t, T_VRUNTIME] = max(tasks[t, T_VRUNTIME], min_vr + latency)
    else:
        tasks[t, T_VRUNTIME] = max(tasks[t, T_VRUNTIME], min_vr - latency // 2)
    on_cpu(st, t, cpu)
    return R_OK


@core_jit
def release_cpu(st, t):  # type: ignore[no-untyped-def]
    """``Task.release_cpu`` (sleep or exit): ``_leave_cpu`` (vruntime accounting, the
    spinners on a lock ``t`` owns poked), then the CPU to the run queue's leftmost or idle
    (``runqueue.pick``; ``FifoRunQueue.release`` appends it to the free-CPU deque)."""
    if st.tasks[t, T_CPU] < 0:
        return
    cpu = leave_cpu(st, t)
    pick(st, cpu)


@core_jit
def run(st, t, ns):  # type: ignore[no-untyped-def]
    """``Task.run(ns)``: R_OK when the step is over (``ns`` <= 0, elided, or its timeout
    popped in place after the pokes before it: ``run_over``), R_BLOCKED when a timeout
    resumes the task at its pc, R_STOP if it needed a CPU and none is idle."""
    tasks = st.tasks
    if tasks[t, T_CPU] < 0:
        r = acquire_cpu(st, t, np.int64(K_RUN), ns)
        if r != R_OK:
            return r
    if run_elided(st, t, ns):
        return R_OK
    clk = st.clk
    tasks[t, T_BUSY] += ns
    end = clk[C_NOW] + ns
    tasks[t, T_STEP_END] = end
    tasks[t, T_STEP_NS] = ns
    if pokes_first(st, t, end):  # only spinners' pokes before the timeout, maybe
        return over_pokes(st, t, end)
    if not schedule(st, ns, np.int64(NORMAL), np.int64(EV_RESUME), t, np.int64(0)):
        return R_STOP
    tasks[t, T_STATE] = TS_RUN
    return R_BLOCKED


@core_jit(inline="always")
def run_elided(st, t, ns):  # type: ignore[no-untyped-def]
    """``run``'s step of a task on its CPU done in place: True when it is over (``ns`` <= 0,
    or elided: no event due up to and including its end, the clock advanced), False
    (nothing written) when it must be a timeout, which ``run`` schedules. Inlined into
    ``run`` and into ``request.perform``'s ``RQ_RUN`` (session ``fault3``), so the ~6.4
    elided steps a fault on row 1 cost no call of ``run``; the rule is stated here only."""
    if ns <= 0:
        return True
    clk = st.clk
    end = clk[C_NOW] + ns
    if clk[C_ELIDE] == 0 or due_by(st, end):
        return False
    tasks = st.tasks
    tasks[t, T_BUSY] += ns
    tasks[t, T_STEP_END] = end
    tasks[t, T_STEP_NS] = ns
    clk[C_NOW] = end
    clk[C_ELIDED] += 1
    return True


@core_jit
def run_user(st, t, ns):  # type: ignore[no-untyped-def]
    """``Task.run_user(ns)`` in the regime (CFS, every task on its own CPU, so no wake-up
    preemption interrupts the step and it runs all ``ns``). Not ``run``: ``step_end`` and
    ``step_ns`` are left alone (a lock released after a user step frees from ``now``), and
    ``busy_ns`` grows when the step is *over* - at once when elided, else when its timeout
    is processed (``dispatch.next_resume`` adds ``T_USER_NS``); with ``FifoRunQueue``
    (nothing preempts a user step) when it starts, and the step is a plain timeout. R_OK /
    R_BLOCKED / R_STOP as ``run``."""
    tasks = st.tasks
    if tasks[t, T_CPU] < 0:
        r = acquire_cpu(st, t, np.int64(K_USER), ns)
        if r != R_OK:
            return r
    if ns <= 0:
        return R_OK
    clk = st.clk
    end = clk[C_NOW] + ns
    if clk[C_ELIDE] != 0 and not due_by(st, end):
        clk[C_NOW] = end
        tasks[t, T_BUSY] += ns
        clk[C_ELIDED] += 1
        return R_OK
    if not schedule(st, ns, np.int64(NORMAL), np.int64(EV_RESUME), t, np.int64(0)):
        return R_STOP
    if clk[C_FIFO_SCHED] != 0:
        tasks[t, T_BUSY] += ns  # ``run_user``'s ``sched != "cfs"`` branch
    else:
        tasks[t, T_USER_NS] = ns
        tasks[t, T_USER_T0] = clk[C_NOW]
    tasks[t, T_STATE] = TS_RUN
    return R_BLOCKED


@core_jit
def spawn(st, t):  # type: ignore[no-untyped-def]
    """``env.process``: the task's Initialize event (URGENT, now) starts its state machine."""
    st.tasks[t, T_STATE] = TS_STARTING
    return schedule(st, np.int64(0), np.int64(URGENT), np.int64(EV_INIT), t, np.int64(0))


@core_jit
def exit_task(st, t):  # type: ignore[no-untyped-def]
    """``Task.exit`` and the generator's return: the CPU is released and SimPy schedules the
    finished Process (an event nobody waits for, but it takes an eid and a pop)."""
    release_cpu(st, t)
    st.tasks[t, T_STATE] = TS_DONE
    return schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_END), t, np.int64(0))
