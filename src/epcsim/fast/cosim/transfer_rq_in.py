"""SimPy -> core, the run queue's part of ``to_core`` (``transfer_to_core.py``): the tasks
waiting for a CPU, or picked with their event still queued, moved in as the core's
``TS_RUNQ`` rows (issue 9 row 10's first carried state, session ``cmany``; PATHS.md "What
is built: N6 ... (session ``n6user``)", Left item 1).

Before, ``to_core`` refused any move while ``m.rq.waiting()`` or a task had need_resched:
with more runnable tasks than CPUs (one CPU shared by a thread and ksgxd, row 10's 65
tasks on 16 CPUs) the move then waited for an instant with nobody queued. What a waiting
task is, read from its generator (the reference's own frames, or ``to_simpy``'s
``_picked``): the request it needed the CPU for and what it goes on with once picked -
``T_CONT``/``T_CONT_A`` (``state.K_*``), exactly what ``runqueue.enqueue`` records when the
core queues it:

============================================  ==========================================
the frame waiting on the run queue's event    ``T_CONT`` (``T_CONT_A``)
============================================  ==========================================
``acquire_cpu`` in ``Task.run``               ``K_RUN`` (its ``ns``)
``acquire_cpu`` in ``Task.run_user``          ``K_USER`` (its ``ns``)
``acquire_cpu`` in a ``RUN0_WAITS`` frame      ``K_RUN`` (0: ``Task.run(0)``)
``acquire_cpu`` in ``Task.lock``              ``K_LOCK`` (the mutex's row)
``_schedule`` in ``Task.lock``                ``K_LOCK_TAKE`` (past its might_sleep point)
``acquire_cpu`` in ``Task.sleep`` (a wait     ``K_DONE`` (the sleep's tail)
queue's), in ``_sleep_tail``
``acquire_cpu`` in ``FifoMutex._lock_slow``   ``K_MSLEEP`` (``T_WAIT_M``, ``T_LOCK_T0``:
(after ``sleep``, or ``moved``)               its ``t0``)
``_schedule`` in ``Task.cond_resched``        ``K_DONE``
``_schedule`` in ``Task.run_user`` (its       ``K_DONE`` without ``C_MANY`` (the core's
``except Interrupt``)                         ``EV_INTR`` branch); refused with it
``acquire_cpu`` in ``Task.sleep`` in          ``K_LSLOW`` (``T_LS`` ``LS_WCPU``; session
``LinuxMutex._sleeping``                      ``linuxmx``: ``transfer_lsleep.py``)
``_schedule`` in ``LinuxMutex._sleeping``     ``K_LSLOW`` (``LS_SCHED1``/``LS_SCHED2``)
``to_simpy``'s ``_picked``                    its own ``k`` and ``a`` (``K_LSLOW``: its
                                              ``ls``)
============================================  ==========================================

Refused (the move waits, nothing changed): any other frame, a queue entry whose key is not the
task's vruntime, and - without ``C_MANY`` - a spinner beside a waiting task or a
spinner with need_resched (the core restates the spin watching the tick only with
``C_MANY``: ``runqueue.py``). The queue's order: ``CfsRunQueue._rq``'s ``(vruntime,
seq)`` with ``T_RQ_SEQ`` the rank of ``seq`` (the core's ``leftmost`` takes the least
``(T_VRUNTIME, T_RQ_SEQ)``: the same order), ``FifoRunQueue._waiters``' in arrival order;
``C_RQ_SEQ`` past them.
"""

from __future__ import annotations

from typing import Any

from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim import transfer_lsleep as lsleep
from epcsim.fast.cosim.frames import ACQUIRE_CPU as _ACQUIRE
from epcsim.fast.cosim.frames import COND_RESCHED as _COND_RESCHED
from epcsim.fast.cosim.frames import FIFO_LOCK_SLOW as _FIFO_LOCK
from epcsim.fast.cosim.frames import LOCK as _LOCK
from epcsim.fast.cosim.frames import RUN as _RUN
from epcsim.fast.cosim.frames import RUN_USER as _RUN_USER
from epcsim.fast.cosim.frames import SCHEDULE as _SCHEDULE
from epcsim.fast.cosim.frames import SLEEP as _SLEEP
from epcsim.fast.cosim.frames import SLEEPING as _SLEEPING
from epcsim.fast.cosim.state import (
    K_DONE,
    K_LOCK,
    K_LOCK_TAKE,
    K_LSLOW,
    K_MSLEEP,
    K_RUN,
    K_USER,
    T_LOCK_T0,
    T_WAIT_M,
)
from epcsim.fast.cosim.transfer_runqueue import _picked
from epcsim.fast.cosim.transfer_to_simpy import _sleep_tail

_PICKED = _picked.__code__
_SLEEP_TAIL = _sleep_tail.__code__

#: what ``cpu_wait`` answers: ``(K_*, T_CONT_A, T_WAIT_M, T_LOCK_T0)``, for ``K_LSLOW``
#: ``(K_LSLOW, T_LS, T_LS_M, T_LOCK_T0)`` (``transfer_lsleep.cpu_wait``)
Wait = tuple[int, int, int, int]


