"""The run queue: tasks waiting for a CPU (``engine/sched.CfsRunQueue``, ``FifoRunQueue``).

Session ``onecpu`` (issue 9, PATHS.md "One CPU: the thread and ksgxd sharing it", S1-S3):
with ``clk[C_RUNQ]`` set, a task that finds no idle CPU waits here instead of the core
handing back (``HB_NO_CPU``). A waiting task is a row with ``T_RQ_SEQ`` > 0 (its
``_seq``); ``CfsRunQueue``'s heap of ``(vruntime, seq)`` is the least such pair over the
rows (a handful of tasks: a scan), ``FifoRunQueue``'s deque the least ``seq``. What the
task goes on with once picked is ``T_CONT`` (``state.K_*``): the rest of the request it
was in when it needed the CPU (``dispatch.next_resume`` runs it).

Each function is the reference's, named; what CFS decides here:

* ``wake`` with no idle CPU (``task.acquire_cpu``): the placement (START_DEBIT with
  ``sched_slice(_nr_running_here(1))``, GENTLE_FAIR_SLEEPERS), ``_enqueue``, then
  ``_check_preempt_wakeup``: the running task with the largest vruntime (the first in CPU
  order on a tie) is the victim when it is ahead by more than the wake-up granularity:
  ``resched`` (``Machine._resched``) sets need_resched, and a victim in a user step is
  interrupted at once (``interrupt``: SimPy's Interruption, URGENT, with its own eid; the
  step's timeout stays queued as a no-op, still popped);
* ``yield_cpu`` (``Task._schedule`` from a preemption point): kept with a new slice while
  the task is still the leftmost, else re-queued with its vruntime and the CPU picked;
* ``pick`` (``_pick``, ``FifoRunQueue.release``): the leftmost gets the CPU,
  ``context_switches + 1``, its event succeeds now;
* ``tick_resched`` (``check_preempt_tick``, lazily at the preemption points).

A spinner while a task waits for a CPU (the spin then watches the tick,
``LinuxMutex._spin``/``_poke_spinners``): with ``clk[C_MANY]`` (session ``runq64``) it is
restated - ``next_tick``, ``poke_spinners`` after a wake-up that preempts nobody, a
spinning victim of ``resched`` poked ``mutex_spin_poll`` later (``Machine._resched``);
``spin.py`` watches the tick and leaves the spin on need_resched. Without it the core
hands back (``HB_SPIN_RQ``) before either begins, for the callers whose moves do not carry
it. On one CPU it never happens (a contender runs only while the owner is off its CPU, so
it never spins).
"""

from __future__ import annotations

import numpy as np

from epcsim.engine.sched import SCHED_NR_LATENCY, TICK_NS
from epcsim.fast.cosim.flood_park import rq_changed
from epcsim.fast.cosim.flood_park import wake as flood_wake
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.poke import poke
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.rq_tick import leftmost, nr_running_here, tick_resched_at
from epcsim.fast.cosim.state import (
    C_CPUQ_LEN,
    C_CSW,
    C_FIFO_SCHED,
    C_FIFO_SLICE,
    C_FL_PARKED,
    C_HB,
    C_INTERRUPTS,
    C_LATENCY,
    C_MANY,
    C_MIN_GRAN,
    C_MIN_VR,
    C_NONEMPTY_SINCE,
    C_NOW,
    C_QLEN,
    C_RQ_LEN,
    C_RQ_SEQ,
    C_SPIN_POLL,
    C_WAKEUP_GRAN,
    C_WAKEUP_PREEMPT,
    DEAD,
    EV_END,
    EV_INTR,
    EV_RESUME,
    H_PAYLOAD,
    HB_SPIN_RQ,
    K_DONE,
    M_OWNER,
    NORMAL,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_CONT,
    T_CONT_A,
    T_CPU,
    T_FL,
    T_LAST_CPU,
    T_RESCHED,
    T_RQ_SEQ,
    T_SLICE_START,
    T_SPIN_M,
    T_SPIN_SEQ,
    T_STARTED,
    T_STATE,
    T_USER_NS,
    T_VRUNTIME,
    TS_INTR,
    TS_RUN,
    TS_RUNQ,
    URGENT,
)

