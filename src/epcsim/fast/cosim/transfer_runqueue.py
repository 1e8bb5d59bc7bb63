"""Core -> SimPy, the run queue's part of ``to_simpy`` (``transfer_to_simpy.py``): the
tasks waiting in the core's run queue, and a hand-back met inside a picked task's request.

A waiting task (``TS_RUNQ``, or picked with its event queued) becomes an entry of
``CfsRunQueue._rq`` or ``FifoRunQueue._waiters`` (``_run_queue``), its process waiting on
the entry's event and then finishing the request it needed the CPU for (``_picked``,
``_cont``: ``T_CONT``, ``state.K_*``). The hand-back task that met the edge of the core's
regime inside such a request's rest (``dispatch.cont_after_pick`` leaves ``T_CONT`` set)
finishes that rest on SimPy before its machine goes on (``_cont_handed_back``; session
``spinfix``, PATHS.md "One CPU").

Why a module of its own: split from ``transfer_to_simpy.py`` by session ``spinfix`` when
it passed 500 lines (no code changed); the run queue's moves are one concept (session
``onecpu2``'s item 2, PATHS.md "One CPU").
"""

from __future__ import annotations

from collections import deque
from heapq import heapify

from simpy.events import Event

from epcsim.engine.machine import Gen
from epcsim.engine.mutex import FifoMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RESCHED, RQ_RUN, RQ_RUN_USER
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_RQ_SEQ,
    K_DONE,
    K_LOCK,
    K_LOCK_TAKE,
    K_LSLOW,
    K_MSLEEP,
    K_NONE,
    K_RUN,
    K_USER,
    T_CONT,
    T_CONT_A,
    T_LOCK_T0,
    T_LS_M,
    T_RQ,
    T_RQ_A,
    T_RQ_SEQ,
    T_VRUNTIME,
    T_WAIT_M,
)
from epcsim.fast.cosim.transfer_lsleep import after_pick, picked


def _picked(sv: Served, t: int, ev: Event) -> Gen:
    """A task waiting in the run queue (``TS_RUNQ``), or picked with its event queued: its
    wait on the run queue's event (``CfsRunQueue._enqueue``'s, ``FifoRunQueue.wake``'s),
    then the rest of the request it needed the CPU for (``T_CONT``, ``state.K_*``), as
    the reference goes on once picked: ``Task.run``, ``run_user``, ``lock`` before or after
    its might_sleep point, ``FifoMutex._lock_slow``'s tail; nothing for a ``cond_resched``
    or a sleep's tail (``K_DONE``). ``T_RQ`` names the request (``to_core`` then declines
    while the task waits: its generator is none it recognises)."""
    tasks = sv.st.tasks
    k = int(tasks[t, T_CONT])
    a = int(tasks[t, T_CONT_A])
    # ``LinuxMutex._sleeping``'s rest from its phase (``K_LSLOW``; ``transfer_lsleep.py``),
    # read now: ``to_core`` reads it back from this frame
    ls = picked(sv, t) if k == K_LSLOW else None
    tasks[t, T_RQ] = _CONT_RQ[k]
    tasks[t, T_RQ_A] = a if ls is None else int(tasks[t, T_LS_M])
    yield ev
    if ls is not None:
        yield from after_pick(sv.tasks[t], ls)
    else:
        yield from _cont(sv, t, k, a)


def _cont(sv: Served, t: int, k: int, a: int) -> Gen:
    """The rest of the request task ``t`` needed a CPU for (continuation ``k``,
    ``state.K_*``, with its argument ``a``), as the reference goes on once picked. Also
    the rest of a continuation the core handed back in the middle of (``to_simpy``)."""
    task = sv.tasks[t]
    if k == K_RUN:
        yield from task.run(a)
    elif k == K_USER:
        yield from task.run_user(a)
    elif k == K_LOCK:
        yield from task.lock(sv.mutexes[a])
    elif k == K_LOCK_TAKE:
        yield from task.lock(sv.mutexes[a], moved=True)
    elif k == K_MSLEEP:
        tasks = sv.st.tasks
        fm = sv.mutexes[int(tasks[t, T_WAIT_M])]
        assert isinstance(fm, FifoMutex)
        yield from fm._lock_slow(task, (int(tasks[t, T_LOCK_T0]), None))


def _cont_handed_back(sv: Served, t: int) -> Gen | None:
    """The hand-back task ``t`` met the edge inside the rest of the request it was picked
    for (``T_CONT`` set: ``dispatch.cont_after_pick``; session ``spinfix``), or in a
    request of its own that the core refused (``request.refused``; session ``tcsuser``),
    or None. Its machine's pc is past that request (it blocked in it waiting for a CPU,
    or a driver machine parked past it), so the rest runs on SimPy first, then the
    machine. Where the rest stopped: a picked lock's, the only one that hands back in a
    run that is not void, stops in ``lock_take`` (the contender would sleep, would spin
    with a task waiting for a CPU, or locks recursively), past its might_sleep point - so
    it goes on as ``K_LOCK_TAKE`` (``Task.lock(moved=True)``), and the point is not
    evaluated twice; a refused request's is recorded where it stopped (``K_RUN``,
    ``K_USER``, ``K_LOCK`` before its CPU, ``K_LOCK_TAKE``)."""
    tasks = sv.st.tasks
    k = int(tasks[t, T_CONT])
    if k == K_NONE:
        return None
    a = int(tasks[t, T_CONT_A])
    tasks[t, T_CONT] = K_NONE
    if k not in (K_RUN, K_USER, K_LOCK, K_LOCK_TAKE):
        raise RuntimeError(f"to_simpy: task {t} handed back inside a continuation {k}")
    if k == K_LOCK and sv.tasks[t].cpu is not None:
        k = K_LOCK_TAKE  # a picked lock's rest: stopped past its might_sleep point
    tasks[t, T_RQ] = _CONT_RQ[k]
    tasks[t, T_RQ_A] = a
    return _cont(sv, t, k, a)


#: the request a ``T_CONT`` continues (``_picked``)
_CONT_RQ = {K_DONE: RQ_RESCHED, K_RUN: RQ_RUN, K_USER: RQ_RUN_USER, K_LOCK: RQ_LOCK}
_CONT_RQ.update({K_LOCK_TAKE: RQ_LOCK, K_MSLEEP: RQ_LOCK, K_LSLOW: RQ_LOCK})


def _run_queue(sv: Served, target: dict[int, Event]) -> None:
    """The core's run queue into SimPy's: ``CfsRunQueue._rq`` (a heap of ``(vruntime,
    seq, task, event)``, its ``_seq`` past the moved ones') or ``FifoRunQueue._waiters``
    in arrival order; each waiting task's event is ``target``'s (``_picked`` waits on it)."""
    st = sv.st
    tasks = st.tasks
    clk = st.clk
    rq = sv.m.rq
    waiting = sorted(
        (int(tasks[t, T_RQ_SEQ]), t) for t in range(len(sv.tasks)) if tasks[t, T_RQ_SEQ] > 0
    )
    if isinstance(rq, FifoRunQueue):
        rq._waiters = deque((sv.tasks[t], target[t]) for _, t in waiting)
        return
    assert isinstance(rq, CfsRunQueue)
    base = rq._seq
    rq._rq = [(int(tasks[t, T_VRUNTIME]), base + q, sv.tasks[t], target[t]) for q, t in waiting]
    heapify(rq._rq)
    rq._seq = base + int(clk[C_RQ_SEQ])
    clk[C_RQ_SEQ] = 0  # the core's rows are stale until ``to_core`` (which writes them)
