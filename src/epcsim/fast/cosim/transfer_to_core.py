"""SimPy -> core: ``to_core(served)`` moves the engine's whole pending state into the compiled
core's arrays at any instant between two events (``transfer.py``'s docstring: the SimPy and
CPython internals it reads).

Every event in ``env._queue`` must be one the core knows - a served task's resumption (its
process's Initialize, a ``run``'s timeout, a woken sleeper's or a poked spinner's event), a
spinner's timed poke (``LinuxMutex._fire``), a finished served process, a ``FifoMutex``
waiter's wake-up, a ``System.run(until=)`` deadline (``deadline.py``, kept as an
``EV_STOP`` row) - and the engine inside the core's regime (CFS or the FIFO run queue with
nobody waiting for a CPU, no ``LinuxMutex`` wait list or HANDOFF, no need_resched, no
flood); otherwise nothing moves and it answers False. A ``FifoMutex``'s sleepers move
(session ``fifo``): queued on its wait list, or handed the lock with their wake-up queued,
each waiting in ``task.sleep`` inside ``FifoMutex._lock_slow`` (or in the ``moved`` form
``to_simpy`` builds), with its ``t0``. The
events go into the core's heap with their own ``(time, priority, eid)``, ``env._eid``'s
next value becomes ``C_EID``, and the tasks' scheduler fields, the mutexes (owner, pick-up
times, counters, OSQ, each spinner's wait and generation), the wait queues' sleepers and
the clock go into the arrays.

The SimPy processes that a move to the core leaves behind are closed; their ``finally``
blocks (``_spin``'s) then run on state the core owns: what they change (``spinning``, the
OSQ, ``busy_ns``, a ``spin_fail`` in the trace, a poke into the queue) is discarded -
``to_simpy`` rewrites every field from the core. A task's *own* process
(``Served.serve_own``, session ``nthreads2``) is parked instead: its serving generator is
closed the same way, the process itself waits on nothing, and ``to_simpy`` re-points it.

Why a module of its own: one direction of the move (split from ``transfer.py`` by session
``split``, no code changed); it recognises the generators ``transfer_to_simpy`` builds
(``_wait``, ``_sleep_tail``) as a task's wait, hence its import of them.
"""

from __future__ import annotations

import sys
from itertools import count
from typing import Any

import numpy as np
from simpy.events import NORMAL as SIMPY_NORMAL
from simpy.events import URGENT as SIMPY_URGENT
from simpy.events import Interruption

