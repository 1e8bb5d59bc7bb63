"""Compiled state machines served by SimPy, and the engine's pending state moved between
SimPy and the compiled core at any instant (``fast/cosim/served.py``, ``transfer.py``).

The task programs of ``fast/cosim/program`` (the generator of ``test_cosim``: 2-3 tasks,
costs making same-nanosecond ties frequent, contended critical sections, sleeps and
wake-ups, late spawns) run served by SimPy, switch to the core after ``k`` events, back
after ``j`` more, and so on at drawn instants; the run must equal the pure SimPy run and
the pure core run in everything ``test_cosim`` compares: every op's completion instant in
order, the mutex traces and counters, busy_ns, CPUs, vruntimes, the final clock and the
number of events - and, stopped after ``n`` events, the queued events' ``(time, priority,
eid)``.
"""

from __future__ import annotations

import os

import pytest
from cosim_cases import scenarios, user_scenarios
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.engine.costs import Costs
from epcsim.engine.machine import Machine, Mutex, Task, WaitQueue
from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_RUN,
    OP_UNLOCK,
    OP_WAIT,
    OP_WAKE,
    run_core,
)
from epcsim.fast.cosim.program_served import _own_process, run_inline, run_served
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.simpy_program import run_simpy
from epcsim.fast.cosim.state import new_state
from epcsim.fast.cosim.transfer_to_core import to_core
from epcsim.fast.cosim.transfer_to_simpy import to_simpy

LONG = bool(os.environ.get("EPCSIM_LONG"))
EXAMPLES = 400 if LONG else 60

switch_points = st.lists(st.integers(1, 12), max_size=14)
_OWN_CODE = _own_process.__code__


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios(), st.booleans(), switch_points)
def test_switching_engines_at_any_instant_changes_nothing(scenario, elide, switches):
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    ref = run_simpy(programs, n, **kw)
    core = run_core(programs, n, **kw)
    got, _, _ = run_served(programs, n, switches=switches, **kw)
    assert got.handed_back is None and core.handed_back is None
    assert got.done == ref.done
    assert got.traces == ref.traces
    assert got.comparable() == ref.comparable() == core.comparable()


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(user_scenarios(), st.booleans(), switch_points, st.floats(0, 1))
def test_user_steps_move_too(scenario, elide, switches, where):
    """``run_user`` steps (some RUN ops turned USER, ``test_cosim_run_user``) under way at
    a move: to the end, and stopped after ``n`` events (the engine's fields compared)."""
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    ref = run_simpy(programs, n, **kw)
    got, _, _ = run_served(programs, n, switches=switches, **kw)
    assert got.comparable() == ref.comparable()
    n_events = 1 + int(where * (ref.pops - 1))
    *_, alone = run_served(programs, n, max_steps=n_events, **kw)
    *_, moved = run_served(programs, n, switches=switches, max_steps=n_events, **kw)
    assert _engine_state(moved) == _engine_state(alone)


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(scenarios(), st.booleans(), switch_points, st.floats(0, 1))
def test_stopped_after_n_events_the_queue_is_simpys(scenario, elide, switches, where):
    """After ``n`` events (``where`` in the run), whichever engine held the run, SimPy's
    queue holds the events the pure SimPy run has queued, with the same ``(time,
    priority, eid)``: the eids drawn after a move continue the other engine's count."""
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    n_events = 1 + int(where * (run_simpy(programs, n, **kw).pops - 1))
    ref = run_simpy(programs, n, max_steps=n_events, **kw)
    got, _, _ = run_served(programs, n, switches=switches, max_steps=n_events, **kw)
    assert got.comparable() == ref.comparable()