#: the innermost code objects of a task's ``yield from`` chain suspended in a wait for a
#: CPU (``acquire_cpu``, ``_schedule``, ``_picked``): the task waits in the run queue, or
#: was picked with its event queued (``to_core`` tests its chain's innermost code; a
#: function walking the chain for it, ``waits_for_cpu``, until session ``many64``)
CPU_WAITS = (_ACQUIRE, _SCHEDULE, _PICKED)

#: code objects whose own ``acquire_cpu`` (the frame right above it) is the core's
#: ``Task.run(0)``: ``K_RUN`` of 0 ns, which takes a CPU and nothing else. Registered by
#: the module that maps such a frame to a machine's row (an enclave thread's ``enter()``
#: at its loop top, the machine's ``P_TOP``: ``driver/group_join.py``, session ``join``);
#: this package does not import the user model's code
RUN0_WAITS: set[Any] = set()


def cpu_wait(gen: Any, mix: dict[Any, int], many: bool, row: Any) -> Wait | None:
    """The continuation of a task whose generator chain ``gen`` waits for a CPU (module
    docstring's table), or None where the core does not restate it. ``row`` is the task's
    core row (``_picked``'s ``K_MSLEEP`` keeps ``T_WAIT_M``/``T_LOCK_T0`` there)."""
    chain = []
    while gen is not None:
        chain.append(gen)
        gen = getattr(gen, "gi_yieldfrom", None)
    inner = chain[-1]
    code = inner.gi_code
    if code is _PICKED:
        loc = inner.gi_frame.f_locals
        k = int(loc["k"])
        if k == K_LSLOW:
            ls = lsleep.picked_wait(loc, mix)
            return None if ls is None else (K_LSLOW, *ls)
        if k not in (K_DONE, K_RUN, K_USER, K_LOCK, K_LOCK_TAKE, K_MSLEEP):
            return None
        wm, t0 = (int(row[T_WAIT_M]), int(row[T_LOCK_T0])) if k == K_MSLEEP else (-1, 0)
        return k, int(loc["a"]), wm, t0
    if len(chain) < 2:
        return None
    parent = chain[-2]
    pcode = parent.gi_code
    loc = parent.gi_frame.f_locals
    if code is _ACQUIRE:
        if pcode is _RUN:
            return K_RUN, int(loc["ns"]), -1, 0
        if pcode is _RUN_USER:
            return K_USER, int(loc["ns"]), -1, 0
        if pcode in RUN0_WAITS:
            return K_RUN, 0, -1, 0
        if pcode is _LOCK:
            mi = mix.get(loc["mutex"])
            return None if mi is None else (K_LOCK, mi, -1, 0)
        if pcode is _FIFO_LOCK:  # ``moved``'s tail
            return _msleep(loc, mix)
        if pcode is _SLEEP and len(chain) >= 3:
            gcode = chain[-3].gi_code
            if gcode is _FIFO_LOCK:
                return _msleep(chain[-3].gi_frame.f_locals, mix)
            if gcode is _SLEEPING:  # ``LinuxMutex._sleeping``'s waiter, woken
                ls = lsleep.cpu_wait(chain, mix)
                return None if ls is None else (K_LSLOW, *ls)
            return K_DONE, 0, -1, 0
        if pcode is _SLEEP or pcode is _SLEEP_TAIL:
            return K_DONE, 0, -1, 0
        return None
    if code is _SCHEDULE:
        if pcode is _COND_RESCHED:
            return K_DONE, 0, -1, 0
        if pcode is _LOCK:
            mi = mix.get(loc["mutex"])
            return None if mi is None else (K_LOCK_TAKE, mi, -1, 0)
        if pcode is _RUN_USER and not many:
            return K_DONE, 0, -1, 0
        if pcode is _SLEEPING:  # either ``_schedule`` of ``LinuxMutex._sleeping``
            ls = lsleep.cpu_wait(chain, mix)
            return None if ls is None else (K_LSLOW, *ls)
    return None


def _msleep(loc: dict[str, Any], mix: dict[Any, int]) -> Wait | None:
    """A ``FifoMutex`` waiter handed the lock, taking a CPU (``_lock_slow``'s locals)."""
    mi = mix.get(loc["self"])
    return None if mi is None else (K_MSLEEP, 0, mi, int(loc["t0"]))


def queue_order(rq: Any, tix: dict[Any, int]) -> dict[int, int] | None:
    """Each waiting task's ``T_RQ_SEQ`` (1, 2, ... in the queue's order: module docstring),
    or None if an entry is not a moved task's or its key is not the task's vruntime."""
    seqs: dict[int, int] = {}
    if isinstance(rq, FifoRunQueue):
        entries = [(task, ev) for task, ev in rq._waiters]
    else:
        assert isinstance(rq, CfsRunQueue)
        for vr, _seq, task, _ev in rq._rq:
            if vr != task.vruntime:
                return None
        entries = [(task, ev) for _, _, task, ev in sorted(rq._rq, key=lambda e: e[1])]
    for q, (task, _ev) in enumerate(entries, 1):
        t = tix.get(task)
        if t is None:
            return None
        seqs[t] = q
    return seqs


__all__ = ["CPU_WAITS", "RUN0_WAITS", "cpu_wait", "queue_order"]
