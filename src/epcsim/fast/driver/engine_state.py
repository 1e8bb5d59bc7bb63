"""The engine's part of a driver call: the compiled core's arrays taken from the live
SimPy ``Machine`` (issue 9, PATHS.md).

Every driver call (``bridge.run_ksgxd``, ``thread_bridge.run_thread``/``run_pair``,
``stream``'s loop-top entry) starts the same way: a core with one row per task, its clock
at SimPy's, the next eid drawn from ``env._eid`` (and put back), CFS's ``min_vruntime`` and
latency (or ``FifoRunQueue``'s free-CPU deque), each task's scheduler fields and
``encl->lock``'s pick-up times (``LinuxMutex``; a ``FifoMutex`` has none). ``take_engine``
does that once; each caller then sets what its entry instant has of its own (which task
sleeps on ``ksgxd_waitq``, the program counters). ``transfer.to_core`` is the general
form (any pending state); this is the entry of the calls whose regime starts with an
empty queue and a free lock.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Task
from epcsim.engine.mutex import FifoMutex, LinuxMutex, Mutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.state import (
    C_CPUQ_LEN,
    C_CSW,
    C_EID,
    C_ELIDED,
    C_LATENCY,
    C_MIN_VR,
    C_NONEMPTY_SINCE,
    C_NOW,
    C_WAKEUP_PREEMPT,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFFS,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    T_BUSY,
    T_CPU,
    T_LAST_CPU,
    T_SLICE_START,
    T_STARTED,
    T_STEP_END,
    T_STEP_NS,
    T_VRUNTIME,
    CoState,
    new_state,
)

if TYPE_CHECKING:
    from epcsim.system import System


def take_engine(
    system: System,
    tasks: Sequence[Task],
    mutex: Mutex,
    trace: bool,
    more: Sequence[Mutex] = (),
    runq: bool = False,
    heap_capacity: int = 64,
) -> CoState:
    """A core whose task row ``t`` is ``tasks[t]`` (on the CPU it holds, if any), with one
    mutex (``mutex``, free) and one wait queue (empty), at SimPy's instant; ``trace``
    gives it a mutex trace buffer. ``more``: further free mutexes of the same kind, rows
    1, 2, ... (the second enclave slot's ``encl->lock``, PATHS.md "Two enclaves in the
    regime", item 3). ``runq``: a task that finds no idle CPU waits in the core's run
    queue (``cosim/runqueue.py``; the user path's sessions, session ``onecpu2``) instead of
    the core handing back (``HB_NO_CPU``). ``heap_capacity``: the event heap's rows (a
    full heap is a void run, ``HB_QUEUE_FULL``); 64 takes the one-thread sessions, a caller
    with many task rows sizes it with them (``threads_bridge``, session ``runq64``)."""
    m = system.machine
    rq = m.rq
    fifo_mutex = isinstance(mutex, FifoMutex)
    co = new_state(
        m.nr_cpus, len(tasks), 1 + len(more), 1, costs=m.costs, elide=m.elide,
        heap_capacity=heap_capacity,
        trace_capacity=(1 << 16) if trace else 0, mutex="fifo" if fifo_mutex else "linux",
        sched="fifo" if isinstance(rq, FifoRunQueue) else "cfs", runq=runq,
        sched_slice_ns=m.sched_slice_ns,
    )  # fmt: skip
    clk = co.clk
    clk[C_NOW] = int(m.env._now)
    eid = next(m.env._eid)
    m.env._eid = itertools.count(eid)
    clk[C_EID] = eid
    if isinstance(rq, FifoRunQueue):
        free = list(rq._free_cpus)
        clk[C_CPUQ_LEN] = len(free)
        co.cpuq[:] = -1
        co.cpuq[: len(free)] = free
    else:
        assert isinstance(rq, CfsRunQueue)  # the callers' regime checks
        clk[C_MIN_VR] = rq.min_vruntime
        clk[C_LATENCY] = rq.latency_ns
        clk[C_NONEMPTY_SINCE] = rq._nonempty_since
        clk[C_WAKEUP_PREEMPT] = rq.wakeup_preemptions
    # absolute, as ``transfer.to_simpy`` writes them back (nobody waits for a CPU at entry)
    clk[C_CSW] = m.context_switches
    clk[C_ELIDED] = 0
    for t, task in enumerate(tasks):
        row = co.tasks[t]
        row[T_CPU] = -1 if task.cpu is None else task.cpu
        row[T_LAST_CPU] = task.last_cpu
        row[T_BUSY] = task.busy_ns
        row[T_STEP_END] = int(task.step_end)
        row[T_STEP_NS] = task.step_ns
        row[T_SLICE_START] = task.slice_start
        row[T_VRUNTIME] = task.vruntime
        row[T_STARTED] = int(task.started)
        if task.cpu is not None:
            co.cpus[task.cpu] = t
    for row, mu in enumerate((mutex, *more)):
        mx = co.mtx[row]
        mx[M_OWNER] = -1
        if isinstance(mu, LinuxMutex):
            mx[M_FREE_SINCE] = int(mu._free_since)
            mx[M_FREED_FROM] = int(mu._freed_from)
            mx[M_HANDED_AT] = int(mu._handed_at)
    return co


def absolute_counters(co: CoState, elided: int, mutex: Mutex, *more: Mutex) -> None:
    """Write the engine's elided-step count and ``encl->lock``'s contention counters into
    ``co`` as absolute values (``more``: the further mutex rows', ``take_engine``'s).
    ``take_engine`` leaves them at zero, for the calls whose fold adds the core's deltas; a
    core that ``transfer.to_simpy`` may hand to SimPy mid-call (``served_ksgxd``,
    ``stream_ksgxd``) needs them absolute, since the move writes them back as they are."""
    co.clk[C_ELIDED] = elided
    for row, mu in enumerate((mutex, *more)):
        for col, v in (
            (M_CONTENDED, mu.contended),
            (M_WAIT_NS, mu.wait_ns),
            (M_STEALS, mu.steals),
            (M_HANDOFFS, mu.handoffs),
            (M_SPIN_ACQUIRED, mu.spin_acquired),
        ):
            co.mtx[row, col] = v


def fold_clock(m: Any, clk: Any) -> None:
    """``take_engine``'s inverse for the engine: SimPy's clock and eid counter, and the
    elided steps, from the core's ``clk`` (every bridge's fold starts with it)."""
    m.env._now = int(clk[C_NOW])
    m.env._eid = itertools.count(int(clk[C_EID]))
    m.elided += int(clk[C_ELIDED])


def fold_task(task: Task, row: Any) -> None:
    """``take_engine``'s inverse for one task: its scheduler fields from core row ``row``."""
    cpu = int(row[T_CPU])
    task.cpu = None if cpu < 0 else cpu
    task.last_cpu = int(row[T_LAST_CPU])
    task.busy_ns = int(row[T_BUSY])
    task.step_end = int(row[T_STEP_END])
    task.step_ns = int(row[T_STEP_NS])
    task.slice_start = int(row[T_SLICE_START])
    task.vruntime = int(row[T_VRUNTIME])
    task.started = bool(row[T_STARTED])


__all__ = ["fold_clock", "fold_task", "take_engine"]
