"""Several enclave threads and ksgxd on the compiled core: ``run_threads(system, threads,
streams)`` (PATHS.md "Several threads on the core", step 1: N1-N3; session ``nthreads``).

What it is: the direct entry of the N threads' machines, as ``thread_bridge.run_pair`` is
the one thread's - a built ``System``, ksgxd asleep, SimPy's queue empty, each thread
holding no CPU; its processes are started in order (each's Initialize takes the next eid)
and the core runs them and ksgxd until every stream is done, every thread's process has
ended and ksgxd sleeps again with nothing queued. The reference equivalent is
``start_streams`` then ``env.run()``: each thread's process runs its stream
(``access_stream``) and then leaves its CPU, as ``System._call``'s wrapper does
(``Enclave.access_pages``); the differential test
(``tests/fast/test_threads_core.py``) compares every object after both.

The regime (``_check_threads``): ``run_pair``'s (one enclave, ``tag`` contents, ...),
CFS or the model's FIFO CPUs, Linux's or the FIFO mutex, with every thread its own TCS.
Since session ``runq64`` (PATHS.md "Several threads on the core", step 2) threads + ksgxd
may exceed the CPUs: the core's run queue takes the tasks waiting for one (placement,
wake-up preemption - a thread's user step interrupted, taken by its machine -,
``yield_cpu`` at the machines' preemption points, picks, the lazy tick) and
``clk[C_MANY]`` turns on what only more tasks than CPUs reach (``cosim/state.py``): a
spinner watching the tick and leaving on need_resched, ``LinuxMutex``'s sleeping half
(``cosim/mutex_sleep.py``: the wait list, HANDOFF, the waiter's wake-up). Its event heap
has ``HEAP_ROWS`` rows. The user path (``Enclave.start`` under ``System.run``, N6) is not
built on it yet: PATHS.md, "What is built (session ``nthreads``)".

How the machines take N threads (PATHS.md N1-N3, built here and in the machines):

* Task rows 0..N-1 are the threads, N is ksgxd (``thread_bridge.drive`` runs
  ``thread_run`` for a task below the thread rows' count); the threads' ``TState``s are
  stacked (``tstate.stack``) and each machine call takes its row's views
  (``tstate.thread_row``); the fault latencies share one buffer, in the order the faults
  end, as the reference's histogram keeps them.
* ``K_INSIDE``/``K_TRACKING`` are LP bit masks (``kstate``): each thread sets and clears
  its own LP's bit; ETRACK copies the mask; ``K_THREAD_T``/``K_NTHREADS`` name the thread
  rows whose CPUs ksgxd's ``send_ipi`` adds and whose LPs its IPI makes AEX (``reclaim.py``).
* The fold (``thread_fold.fold_threads``) folds each row and every LP's state from the
  mask.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_CPUQ_LEN,
    C_CSW,
    C_FL_AEXF,
    C_FL_BULK,
    C_FL_PARKED,
    C_FL_PARKS,
    C_FL_RESCHED,
    C_FL_TCS_PARKS,
    C_FL_TCS_ZAPPED,
    C_FL_WOKEN,
    C_FLOOD,
    C_HB,
    C_HB_TASK,
    C_INTERRUPTS,
    C_MANY,
    C_MIN_VR,
    C_NONEMPTY_SINCE,
    C_POPS,
    C_RQ_SEQ,
    C_TRACE_LEN,
    C_WAKEUP_PREEMPT,
    HANDED_BACK,
    HB_NAMES,
    IDLE,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFF,
    M_HANDOFFS,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    T_PC,
    T_RESCHED,
    T_STATE,
    TRACE_EVENTS,
    TS_SLEEP,
    CoState,
)
from epcsim.fast.cosim.task import spawn
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import _kernel_state, _refuse
from epcsim.fast.driver.engine_state import fold_clock, fold_task, take_engine
from epcsim.fast.driver.ksgxd import P_WAIT
from epcsim.fast.driver.slots import check_slots
from epcsim.fast.driver.thread_bridge import (
    SERVE,
    _check_thread,
    _entry,
    _serve_thread,
    _thread_state,
    drive,
)
from epcsim.fast.driver.thread_fold import fold_threads
from epcsim.fast.driver.thread_pc import P_NAMES, P_TOP
from epcsim.user.thread import AccessOutcome, EnclaveThread

if TYPE_CHECKING:
    from collections.abc import Sequence

    from epcsim.system import System


@dataclass
class ThreadsResult:
    """What a call did: each thread's ``AccessOutcome`` (so far, after a hand-back);
    ``handed_back`` None after a clean end, else the reason (``kstate.KB_NAMES`` or the
    core's ``HB_NAMES``), ``task`` the core's task row that met it (ksgxd is
    ``len(outcomes)``), ``pcs`` each thread's pc, ``page`` the page it concerns."""

    outcomes: list[AccessOutcome]
    handed_back: str | None
    pcs: list[str]
    task: int = -1
    page: int = -1
    services: dict[str, int] = field(default_factory=dict)
    #: what ran on the core (session ``runq64``, for the tests' guard): its run queue's
    #: context switches and wake-up preemptions, user steps interrupted, and
    #: ``encl->lock``'s contended acquisitions, steals and HANDOFFs
    core: dict[str, int] = field(default_factory=dict)


#: the core's event heap (rows of 3 int64: 6 MiB). With more tasks than CPUs every
#: spinner's re-check arms a poke at the next tick, and a poke re-armed before it is due
#: stays queued until then (SimPy's too: it is popped and does nothing) - thousands a tick
#: when ksgxd's EWB phases unlock every microsecond. A full heap is a void run
#: (``HB_QUEUE_FULL``, reported as the hand-back), never a wrong one.
HEAP_ROWS = 1 << 18


def _check_threads(system: System, threads: Sequence[EnclaveThread], encl: Any) -> None:
    """``run_pair``'s checks per thread, and N1-N3's regime: a TCS each (any number of
    CPUs since session ``runq64``: the core's run queue, N4; with ``nopage_flood="bulk"``
    too since session ``floodq``: the parked flood beside the run queue)."""
    if not threads:
        _refuse("no thread")
    for thread in threads:
        _check_thread(system, thread, encl)
    if len({t.tcs_index for t in threads}) != len(threads):
        _refuse("two threads share a TCS (EENTER would find it busy)")
    if len({id(t) for t in threads}) != len(threads):
        _refuse("a thread is listed twice")


def _core_state(system: System, threads: Sequence[EnclaveThread], trace: bool) -> CoState:
    """The core at the call's entry: task rows 0..N-1 the threads about to start, N ksgxd
    asleep on ``ksgxd_waitq``, ``encl->lock`` free, every CPU idle. With
    ``nopage_flood="bulk"`` a retrier whose allocation finds no free page parks
    (``C_FLOOD``, ``cosim/flood_park.py``). Its timers stay queued once stale, as SimPy's
    do (a park's tick timer up to a tick ahead, one per park): ``HEAP_ROWS`` has room for
    them (a full heap hands back ``HB_QUEUE_FULL``; 64 rows overflowed at once)."""
    kt = system.sgx.ksgxd_task
    assert kt is not None
    mutex = threads[0].encl.lock
    n = len(threads)
    # the run queue on (step 2, session ``runq64``): threads + ksgxd may exceed the CPUs;
    # the heap sized with the rows: each task's own event, an interrupted step's dead
    # timeout and a spinner's stale pokes (every re-check while a task waits for a CPU
    # arms one for the next tick) - 64 rows a task, ~100 KB at row 10's 65 tasks
    co = take_engine(system, [*threads, kt], mutex, trace, runq=True, heap_capacity=HEAP_ROWS)
    co.clk[C_MANY] = 1  # spinners beside the queue, the mutex's sleeping half (state.py)
    if system.sgx.flood is not None:  # the parked flood (``cosim/flood_park.py``)
        costs = system.machine.costs
        co.clk[C_FLOOD] = 1
        co.clk[C_FL_AEXF] = costs.aex + costs.fault_entry
    co.tasks[n, T_STATE] = TS_SLEEP
    co.tasks[n, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = n
    co.tasks[:n, T_PC] = P_TOP
    return co


def _fold(
    system: System,
    threads: Sequence[EnclaveThread],
    encl: Any,
    secs: Any,
    co: CoState,
    ks: Any,
    rows: list[Any],
) -> None:
    """The small arrays back into the Python objects (``thread_bridge._fold``'s, per row)."""
    sgx = system.sgx
    m = system.machine
    kt = sgx.ksgxd_task
    assert kt is not None
    clk = co.clk
    fold_clock(m, clk)
    tasks = (*threads, kt)
    for t, task in enumerate(tasks):
        fold_task(task, co.tasks[t])
        task._resched = bool(co.tasks[t, T_RESCHED])
    m.context_switches = int(clk[C_CSW])
    for c in range(m.nr_cpus):
        r = int(co.cpus[c])
        m.running[c] = None if r < 0 else tasks[r]
    rq = m.rq
    if isinstance(rq, FifoRunQueue):  # the free-CPU deque in the core's order
        rq._free_cpus = deque(co.cpuq[: int(clk[C_CPUQ_LEN])].tolist())
    else:
        assert isinstance(rq, CfsRunQueue)  # check_slots
        rq.min_vruntime = int(clk[C_MIN_VR])
        rq._idle = [c for c in range(m.nr_cpus) if co.cpus[c] < 0]
        # the run queue's fields (empty at a clean end: every thread has left its CPU)
        rq._seq += int(clk[C_RQ_SEQ])
        rq._nonempty_since = int(clk[C_NONEMPTY_SINCE])
        rq.wakeup_preemptions = int(clk[C_WAKEUP_PREEMPT])
    mutex = encl.lock
    mx = co.mtx[0]
    mutex.owner = None if mx[M_OWNER] < 0 else tasks[int(mx[M_OWNER])]
    if isinstance(mutex, LinuxMutex):
        mutex._free_since = int(mx[M_FREE_SINCE])
        mutex._freed_from = int(mx[M_FREED_FROM])
        mutex._handed_at = int(mx[M_HANDED_AT])
        mutex.handoff = bool(mx[M_HANDOFF])
    else:  # a FifoMutex: its sleepers (none at a clean end; after a hand-back the
        # ``System`` is not run further, as ``run_pair``'s)
        assert isinstance(mutex, FifoMutex)  # check_slots
    flood = system.sgx.flood
    if flood is not None:  # the parked flood's counters (``cosim/flood_park.py``)
        flood.bulk_retries += int(clk[C_FL_BULK])
        flood.parks += int(clk[C_FL_PARKS])
        clk[C_FL_BULK] = 0
        clk[C_FL_PARKS] = 0
    mutex.contended += int(mx[M_CONTENDED])
    mutex.wait_ns += int(mx[M_WAIT_NS])
    mutex.steals += int(mx[M_STEALS])
    mutex.handoffs += int(mx[M_HANDOFFS])
    mutex.spin_acquired += int(mx[M_SPIN_ACQUIRED])
    if mutex.trace is not None:
        for ns, ev, t, _m in co.trace[: clk[C_TRACE_LEN]].tolist():
            mutex.trace.append((ns, TRACE_EVENTS[ev], tasks[t].name))
    fold_threads(system, list(threads), encl, secs, ks, rows)


def _streams(
    encl: Any, streams: Sequence[Any], writes: Sequence[bool | np.ndarray] | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each stream as ``run_pair`` takes it: int64 page indices and a bool per access,
    C-contiguous and writable copies (one compiled signature)."""
    out = []
    for r, pages in enumerate(streams):
        p = np.array(pages, dtype=np.int64, order="C")
        if p.ndim != 1:
            raise ValueError(f"streams[{r}]: one dimension of page indices, got {p.shape}")
        if p.size and (p.min() < 0 or p.max() >= encl.nr_pages):
            raise ValueError(f"streams[{r}]: index outside the enclave")
        w = False if writes is None else writes[r]
        wa = np.array(np.broadcast_to(np.asarray(w, dtype=np.bool_), p.shape), order="C")
        out.append((p, wa))
    return out


def run_threads(
    system: System,
    threads: Sequence[EnclaveThread],
    streams: Sequence[Any],
    writes: Sequence[bool | np.ndarray] | None = None,
    *,
    trace: bool | None = None,
    budget: int | None = None,
) -> ThreadsResult:
    """Thread ``threads[r]`` runs ``access_stream(streams[r], writes[r])`` in its own
    process, all started now in order, with ksgxd, on the compiled core (module
    docstring); ``system`` in the regime (ValueError otherwise). The reference's
    equivalent is ``start_streams(system, threads, streams, writes)``, then
    ``env.run()``.

    ``budget``: at most that many of the core's events (``C_POPS``, one per SimPy
    ``env.step`` of the same run), then a clean hand-back, "event budget spent"
    (``HB_BUDGET``; the ``System`` is not run further, as after any hand-back). The
    tests' bound on a run that does not end (session ``fixes``, ``tests/README.md``): a
    livelock - parked rows keeping their CPUs tick after tick while the run queue
    waits, simulated time racing ahead - is then a failure in milliseconds, not a hang."""
    encl, secs = check_slots(system, 1, fifo=True, flood=True)[0]
    if len(streams) != len(threads) or (writes is not None and len(writes) != len(threads)):
        raise ValueError("streams, writes: one per thread")
    _check_threads(system, threads, encl)
    data = _streams(encl, streams, writes)
    if trace is None:
        trace = encl.lock.trace is not None
    n = len(threads)
    co = _core_state(system, threads, trace)
    ks = _kernel_state(system, encl, secs)
    ks.kc[K.K_THREAD_T] = 0
    ks.kc[K.K_NTHREADS] = n
    tsx, rows = T.stack(
        [
            _thread_state(system, th, p, w, alone=False)
            for th, (p, w) in zip(threads, data, strict=True)
        ]
    )
    csw0, wp0 = int(co.clk[C_CSW]), int(co.clk[C_WAKEUP_PREEMPT])
    if budget is not None:  # ``dispatch.next_resume``'s check, before each pop
        co.clk[C_BUDGET] = int(co.clk[C_POPS]) + max(1, budget)
    for t in range(n):
        spawn(co, t)  # each thread's process starts, in order (its Initialize's eid)
    counts: dict[str, int] = {}
    run = _entry(drive)
    pending = -1
    while True:
        rc = run(co, ks, tsx, pending)
        if rc > SERVE:
            break
        t = SERVE - rc
        if t < n:
            # the shared latency buffer's count is row 0's (``tstate.stack``)
            row = rows[0] if int(ks.kc[K.K_SVC]) == K.SVC_LAT_FULL else rows[t]
            ks = _serve_thread(system, encl, ks, row, counts)
        else:
            from epcsim.fast.driver.bridge import _serve

            ks = _serve(system, encl, ks, counts)
        pending = t
    core = {
        "switches": int(co.clk[C_CSW]) - csw0,
        "preemptions": int(co.clk[C_WAKEUP_PREEMPT]) - wp0,
        "interrupts": int(co.clk[C_INTERRUPTS]),
        "contended": int(co.mtx[0, M_CONTENDED]),
        "steals": int(co.mtx[0, M_STEALS]),
        "handoffs": int(co.mtx[0, M_HANDOFFS]),
        # TCS faults run on the core (``vma_fault.tcs_fault``, session ``tcsfault``)
        "tcs_faults": sum(int(ts.tc[T.TC_TCS_FAULTS]) for ts in rows),
        # the parked flood with the run queue (session ``floodq``): parked rows a wake-up
        # preemption resched, parks ended with need_resched due (the row then yields its
        # CPU at its handler's mutex_lock), and parks of the TCS fault's retries
        "flood_woken": int(co.clk[C_FL_WOKEN]),
        "flood_resched": int(co.clk[C_FL_RESCHED]),
        "flood_tcs_parks": int(co.clk[C_FL_TCS_PARKS]),
        # a parked row's TCS zapped: its ERESUME checks (``_tcs_zapped``)
        "flood_tcs_zapped": int(co.clk[C_FL_TCS_ZAPPED]),
    }
    _fold(system, threads, encl, secs, co, ks, rows)
    outcomes = [AccessOutcome(done=int(ts.tc[T.TC_DONE])) for ts in rows]
    pcs = [P_NAMES[int(co.tasks[t, T_PC])] for t in range(n)]
    if rc == IDLE:
        assert all(ts.tc[T.TC_FINISHED] for ts in rows) and co.clk[C_FL_PARKED] == 0
        return ThreadsResult(outcomes, None, pcs, services=counts, core=core)
    assert rc == HANDED_BACK
    hb = int(co.clk[C_HB])
    why = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
    return ThreadsResult(
        outcomes, why, pcs, int(co.clk[C_HB_TASK]), int(ks.kc[K.K_HB_PAGE]), counts, core
    )


def start_streams(
    system: System,
    threads: Sequence[EnclaveThread],
    streams: Sequence[Any],
    writes: Sequence[bool | np.ndarray] | None = None,
) -> list[Any]:
    """The reference's side of ``run_threads``: each thread's process started in order,
    running its stream and then leaving its CPU (``System._call``'s wrapper, as
    ``Enclave.access_pages`` runs it), not run yet. Returns the processes (their values
    are the ``AccessOutcome``s once ``env.run()`` has run them)."""
    procs = []
    for r, thread in enumerate(threads):
        w = False if writes is None else writes[r]
        gen = thread.access_stream(np.asarray(streams[r]), w)

        def wrapper(gen: Any = gen, thread: EnclaveThread = thread) -> Any:
            try:
                result = yield from gen
            finally:
                thread.release_cpu()
            return result

        procs.append(system.machine.spawn(wrapper()))
    return procs


__all__ = ["ThreadsResult", "run_threads", "start_streams"]