_TICK = np.int64(TICK_NS)
_NR_LATENCY = np.int64(SCHED_NR_LATENCY)


@core_jit
def spinning(st):  # type: ignore[no-untyped-def]
    """``bool(Machine.spinning)``."""
    tasks = st.tasks
    n = 0
    for t in range(tasks.shape[0]):
        n += tasks[t, T_SPIN_M] >= 0
    return n > 0


@core_jit
def update_min_vruntime(st):  # type: ignore[no-untyped-def]
    """``CfsRunQueue._update_min_vruntime``: the least vruntime of the queue's leftmost and
    the running tasks, if it moves ``min_vruntime`` forward."""
    clk = st.clk
    tasks = st.tasks
    now = clk[C_NOW]
    best = -1
    found = False
    first = leftmost(st)
    if first >= 0:
        best = tasks[first, T_VRUNTIME]
        found = True
    for cpu in range(st.cpus.shape[0]):
        r = st.cpus[cpu]
        if r >= 0:
            v = tasks[r, T_VRUNTIME] + now - tasks[r, T_SLICE_START]
            if not found or v < best:
                best = v
                found = True
    if found and best > clk[C_MIN_VR]:
        clk[C_MIN_VR] = best
    return clk[C_MIN_VR]


@core_jit
def sched_slice(st, nr):  # type: ignore[no-untyped-def]
    """``CfsRunQueue.sched_slice`` for equal weights."""
    nr = max(1, nr)
    if nr <= _NR_LATENCY:
        return st.clk[C_LATENCY] // nr
    return (nr * st.clk[C_MIN_GRAN]) // nr


@core_jit
def enqueue(st, t, cont, arg):  # type: ignore[no-untyped-def]
    """``_enqueue`` (``FifoRunQueue.wake``'s append): ``t`` waits for a CPU with its
    vruntime as it is; ``cont``/``arg`` is what it goes on with once picked."""
    clk = st.clk
    tasks = st.tasks
    if clk[C_RQ_LEN] == 0:
        clk[C_NONEMPTY_SINCE] = clk[C_NOW]
    clk[C_RQ_SEQ] += 1
    clk[C_RQ_LEN] += 1
    tasks[t, T_RQ_SEQ] = clk[C_RQ_SEQ]
    tasks[t, T_CONT] = cont
    tasks[t, T_CONT_A] = arg
    tasks[t, T_STATE] = TS_RUNQ
    if clk[C_FL_PARKED] > 0:
        rq_changed(st)  # ``Machine._rq_changed`` (the parked flood, ``flood_park.py``)


@core_jit
def on_cpu(st, t, cpu):  # type: ignore[no-untyped-def]
    """``Task._on_cpu``: a new slice on ``cpu``."""
    st.tasks[t, T_CPU] = cpu
    st.tasks[t, T_SLICE_START] = st.clk[C_NOW]
    st.cpus[cpu] = t


@core_jit
def pick(st, cpu):  # type: ignore[no-untyped-def]
    """``CfsRunQueue._pick`` / ``FifoRunQueue.release``: the leftmost waiter runs on
    ``cpu`` (``context_switches + 1``, its event succeeds now), or the CPU goes idle
    (CFS: ``cpus[cpu]`` is -1 already; FIFO: to the free deque's tail). False if the heap
    is full (handed back)."""
    clk = st.clk
    nxt = leftmost(st)
    if nxt < 0:
        if clk[C_FIFO_SCHED] != 0:
            n = clk[C_CPUQ_LEN]
            st.cpuq[n] = cpu
            clk[C_CPUQ_LEN] = n + 1
        return True
    st.tasks[nxt, T_RQ_SEQ] = 0
    clk[C_RQ_LEN] -= 1
    if clk[C_FL_PARKED] > 0:
        rq_changed(st)  # ``Machine._rq_changed`` (the parked flood, ``flood_park.py``)
    on_cpu(st, nxt, cpu)
    clk[C_CSW] += 1
    return schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), nxt, np.int64(0))


