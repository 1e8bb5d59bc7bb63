"""The task programs of ``program`` served by SimPy, moved to the core and back at given
instants: the proof of ``served`` and ``transfer`` (``tests/fast/test_served.py``).

``run_served`` runs the compiled interpreter ``program.resume`` - the same machine the core
drives - under SimPy one request at a time (``Served``), and alternates engines after the
numbers of events in ``switches``: SimPy for ``switches[0]`` events, the core for
``switches[1]``, SimPy again, ... (a move to the core that ``transfer.to_core`` refuses
leaves the run on SimPy for the next segment too), then to the end on whichever engine holds it,
and back to SimPy for the result. Its ``Outcome`` is comparable with ``run_simpy``'s and
``run_core``'s.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from epcsim.engine.costs import Costs
from epcsim.engine.machine import Machine, Mutex, Task, WaitQueue
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.outcome import Outcome, simpy_outcome
from epcsim.fast.cosim.program import (
    DONE_FULL,
    compile_programs,
    drive_programs,
    resume_programs,
)
from epcsim.fast.cosim.queue import pending
from epcsim.fast.cosim.request import RQ_LOCK
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_HB,
    C_HB_TASK,
    C_INTERRUPTS,
    C_MANY,
    C_POPS,
    C_RQ_LEN,
    EV_POKE,
    HB_BUDGET,
    HB_NAMES,
    K_NONE,
    LS_SLEEP,
    R_BLOCKED,
    R_STOP,
    SE_PENDING,
    SE_TRIGGERED,
    T_CONT,
    T_LS,
    T_PC,
    T_RESCHED,
    T_RQ,
    T_RQ_A,
    T_SPIN_EV,
    T_STATE,
    T_USER_NS,
    T_WEV,
    TS_INTR,
    TS_SPIN,
    CoState,
    new_state,
)
from epcsim.fast.cosim.transfer_to_core import to_core
from epcsim.fast.cosim.transfer_to_simpy import to_simpy


def run_served(
    programs: list[list[tuple[int, int, int]]],
    nr_cpus: int,
    *,
    switches: Sequence[int] = (),
    starts: Sequence[bool] | None = None,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    costs: Costs | None = None,
    elide: bool = True,
    trace: bool = True,
    heap_capacity: int = 1024,
    done_capacity: int = 1 << 16,
    max_steps: int = 0,
    moved: dict[str, int] | None = None,
    mutex: str = "linux",
    sched: str = "cfs",
    runq: bool = False,
    own: bool = False,
    stops: bool = False,
    many: bool = False,
) -> tuple[Outcome, list[str], Served]:
    """The outcome, the engine of each segment (``"simpy"``/``"core"``) as it ran, and the
    SimPy side (its engine state is the run's at the end).
    ``max_steps`` > 0: stop after that many events in all (the outcome's ``pending`` is
    SimPy's queue then, as ``run_simpy(max_steps=)``'s). ``moved`` counts what the moves to
    the core carried (tasks per ``T_STATE``, pokes), for the tests' guards; with ``runq``
    also what the moves back to SimPy carried of the run queue (``rq_waiting``,
    ``rq_resched``) and the core segments that interrupted a user step moved from SimPy
    (``user_interrupted``: the step's ``t0`` moved), and the hand-backs met inside a
    continuation after a pick (``hb_in_cont``: ``to_simpy`` finishes the request's rest).
    ``mutex`` and ``sched`` are
    ``Machine``'s (``run_simpy``'s); ``runq`` the core's run queue (``new_state``'s).
    ``own``: the tasks started at the beginning run in processes of their own
    (``Served.serve_own``, as an enclave thread's: parked by a move to the core and
    re-pointed by a move back, never closed). ``stops``: a task whose machine asks for a
    mutex whose owner is off its CPU stops there (``_setup``), as an enclave thread's at a
    stop it cannot pass. ``many`` sets ``clk[C_MANY]`` (``run_core``'s): the core runs
    ``LinuxMutex``'s sleeping half, and the moves carry it both ways (session ``linuxmx``;
    ``moved`` then counts each phase ``T_LS`` moved in, ``ls_<phase>``, and out,
    ``ls_out_<phase>``)."""
    for name, v in (("switches", min(switches, default=1)),):
        if v < 1:
            raise ValueError(f"{name}: event counts >= 1, got {list(switches)}")
    r = _setup(
        programs, nr_cpus, starts, own, nr_mutexes=nr_mutexes, nr_queues=nr_queues,
        costs=costs, elide=elide, trace=trace, heap_capacity=heap_capacity,
        done_capacity=done_capacity, mutex=mutex, sched=sched, runq=runq, stops=stops,
    )  # fmt: skip
    st, code, counters, done, dn, sv = r.st, r.code, r.counters, r.done, r.dn, r.sv
    st.clk[C_MANY] = int(many)
    ran: list[str] = []

    def on_core(budget: int) -> None:
        """Drive the core until it is idle, has processed ``budget`` events in all (0: no
        limit) or hands back at the edge of its regime; then back to SimPy."""
        st.clk[C_BUDGET] = budget
        carried = bool((st.tasks[:, T_USER_NS] > 0).any())  # a user step moved in
        interrupts = int(st.clk[C_INTERRUPTS])
        rc = drive_programs(st, code, counters, done, dn)
        st.clk[C_BUDGET] = 0
        if rc == DONE_FULL:
            raise RuntimeError("run_served: the done log is full (done_capacity)")
        hb = int(st.clk[C_HB])
        ran.append("core" if hb in (0, HB_BUDGET) else f"core, handed back: {HB_NAMES[hb]}")
        if moved is not None:
            moved["rq_waiting"] = moved.get("rq_waiting", 0) + int(st.clk[C_RQ_LEN])
            moved["rq_resched"] = moved.get("rq_resched", 0) + int(st.tasks[:, T_RESCHED].sum())
            hit = carried and int(st.clk[C_INTERRUPTS]) > interrupts
            moved["user_interrupted"] = moved.get("user_interrupted", 0) + int(hit)
            h = int(st.clk[C_HB_TASK]) if hb not in (0, HB_BUDGET) else -1
            mid = h >= 0 and int(st.tasks[h, T_CONT]) != K_NONE
            moved["hb_in_cont"] = moved.get("hb_in_cont", 0) + int(mid)
            intr = int((st.tasks[:, T_STATE] == TS_INTR).sum())  # its Interruption queued
            moved["intr_out"] = moved.get("intr_out", 0) + intr
            _count_phases(st, moved, "ls_out_")
        to_simpy(sv)

    for count in switches:
        if max_steps > 0:
            count = min(count, max_steps - (sv.pops if sv.mode == "simpy" else int(st.clk[C_POPS])))
            if count <= 0:
                break
        if sv.mode == "simpy":
            ran.append("simpy")
            sv.run(count)
            # refused outside the core's regime: the next segment is SimPy's too
            if to_core(sv):
                if moved is not None:
                    _count_moved(st, moved)
            elif moved is not None:
                moved["refused"] = moved.get("refused", 0) + 1
        else:
            on_core(int(st.clk[C_POPS]) + count)
    if sv.mode == "core":
        on_core(max_steps)
    if max_steps <= 0 or max_steps > sv.pops:
        ran.append("simpy")
        sv.run(max_steps - sv.pops if max_steps > 0 else 0)
    return r.outcome(), ran, sv


def run_inline(
    programs: list[list[tuple[int, int, int]]],
    nr_cpus: int,
    max_steps: int,
    *,
    moves: Sequence[tuple[int, int]] = (),
    starts: Sequence[bool] | None = None,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    mutex: str = "linux",
    sched: str = "cfs",
    runq: bool = False,
    stops: bool = False,
) -> tuple[Outcome, list[str], Served]:
    """The programs for ``max_steps`` events, their started tasks in processes of their own
    (``run_served(own=True)``), moved onto the core *from inside* an own process's
    trampoline (``Served.move``, PATHS.md N6 item 2, session ``n6``): for each ``(at,
    events)`` of ``moves``, at the end of the first served step of an own process after
    ``at`` events in all, ``to_core`` is tried (refused: the next own step tries again);
    that process then drives the core for ``events`` events (or to a hand-back, or
    ``max_steps``) and ``to_simpy(inline=t)`` gives it its serving generator back, the
    other own processes re-pointed. A driving process must not end on the core
    (``to_simpy`` raises): N6's thread machines never do, so the tests' programs end
    asleep for ever on a wait queue nobody wakes. ``stops``: ``run_served``'s (a task of
    another process stopping at the core's hand-back has its own process's code run at
    once: ``transfer_to_simpy._stopped_now``). Returns as ``run_served``, ``ran`` listing
    each move's core segment."""
    r = _setup(
        programs, nr_cpus, starts, True, nr_mutexes=nr_mutexes, nr_queues=nr_queues,
        mutex=mutex, sched=sched, runq=runq, stops=stops,
    )  # fmt: skip
    st, code, counters, done, dn, m, sv = r.st, r.code, r.counters, r.done, r.dn, r.m, r.sv
    ran: list[str] = []
    todo = list(moves)

    def move(t: int) -> tuple[Any, Any] | None:
        if not todo or sv.pops < todo[0][0] or sv.pops >= max_steps:
            return None
        if not to_core(sv):
            return None
        _, events = todo.pop(0)
        sv.inline_moves += 1
        st.clk[C_BUDGET] = min(max_steps, int(st.clk[C_POPS]) + events)
        rc = drive_programs(st, code, counters, done, dn)
        st.clk[C_BUDGET] = 0
        if rc == DONE_FULL:
            raise RuntimeError("run_inline: the done log is full")
        hb = int(st.clk[C_HB])
        ran.append(f"core from t{t}" + ("" if hb in (0, HB_BUDGET) else f": {HB_NAMES[hb]}"))
        return to_simpy(sv, inline=t)

    sv.move = move
    env = m.env
    queue = env._queue
    while queue and sv.pops < max_steps:
        sv.pops += 1  # this event's pop (a move inside it starts the core's count after it)
        env.step()
    return r.outcome(), ran, sv


