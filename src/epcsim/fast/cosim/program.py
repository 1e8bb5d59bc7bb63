"""Task programs: the core's test vehicle, and a model of how kernel state machines use it.

A program is a list of ops, one per row ``(op, a, b)`` of an ``int64`` array:

=========  ==============================================================================
RUN ns     ``yield from task.run(ns)``
LOCK m     ``yield from task.lock(mutex[m])``
UNLOCK m   ``task.unlock(mutex[m])``
WAIT q     ``yield from waitq[q].wait_event(task, lambda: counter[q] > 0)``, then
           ``counter[q] -= 1`` (ksgxd's sleep until ``sgx_should_reclaim``)
WAKE q     ``counter[q] += 1; waitq[q].wake_up()`` (``sgx_alloc_epc_page`` waking ksgxd)
SPAWN t    start task ``t`` now (``env.process``) unless it was started already
LOOP pc n  jump back to ``pc`` (the task's own op number) until it has done so ``n`` times
END        ``task.exit()`` and return
USER ns    ``yield from task.run_user(ns)`` (user-mode time, the enclave thread's)
RESCHED    ``yield from task.cond_resched()`` (a preemption point; session ``onecpu``)
=========  ==============================================================================

``run_programs`` interprets them over the compiled core, each op through the engine
requests of ``request`` (``perform``); ``simpy_program.run_simpy`` runs the same programs
as generators on ``engine.machine``, by direct engine calls or through the same requests
(``simpy_request.perform_simpy``), so the two can be compared op for op. A kernel state
machine (``sgx_vma_fault``, ksgxd's loop) will have the same shape as ``resume``: a ``pc``
per task, a branch per pc, and after a request answered ``R_BLOCKED`` a return to the
loop, which calls it again at the same pc when the task is due.

A request the core refuses (``R_STOP``): a program stays at the op and asks for it again
(``T_CONT`` cleared), unless the op's third column is ``PAST`` (a RUN, USER or LOCK): then
it parks past the op as after ``R_BLOCKED``, as the driver's machines park past their
requests (``ksgxd._blocked``), and ``to_simpy`` runs the request's rest the core recorded
(``request.refused``) before the program goes on (session ``tcsuser``: the test vehicle
of that order, ``tests/fast/test_park_past.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from epcsim.engine.costs import Costs
from epcsim.fast.cosim.borrow import borrow
from epcsim.fast.cosim.dispatch import next_resume
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.outcome import Outcome
from epcsim.fast.cosim.queue import pending
from epcsim.fast.cosim.request import (
    RQ_EXIT,
    RQ_LOCK,
    RQ_RESCHED,
    RQ_RUN,
    RQ_RUN_USER,
    RQ_SLEEP,
    RQ_SPAWN,
    RQ_UNLOCK,
    RQ_WAKE,
    perform,
)
from epcsim.fast.cosim.state import (
    C_CSW,
    C_ELIDED,
    C_FIFO_SCHED,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_INTERRUPTS,
    C_MANY,
    C_MIN_VR,
    C_NOW,
    C_POPS,
    C_RAN_OVER,
    C_RESUMED_NOW,
    C_TRACE_LEN,
    C_WAKEUP_PREEMPT,
    HANDED_BACK,
    HB_NAMES,
    K_NONE,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDOFFS,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_BUSY,
    T_CONT,
    T_CPU,
    T_L0,
    T_LAST_CPU,
    T_LOOP,
    T_PC,
    T_RESCHED,
    T_RQ_SEQ,
    T_SLICE_START,
    T_STEP_END,
    T_STEP_NS,
    T_VRUNTIME,
    TRACE_EVENTS,
    CoState,
    new_state,
)
from epcsim.fast.cosim.task import spawn

OP_END = 0
OP_RUN = 1
OP_LOCK = 2
OP_UNLOCK = 3
OP_WAIT = 4
OP_WAKE = 5
OP_SPAWN = 6
OP_LOOP = 7
OP_USER = 8
OP_RESCHED = 9
OP_NAMES = ("END", "RUN", "LOCK", "UNLOCK", "WAIT", "WAKE", "SPAWN", "LOOP", "USER", "RESCHED")
#: a RUN, USER or LOCK row's third column: refused by the core, the task parks past the op
#: (the driver's machines' order; module docstring)
PAST = 1

#: ``run_programs`` ran out of room in its ``done`` log (the run is void)
DONE_FULL = -3


@core_jit
def resume(st, t, code, counters, done, dn):  # type: ignore[no-untyped-def]
    """Run task ``t``'s program from its pc until it blocks (R_BLOCKED), ends (R_OK) or
    the core hands back (R_STOP). Each completed op is logged ``(task, pc, ns)`` in
    ``done``. ``T_L0`` is 1 while the task is inside an op that blocked: when it resumes,
    that op is over, except WAIT, whose condition is checked again (``wait_event``'s loop).
    """
    tasks = st.tasks
    clk = st.clk
    pc = tasks[t, T_PC]
    while True:
        op = code[pc, 0]
        a = code[pc, 1]
        r = R_OK
        nxt = pc + 1
        if tasks[t, T_L0] != 0:
            tasks[t, T_L0] = 0
            if op != OP_WAIT:
                op = -1  # the op is complete: log it below
        if op == OP_RUN:
            r = perform(st, t, np.int64(RQ_RUN), a)
        elif op == OP_USER:
            r = perform(st, t, np.int64(RQ_RUN_USER), a)
        elif op == OP_RESCHED:
            r = perform(st, t, np.int64(RQ_RESCHED), a)
        elif op == OP_LOCK:
            r = perform(st, t, np.int64(RQ_LOCK), a)
        elif op == OP_UNLOCK:
            r = perform(st, t, np.int64(RQ_UNLOCK), a)
        elif op == OP_WAIT:
            if counters[a] > 0:
                counters[a] -= 1
            else:
                r = perform(st, t, np.int64(RQ_SLEEP), a)
        elif op == OP_WAKE:
            counters[a] += 1
            r = perform(st, t, np.int64(RQ_WAKE), a)
        elif op == OP_SPAWN:
            r = perform(st, t, np.int64(RQ_SPAWN), a)
        elif op == OP_LOOP:
            if tasks[t, T_LOOP] < code[pc, 2]:
                tasks[t, T_LOOP] += 1
                nxt = a  # logged below, then back to the loop's target
            else:
                tasks[t, T_LOOP] = 0
        elif op == OP_END:
            tasks[t, T_PC] = pc
            # served: the exit is a request too, and the serving process ends after it
            return (
                R_BLOCKED if perform(st, t, np.int64(RQ_EXIT), np.int64(0)) == R_BLOCKED else R_OK
            )
        if r == R_BLOCKED:
            tasks[t, T_PC] = pc
            tasks[t, T_L0] = 1
            return R_BLOCKED
        if r == R_STOP:
            tasks[t, T_PC] = pc
            if code[pc, 2] == PAST and op in (OP_RUN, OP_USER, OP_LOCK):
                tasks[t, T_L0] = 1  # parked past it: ``to_simpy`` runs its rest first
            else:
                tasks[t, T_CONT] = K_NONE  # at the op: asked for again, nothing to run first
            return R_STOP
        n = dn[0]
        if n >= done.shape[0]:
            return R_STOP
        done[n, 0] = t
        done[n, 1] = pc
        done[n, 2] = clk[C_NOW]
        dn[0] = n + 1
        pc = nxt


@core_jit
def run_programs(st, code, entry, starts, counters, done, dn):  # type: ignore[no-untyped-def]
    """Start the tasks whose ``starts`` is set (in task order, as ``Machine.spawn`` calls
    before ``env.run()``) and run every program until nothing is due: returns ``IDLE``,
    ``HANDED_BACK`` or ``DONE_FULL``."""
    p = borrow(st)
    tasks = st.tasks
    for t in range(tasks.shape[0]):
        tasks[t, T_PC] = entry[t]
        if starts[t]:
            spawn(p, t)
    return _drive(p, code, counters, done, dn)


@core_jit
def drive_programs(st, code, counters, done, dn):  # type: ignore[no-untyped-def]
    """The core's loop over the programs' tasks, from wherever they are (``run_programs``
    after the starts, or after a move from SimPy, ``transfer.to_core``)."""
    return _drive(borrow(st), code, counters, done, dn)


@core_jit
def resume_programs(st, t, code, counters, done, dn):  # type: ignore[no-untyped-def]
    """``resume`` called from Python (``program_served``'s served steps), on the borrowed
    state as ``_drive`` calls it: one compiled version of the primitives (``_drive``)."""
    return resume(borrow(st), t, code, counters, done, dn)


@core_jit
def _drive(p, code, counters, done, dn):  # type: ignore[no-untyped-def]
    """``drive_programs``' loop on the borrowed state (``cosim.borrow``). Why borrowed:
    the machines and ``driver/thread_bridge.drive`` call the primitives with a
    ``Borrowed(CoState)``; run by value, the programs compiled a second version of each
    primitive (``perform``, ``schedule``, ``lock``, ...) for the ``CoState`` tuple, ~36 s
    of numba's cold compile in the test suite (session ``suite``, 2026-11-26). Borrowed,
    they exercise the very versions the machines run, and compile them once. The
    primitives are the same code on either (``tests/fast/test_borrow.py``)."""
    while True:
        t = next_resume(p)
        if t < 0:
            return t
        r = resume(p, t, code, counters, done, dn)
        if r == R_STOP:
            return HANDED_BACK if p.clk[C_HB] != 0 else DONE_FULL


def compile_programs(programs: list[list[tuple[int, int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """The ops of every task in one ``int64`` array (an END appended to each), and each
    task's first row. LOOP targets are the task's own op numbers."""
    rows: list[tuple[int, int, int]] = []
    entry = np.zeros(len(programs), np.int64)
    for i, ops in enumerate(programs):
        base = len(rows)
        entry[i] = base
        for op, a, b in ops:
            if op == OP_LOOP:
                if not 0 <= a < len(ops):
                    raise ValueError(f"programs: LOOP target {a} outside task {i}'s ops")
                a += base
            rows.append((op, a, b))
        rows.append((OP_END, 0, 0))
    return np.array(rows, np.int64).reshape(-1, 3), entry


def run_core(
    programs: list[list[tuple[int, int, int]]],
    nr_cpus: int,
    *,
    starts: Sequence[bool] | None = None,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    costs: Costs | None = None,
    elide: bool = True,
    trace: bool = True,
    heap_capacity: int = 1024,
    trace_capacity: int = 1 << 16,
    done_capacity: int = 1 << 16,
    max_pops: int = 1 << 24,
    mutex: str = "linux",
    sched: str = "cfs",
    runq: bool = True,
    many: bool = False,
) -> Outcome:
    """Run ``programs`` on the compiled core; the same arguments as ``run_simpy``. A task
    that finds no idle CPU waits in the run queue (``runqueue.py``), or with ``runq``
    False the core hands back (``HB_NO_CPU``, as the machines' regime still has it).
    ``many`` sets ``clk[C_MANY]`` as ``threads_bridge.run_threads`` does (spinners beside
    the queue, the mutex's sleeping half, ``state.py``): no mover runs here, so the
    programs may take it (``tests/fast/test_poke_spinners.py``)."""
    code, entry = compile_programs(programs)
    n = len(programs)
    st = new_state(
        nr_cpus,
        n,
        nr_mutexes,
        nr_queues,
        costs=costs,
        elide=elide,
        heap_capacity=heap_capacity,
        trace_capacity=trace_capacity if trace else 0,
        max_pops=max_pops,
        mutex=mutex,
        sched=sched,
        runq=runq,
    )
    if many:
        st.clk[C_MANY] = 1
    starts_arr = np.ones(n, np.bool_) if starts is None else np.array(starts, np.bool_)
    if starts_arr.shape != (n,):
        raise ValueError(f"starts: one flag per task ({n}), got {len(starts_arr)}")
    counters = np.zeros(nr_queues, np.int64)
    done = np.zeros((done_capacity, 3), np.int64)
    dn = np.zeros(1, np.int64)
    rc = run_programs(st, code, entry, starts_arr, counters, done, dn)
    return outcome_of(st, done[: dn[0]], counters, rc)


def outcome_of(st: CoState, done: np.ndarray, counters: np.ndarray, rc: int) -> Outcome:
    """The core's arrays as an ``Outcome`` (task ``i`` is ``t{i}``)."""
    clk = st.clk
    tasks = st.tasks
    cols = (T_BUSY, T_CPU, T_LAST_CPU, T_VRUNTIME, T_SLICE_START, T_STEP_END, T_STEP_NS)
    mcols = (M_OWNER, M_CONTENDED, M_WAIT_NS, M_STEALS, M_HANDOFFS, M_SPIN_ACQUIRED)
    traces: list[list[tuple[int, str, str]]] = [[] for _ in range(st.mtx.shape[0])]
    for ns, ev, t, m in st.trace[: clk[C_TRACE_LEN]].tolist():
        traces[m].append((ns, TRACE_EVENTS[ev], f"t{t}"))
    handed = None
    if rc == HANDED_BACK:
        handed = HB_NAMES[int(clk[C_HB])]
    elif rc == DONE_FULL:
        handed = "done log full"
    return Outcome(
        now=int(clk[C_NOW]),
        pops=int(clk[C_POPS]),
        elided=int(clk[C_ELIDED]),
        done=[(a, b, c) for a, b, c in done.tolist()],
        tasks=[tuple(int(tasks[i, c]) for c in cols) for i in range(tasks.shape[0])],  # type: ignore[misc]
        mutexes=[tuple(int(st.mtx[i, c]) for c in mcols) for i in range(st.mtx.shape[0])],  # type: ignore[misc]
        traces=traces,
        free=[(int(r[M_FREE_SINCE]), int(r[M_FREED_FROM])) for r in st.mtx],
        counters=counters.tolist(),
        min_vruntime=int(clk[C_MIN_VR]),
        pending=[e[:3] for e in pending(st)],
        handed_back=handed,
        extra={
            "hb_task": int(clk[C_HB_TASK]),
            "hb_now": int(clk[C_HB_NOW]),
            "interrupts": int(clk[C_INTERRUPTS]),
            "resumed_now": int(clk[C_RESUMED_NOW]),
            "ran_over": int(clk[C_RAN_OVER]),
        },
        sched=(
            int(clk[C_CSW]),
            int(clk[C_WAKEUP_PREEMPT]),
            tuple(int(v) for v in tasks[:, T_RESCHED]),
            tuple(waiting_order(st)),
        ),
    )


def waiting_order(st: CoState) -> list[int]:
    """The tasks waiting in the core's run queue, in the order it picks them."""
    tasks = st.tasks
    rows = [i for i in range(tasks.shape[0]) if tasks[i, T_RQ_SEQ] > 0]
    if st.clk[C_FIFO_SCHED]:
        return sorted(rows, key=lambda i: int(tasks[i, T_RQ_SEQ]))
    return sorted(rows, key=lambda i: (int(tasks[i, T_VRUNTIME]), int(tasks[i, T_RQ_SEQ])))


# the ops that are engine requests as they stand (``simpy_program`` relies on it)
assert (OP_RUN, OP_LOCK, OP_UNLOCK, OP_WAKE, OP_SPAWN, OP_USER, OP_RESCHED) == (
    RQ_RUN,
    RQ_LOCK,
    RQ_UNLOCK,
    RQ_WAKE,
    RQ_SPAWN,
    RQ_RUN_USER,
    RQ_RESCHED,
)
