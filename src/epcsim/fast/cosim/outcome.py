"""What a run of task programs leaves, in one form for both engines (the comparison unit).

``done`` is every completed op ``(task, pc, ns)`` in the order the ops completed across
tasks; ``traces`` each mutex's ``(ns, event, task name)`` list (``Mutex.trace``); the rest
are the ``Task``, ``LinuxMutex``, ``CfsRunQueue`` and ``Environment`` fields the core
keeps. ``pops`` is the number of events processed (``env.step`` calls / the core's pops).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    now: int
    pops: int
    elided: int
    done: list[tuple[int, int, int]]
    #: per task: busy_ns, cpu (-1 = None), last_cpu, vruntime, slice_start, step_end, step_ns
    tasks: list[tuple[int, int, int, int, int, int, int]]
    #: per mutex: owner (-1 = None), contended, wait_ns, steals, handoffs, spin_acquired
    mutexes: list[tuple[int, int, int, int, int, int]]
    traces: list[list[tuple[int, str, str]]]
    counters: list[int]
    min_vruntime: int
    #: events still queued, ``(time, priority, eid)`` in pop order (a run stopped early)
    pending: list[tuple[int, int, int]] = field(default_factory=list)
    #: why the core stopped early (``state.HB_NAMES``), None if it ran to the end
    handed_back: str | None = None
    extra: dict[str, int] = field(default_factory=dict)
    #: per mutex: ``_free_since`` and ``_freed_from`` (``LinuxMutex``; 0, 0 for a
    #: ``FifoMutex``), which a hand-back carries into SimPy (session ``fault3``)
    free: list[tuple[int, int]] = field(default_factory=list)
    #: the run queue (session ``onecpu``): context switches, wake-up preemptions, each
    #: task's need_resched flag, and the tasks waiting for a CPU in the order it picks them
    sched: tuple[int, int, tuple[int, ...], tuple[int, ...]] = (0, 0, (), ())

    def comparable(self) -> dict[str, object]:
        """Everything both engines must agree on (``extra`` is engine-specific)."""
        return {
            "now": self.now,
            "pops": self.pops,
            "elided": self.elided,
            "done": self.done,
            "tasks": self.tasks,
            "mutexes": self.mutexes,
            "traces": self.traces,
            "counters": self.counters,
            "min_vruntime": self.min_vruntime,
            "pending": self.pending,
            "sched": self.sched,
            "free": self.free,
        }


def simpy_outcome(
    m: Any,
    tasks: Sequence[Any],
    mutexes: Sequence[Any],
    pops: int,
    done: list[tuple[int, int, int]],
    counters: list[int],
) -> Outcome:
    """The ``Outcome`` of a run on a SimPy ``Machine`` ``m`` (``simpy_program.run_simpy`` and
    the served runs of ``program_served``): the fields read from its ``Task``s,
    ``LinuxMutex``es, run queue and event queue."""
    return Outcome(
        now=m.now,
        pops=pops,
        elided=m.elided,
        done=done,
        tasks=[
            (
                t.busy_ns,
                -1 if t.cpu is None else t.cpu,
                t.last_cpu,
                t.vruntime,
                t.slice_start,
                int(t.step_end),
                t.step_ns,
            )
            for t in tasks
        ],
        mutexes=[
            (
                -1 if mx.owner is None else list(tasks).index(mx.owner),
                mx.contended,
                mx.wait_ns,
                mx.steals,
                mx.handoffs,
                mx.spin_acquired,
            )
            for mx in mutexes
        ],
        traces=[list(mx.trace) if mx.trace is not None else [] for mx in mutexes],
        free=[
            (int(getattr(mx, "_free_since", 0)), int(getattr(mx, "_freed_from", 0)))
            for mx in mutexes
        ],
        counters=counters,
        min_vruntime=getattr(m.rq, "min_vruntime", 0),
        pending=[
            (int(t), int(p), eid) for t, p, eid, _ in sorted(m.env._queue, key=lambda e: e[:3])
        ],
        sched=(
            m.context_switches,
            getattr(m.rq, "wakeup_preemptions", 0),
            tuple(int(t._resched) for t in tasks),
            tuple(list(tasks).index(w) for w in _waiting(m.rq)),
        ),
    )


def _waiting(rq: Any) -> list[Any]:
    """The tasks waiting for a CPU, in the order the run queue picks them."""
    if hasattr(rq, "_rq"):
        return [e[2] for e in sorted(rq._rq, key=lambda e: e[:2])]
    return [w for w, _ in rq._waiters]