from epcsim.engine.machine import Task
from epcsim.engine.mutex import FifoMutex, LinuxMutex, _Spinner
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim import transfer_lsleep as lsleep
from epcsim.fast.cosim import transfer_pokes as pokes
from epcsim.fast.cosim.deadline import is_stop, observed, stop_row
from epcsim.fast.cosim.frames import FIFO_LOCK_SLOW as _FIFO_LOCK_CODE
from epcsim.fast.cosim.frames import LINUX_LOCK_SLOW as _LOCK_SLOW_CODE
from epcsim.fast.cosim.frames import RUN as _RUN_CODE
from epcsim.fast.cosim.frames import RUN_USER as _RUN_USER_CODE
from epcsim.fast.cosim.frames import SLEEP as _SLEEP_CODE
from epcsim.fast.cosim.frames import SPIN as _SPIN_CODE
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_RUN_USER, RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_CPUQ_LEN,
    C_CSW,
    C_EID,
    C_ELIDED,
    C_FIFO_SCHED,
    C_FLOOD,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_MANY,
    C_MIN_VR,
    C_NONEMPTY_SINCE,
    C_NOW,
    C_POPS,
    C_QLEN,
    C_RQ_LEN,
    C_RQ_SEQ,
    C_SERVED,
    C_SPIN_SEQ,
    C_TRACE_LEN,
    C_WAKEUP_PREEMPT,
    DEAD,
    EV_END,
    EV_INIT,
    EV_INTR,
    EV_POKE,
    EV_RESUME,
    K_LSLOW,
    K_NONE,
    KEY_SHIFT,
    LS_SPIN,
    LS_WCPU,
    NORMAL,
    SE_PENDING,
    SE_TRIGGERED,
    T_BUSY,
    T_CONT,
    T_CONT_A,
    T_CPU,
    T_LAST_CPU,
    T_LOCK_T0,
    T_LS,
    T_LS_M,
    T_RESCHED,
    T_RQ,
    T_RQ_A,
    T_RQ_SEQ,
    T_SLICE_START,
    T_SPIN_EV,
    T_SPIN_GEN,
    T_SPIN_M,
    T_SPIN_SEQ,
    T_SPIN_T0,
    T_STARTED,
    T_STATE,
    T_STEP_END,
    T_STEP_NS,
    T_USER_NS,
    T_USER_T0,
    T_VRUNTIME,
    T_WAIT_M,
    T_WEV,
    TS_DONE,
    TS_INTR,
    TS_MSLEEP,
    TS_NEW,
    TS_RUN,
    TS_RUNQ,
    TS_SLEEP,
    TS_SPIN,
    TS_STARTING,
    URGENT,
)
from epcsim.fast.cosim.transfer_detach import detach
from epcsim.fast.cosim.transfer_flood import flood_in, flood_row
from epcsim.fast.cosim.transfer_intr import is_dead
from epcsim.fast.cosim.transfer_mutex_in import mutexes_in, waiters_moved
from epcsim.fast.cosim.transfer_pokes import _poke_of
from epcsim.fast.cosim.transfer_rq_in import CPU_WAITS, cpu_wait, queue_order
from epcsim.fast.cosim.transfer_to_simpy import _sleep_tail, _wait


def _next_eid(env: Any) -> int:
    """``env._eid``'s next value, without using it up."""
    n = next(env._eid)
    env._eid = count(n)
    return int(n)


def _frame_locals(gen: Any, code: Any) -> dict[str, Any] | None:
    """The locals of the generator running ``code`` in ``gen``'s ``yield from`` chain."""
    while gen is not None:
        if getattr(gen, "gi_code", None) is code:
            return dict(gen.gi_frame.f_locals)
        gen = getattr(gen, "gi_yieldfrom", None)
    return None


def _innermost(gen: Any) -> Any:
    """The code object the generator chain ``gen`` is suspended in (``yield from`` down)."""
    while getattr(gen, "gi_yieldfrom", None) is not None:
        gen = gen.gi_yieldfrom
    return gen.gi_code


def _in_regime(sv: Served) -> bool:
    """The engine inside the core's regime: nothing parked in a NOPAGE flood (the session's
    core taking it: ``transfer_flood``), CFS or the FIFO run queue, no
        ``LinuxMutex`` wait list or HANDOFF but with ``C_MANY`` (its sleeping half:
    ``transfer_lsleep.py``, session ``linuxmx``). Tasks waiting for a CPU and need_resched flags
        move (``transfer_rq_in.py``, session ``cmany``); without ``C_MANY`` not beside a
        spinner (the core's spin watches the tick only with it)."""
    m = sv.m
    if not isinstance(m.rq, CfsRunQueue | FifoRunQueue):
        return False
    if m.flood is not None and (m.flood.parked or not int(sv.st.clk[C_FLOOD])):
        return False
    many = int(sv.st.clk[C_MANY]) != 0
    for mx in sv.mutexes:
        if isinstance(mx, LinuxMutex):
            if (mx._waiters or mx.handoff) and not many:
                return False
        elif not isinstance(mx, FifoMutex):
            return False
    lone = not many and m.spinning
    return not (lone and (m.rq.waiting() or any(t._resched for t in m.spinning)))