def _engine_state(sv: Served) -> dict[str, object]:
    """Every field of the SimPy engine the core restates, and the queue: each event as what
    it resumes. A spinner's ``gen`` is the core's count after a move (never reset, where
    ``_Spinner.gen`` starts at 0 per spin), so a poke is compared as live (armed for the
    spinner's current wait) or stale, which is all ``_fire`` looks at."""
    m = sv.m
    names = {task: task.name for task in sv.tasks}
    procs = {id(p): f"t{i}" for i, p in enumerate(sv.procs) if p is not None}
    targets = {
        id(p._target): f"t{i}" for i, p in enumerate(sv.procs) if p is not None and p.is_alive
    }
    queue = []
    for time, prio, eid, ev in sorted(m.env._queue, key=lambda e: e[:3]):
        if id(ev) in targets:
            what = ("resume", targets[id(ev)])
        elif id(ev) in procs:
            what = ("end", procs[id(ev)])
        else:
            (cb,) = ev.callbacks
            mx, (task, rec, gen) = cb.func.__self__, cb.args
            live = mx._spin_ev.get(task) is rec and rec.gen == gen and not rec.ev.triggered
            what = ("poke", names[task], live)
        queue.append((time, prio, eid, what))
    return {
        "now": m.env._now,
        "queue": queue,
        "tasks": [
            (
                t.cpu,
                t.last_cpu,
                t.busy_ns,
                t.step_end,
                t.step_ns,
                t.slice_start,
                t.vruntime,
                t.started,
            )
            for t in sv.tasks
        ],
        "running": [None if t is None else t.name for t in m.running],
        "rq": (m.rq.min_vruntime, list(m.rq._idle), m.rq.waiting()),
        "spinning": [(names[t], mx.name) for t, mx in m.spinning.items()],
        "mutexes": [
            (
                None if mx.owner is None else mx.owner.name,
                mx._free_since,
                mx._freed_from,
                mx._handed_at,
                mx.contended,
                mx.wait_ns,
                mx.spin_acquired,
                [t.name for t in mx._osq],
                sorted((names[t], r.ev.triggered) for t, r in mx._spin_ev.items()),
                mx.trace,
            )
            for mx in sv.mutexes
        ],
        "queues": [[targets.get(id(ev)) for ev in q._waiters] for q in sv.queues],
        "elided": m.elided,
    }


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(scenarios(), st.booleans(), switch_points, st.floats(0, 1))
def test_moved_back_the_engine_state_is_simpys(scenario, elide, switches, where):
    """Stopped after ``n`` events on SimPy (moved back from the core if it held the run),
    every field of the engine - mutex pick-up times, OSQ, spinners, CFS, wait queues, the
    queue - is what the run served by SimPy alone has after ``n`` events."""
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    n_events = 1 + int(where * (run_simpy(programs, n, **kw).pops - 1))
    *_, ref = run_served(programs, n, max_steps=n_events, **kw)
    *_, got = run_served(programs, n, switches=switches, max_steps=n_events, **kw)
    assert got.mode == ref.mode == "simpy"
    assert _engine_state(got) == _engine_state(ref)


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios(wait_in_lock=True), st.booleans(), switch_points, st.booleans())
def test_the_core_hands_back_mid_resumption_and_simpy_goes_on(
    scenario, elide, switches, short_of_cpus
):
    """Outside the core's regime - a lock owner asleep (WAIT inside a critical section)
    sends a contender to the wait list, one CPU fewer than tasks queues a waking task - the
    core hands back in the middle of a task's resumption; that task goes on at once in
    SimPy (the request asked again, a woken sleeper taking a CPU, a spinner's re-check),
    the run finishes there or moves back to the core once in its regime again, and nothing
    differs from SimPy alone."""
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    cpus = n - 1 if short_of_cpus else n
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    ref = run_simpy(programs, cpus, **kw)
    got, _, sv = run_served(programs, cpus, switches=[*switches, 1, 1_000], **kw)
    assert got.done == ref.done
    assert got.comparable() == ref.comparable()
    *_, alone = run_served(programs, cpus, **kw)
    assert _engine_state(sv) == _engine_state(alone)