@dataclass
class _Run:
    """What ``run_served`` and ``run_inline`` build before they run: the core's state and
    programs, the SimPy side (``Machine``, its tasks and mutexes) and the ``Served`` that
    joins them."""

    st: CoState
    code: np.ndarray
    counters: np.ndarray
    done: np.ndarray
    dn: np.ndarray
    m: Machine
    tasks: list[Task]
    mutexes: list[Mutex]
    sv: Served

    def outcome(self) -> Outcome:
        """The run's outcome as SimPy's side holds it, with the core's done log."""
        done_list = [(a, b, c) for a, b, c in self.done[: self.dn[0]].tolist()]
        return simpy_outcome(
            self.m, self.tasks, self.mutexes, self.sv.pops, done_list, self.counters.tolist()
        )


def _setup(
    programs: list[list[tuple[int, int, int]]],
    nr_cpus: int,
    starts: Sequence[bool] | None,
    own: bool,
    *,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    costs: Costs | None = None,
    elide: bool = True,
    trace: bool = True,
    heap_capacity: int = 1024,
    done_capacity: int = 1 << 16,
    mutex: str = "linux",
    sched: str = "cfs",
    runq: bool = False,
    stops: bool = False,
) -> _Run:
    """The programs compiled, the core's state and SimPy's machine for them, and the tasks
    of ``starts`` started (in processes of their own with ``own``, else spawned).

    ``stops`` (the tests of ``transfer_to_simpy._stopped_now``, session ``n6user``): a
    served machine that asks for a mutex whose owner holds no CPU (asleep holding it:
    where the core hands back ``HB_MUTEX_SLEEP``, and the request it refused is asked for
    again) stops there for good (``R_STOP``; ``on_stop`` returns its task's name), and its
    own process leaves its CPU and ends (``_own_process``) - as an enclave thread whose
    machine stops at a stop it cannot pass goes on in its Python code. The same rule
    served and after the core's hand-back, so the runs are comparable."""
    code, entry = compile_programs(programs)
    n = len(programs)
    st = new_state(
        nr_cpus, n, nr_mutexes, nr_queues, costs=costs, elide=elide,
        heap_capacity=heap_capacity, trace_capacity=4096 if trace else 0, mutex=mutex,
        sched=sched, runq=runq,
    )  # fmt: skip
    st.tasks[:, T_PC] = entry
    counters = np.zeros(nr_queues, np.int64)
    done = np.zeros((done_capacity, 3), np.int64)
    dn = np.zeros(1, np.int64)
    m = Machine(nr_cpus, costs, elide=elide, mutex=mutex, sched=sched)
    mutexes = [Mutex(m, f"m{i}") for i in range(nr_mutexes)]
    if trace:
        for mx in mutexes:
            mx.trace = []
    queues = [WaitQueue(m, f"q{i}") for i in range(nr_queues)]
    tasks = [Task(m, f"t{i}") for i in range(n)]

    # the machine's compiled entry for these arrays: no dispatch per request (``jit.py``)
    machine = entry_point(resume_programs, st, 0, code, counters, done, dn)

    def step(t: int) -> int:
        r = int(machine(st, t, code, counters, done, dn))
        if stops and r == R_BLOCKED and int(st.tasks[t, T_RQ]) == RQ_LOCK:
            owner = mutexes[int(st.tasks[t, T_RQ_A])].owner
            if owner is not None and owner is not tasks[t] and owner.cpu is None:
                return R_STOP
        return r

    def on_stop(t: int) -> Generator[Any, Any, Any]:
        return tasks[t].name
        yield  # a generator

    sv = Served(st, m, tasks, mutexes, queues, step, on_stop=on_stop if stops else None)
    for t, go in enumerate([True] * n if starts is None else starts):
        if go and own:
            sv.procs[t] = m.env.process(_own_process(sv, t))
        elif go:
            sv.spawn(t)
    return _Run(st, code, counters, done, dn, m, tasks, mutexes, sv)


