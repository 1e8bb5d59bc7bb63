"""The plain data of a move back to SimPy (``transfer_to_simpy.to_simpy``'s first part): the
core's clock, eid count, pops, elisions, CPUs, context switches and run-queue scalars, every
task's scheduler fields, the mutexes' owners, counters, pick-up times and OSQ, and the rows
of the core's mutex trace appended to each ``Mutex.trace`` - everything ``System.stats()``,
the invariant checker (``kernel/check.py``: ``encl->lock``'s owner) and a thread's fields
read, and no SimPy process, event or wait list.

Why a function of its own (session ``resident``, issue 9 row 10): a group left *resident*
on the core at a ``run(until=)`` deadline (``fast/driver/group_resident.py``) writes this
part alone at each slice's end, and ``to_simpy`` writes it again when the group is
materialised - written once, used by both. Writing it twice is exact: every field is set
from the core's arrays, which nothing changes in between, and the trace rows are appended
once (``C_TRACE_LEN`` is zeroed after the append). A ``FifoMutex``'s and a
``LinuxMutex``'s waiter lists, the spinners' records and the run queue's entries are left
as they are (stale): they are SimPy's structures, built by ``to_simpy`` alone.
"""

from __future__ import annotations

from collections import deque
from itertools import count

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_CPUQ_LEN,
    C_CSW,
    C_EID,
    C_ELIDED,
    C_MIN_VR,
    C_NONEMPTY_SINCE,
    C_NOW,
    C_POPS,
    C_TRACE_LEN,
    C_WAKEUP_PREEMPT,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFFS,
    M_OSQ_LEN,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    T_BUSY,
    T_CPU,
    T_LAST_CPU,
    T_RESCHED,
    T_SLICE_START,
    T_STARTED,
    T_STEP_END,
    T_STEP_NS,
    T_VRUNTIME,
    TRACE_EVENTS,
)


def write_plain(sv: Served) -> list[list[int]]:
    """The plain data (module docstring) from the core's arrays into SimPy's objects;
    returns every task's row as lists (``to_simpy`` reads them on)."""
    st = sv.st
    clk = st.clk
    env = sv.env
    m = sv.m
    rq = m.rq
    tasks = st.tasks
    env._now = int(clk[C_NOW])
    env._eid = count(int(clk[C_EID]))
    sv.pops = int(clk[C_POPS])
    m.elided = int(clk[C_ELIDED])
    m.running = [None if r < 0 else sv.tasks[r] for r in st.cpus.tolist()]
    m.context_switches = int(clk[C_CSW])
    if isinstance(rq, FifoRunQueue):
        rq._free_cpus = deque(st.cpuq[: int(clk[C_CPUQ_LEN])].tolist())
    else:
        assert isinstance(rq, CfsRunQueue)
        rq.min_vruntime = int(clk[C_MIN_VR])
        rq._idle = [c for c, r in enumerate(m.running) if r is None]
        rq._nonempty_since = int(clk[C_NONEMPTY_SINCE])
        rq.wakeup_preemptions = int(clk[C_WAKEUP_PREEMPT])
    # every task's row in one conversion (session ``many64``: one ``tolist`` a task before)
    rows = tasks[: len(sv.tasks)].tolist()
    for task, row in zip(sv.tasks, rows, strict=True):
        task.cpu = None if row[T_CPU] < 0 else row[T_CPU]
        task.last_cpu = row[T_LAST_CPU]
        task.busy_ns = row[T_BUSY]
        task.step_end = row[T_STEP_END]
        task.step_ns = row[T_STEP_NS]
        task.slice_start = row[T_SLICE_START]
        task.vruntime = row[T_VRUNTIME]
        task.started = bool(row[T_STARTED])
        task._resched = bool(row[T_RESCHED])
        task._user_proc = None  # set again below for a user step under way
    n_tr = int(clk[C_TRACE_LEN])
    for ns, ev, t, mi in st.trace[:n_tr].tolist():
        tr = sv.mutexes[mi].trace
        if tr is not None:
            tr.append((ns, TRACE_EVENTS[ev], sv.tasks[t].name))
    clk[C_TRACE_LEN] = 0
    for i, mx in enumerate(sv.mutexes):
        r = st.mtx[i].tolist()
        mx.owner = None if r[M_OWNER] < 0 else sv.tasks[r[M_OWNER]]
        mx.contended = r[M_CONTENDED]
        mx.wait_ns = r[M_WAIT_NS]
        mx.steals = r[M_STEALS]
        mx.handoffs = r[M_HANDOFFS]
        mx.spin_acquired = r[M_SPIN_ACQUIRED]
        mx._waiters = deque()  # a FifoMutex's sleepers: below, once their events exist
        if isinstance(mx, FifoMutex):
            continue
        assert isinstance(mx, LinuxMutex)
        mx.handoff = False
        mx._free_since = r[M_FREE_SINCE]
        mx._freed_from = r[M_FREED_FROM]
        mx._handed_at = r[M_HANDED_AT]
        mx._osq = [sv.tasks[x] for x in st.osq[i, : r[M_OSQ_LEN]].tolist()]
        mx._spin_ev = {}
    return rows


__all__ = ["write_plain"]