def test_hand_backs_mid_resumption_are_exercised():
    """A guard on the property above: each kind of hand-back happens in what it draws."""
    seen: dict[str, int] = {}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(scenarios(wait_in_lock=True), switch_points, st.booleans())
    def probe(scenario, switches, short_of_cpus):
        programs, starts, nr_mutexes = scenario
        n = len(programs)
        cpus = n - 1 if short_of_cpus else n
        kw = {"starts": starts, "nr_mutexes": nr_mutexes}
        _, ran, _ = run_served(programs, cpus, switches=[*switches, 1, 1_000], **kw)
        for seg in ran:
            seen[seg] = seen.get(seg, 0) + 1

    probe()
    for name in ("mutex wait list", "no idle CPU"):
        assert seen.get(f"core, handed back: {name}", 0) >= 5, seen


def test_moves_carry_spinners_sleepers_and_pokes():
    """A guard on the property above: the moves it draws do carry every kind of pending
    state - a spinner waiting (its wait pending) and one poked, a timed poke, a sleeper not
    yet woken, a task not started, a finished one."""
    moved: dict[str, int] = {}

    @settings(max_examples=120, deadline=None, database=None, derandomize=True)
    @given(scenarios(), st.booleans(), switch_points)
    def probe(scenario, elide, switches):
        programs, starts, nr_mutexes = scenario
        kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
        run_served(programs, len(programs), switches=switches, moved=moved, **kw)

    probe()
    for key in ("spin", "spin_pending", "poke", "sleep_pending", "run", "starting", "done"):
        assert moved.get(key, 0) >= 5, moved
    # inside the core's regime (a CPU per task, no sleeping lock owner) no move is refused,
    # whatever the tasks wait for - a task moved to SimPy and not yet resumed included
    assert moved.get("refused", 0) == 0, moved


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(
    scenarios(wait_in_lock=True), user_scenarios(), st.booleans(), switch_points, st.floats(0, 1)
)
def test_own_processes_are_parked_and_repointed(scenario, user, crowded, switches, where):
    """Tasks served from processes of their own (``Served.serve_own``: an enclave thread's,
    PATHS.md N6, session ``nthreads2``), moved to the core and back at drawn instants -
    with a CPU short (hand-backs in the middle of a resumption) and with user steps (a
    preemption's Interrupt forwarded to the serving generator): the run is the pure SimPy
    run, to the end and stopped after ``n`` events (the guard below: the processes kept)."""
    for (programs, starts, nr_mutexes), cpus_short in ((scenario, crowded), (user, False)):
        n = len(programs)
        cpus = n - 1 if cpus_short else n
        kw = {"starts": starts, "nr_mutexes": nr_mutexes}
        ref = run_simpy(programs, cpus, **kw)
        got, _, sv = run_served(programs, cpus, switches=[*switches, 1, 1_000], own=True, **kw)
        assert got.done == ref.done
        assert got.traces == ref.traces
        assert got.comparable() == ref.comparable()
        # an own process is serving while it lives (a task left waiting for ever keeps it)
        assert all(o is None or p.is_alive for o, p in zip(sv.own, sv.procs, strict=True))
        n_events = 1 + int(where * (ref.pops - 1))
        *_, alone = run_served(programs, cpus, max_steps=n_events, **kw)
        *_, moved = run_served(
            programs, cpus, switches=switches, max_steps=n_events, own=True, **kw
        )
        assert _engine_state(moved) == _engine_state(alone)


