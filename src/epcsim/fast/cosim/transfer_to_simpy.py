"""Core -> SimPy: ``to_simpy(served)`` moves the compiled core's pending state back into
SimPy, the mirror image of ``transfer_to_core.to_core`` (``transfer.py``'s docstring: the
SimPy and CPython internals it uses).

``queue.pending`` in order becomes SimPy events with the core's eids (pushed into
``env._queue``; ``env._eid`` continues the core's count), each the resumption of a new
process that finishes the task's request in progress and then serves its machine
(``Served.serve``): a ``run``'s timeout, a sleeper's ``Task.sleep`` tail
(``acquire_cpu``), a spinner's ``LinuxMutex._lock_slow`` entered with ``moved`` (its spin
goes on from its wait), a ``FifoMutex`` waiter's ``_lock_slow`` entered with ``moved``
(``task.sleep``'s tail, then the hand-over); a timed poke becomes a timeout calling
``LinuxMutex._fire`` for the spin and generation it was armed for; a ``System.run(until=)``
deadline the core held (``deadline.py``) is its own until event again; a spinner's or
sleeper's pending wait is a pending SimPy event (``_spin_ev``, ``WaitQueue._waiters``, a
``FifoMutex``'s ``_waiters``). The CPUs go back as ``CfsRunQueue``'s idle list or
``FifoRunQueue``'s free-CPU deque (``cpuq``'s order). Rows of the core's mutex trace are
appended to the ``Mutex.trace`` lists.

Why a module of its own: one direction of the move (split from ``transfer.py`` by session
``split``, no code changed), with the generators it builds (``_wait``, ``_sleep_tail``,
``_lock_tail``); the processes (``_process``, ``_finished``, an own process re-pointed or
resumed) are ``transfer_procs.py``'s (split by session ``many64``), the run queue's waiting
tasks and a hand-back inside a picked task's request ``transfer_runqueue.py``'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from functools import partial
from heapq import heappush
from typing import Any

from simpy.events import Event

from epcsim.engine.machine import Gen, Task
from epcsim.engine.mutex import FifoMutex, LinuxMutex, _Spinner
from epcsim.fast.cosim import transfer_lsleep as lsleep
from epcsim.fast.cosim import transfer_pokes as pokes
from epcsim.fast.cosim.queue import pending
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_RUN_USER, RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_FLOOD,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_QLEN,
    C_SERVED,
    DEAD,
    EV_END,
    EV_FLOOD,
    EV_INIT,
    EV_INTR,
    EV_POKE,
    EV_RESUME,
    EV_STOP,
    HB_BUDGET,
    HB_DEADLINE,
    HB_NAMES,
    HB_QUEUE_FULL,
    HB_TRACE_FULL,
    M_WAITERS,
    T_LOCK_T0,
    T_RQ,
    T_RQ_A,
    T_SPIN_GEN,
    T_SPIN_M,
    T_SPIN_SEQ,
    T_SPIN_T0,
    T_STATE,
    T_USER_NS,
    T_USER_T0,
    T_WAIT_M,
    TS_DONE,
    TS_INTR,
    TS_LSLEEP,
    TS_MSLEEP,
    TS_NEW,
    TS_PARK,
    TS_READY,
    TS_RUN,
    TS_RUNQ,
    TS_SLEEP,
    TS_SPIN,
    TS_STARTING,
)
from epcsim.fast.cosim.transfer_flood import flood_event, flood_out
from epcsim.fast.cosim.transfer_intr import dead_event, interruption, user_step
from epcsim.fast.cosim.transfer_plain import write_plain
from epcsim.fast.cosim.transfer_procs import (
    _end_own,
    _finished,
    _process,
    _repoint,
    _stopped_now,
    _triggered,
)
from epcsim.fast.cosim.transfer_runqueue import _cont_handed_back, _picked, _run_queue


def _wait(ev: Event) -> Gen:
    yield ev


def _sleep_tail(task: Task, ev: Event) -> Gen:
    """``Task.sleep`` after its ``yield``: woken, the task takes a CPU again."""
    yield ev
    yield from task.acquire_cpu()


def _lock_tail(task: Task, mx: LinuxMutex, moved: tuple[int, _Spinner, int]) -> Gen:
    """``Task.lock``'s slow path entered in the middle of its spin (``moved``); the flood's
    tail of ``Task.lock`` is absent: no flood in the regime (``_in_regime``)."""
    yield from mx._lock_slow(task, moved)


def to_simpy(sv: Served, inline: int = -1) -> tuple[Generator[Any, Any, None], Event] | None:
    """Core -> SimPy (see the module docstring), with the core stopped between two events
    (idle, its event budget spent) or handed back at the edge of its regime: then the task
    that met the edge (``C_HB_TASK``) is in the middle of a resumption, which goes on now,
    in SimPy, before the next event - the machine called again at its pc (a request the
    core refused did nothing), the rest of the request it was picked for from the run
    queue and then the machine (``_cont_handed_back``), a woken sleeper taking a CPU
    (``Task.sleep``'s tail), or a spinner's re-check (``_spin``'s loop). A full heap or
    trace is not an edge but a void run (the caller's capacity): RuntimeError.

    ``inline`` (a task waiting on its event, not the hand-back's): no process is built
    for it; its serving generator, run to its first ``yield``, and the event it waits on
    are returned, for the caller's own running process to go on with (``yield`` the
    event, ``send`` what SimPy answers): the enclave thread served inside its Python
    generator, ``fast/driver/stream.py``."""
    if sv.mode != "core":
        raise RuntimeError("to_simpy: the machines are served by SimPy already")
    st = sv.st
    clk = st.clk
    hb = int(clk[C_HB])
    if hb in (HB_QUEUE_FULL, HB_TRACE_FULL):
        raise RuntimeError(f"to_simpy: the core's run is void ({HB_NAMES[hb]})")
    queued = pending(st)
    h = int(clk[C_HB_TASK]) if hb not in (0, HB_BUDGET, HB_DEADLINE) else -1
    env = sv.env
    m = sv.m
    tasks = st.tasks
    if h >= 0 and int(tasks[h, T_STATE]) == TS_RUNQ:
        raise RuntimeError(f"to_simpy: task {h} handed back waiting for a CPU")
    rows = write_plain(sv)
    # every waiting task's event (its process is built below), and the spinners' records
    target: dict[int, Event] = {}
    recs: dict[int, _Spinner] = {}
    spinners = sorted((row[T_SPIN_SEQ], t) for t, row in enumerate(rows) if row[T_STATE] == TS_SPIN)
    m.spinning = {}
    for _, t in spinners:
        mx = sv.mutexes[int(tasks[t, T_SPIN_M])]
        assert isinstance(mx, LinuxMutex)
        rec = _Spinner(lsleep.osq(sv, t))  # not the OSQ: the first waiter's (``LS_WSPIN``)
        rec.gen = int(tasks[t, T_SPIN_GEN])
        recs[t] = rec
        m.spinning[sv.tasks[t]] = mx
        mx._spin_ev[sv.tasks[t]] = rec
    resumed = {t for _, _, _, kind, t, _ in queued if kind in (EV_RESUME, EV_INIT)}
    ended = {t for _, _, _, kind, t, arg in queued if kind == EV_END and arg != DEAD}
    # the interrupted steps' timeouts, by eid; a task's last (its greatest eid) is its
    # current step's, which an interrupted task (``TS_INTR``) waits on
    dead_ev: dict[int, Event] = {}
    dead: dict[int, Event] = {}
    dead_at: dict[int, int] = {}  # its time: the step's end (``user_step``'s ``ns``)
    for time, _, eid, kind, t, arg in sorted(queued, key=lambda e: e[2]):
        if kind == EV_END and arg == DEAD:
            dead[t] = dead_ev[eid] = dead_event(env)
            dead_at[t] = time
    for t in range(len(sv.tasks)):
        s = int(tasks[t, T_STATE])
        if t == h:
            # its event was processed (the resumption in progress): the spinner's
            # ``rec.ev`` is that event
            target[t] = _triggered(env)
            target[t].callbacks = None  # type: ignore[assignment]
        elif s in (TS_RUN, TS_SLEEP, TS_SPIN, TS_STARTING, TS_MSLEEP, TS_RUNQ, TS_LSLEEP, TS_PARK):
            target[t] = _triggered(env) if t in resumed else Event(env)
        elif s == TS_INTR:
            # its step's timeout, queued dead, waited on until the Interruption pops
            target[t] = dead[t]
        if t in recs:
            recs[t].ev = target[t]
    _run_queue(sv, target)
    for q, queue in enumerate(sv.queues):
        queue._waiters = [target[t] for t in st.wql[q, : st.wq[q]].tolist()]
    for i, mx in enumerate(sv.mutexes):
        if isinstance(mx, FifoMutex):
            n_w = int(st.mtx[i, M_WAITERS])
            mx._waiters = deque((sv.tasks[t], target[t]) for t in st.wl[i, :n_w].tolist())
    # ``LinuxMutex``'s HANDOFF and wait list, each sleeping contender's ``_Waiter``
    ws = lsleep.waiters(sv, target)
    # the parked NOPAGE flood: each parked row a ``_Park`` of ``NopageFlood`` on its event
    # (``transfer_flood.py``, session ``uflood``)
    flood = m.flood if int(clk[C_FLOOD]) != 0 else None
    parks = {} if flood is None else flood_out(sv, flood, target)
    # the processes, each waiting on its task's event
    procs: list[Any] = list(sv.procs)
    interrupted: dict[int, Any] = {}  # TS_INTR: the process its Interruption interrupts
    kept: tuple[Generator[Any, Any, None], Event] | None = None
    now: Gen | None = None  # the hand-back task's resumption, run after the queue is built
    for t, task in enumerate(sv.tasks):
        s = int(tasks[t, T_STATE])
        if t == h:
            tasks[t, T_RQ] = 0
            rest = _cont_handed_back(sv, t) if s == TS_READY else None
            if rest is not None:
                now = sv.serve(t, rest)
            elif s == TS_SLEEP:
                tasks[t, T_RQ] = RQ_SLEEP
                now = sv.serve(t, task.acquire_cpu())
            elif s == TS_MSLEEP:  # woken with the lock handed over: it takes a CPU
                mi = int(tasks[t, T_WAIT_M])
                tasks[t, T_RQ] = RQ_LOCK
                tasks[t, T_RQ_A] = mi
                fm = sv.mutexes[mi]
                assert isinstance(fm, FifoMutex)
                now = sv.serve(t, fm._lock_slow(task, (int(tasks[t, T_LOCK_T0]), None)))
            elif s == TS_SPIN and not lsleep.osq(sv, t):  # the first waiter's spin
                ws_gen = lsleep.sleeping(sv, t, target[t], ws, recs[t])
                assert ws_gen is not None
                now = sv.serve(t, ws_gen)
                next(now)  # at its wait on ``rec.ev``, which was just processed
            elif s == TS_SPIN:
                mi = int(tasks[t, T_SPIN_M])
                tasks[t, T_RQ] = RQ_LOCK
                tasks[t, T_RQ_A] = mi
                mx = sv.mutexes[mi]
                assert isinstance(mx, LinuxMutex)
                moved = (int(tasks[t, T_LOCK_T0]), recs[t], int(tasks[t, T_SPIN_T0]))
                now = sv.serve(t, _lock_tail(task, mx, moved))
                next(now)  # at its wait on ``rec.ev``, which was just processed
            else:  # TS_READY: stopped at a request, which the machine asks for again
                now = sv.serve(t)
            continue
        if s == TS_PARK:
            # a parked retrier: only the process driving the core, whose park goes on in
            # Python (``Served.on_parked``: the rest of ``EnclaveThread.parks``)
            if t != inline or sv.on_parked is None or t == h:
                raise RuntimeError(f"to_simpy: task {t} parked, not the driving thread")
            gen = sv.on_parked(t, (parks[t], False))
            if next(gen) is not target[t]:
                raise RuntimeError(f"task {t}: its park does not wait on its event")
            procs[t] = env.active_process
            kept = (gen, target[t])
            continue
        if s == TS_NEW:
            procs[t] = None
            continue
        if s == TS_DONE:
            if t == inline:
                # the process driving the core (``Served.move``) cannot end there: its end
                # would be scheduled again, with another eid, when its generator returns
                # (N6's thread machines stop at a loop top before their stream's end)
                raise RuntimeError(f"task {t}: the process driving the core ended on it")
            # a finished process, queued (EV_END below) if SimPy has not processed it yet
            own = sv.own[t] is not None
            procs[t] = _end_own(sv, t, t in ended) if own else _finished(env, t in ended)
            continue
        ev = target[t]
        first: Gen
        if s == TS_STARTING:
            procs[t] = _process(env, sv.serve(t), ev, False)
            continue
        lsg = lsleep.sleeping(sv, t, ev, ws, recs.get(t))
        if lsg is not None:  # in ``LinuxMutex._sleeping`` (``transfer_lsleep.py``)
            first = lsg
        elif s == TS_INTR:
            # interrupted in a user step, the Interruption queued (``EV_INTR``): ``run_user``
            # waits on its step's (dead) timeout, and the Interruption throws into it
            t0 = int(tasks[t, T_USER_T0])
            ns = dead_at[t] - t0
            tasks[t, T_RQ] = RQ_RUN_USER
            tasks[t, T_RQ_A] = ns
            first = user_step(sv, t, task.run_user(ns, (ev, t0)), ns)
        elif s == TS_RUN and tasks[t, T_USER_NS] > 0:
            # a user step: ``run_user`` from its wait, begun ``ns`` before its timeout
            ns = int(tasks[t, T_USER_NS])
            tasks[t, T_RQ] = RQ_RUN_USER
            tasks[t, T_RQ_A] = ns
            t_end = next(e[0] for e in queued if e[3] == EV_RESUME and e[4] == t)
            first = user_step(sv, t, task.run_user(ns, (ev, t_end - ns)), ns)
        elif s == TS_RUN:
            tasks[t, T_RQ] = RQ_RUN
            first = _wait(ev)
        elif s == TS_SLEEP:
            tasks[t, T_RQ] = RQ_SLEEP
            first = _sleep_tail(task, ev)
        elif s == TS_RUNQ:
            first = _picked(sv, t, ev)
        elif s == TS_MSLEEP:
            mi = int(tasks[t, T_WAIT_M])
            tasks[t, T_RQ] = RQ_LOCK
            tasks[t, T_RQ_A] = mi
            fm = sv.mutexes[mi]
            assert isinstance(fm, FifoMutex)
            first = fm._lock_slow(task, (int(tasks[t, T_LOCK_T0]), ev))
        else:  # TS_SPIN
            mi = int(tasks[t, T_SPIN_M])
            tasks[t, T_RQ] = RQ_LOCK
            tasks[t, T_RQ_A] = mi
            mx = sv.mutexes[mi]
            assert isinstance(mx, LinuxMutex)
            moved = (int(tasks[t, T_LOCK_T0]), recs[t], int(tasks[t, T_SPIN_T0]))
            first = _lock_tail(task, mx, moved)
        gen = sv.serve(t, first)
        if next(gen) is not ev:
            raise RuntimeError(f"task {t}: its moved request does not wait on its event")
        if t == inline:
            procs[t] = env.active_process
            kept = (gen, ev)
        elif sv.own[t] is not None:
            _repoint(sv, t, gen, ev)
        else:
            procs[t] = _process(env, gen, ev, True)
        if tasks[t, T_RQ] == RQ_RUN_USER and s not in (TS_RUNQ, TS_INTR):
            task._user_proc = procs[t]  # what ``run_user`` sets: a preemption interrupts it
        if s == TS_INTR:
            interrupted[t] = procs[t]
    sv.procs = procs
    # the queue, in the core's order with the core's eids
    heap: list[Any] = env._queue
    for time, prio, eid, kind, t, arg in queued:
        if kind in (EV_RESUME, EV_INIT):
            ev = target[t]
        elif kind == EV_POKE:
            ev = _triggered(env)
            task = sv.tasks[t]
            mi = int(tasks[t, T_SPIN_M])
            # a poke of a spin that is over gets a record with no wait: ``_fire`` ignores it
            lm = sv.mutexes[mi if t in recs else 0]
            assert isinstance(lm, LinuxMutex)
            ev.callbacks.append(partial(lm._fire, task, recs.get(t, _Spinner(True)), arg))
        elif kind == EV_FLOOD:  # a parked retrier's timer (``transfer_flood.py``)
            ev = flood_event(sv, flood, parks, t, arg, time)
        elif kind == EV_STOP:  # a ``run(until=)`` deadline: its own event (deadline.py)
            ev = sv.stops[arg]
        elif kind == EV_INTR:  # a user step's Interruption (``runqueue.interrupt``)
            ev = interruption(env, interrupted[t])
        elif kind == EV_END and arg == DEAD:  # an interrupted step's timeout
            ev = dead_ev[eid]
        else:  # EV_END: a finished process; nobody waits for it
            assert kind == EV_END
            ev = procs[t]
        heappush(heap, (time, prio, eid, ev))
    pokes.put_back(sv, heap)  # the stale pokes ``to_core`` set aside (``transfer_pokes.py``)
    sv.stops = []
    clk[C_QLEN] = 0
    clk[C_SERVED] = 1
    clk[C_HB] = clk[C_HB_TASK] = clk[C_HB_NOW] = 0
    sv.mode = "simpy"
    if now is not None:
        # the resumption in progress goes on, as the running process does inside env.step
        try:
            ev = now.send(None)
        except StopIteration as stop:
            # a machine stopped for good in it (``on_stop`` returned: an enclave thread at a
            # stop it cannot pass): the task's own code goes on now (``_stopped_now``)
            stopped = _stopped_now(sv, h, inline, stop.value)
            return kept if stopped is None else stopped
        if ev.callbacks is None:
            raise RuntimeError(f"task {h}: its resumption waits on a processed event")
        if h == inline:
            # the hand-back's task is the process driving the core (``Served.move``, session
            # ``n6``): it goes on with its serving generator itself, as a kept task does
            sv.procs[h] = env.active_process
            sv.inline_handbacks += 1
            return now, ev
        if sv.own[h] is not None:
            _repoint(sv, h, now, ev)
        else:
            sv.procs[h] = _process(env, now, ev, True)
    return kept


__all__ = ["to_simpy"]