def to_core(sv: Served) -> bool:
    """SimPy -> core (see the module docstring); False, with nothing moved, outside the
    core's regime or with an event in SimPy's queue that is not the core's."""
    if sv.mode != "simpy":
        raise RuntimeError("to_core: the machines are on the core already")
    if not _in_regime(sv):
        return False
    st = sv.st
    env = sv.env
    m = sv.m
    tix = {task: i for i, task in enumerate(sv.tasks)}
    flood = m.flood  # its timers queued move in (``transfer_flood.flood_row``)
    for lk in sv.mutexes:
        # a lock owned or slept on by a task the core does not hold (another enclave thread,
        # in Python, asleep on a FifoMutex: no event of it in SimPy's queue for the scan
        # below to refuse): the core could not run that task's hand-over
        if lk.owner is not None and lk.owner not in tix:
            return False
        if isinstance(lk, FifoMutex) and any(w not in tix for w, _ in lk._waiters):
            return False
        if isinstance(lk, LinuxMutex) and any(w.task not in tix for w in lk._waiters):
            return False
    mix = {mx: i for i, mx in enumerate(sv.mutexes)}
    # each ``FifoMutex``'s sleepers as (task, event) identities: a sleeper's entry is
    # looked up once per task, not by a scan of the wait list (session ``many64``: row
    # 10's shape, 64 threads, ~50 sleepers - 1,570 comparisons a move, ~1/2 of it)
    fifo_waits = [
        {(id(w), id(ev)) for w, ev in mx._waiters} if isinstance(mx, FifoMutex) else set()
        for mx in sv.mutexes
    ]
    many = int(st.clk[C_MANY]) != 0
    seqs = queue_order(m.rq, tix)
    if seqs is None:
        return False
    rq_events = _rq_events(m.rq, tix)
    cpu_waits: dict[int, tuple[int, int, int, int]] = {}  # t -> transfer_rq_in.cpu_wait's
    n_t = len(sv.tasks)
    state = np.full(n_t, TS_NEW, np.int64)
    user_ns = np.zeros(n_t, np.int64)  # a ``run_user`` step under way: its ns
    user_t0 = np.zeros(n_t, np.int64)  # ... and its ``t0``, which an interrupt reads
    spin: dict[int, tuple[int, _Spinner, int, int]] = {}  # t -> (mutex, rec, spin t0, lock t0)
    msleep: dict[int, tuple[int, int]] = {}  # t -> (FifoMutex, lock t0): asleep on it
    lsl: dict[int, lsleep.LSlow] = {}  # t -> in ``LinuxMutex._lock_slow`` (``transfer_lsleep``)
    events: dict[int, tuple[int, int, int]] = {}  # id(event) -> (kind, task, arg)
    sleepers: dict[int, int] = {}  # id(pending wait event) -> task
    # the queued Interruptions (a user step preempted, ``Machine._resched``), by process
    # the pokes the last move set aside, known by identity (``transfer_pokes.py``)
    queue, kept = pokes.split(sv, env._queue)
    interrupts = {id(ev.process): ev for _, _, _, ev in queue if isinstance(ev, Interruption)}
    for t, proc in enumerate(sv.procs):
        if proc is None:
            continue
        if not proc.is_alive:
            state[t] = TS_DONE
            if proc.callbacks is not None:  # scheduled, not processed yet
                events[id(proc)] = (EV_END, t, 0)
            continue
        target = proc._target
        if not sv.begun[t]:
            state[t] = TS_STARTING
            events[id(target)] = (EV_INIT, t, 0)
            continue
        rq = int(st.tasks[t, T_RQ])
        task = sv.tasks[t]
        # an own process (``Served.serve_own``) drives its serving generator: read that
        gen = proc._generator if sv.own[t] is None else sv.own[t]
        inner = _innermost(gen)
        if inner in CPU_WAITS:  # waiting for a CPU (the chain walked once, by ``_innermost``)
            # in the run queue, or picked with its event queued (``transfer_rq_in.py``)
            w = cpu_wait(gen, mix, many, st.tasks[t])
            if w is None:
                return False
            if w[0] == K_LSLOW:  # ``LinuxMutex._sleeping`` (``transfer_lsleep.py``)
                if not many:
                    return False
                lsl[t] = (TS_RUNQ, w[1], w[2], w[3], SE_TRIGGERED if w[1] == LS_WCPU else 0)
                w = (K_LSLOW, 0, -1, 0)
            cpu_waits[t] = w
            state[t] = TS_RUNQ
            if target.triggered:
                events[id(target)] = (EV_RESUME, t, 0)
            elif target is not rq_events.get(t):
                return False  # waiting, not on its queue entry's event
            continue
        if rq == RQ_RUN:
            if inner is not _RUN_CODE and inner is not _wait.__code__:
                return False  # waiting for a CPU (``acquire_cpu``'s event, maybe triggered)
            state[t] = TS_RUN
        elif rq == RQ_RUN_USER and isinstance(m.rq, FifoRunQueue):
            # ``run_user``'s ``sched != "cfs"`` branch: a plain timeout, busy time counted
            if inner is not _RUN_USER_CODE and inner is not _wait.__code__:
                return False  # waiting for a CPU
            state[t] = TS_RUN
        elif rq == RQ_RUN_USER and inner is _RUN_USER_CODE and task._user_proc is not proc:
            # interrupted (``Machine._resched``), its Interruption queued: the step's
            # timeout is dead, the core pops the Interruption (``EV_INTR``)
            user = _frame_locals(gen, _RUN_USER_CODE)
            assert user is not None
            intr = interrupts.pop(id(proc), None)
            if intr is None or task._user_proc is not None:
                return False
            events[id(intr)] = (EV_INTR, t, 0)
            events[id(target)] = (EV_END, t, DEAD)
            user_t0[t] = int(user["t0"])
            state[t] = TS_INTR
            continue
        elif rq == RQ_RUN_USER:
            if inner is not _RUN_USER_CODE or task._user_proc is not proc:
                return False  # waiting for a CPU, or preempted
            user = _frame_locals(gen, _RUN_USER_CODE)
            assert user is not None
            user_ns[t] = int(user["ns"])
            user_t0[t] = int(user["t0"])
            state[t] = TS_RUN
        elif rq == RQ_SLEEP:
            if inner is not _SLEEP_CODE and inner is not _sleep_tail.__code__:
                return False  # woken, waiting for a CPU
            state[t] = TS_SLEEP
            if not target.triggered:
                sleepers[id(target)] = t
        elif rq == RQ_LOCK and isinstance(sv.mutexes[int(st.tasks[t, T_RQ_A])], FifoMutex):
            mi = int(st.tasks[t, T_RQ_A])
            fm = sv.mutexes[mi]
            queued = (id(task), id(target)) in fifo_waits[mi]
            handed = fm.owner is task and target.triggered
            if not (queued or handed) or inner not in (_SLEEP_CODE, _FIFO_LOCK_CODE):
                return False  # woken and waiting for a CPU
            fl = _frame_locals(gen, _FIFO_LOCK_CODE)
            if fl is None:
                return False
            msleep[t] = (mi, int(fl["t0"]))
            state[t] = TS_MSLEEP
        elif rq == RQ_LOCK:
            mx = m.spinning.get(task)
            if isinstance(mx, LinuxMutex) and mx in mix and mx._spin_ev[task].osq:
                rec = mx._spin_ev[task]
                if rec.ev is not target or inner is not _SPIN_CODE:
                    return False
                sp = _frame_locals(gen, _SPIN_CODE)
                ls = _frame_locals(gen, _LOCK_SLOW_CODE)
                if sp is None or ls is None:
                    return False
                spin[t] = (mix[mx], rec, int(sp["t0"]), int(ls["t0"]))
                lsl[t] = lsleep.osq_spin(many, mix[mx])
                state[t] = TS_SPIN
            else:
                # ``LinuxMutex._sleeping`` waiting on ``target`` (``transfer_lsleep.py``)
                got = lsleep.read(gen, mix, target) if many else None
                if got is None:
                    return False
                lsl[t], wrec = got
                state[t] = lsl[t][0]
                if wrec is not None:
                    sp = _frame_locals(gen, _SPIN_CODE)
                    assert sp is not None
                    spin[t] = (lsl[t][2], wrec, int(sp["t0"]), lsl[t][3])
        else:
            return False
        if target.triggered:
            events[id(target)] = (EV_RESUME, t, 0)
    if not waiters_moved(sv, tix, lsl):
        return False
    # the wait queues hold only served sleepers' pending events
    wql: list[list[int]] = []
    for q in sv.queues:
        row = []
        for ev in q._waiters:
            if id(ev) not in sleepers:
                return False
            row.append(sleepers.pop(id(ev)))
        wql.append(row)
    if sleepers:
        return False  # a sleeper whose event no queue holds
    rows: list[tuple[int, int, int]] = []
    sv.stops = []
    for _, _, _, probe in [(0, 0, 0, object())]:  # ``is_dead``'s count, as the loop's
        base = sys.getrefcount(probe)
    stale: list[tuple[Any, int]] = []  # the stale pokes met below, with their tasks
    horizon: tuple[Any, Any, int] | None = None  # the first until event's key
    for time, prio, eid, ev in queue:
        ident = events.get(id(ev))
        held = sys.getrefcount(ev) - base  # before ``ev`` is an argument on the stack
        if ident is None and is_dead(ev, held):
            ident = (EV_END, 0, DEAD)  # a dead timeout (an interrupted step's): a no-op
        if ident is None:
            ident = _poke_of(ev, tix, mix, spin) or flood_row(sv, flood, ev, tix, mix)
            if ident is None:
                if is_stop(ev):  # a ``run(until=)`` deadline (``deadline.py``)
                    rows.append(stop_row(sv, time, prio, eid, ev))
                    if not observed(ev) and (horizon is None or (time, prio, eid) < horizon):
                        horizon = (time, prio, eid)
                    continue
                sv.stops = []
                return False
        kind, t, arg = ident
        if kind == EV_POKE and arg < 0:  # stale: to the core or aside (``transfer_pokes``)
            stale.append(((time, prio, eid, ev), t))
            continue
        rows.append((int(time), (int(prio) << KEY_SHIFT) | int(eid), kind | (t << 4) | (arg << 16)))
    kept, new_aside = pokes.set_aside(kept, stale, horizon, rows, tix)
    if len(rows) > st.heap.shape[0]:
        sv.stops = []
        return False
    # -- everything is known: write the arrays ------------------------------------------------
    clk = st.clk
    clk[C_NOW] = int(env._now)
    clk[C_EID] = _next_eid(env)
    clk[C_POPS] = sv.pops
    clk[C_ELIDED] = m.elided
    if isinstance(m.rq, FifoRunQueue):
        free = list(m.rq._free_cpus)
        clk[C_FIFO_SCHED] = 1
        clk[C_CPUQ_LEN] = len(free)
        st.cpuq[:] = -1
        st.cpuq[: len(free)] = free
    else:
        assert isinstance(m.rq, CfsRunQueue)  # _in_regime
        clk[C_FIFO_SCHED] = 0
        clk[C_MIN_VR] = m.rq.min_vruntime
        clk[C_NONEMPTY_SINCE] = m.rq._nonempty_since
        clk[C_WAKEUP_PREEMPT] = m.rq.wakeup_preemptions
    # the run queue's waiting tasks (``transfer_rq_in.py``): their order, what each goes
    # on with once picked; a task picked with its event queued has its continuation too
    if set(seqs) - set(cpu_waits):
        return False  # a queued task whose process is not waiting on the queue's event
    clk[C_RQ_LEN] = clk[C_RQ_SEQ] = len(seqs)
    clk[C_CSW] = m.context_switches
    st.tasks[:, T_RQ_SEQ] = 0
    st.tasks[:, T_CONT] = K_NONE
    for t, seq in seqs.items():
        st.tasks[t, T_RQ_SEQ] = seq
    st.tasks[:n_t, T_RESCHED] = [task._resched for task in sv.tasks]
    clk[C_TRACE_LEN] = 0
    clk[C_HB] = clk[C_HB_TASK] = clk[C_HB_NOW] = 0
    rows.sort()
    clk[C_QLEN] = len(rows)
    if rows:
        st.heap[: len(rows)] = np.array(rows, np.int64)  # sorted: a valid heap
    tasks = st.tasks
    st.cpus[:] = [-1 if r is None else tix[r] for r in m.running]
    order = {task: k for k, task in enumerate(m.spinning)}
    # every task's scheduler fields as whole columns, then the few rows a spin, a sleep on
    # a FifoMutex or a wait for a CPU add to (session ``many64``: row 10's 65 rows written
    # field by field were ~1/4 of a move; a task is in at most one of the three)
    tl = sv.tasks
    cols = tasks[:n_t]
    cols[:, T_STATE] = state
    cols[:, T_CPU] = [-1 if task.cpu is None else task.cpu for task in tl]
    cols[:, T_LAST_CPU] = [task.last_cpu for task in tl]
    cols[:, T_BUSY] = [task.busy_ns for task in tl]
    cols[:, T_STEP_END] = [task.step_end for task in tl]
    cols[:, T_STEP_NS] = [task.step_ns for task in tl]
    cols[:, T_SLICE_START] = [task.slice_start for task in tl]
    cols[:, T_VRUNTIME] = [task.vruntime for task in tl]
    cols[:, T_STARTED] = [task.started for task in tl]
    cols[:, T_USER_NS] = user_ns
    cols[:, T_USER_T0] = user_t0
    cols[:, T_SPIN_M] = -1
    cols[:, T_WAIT_M] = -1
    for t, (mi, rec, spin_t0, lock_t0) in spin.items():
        row = tasks[t]
        row[T_SPIN_M] = mi
        row[T_SPIN_T0] = spin_t0
        row[T_LOCK_T0] = lock_t0
        row[T_SPIN_GEN] = rec.gen
        row[T_SPIN_EV] = SE_TRIGGERED if rec.ev is not None and rec.ev.triggered else SE_PENDING
        row[T_SPIN_SEQ] = order[tl[t]]
    for t, (wm, lock_t0) in msleep.items():
        tasks[t, T_WAIT_M] = wm
        tasks[t, T_LOCK_T0] = lock_t0
    # ``LinuxMutex._lock_slow``'s contenders (``transfer_lsleep.py``, session ``linuxmx``)
    cols[:, T_LS] = 0
    cols[:, T_LS_M] = -1
    cols[:, T_WEV] = 0
    for t, (_, phase, ls_m, lock_t0, wev) in lsl.items():
        row = tasks[t]
        row[T_LS], row[T_LS_M], row[T_WEV] = phase, ls_m, wev
        if phase not in (0, LS_SPIN):
            row[T_LOCK_T0] = lock_t0
    for t, (cont, cont_a, wm, lock_t0) in cpu_waits.items():
        row = tasks[t]
        row[T_CONT], row[T_CONT_A] = cont, cont_a
        if wm >= 0:
            row[T_WAIT_M], row[T_LOCK_T0] = wm, lock_t0
    clk[C_SPIN_SEQ] = len(order)
    mutexes_in(sv, tix)
    for qi, row in enumerate(wql):
        st.wq[qi] = len(row)
        st.wql[qi] = -1
        st.wql[qi, : len(row)] = row
    if m.flood is not None:
        flood_in(sv, m.flood)
    pokes.keep(sv, kept, new_aside)
    detach(sv)
    clk[C_SERVED] = 0
    sv.mode = "core"
    return True


def _rq_events(rq: Any, tix: dict[Task, int]) -> dict[int, Any]:
    """Each waiting task's queue entry's event (``CfsRunQueue._rq``,
    ``FifoRunQueue._waiters``)."""
    if isinstance(rq, FifoRunQueue):
        return {tix[task]: ev for task, ev in rq._waiters if task in tix}
    return {tix[task]: ev for _, _, task, ev in rq._rq if task in tix}


# the priorities the core packs are SimPy's
assert (URGENT, NORMAL) == (SIMPY_URGENT, SIMPY_NORMAL)

__all__ = ["to_core"]