@core_jit
def leave_cpu(st, t):  # type: ignore[no-untyped-def]
    """``Task._leave_cpu``: vruntime accounting, need_resched cleared, the CPU left (its
    number returned), and spinners on a lock ``t`` owns poked (``Machine._owner_off_cpu``)
    in the order they began spinning."""
    tasks = st.tasks
    cpu = tasks[t, T_CPU]
    clk = st.clk
    tasks[t, T_VRUNTIME] += clk[C_NOW] - tasks[t, T_SLICE_START]
    tasks[t, T_CPU] = -1
    tasks[t, T_LAST_CPU] = cpu
    tasks[t, T_RESCHED] = 0
    st.cpus[cpu] = -1
    last = -1
    while True:
        nxt = -1
        for s in range(tasks.shape[0]):
            m = tasks[s, T_SPIN_M]
            if m >= 0 and st.mtx[m, M_OWNER] == t:
                seq = tasks[s, T_SPIN_SEQ]
                if seq > last and (nxt < 0 or seq < tasks[nxt, T_SPIN_SEQ]):
                    nxt = s
        if nxt < 0:
            break
        last = tasks[nxt, T_SPIN_SEQ]
        # np.int64: numba types ``nxt`` here as ``Literal[int](-1)`` (its first value), a
        # second compile of poke, schedule and hand_back otherwise (jit.py's rule)
        poke(st, np.int64(nxt), st.clk[C_SPIN_POLL])
    return cpu


@core_jit
def tick_resched(st, t):  # type: ignore[no-untyped-def]
    """``CfsRunQueue.tick_resched`` (``check_preempt_tick``, evaluated lazily now) or
    ``FifoRunQueue.tick_resched`` (its fixed slice): ``rq_tick.tick_resched_at`` now."""
    return tick_resched_at(st, t, st.clk[C_NOW])


@core_jit(inline="always")
def resched_clear(st, t):  # type: ignore[no-untyped-def]
    """``need_resched`` is false without the tick's arithmetic: the flag is not set and
    nobody waits for a CPU (``tick_resched``'s first test). False means "ask
    ``need_resched``". Inlined into ``request.perform``'s ``RQ_RESCHED`` and
    ``mutex.lock_fast`` (session ``fault3``): with every task on its own CPU it holds at
    each ``cond_resched`` and ``mutex_lock``, ~2-3 a fault on row 1."""
    return st.tasks[t, T_RESCHED] == 0 and st.clk[C_RQ_LEN] == 0


@core_jit
def need_resched(st, t):  # type: ignore[no-untyped-def]
    """``Task.need_resched`` (and ``cond_resched``'s test): set by a wake-up preemption, or
    by a tick once the slice is spent; once true it stays set until the task yields."""
    tasks = st.tasks
    if tasks[t, T_CPU] < 0:
        return False
    if tasks[t, T_RESCHED] != 0:
        return True
    if tick_resched(st, t):
        tasks[t, T_RESCHED] = 1
        return True
    return False