def _own_process(sv: Served, t: int) -> Generator[Any, Any, Any]:
    """Task ``t``'s own process (``run_served(own=True)``): its Python code around the
    machine is only the call, as an enclave thread's ``access_stream`` around its hook;
    stopped (``stops``: ``serve_own`` returns the task's name), it leaves its CPU."""
    value = yield from sv.serve_own(t)
    if value is not None:
        sv.tasks[t].release_cpu()
    return value


def _count_moved(st: CoState, moved: dict[str, int]) -> None:
    for s in st.tasks[:, T_STATE].tolist():
        key = ("new", "starting", "ready", "run", "spin", "sleep", "done", "msleep", "runq",
               "intr", "lsleep", "park")[s]  # fmt: skip
        moved[key] = moved.get(key, 0) + 1
    kinds = [e[3] for e in pending(st)]
    moved["poke"] = moved.get("poke", 0) + kinds.count(EV_POKE)
    moved["resched_in"] = moved.get("resched_in", 0) + int(st.tasks[:, T_RESCHED].sum())
    moved["spin_pending"] = moved.get("spin_pending", 0) + int(
        ((st.tasks[:, T_STATE] == TS_SPIN) & (st.tasks[:, T_SPIN_EV] == SE_PENDING)).sum()
    )
    moved["sleep_pending"] = moved.get("sleep_pending", 0) + int(st.wq.sum())
    moved["moves"] = moved.get("moves", 0) + 1
    _count_phases(st, moved, "ls_")


def _count_phases(st: CoState, moved: dict[str, int], prefix: str) -> None:
    """Each task row in ``LinuxMutex._lock_slow`` by its phase (``T_LS``; with the wake-up
    queued for ``LS_SLEEP``: ``<prefix>4w``)."""
    for ls, wev in zip(st.tasks[:, T_LS].tolist(), st.tasks[:, T_WEV].tolist(), strict=True):
        if ls:
            key = f"{prefix}{ls}{'w' if ls == LS_SLEEP and wev == SE_TRIGGERED else ''}"
            moved[key] = moved.get(key, 0) + 1
