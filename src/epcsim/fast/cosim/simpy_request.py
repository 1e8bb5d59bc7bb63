"""The engine requests of ``request`` performed on ``engine.machine`` (SimPy).

A state machine that asks for engine actions (``PATHS.md``) runs under SimPy by a process
that performs each request with the calls the reference's generators make; the core
performs the same requests with ``request.perform``. ``simpy_program`` drives the task
programs this way, so the differential tests check both sides of every request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from epcsim.engine.machine import Gen, Mutex, Task, WaitQueue
from epcsim.fast.cosim.request import (
    RQ_LOCK,
    RQ_RESCHED,
    RQ_RUN,
    RQ_RUN_USER,
    RQ_SLEEP,
    RQ_SPAWN,
    RQ_UNLOCK,
    RQ_WAKE,
)


def perform_simpy(
    task: Task,
    rq: int,
    a: int,
    mutexes: Sequence[Mutex],
    queues: Sequence[WaitQueue],
    spawn: Callable[[int], None],
) -> Gen:
    """``yield from`` this to perform request ``rq`` for ``task``; RQ_EXIT releases the
    CPU, and the caller's generator then returns (the end of its process). Returns the
    request's answer: for RQ_WAKE whether anyone was sleeping, for RQ_RUN_USER the ns it
    ran, else None."""
    if rq == RQ_RUN:
        yield from task.run(a)
    elif rq == RQ_LOCK:
        yield from task.lock(mutexes[a])
    elif rq == RQ_UNLOCK:
        task.unlock(mutexes[a])
    elif rq == RQ_SLEEP:
        # one turn of ``WaitQueue.wait_event``'s loop: the caller re-checks its condition
        q = queues[a]
        ev = q.m.env.event()
        q._waiters.append(ev)
        yield from task.sleep(ev)
    elif rq == RQ_WAKE:
        return queues[a].wake_up()
    elif rq == RQ_SPAWN:
        spawn(a)
    elif rq == RQ_RUN_USER:
        return (yield from task.run_user(a))  # the ns run (less: preempted, ``Served.serve``)
    elif rq == RQ_RESCHED:
        yield from task.cond_resched()
    else:  # RQ_EXIT
        task.exit()
