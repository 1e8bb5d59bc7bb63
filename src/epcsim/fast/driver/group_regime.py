"""Where a ``GroupSession`` begins (``stream_group.py``): ``group_regime``, asked at a
thread's loop top (``CoreStream.run``) when the one-thread regime fails and no session
lives (issue 9 row 10, N6: sessions ``n6user``, ``cmany``).

Why a module of its own: split from ``stream_group.py`` by session ``cmany`` when it passed
500 lines (the check grew the run queue's tasks); the session's life is there, its
beginning here. The decisions are ``stream_group.py``'s module docstring ("Where it
begins", "More threads than CPUs").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.engine.mutex import FifoMutex
from epcsim.engine.sched import FifoRunQueue
from epcsim.fast.driver.core_regime import _static_regime

if TYPE_CHECKING:
    from epcsim.fast.driver.core_stream import CoreStream


def group_regime(cs: CoreStream) -> list[CoreStream] | None:
    """At ``cs``'s loop top, the one-thread regime failing and no session live: the
    streams of a new ``GroupSession`` (module docstring, "Where it begins"), in CPU order,
    or None. Cheap checks first: it runs at every Python loop top of several threads."""
    owner = cs.owner
    if cs.plain or cs.mode is not None or cs.trim is not None:
        return None
    thread = cs.thread
    if thread.cpu is None or thread._user_proc is not None or thread._resched:
        return None
    if owner.group_wait > 0:
        owner.group_wait -= 1
        return None
    system = cs.system
    m = system.machine
    sgx = system.sgx
    encl = cs.encl
    if len(sgx.enclaves) != 1:
        return None
    kt = sgx.ksgxd_task
    group = []
    # the threads on CPUs, then those on the mutex's wait list (their CPU released; a
    # ``LinuxMutex`` waiter may hold one again: taken once), and those waiting for a CPU
    # (``C_MANY``), each with a live access stream on the core
    lock = encl.lock
    if isinstance(lock, FifoMutex):
        waiting = [w for w, _ in lock._waiters]
    else:
        waiting = [w.task for w in lock._waiters]
    seen: set[Any] = set()
    for task in [*m.running, *waiting, *_queued(m.rq)]:
        if task is None or task is kt or task in seen:
            continue
        seen.add(task)
        s = owner.streams.get(task)
        if s is None or s.plain or s.mode is not None or s.trim is not None or s.encl is not encl:
            return None
        group.append(s)
    if len(group) < 2 or kt is None:
        return None
    if not encl.initialized or encl.dead or not _static_regime(system):
        return None
    if system.sgx.flood is not None:
        return None  # the parked flood: the one-thread session only (``flood_regime``)
    return group


def _queued(rq: Any) -> list[Any]:
    """The tasks waiting for a CPU, in the queue's order (``CfsRunQueue._rq``'s
    ``(vruntime, seq)``, ``FifoRunQueue._waiters``)."""
    if isinstance(rq, FifoRunQueue):
        return [task for task, _ in rq._waiters]
    return [task for _, _, task, _ in sorted(rq._rq, key=lambda e: e[:2])]


__all__ = ["group_regime"]