@core_jit
def yield_cpu(st, t, cont, arg):  # type: ignore[no-untyped-def]
    """``Task._schedule`` -> ``CfsRunQueue.yield_cpu`` (``FifoRunQueue.yield_cpu``): R_OK
    when ``t`` keeps its CPU (a new slice), R_BLOCKED when it waits in the queue (going on
    with ``cont``/``arg`` once picked), R_STOP if the heap is full."""
    tasks = st.tasks
    clk = st.clk
    now = clk[C_NOW]
    if clk[C_FIFO_SCHED] != 0:
        # FifoRunQueue: release the CPU (to the first waiter or the deque), then wake
        cpu = leave_cpu(st, t)
        if not pick(st, cpu):
            return R_STOP
        n = clk[C_CPUQ_LEN]
        if n == 0:
            enqueue(st, t, cont, arg)
            return R_BLOCKED
        cpuq = st.cpuq
        c = cpuq[0]
        for i in range(n - 1):
            cpuq[i] = cpuq[i + 1]
        cpuq[n - 1] = -1
        clk[C_CPUQ_LEN] = n - 1
        on_cpu(st, t, c)
        return R_OK
    vr = tasks[t, T_VRUNTIME] + now - tasks[t, T_SLICE_START]
    first = leftmost(st)
    if first < 0 or vr < tasks[first, T_VRUNTIME]:
        tasks[t, T_VRUNTIME] = vr
        tasks[t, T_SLICE_START] = now
        tasks[t, T_RESCHED] = 0
        return R_OK
    cpu = leave_cpu(st, t)
    enqueue(st, t, cont, arg)
    if not pick(st, cpu):
        return R_STOP
    return R_BLOCKED


@core_jit
def cond_resched(st, t):  # type: ignore[no-untyped-def]
    """``Task.cond_resched``: yield the CPU when need_resched is set (R_OK: kept or not
    needed, R_BLOCKED: waiting in the queue, R_STOP)."""
    if need_resched(st, t):
        return yield_cpu(st, t, np.int64(K_DONE), np.int64(0))
    return R_OK


@core_jit
def interrupt(st, t):  # type: ignore[no-untyped-def]
    """``Process.interrupt`` of ``t``'s user step (``Machine._resched``): an Interruption
    event, URGENT, now; the step's timeout loses its callback but stays queued (an
    ``EV_END`` with argument 1, ``DEAD``: popped as SimPy pops it, and moved by
    ``to_simpy`` as an event nobody waits on, not as the process's end). False if the
    heap is full."""
    heap = st.heap
    want = EV_RESUME | (t << 4)
    for i in range(st.clk[C_QLEN]):
        p = heap[i, H_PAYLOAD]
        if (p & 0xFFFF) == want:
            heap[i, H_PAYLOAD] = (p & ~np.int64(15)) | EV_END | (np.int64(DEAD) << 16)
            break
    st.tasks[t, T_USER_NS] = 0  # ``_user_proc = None``: busy time is ``run_user``'s now
    st.tasks[t, T_STATE] = TS_INTR
    st.clk[C_INTERRUPTS] += 1
    return schedule(st, np.int64(0), np.int64(URGENT), np.int64(EV_INTR), t, np.int64(0))


@core_jit
def resched(st, t):  # type: ignore[no-untyped-def]
    """``Machine._resched``: need_resched set; a task in a user step takes the interrupt
    now; a spinner notices at its next poll (``mutex_spin_poll``; only with ``C_MANY``:
    else a spinner never meets a waiting task, ``HB_SPIN_RQ``); a parked NOPAGE retrier at
    its next decision instant (``NopageFlood.wake``, ``flood_park.wake``)."""
    tasks = st.tasks
    tasks[t, T_RESCHED] = 1
    if tasks[t, T_STATE] == TS_RUN and tasks[t, T_USER_NS] != 0:
        return interrupt(st, t)
    if tasks[t, T_SPIN_M] >= 0:
        poke(st, t, st.clk[C_SPIN_POLL])
        return st.clk[C_HB] == 0
    if tasks[t, T_FL] != 0:  # a parked NOPAGE retrier: it notices at its next decision
        flood_wake(st, t)
        return st.clk[C_HB] == 0
    return True