def test_own_processes_are_exercised():
    """A guard on the property above: own processes parked and re-pointed, kept from
    their start to their end across moves (the same ``Process`` object, finished), and
    ended by their machine on the core (``_end_own``)."""
    seen = {"repointed": 0, "kept": 0, "ended_on_core": 0}

    @settings(max_examples=120, deadline=None, database=None, derandomize=True)
    @given(scenarios(wait_in_lock=True), switch_points)
    def probe(scenario, switches):
        programs, starts, nr_mutexes = scenario
        n = len(programs)
        kw = {"starts": starts, "nr_mutexes": nr_mutexes}
        _, ran, sv = run_served(programs, n, switches=[*switches, 1, 1_000], own=True, **kw)
        seen["repointed"] += sv.repointed
        seen["ended_on_core"] += sv.own_ended
        if "core" in ran:
            for p in sv.procs if sv.repointed else ():  # moved to the core and back
                code = getattr(getattr(p, "_generator", None), "gi_code", None)
                seen["kept"] += int(code is _OWN_CODE)  # the process it started in

    probe()
    assert all(v >= 5 for v in seen.values()), seen


def _forever(programs: list[list[tuple[int, int, int]]]) -> list[list[tuple[int, int, int]]]:
    """Each program ending asleep for ever on wait queue 1, which nobody wakes: a process
    driving the core must not end on it (``run_inline``; N6's thread machines stop at a
    loop top before that)."""
    return [[*ops, (OP_WAIT, 1, 0)] for ops in programs]


inline_moves = st.lists(
    st.tuples(st.integers(0, 80), st.integers(1, 60)), min_size=1, max_size=10
).map(sorted)


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(
    scenarios(wait_in_lock=True),
    user_scenarios(),
    st.booleans(),
    inline_moves,
    st.integers(10, 300),
)
def test_an_own_process_moves_the_run_onto_the_core_and_drives_it(
    scenario, user, crowded, moves, n_events
):
    """The move tried where a served step ends, from inside the own process that stepped
    (``Served.move``, PATHS.md N6 item 2, session ``n6``): that process drives the core,
    the others parked, and at the hand-back goes on with the serving generator
    ``to_simpy(inline=t)`` gives it - its own resumption's too when it met the edge - the
    others re-pointed. After ``n`` events the run is the pure SimPy run (with a CPU short:
    hand-backs in the middle of a resumption; with user steps)."""
    for (programs, starts, nr_mutexes), cpus_short in ((scenario, crowded), (user, False)):
        programs = _forever(programs)
        n = len(programs)
        cpus = n - 1 if cpus_short else n
        kw = {"starts": starts, "nr_mutexes": nr_mutexes, "nr_queues": 2}
        ref = run_simpy(programs, cpus, max_steps=n_events, **kw)
        *_, alone = run_served(programs, cpus, max_steps=n_events, own=True, **kw)
        got, _, sv = run_inline(programs, cpus, n_events, moves=moves, **kw)
        assert got.done == ref.done
        assert got.traces == ref.traces
        assert got.comparable() == ref.comparable()
        assert _engine_state(sv) == _engine_state(alone)


def test_inline_moves_are_exercised():
    """A guard on the property above: moves made from inside an own process, and other own
    processes re-pointed by them (the driving process's own hand-back: below)."""
    seen = {"moves": 0, "repointed": 0}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(scenarios(wait_in_lock=True), st.booleans(), inline_moves)
    def probe(scenario, crowded, moves):
        programs, starts, nr_mutexes = scenario
        programs = _forever(programs)
        n = len(programs)
        kw = {"starts": starts, "nr_mutexes": nr_mutexes, "nr_queues": 2}
        _, _, sv = run_inline(programs, n - int(crowded), 300, moves=moves, **kw)
        seen["moves"] += sv.inline_moves
        seen["repointed"] += sv.repointed

    probe()
    assert all(v >= 5 for v in seen.values()), seen


