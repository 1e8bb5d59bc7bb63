"""Compiled state machines served by SimPy, one request at a time (``PATHS.md``, "hand the
queue back, not the tasks").

Decision (2026-11-26, issue 9 session ``served``): *served mode is a request mode of the
core, not a second interpreter.* A machine asks for every engine action through
``request.perform``; with ``clk[C_SERVED]`` set, ``perform`` only records the request in
the task's row (``T_RQ``, ``T_RQ_A``) and answers ``R_BLOCKED``, so the machine saves its pc
and returns as it does after any request the core blocks on. ``Served.serve`` is the SimPy
process of one task: it calls the compiled machine, performs the recorded request with
``perform_simpy`` (the reference's own ``Task.run`` / ``Task.lock`` / ... on
``engine.machine``), and calls the machine again at its pc. The machine's own state (pc,
locals, counters, logs) lives in its arrays in both modes, so switching engines never
touches it; only the *engine's* state moves (``transfer``: the scheduler, the mutexes, the
wait queues, the pending events). The alternative considered - a Python twin of every
machine (as ``simpy_program`` is of the task programs) - would restate each kernel path a
third time, and the hand-back would need a translation of pcs between the two.

Per served step Python pays one numba dispatch (the machine's arguments: the ``CoState``
tuple and the machine's arrays) plus the SimPy work the reference pays anyway; served mode
is for transients (the instants around a hand-back), not the steady state: see
``DESIGN.md``, "Step 2, part 3", for the measured cost per request.

While served, the core's arrays other than the machines' are stale: ``clk[C_NOW]`` and the
task's ``T_CPU`` are written before each machine call (a machine may read them: the
timestamp of a log, ksgxd's IPI mask), everything else is SimPy's until ``transfer.to_core``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from epcsim.engine.machine import Gen, Machine, Mutex, Task, WaitQueue
from epcsim.fast.cosim.request import RQ_EXIT, RQ_RUN_USER, RQ_SPAWN, RQ_WAKE
from epcsim.fast.cosim.simpy_request import perform_simpy
from epcsim.fast.cosim.state import (
    C_MANY,
    C_NOW,
    C_SERVED,
    INTR_SERVED,
    R_BLOCKED,
    R_STOP,
    T_CPU,
    T_INTR,
    T_RQ,
    T_RQ_A,
    T_RQ_RET,
    CoState,
)

#: a served machine's entry: run task ``t`` from its pc until it asks for a request
Step = Callable[[int], int]


def user_ran(rows: Any, clk: Any, t: int, ns: int, ran: int) -> None:
    """A served ``run_user`` of ``ns`` that returned ``ran``: with ``clk[C_MANY]`` a step
    cut short (``ran < ns``, the reference's ``cut``: preempted, and ``run_user``'s
    ``_schedule`` done in Python) is ``T_INTR`` = ``INTR_SERVED`` with ``T_RQ_RET`` the ns
    run, which the machine reads instead of its ``EV_INTR`` path (``driver/thread.py``,
    session ``cmany``). Without ``C_MANY`` no machine meets a preempted step
    (``driver/resched.py``) and a task program ignores it."""
    if int(clk[C_MANY]) != 0 and ran is not None and ran < ns:
        rows[t, T_INTR] = INTR_SERVED
        rows[t, T_RQ_RET] = ran


def _placeholder() -> Generator[Any, Any, Any]:
    """A parked own process's serving generator until ``to_simpy`` re-points it
    (``Served.serve_own``'s ``parked``): never run, only closed."""
    return None
    yield  # a generator


class Served:
    """The SimPy side of a co-simulation: a ``Machine`` whose ``Task`` ``i``, ``Mutex``
    ``i`` and ``WaitQueue`` ``i`` are the core's task, mutex and wait-queue rows ``i``, and
    the processes serving the compiled machines (``step(t)``). ``procs[t]`` is task
    ``t``'s process (None until it is spawned); ``pops`` counts the events processed in
    both engines (``env.step`` calls here, ``C_POPS`` on the core)."""

    def __init__(
        self,
        st: CoState,
        machine: Machine,
        tasks: Sequence[Task],
        mutexes: Sequence[Mutex],
        queues: Sequence[WaitQueue],
        step: Step,
        mode: str = "simpy",
        on_stop: Callable[[int], Gen] | None = None,
    ):
        if len(tasks) != st.tasks.shape[0]:
            raise ValueError(
                f"tasks: one per core task row ({st.tasks.shape[0]}), got {len(tasks)}"
            )
        if len(mutexes) != st.mtx.shape[0]:
            raise ValueError(
                f"mutexes: one per core mutex row ({st.mtx.shape[0]}), got {len(mutexes)}"
            )
        if len(queues) != st.wq.shape[0]:
            raise ValueError(
                f"queues: one per core wait queue ({st.wq.shape[0]}), got {len(queues)}"
            )
        self.st = st
        self.m = machine
        self.env = machine.env
        self.tasks = list(tasks)
        self.mutexes = list(mutexes)
        self.queues = list(queues)
        self.step = step
        #: a machine that stops (``R_STOP``: before a step only Python does) while served
        #: goes on as this generator, in the same process (the task's Python code)
        self.on_stop = on_stop
        #: the process driving the core parked in a NOPAGE flood at a move back: its park
        #: goes on in Python as this generator, given its row and ``(park, decided)``
        #: (``transfer_flood.py``; the user path's ``Session``, session ``uflood``)
        self.on_parked: Callable[[int, Any], Gen] | None = None
        self.procs: list[Any] = [None] * len(tasks)
        #: task ``t``'s serving generator while its process is its *own* (``serve_own``:
        #: the task's own Python process, e.g. an enclave thread's from its loop top), None
        #: otherwise. A move to the core parks such a process instead of closing it, and a
        #: move back re-points it at its new serving generator (``transfer_to_core``,
        #: ``transfer_to_simpy``; PATHS.md "Several threads on the core", N6)
        self.own: list[Any] = [None] * len(tasks)
        #: own processes re-pointed by a move back to SimPy, and ended by their machine on
        #: the core (``transfer_to_simpy._end_own``): the tests' guards
        self.repointed = 0
        self.own_ended = 0
        #: called by an own process's trampoline (``serve_own``) after each served step of
        #: its task ``t``, the step's request performed and its event made the process's
        #: target: the move onto the core tried there, from that process (PATHS.md N6 item
        #: 2, session ``n6``). Returns None (nothing moved, or moved and back with this
        #: process not the driver's) or the ``(serving generator, event)`` this process goes
        #: on with after it drove the core inline and ``to_simpy(inline=t)`` handed back
        self.move: Callable[[int], tuple[Any, Any] | None] | None = None
        #: moves made from an own process's trampoline (``move``), and hand-backs whose
        #: task was the driving process itself (``to_simpy``'s ``now`` kept): the tests' guard
        self.inline_moves = 0
        self.inline_handbacks = 0
        #: hand-backs whose task's serving generator returned there (``on_stop``: a stop
        #: its machine cannot pass), its own process's code run at once
        #: (``transfer_to_simpy._stopped_now``, session ``n6user``): the tests' guard
        self.own_stops = 0
        #: the ``System.run(until=)`` events the core holds as ``EV_STOP`` rows (their index
        #: is the row's argument; ``cosim/deadline.py``), queued again by ``to_simpy``
        self.stops: list[Any] = []
        #: the stale pokes past the core's horizon the last move left out of the core's
        #: heap (``transfer_pokes.py``, session ``pokes``; held alive, so their events' ids
        #: in ``aside_ids`` stay theirs), out of SimPy's queue until ``to_simpy`` puts them
        #: back (``aside_out``)
        self.aside: list[Any] = []
        self.aside_ids: set[int] = set()
        self.aside_out = False
        #: the task's machine has been called once (its process is past its Initialize)
        self.begun = np.zeros(len(tasks), np.bool_)
        self.pops = 0
        if mode not in ("simpy", "core"):
            raise ValueError(f"mode: 'simpy' or 'core', got {mode!r}")
        #: which engine runs the machines now: "simpy" or "core" (the arrays hold the
        #: engine's state; ``transfer.to_simpy`` moves it)
        self.mode = mode
        st.clk[C_SERVED] = int(mode == "simpy")

    def spawn(self, t: int) -> None:
        """RQ_SPAWN (``env.process``) unless task ``t`` was started already."""
        if self.procs[t] is None:
            self.procs[t] = self.env.process(self.serve(t))

    def serve(self, t: int, first: Gen | None = None) -> Generator[Any, Any, Any]:
        """Task ``t``'s process: the machine asks, SimPy performs. ``first`` finishes a
        request in progress (a task moved in from the core, ``transfer.to_simpy``). A
        machine that stops goes on as ``on_stop``'s generator, whose value this returns
        (ksgxd served from inside its own generator: ``driver/stream_ksgxd.py``)."""
        if first is not None:
            self.begun[t] = True
            yield from first
        st = self.st
        rows = st.tasks
        clk = st.clk
        task = self.tasks[t]
        env = self.env
        self.begun[t] = True
        while True:
            rows[t, T_RQ] = 0
            clk[C_NOW] = env._now
            rows[t, T_CPU] = -1 if task.cpu is None else task.cpu
            r = self.step(t)
            if r == R_STOP and self.on_stop is not None:
                rows[t, T_RQ] = 0
                return (yield from self.on_stop(t))
            if r != R_BLOCKED:
                raise RuntimeError(f"task {t}: a served machine stopped without a request")
            rq = int(rows[t, T_RQ])
            ret = yield from perform_simpy(
                task, rq, int(rows[t, T_RQ_A]), self.mutexes, self.queues, self.spawn
            )
            if rq == RQ_WAKE:
                rows[t, T_RQ_RET] = int(bool(ret))
            elif rq == RQ_RUN_USER:
                user_ran(rows, clk, t, int(rows[t, T_RQ_A]), ret)
            elif rq == RQ_EXIT:
                rows[t, T_RQ] = 0
                return
            elif rq == RQ_SPAWN:
                pass  # no answer

    def serve_own(self, t: int, parked: Any = None) -> Generator[Any, Any, Any]:
        """Task ``t``'s machine served from the task's own running process (``yield from``
        this in it; returns what ``serve`` returns). Why (session ``nthreads2``, PATHS.md
        N6): a task whose process is its own Python code - an enclave thread's, inside
        ``access_stream`` - must survive a move to the core, which closes the processes
        it leaves behind (``transfer_detach.detach``). So the process does not ``yield
        from`` its serving generator but drives it through ``own[t]`` (a trampoline: yield
        its event, send what SimPy answers, forward a throw), and a move parks the process
        (its serving generator closed, the process waiting on nothing) and a move back
        re-points it at the serving generator ``to_simpy`` builds, on that one's event:
        the same ``Process`` object throughout, no event and no eid of its own.

        ``parked``: the task's process, which a group move has just taken onto the core
        from the middle of its Python code (``fast/driver/group_join.py``, session
        ``join``): the trampoline begins as a move leaves it - parked, its serving
        generator a placeholder -, its first ``yield`` (of nothing) returns to the move,
        and ``to_simpy`` re-points it like any other."""
        ev: Any = None
        if parked is None:
            proc: Any = self.env.active_process
            self.procs[t] = proc
            gen = self.serve(t)
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
        else:
            proc = self.procs[t] = parked
            gen = _placeholder()
        self.own[t] = gen
        try:
            while True:
                if self.move is not None and ev is not None:
                    # the move tried where a served step ends (N6 item 2): the event this
                    # process waits on next is its target for ``to_core`` to read (SimPy
                    # sets it again when the trampoline yields it)
                    proc._target = ev
                    kept = self.move(t)
                    if kept is not None:
                        self.own[t], ev = kept
                try:
                    value = yield ev
                except GeneratorExit:
                    raise
                except BaseException as exc:  # an Interrupt (a preempted user step)
                    gen = self.own[t]
                    ev = gen.throw(exc)
                    continue
                gen = self.own[t]  # re-pointed by a move back (``transfer_to_simpy``)
                ev = gen.send(value)
        except StopIteration as stop:
            return stop.value
        finally:
            gen = self.own[t]
            self.own[t] = None
            if gen is not None:
                gen.close()

    def run(self, max_steps: int = 0) -> int:
        """Process SimPy's events until its queue is empty, or ``max_steps`` of them if > 0;
        returns how many were processed."""
        if self.mode != "simpy":
            raise RuntimeError("Served.run: the machines are on the core (transfer.to_simpy)")
        env = self.env
        queue = env._queue
        n = 0
        while queue and (max_steps <= 0 or n < max_steps):
            env.step()
            n += 1
        self.pops += n
        return n