@core_jit
def poke_spinners(st):  # type: ignore[no-untyped-def]
    """``Machine._poke_spinners``: every spinner re-checks now (so it watches the tick),
    in ``Machine.spinning``'s order (when each began: ``T_SPIN_SEQ``). False if the heap
    is full."""
    tasks = st.tasks
    last = -1
    while True:
        nxt = -1
        for s in range(tasks.shape[0]):
            if tasks[s, T_SPIN_M] >= 0:
                seq = tasks[s, T_SPIN_SEQ]
                if seq > last and (nxt < 0 or seq < tasks[nxt, T_SPIN_SEQ]):
                    nxt = s
        if nxt < 0:
            return st.clk[C_HB] == 0
        last = tasks[nxt, T_SPIN_SEQ]
        poke(st, np.int64(nxt), np.int64(0))


@core_jit
def next_tick(st, t):  # type: ignore[no-untyped-def]
    """``CfsRunQueue.next_tick`` (the next tick after now) or ``FifoRunQueue.next_tick``
    (the end of ``t``'s slice, at least 1 ns on): when a spinner re-checks the tick."""
    now = st.clk[C_NOW]
    if st.clk[C_FIFO_SCHED] != 0:
        return max(now + 1, st.tasks[t, T_SLICE_START] + st.clk[C_FIFO_SLICE])
    return now - now % _TICK + _TICK


@core_jit
def check_preempt_wakeup(st, t):  # type: ignore[no-untyped-def]
    """``CfsRunQueue._check_preempt_wakeup``: the running task with the largest vruntime
    is preempted when it is ahead of ``t`` by more than the wake-up granularity."""
    clk = st.clk
    tasks = st.tasks
    now = clk[C_NOW]
    victim = -1
    worst = 0
    for cpu in range(st.cpus.shape[0]):
        r = st.cpus[cpu]
        if r >= 0:
            v = tasks[r, T_VRUNTIME] + now - tasks[r, T_SLICE_START]
            if victim < 0 or v > worst:
                victim = r
                worst = v
    if victim >= 0 and worst - tasks[t, T_VRUNTIME] > clk[C_WAKEUP_GRAN]:
        clk[C_WAKEUP_PREEMPT] += 1
        return resched(st, np.int64(victim))
    if spinning(st):  # someone waits for a CPU: spinners watch the tick now (C_MANY)
        return poke_spinners(st)
    return True


@core_jit
def wake_queued(st, t, cont, arg):  # type: ignore[no-untyped-def]
    """``CfsRunQueue.wake`` (``FifoRunQueue.wake``) with no idle CPU: placed, queued, and
    the wake-up preemption check (CFS). R_BLOCKED, or R_STOP (a spinner: ``HB_SPIN_RQ``,
    nothing changed, without ``C_MANY``; the heap full)."""
    if st.clk[C_MANY] == 0 and spinning(st):
        return hand_back(st, np.int64(HB_SPIN_RQ), t)
    tasks = st.tasks
    if st.clk[C_FIFO_SCHED] != 0:
        enqueue(st, t, cont, arg)
        return R_BLOCKED
    min_vr = update_min_vruntime(st)
    if tasks[t, T_STARTED] == 0:
        tasks[t, T_STARTED] = 1
        # START_DEBIT: a slice of the runnable tasks' period after min_vruntime
        nr = nr_running_here(st, np.int64(1))
        tasks[t, T_VRUNTIME] = max(tasks[t, T_VRUNTIME], min_vr + sched_slice(st, nr))
    else:
        tasks[t, T_VRUNTIME] = max(tasks[t, T_VRUNTIME], min_vr - st.clk[C_LATENCY] // 2)
    enqueue(st, t, cont, arg)
    if not check_preempt_wakeup(st, t):
        return R_STOP
    return R_BLOCKED


__all__ = [
    "check_preempt_wakeup",
    "cond_resched",
    "enqueue",
    "interrupt",
    "leave_cpu",
    "leftmost",
    "need_resched",
    "next_tick",
    "nr_running_here",
    "on_cpu",
    "pick",
    "poke_spinners",
    "resched",
    "sched_slice",
    "spinning",
    "tick_resched",
    "update_min_vruntime",
    "wake_queued",
    "yield_cpu",
]