def test_the_driving_process_meets_the_regimes_edge():
    """The hand-back's task is the process driving the core (``to_simpy``'s ``now`` given
    back to it, not re-pointed): t1 moves the run onto the core at the end of its first
    step and, on the core, asks for ``encl->lock``'s stand-in while its owner t0 sleeps
    holding it - a sleeping owner, the core's regime's edge (``HB_MUTEX_SLEEP``) in t1's
    own resumption. The run equals the pure SimPy run, event for event."""
    programs = _forever(
        [
            [(OP_LOCK, 0, 0), (OP_WAIT, 0, 0), (OP_UNLOCK, 0, 0)],
            [(OP_RUN, 100, 0), (OP_LOCK, 0, 0), (OP_RUN, 50, 0), (OP_UNLOCK, 0, 0)],
            [(OP_RUN, 5_000, 0), (OP_WAKE, 0, 0)],
        ]
    )
    kw = {"nr_queues": 2}
    for n_events in (4, 6, 8, 1_000):
        ref = run_simpy(programs, 3, max_steps=n_events, **kw)
        *_, alone = run_served(programs, 3, max_steps=n_events, own=True, **kw)
        got, ran, sv = run_inline(programs, 3, n_events, moves=[(2, 100)], **kw)
        assert sv.inline_moves == 1
        if n_events > 2:
            assert ran == ["core from t1: mutex wait list"], ran
            assert sv.inline_handbacks == 1
        assert got.done == ref.done
        assert got.traces == ref.traces
        assert got.comparable() == ref.comparable()
        assert _engine_state(sv) == _engine_state(alone)


def test_a_stopped_machines_own_process_goes_on_at_once():
    """A machine that stops for good at the core's hand-back (its serving generator
    returns, ``on_stop``: an enclave thread at a stop it cannot pass, PATHS.md N6 item 2's
    last part) has its own process's Python code run at once, at that instant and before
    the next event (``transfer_to_simpy._stopped_now``): a process other than the driver
    (resumed there, parked as it was) and the driver itself (given a processed event to go
    on from). ``stops``: a machine asking for ``m0`` while its owner t0 sleeps holding it
    (the core's ``HB_MUTEX_SLEEP``) stops, and its process leaves its CPU and ends. The
    last task moves the run onto the core at the end of its first step (every process
    started: N6's threads join before the move); the stopping task is t1 (not the driver)
    or the driver. The run equals the run served throughout with the same rule, event for
    event, every process's value and end included."""
    t0 = [(OP_LOCK, 0, 0), (OP_WAIT, 0, 0), (OP_UNLOCK, 0, 0)]
    waker = [(OP_RUN, 5_000, 0), (OP_WAKE, 0, 0)]
    locker = [(OP_RUN, 200, 0), (OP_LOCK, 0, 0), (OP_RUN, 50, 0), (OP_UNLOCK, 0, 0)]
    driver = [(OP_RUN, 100, 0), (OP_RUN, 3_000, 0), (OP_RUN, 50, 0)]
    # (programs, the move's event count, the driver, the task that stops)
    cases = [
        ([t0, locker, waker, driver], 4, 3, 1),
        ([t0, [(OP_RUN, 100, 0), (OP_LOCK, 0, 0), (OP_UNLOCK, 0, 0)], waker], 2, 1, 1),
    ]
    kw = {"nr_queues": 2, "stops": True}
    for progs, at, drv, who in cases:
        programs = _forever(progs)
        n = len(programs)
        for n_events in (at + 2, 8, 1_000):
            ref, _, alone = run_served(programs, n, max_steps=n_events, own=True, **kw)
            got, ran, sv = run_inline(programs, n, n_events, moves=[(at, 100)], **kw)
            assert sv.inline_moves == 1
            if n_events > at + 2:
                assert ran == [f"core from t{drv}: mutex wait list"], ran
                assert sv.own_stops == 1
                assert sv.inline_handbacks == int(who == drv)
                assert not sv.procs[who].is_alive and sv.procs[who].value == f"t{who}"
            assert got.done == ref.done
            assert got.traces == ref.traces
            assert got.comparable() == ref.comparable()
            assert _engine_state(sv) == _engine_state(alone)
            assert [_ended(p) for p in sv.procs] == [_ended(p) for p in alone.procs]


def _ended(proc: object) -> object:
    """A process's end as SimPy holds it: alive, or its value."""
    if proc is None:
        return None
    return "alive" if proc.is_alive else ("ended", proc.value)


def test_pure_served_run_is_the_simpy_run():
    pickup = Costs().mutex_pickup
    ping = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * pickup, 0)]
    programs = [ping * 20, [(OP_RUN, 7, 0), *ping * 20]]
    for elide in (True, False):
        got, ran, _ = run_served(programs, 2, elide=elide)
        assert ran == ["simpy"]
        ref = run_simpy(programs, 2, elide=elide, via_requests=True)
        assert got.comparable() == ref.comparable()
        assert got.mutexes[0][1] > 10  # contended


def _served(nr_cpus: int, n_tasks: int) -> Served:
    st_ = new_state(nr_cpus, n_tasks)
    m = Machine(nr_cpus, elide=True)
    tasks = [Task(m, f"t{i}") for i in range(n_tasks)]
    return Served(st_, m, tasks, [Mutex(m, "m0")], [WaitQueue(m, "q0")], lambda t: 0)


def test_to_core_refuses_outside_the_regime_and_moves_nothing():
    """A task waiting for a CPU (CFS's run queue), or an event the core does not know: the
    run stays on SimPy, untouched."""
    sv = _served(1, 2)
    m = sv.m

    def hog(task: Task):
        yield from task.run(1_000)

    for t in sv.tasks:
        m.spawn(hog(t))
    m.env.step()
    m.env.step()  # t0 runs, t1 waits for the CPU
    assert m.rq.waiting() == 1
    queue = list(m.env._queue)
    assert not to_core(sv)
    assert sv.mode == "simpy" and m.env._queue == queue
    sv2 = _served(2, 1)
    held = sv2.env.timeout(5)  # nobody's event, held (by this test): callbacks may come
    assert not to_core(sv2) and sv2.mode == "simpy"
    del held
    # held by SimPy's queue alone it does nothing when popped (an interrupted user step's
    # dead timeout): moved since session ``cmany`` (``transfer_to_core._dead``)
    assert to_core(sv2) and sv2.mode == "core"


def test_empty_run_moves_both_ways():
    sv = _served(2, 2)
    assert to_core(sv) and sv.mode == "core"
    with pytest.raises(RuntimeError, match="to_core"):
        to_core(sv)
    to_simpy(sv)
    assert sv.mode == "simpy"
    with pytest.raises(RuntimeError, match="to_simpy"):
        to_simpy(sv)


def test_served_rejects_mismatched_rows():
    st_ = new_state(1, 2)
    m = Machine(1)
    with pytest.raises(ValueError, match="tasks"):
        Served(st_, m, [Task(m, "t0")], [Mutex(m, "m0")], [WaitQueue(m, "q0")], lambda t: 0)


def test_run_served_rejects_bad_switches():
    with pytest.raises(ValueError, match="switches"):
        run_served([[(OP_RUN, 1, 0)]], 1, switches=[3, 0])


def test_a_task_moved_twice_while_it_waits():
    """t0's long step is moved to SimPy, and back to the core before it ends, several
    times (so is t1's sleep): each move is accepted (a task moved to SimPy waits in
    ``transfer``'s own continuation, not in ``Task.run``/``Task.sleep``) and nothing
    differs from SimPy alone."""
    programs = [
        [(OP_RUN, 1_000, 0), (OP_WAKE, 0, 0)],
        [(OP_WAIT, 0, 0), (OP_RUN, 5, 0)],
        [(OP_RUN, 10, 0)] * 8,
    ]
    for elide in (False, True):
        moved: dict[str, int] = {}
        got, _, _ = run_served(programs, 3, switches=[3, 1] * 8, elide=elide, moved=moved)
        assert got.comparable() == run_simpy(programs, 3, elide=elide).comparable()
        assert moved.get("refused", 0) == 0, moved
        if not elide:  # every step an event: t0's step and t1's sleep span several moves
            assert moved["run"] >= 4 and moved["sleep"] >= 2, moved
