"""``LinuxMutex``'s sleeping half moved between SimPy and the core, both ways (issue 9 row
10, session ``linuxmx``; ``cosim/transfer_lsleep.py``, PATHS.md "What is built: Linux's
mutex with more threads than CPUs on the user path").

Task programs made of critical sections on one mutex (runs from 1 ns to past a tick,
``cond_resched`` points inside and outside them), 3-6 tasks on 1-2 CPUs, Linux's mutex,
CFS and the FIFO run queue, with ``clk[C_MANY]`` (``run_core(many=True)``,
``run_served(many=True)``): contenders spin on the OSQ, leave it at need_resched or when
the owner is preempted inside its critical section, sleep on the wait list, are woken,
wait for a CPU, run ``mutex_wakeup``, set HANDOFF and spin as the first waiter. Moved to
the core after each of a run's first events, and back (at the end, or after one or a few
more events on the core): SimPy's alone every time - the core's phases (``T_LS``) and
``to_simpy``'s ``_sleeping`` entered at each, ``to_core`` reading them back from its frame.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.cosim.program import OP_LOCK, OP_RESCHED, OP_RUN, OP_UNLOCK, run_core
from epcsim.fast.cosim.program_served import run_served
from epcsim.fast.cosim.simpy_program import run_simpy
from epcsim.fast.cosim.state import (
    LS_SCHED1,
    LS_SCHED2,
    LS_SLEEP,
    LS_SPIN,
    LS_WCPU,
    LS_WRUN,
    LS_WSPIN,
)

LONG = bool(os.environ.get("EPCSIM_LONG"))
#: a run's length: a pick-up's scale to past a tick (``sched.TICK_NS`` is 4 ms)
RUNS = st.sampled_from([1, 200, 1000, 300_000, 1_500_000, 4_000_000, 6_000_000])


@st.composite
def lock_heavy(draw):  # type: ignore[no-untyped-def]
    """``(programs, starts, nr_mutexes, nr_cpus)``: 3-6 tasks on 1-2 CPUs, each 2-5
    critical sections on mutex 0, a ``cond_resched`` inside or after some."""
    n = draw(st.integers(3, 6))
    cpus = draw(st.integers(1, 2))
    progs = []
    for _ in range(n):
        p = []
        for _ in range(draw(st.integers(2, 5))):
            p += [(OP_RUN, draw(RUNS), 0), (OP_LOCK, 0, 0), (OP_RUN, draw(RUNS), 0)]
            if draw(st.booleans()):
                p += [(OP_RESCHED, 0, 0), (OP_RUN, draw(RUNS), 0)]
            p.append((OP_UNLOCK, 0, 0))
            if draw(st.booleans()):
                p.append((OP_RESCHED, 0, 0))
        progs.append(p)
    return progs, [True] * n, 1, cpus


def _moves(scenario, sched, first, seen=None):  # type: ignore[no-untyped-def]
    """Moved to the core after each of the run's first ``first`` events in turn, and back
    at the end or after one or a few more events there: SimPy's alone every time. The
    core from the start (``run_core(many=True)``) is SimPy's too. ``seen`` sums what the
    moves carried (``run_served``'s ``moved``)."""
    programs, starts, nr_mutexes, nr_cpus = scenario
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "mutex": "linux", "sched": sched}
    ref = run_simpy(programs, nr_cpus, **kw).comparable()
    core = run_core(programs, nr_cpus, many=True, **kw)
    assert core.handed_back is None
    assert core.comparable() == ref
    for k in range(1, min(ref["pops"], first) + 1):
        for switches in ([k], [k, 1], [k, 3, 2]):
            moved: dict[str, int] = {}
            got, _ran, _ = run_served(
                programs, nr_cpus, switches=switches, runq=True, moved=moved, many=True, **kw
            )
            assert got.comparable() == ref, (switches, sched)
            if seen is not None:
                for key, v in moved.items():
                    seen[key] = seen.get(key, 0) + v


@settings(max_examples=40 if LONG else 4, deadline=None)
@given(lock_heavy(), st.sampled_from(["cfs", "fifo"]))
def test_the_sleeping_half_moves_both_ways(scenario, sched):  # type: ignore[no-untyped-def]
    """Drawn lock-heavy programs moved after each of their first 12 events (module
    docstring): SimPy's alone."""
    _moves(scenario, sched, 12)


def test_moves_carry_every_phase_of_the_sleeping_half():
    """The guard on the property above: derandomized cases moved after each of their
    first 30 events carry every phase the core's ``C_MANY`` waits in, to the core
    (``ls_<T_LS>``) and back (``ls_out_<T_LS>``): the OSQ spin, after the first
    ``_schedule`` waiting for a CPU (``LS_SCHED1``), asleep (its wake-up pending, and
    queued: ``4w``), woken and waiting for a CPU (``LS_WCPU``), in ``mutex_wakeup``'s run
    (``LS_WRUN``), the first waiter's spin (``LS_WSPIN``). ``LS_SCHED2`` is the directed
    case's below."""
    seen: dict[str, int] = {}

    @settings(max_examples=10, deadline=None, database=None, derandomize=True)
    @given(lock_heavy(), st.sampled_from(["cfs", "fifo"]))
    def probe(scenario, sched):  # type: ignore[no-untyped-def]
        _moves(scenario, sched, 30, seen)

    probe()
    phases = [LS_SPIN, LS_SCHED1, LS_SLEEP, f"{LS_SLEEP}w", LS_WCPU, LS_WRUN, LS_WSPIN]
    for way in ("ls_", "ls_out_"):
        missing = [p for p in phases if seen.get(f"{way}{p}", 0) == 0]
        assert not missing, (way, missing, seen)


def test_a_waiter_after_the_loops_schedule_moves_both_ways():
    """``LS_SCHED2``: a woken waiter that finds the lock taken again and needs to
    reschedule waits for a CPU in the loop's ``_schedule`` (``K_LSLOW``), and moves both
    ways there; SimPy's alone (``_moves``)."""
    seen: dict[str, int] = {}
    _moves(SCHED2_CASE, SCHED2_SCHED, 80, seen)
    assert seen.get(f"ls_{LS_SCHED2}", 0) > 0 and seen.get(f"ls_out_{LS_SCHED2}", 0) > 0, seen


#: found by a scratch search over ``lock_heavy`` (300 cases, moves after each of their first
#: 80 events: the only one that moved a ``LS_SCHED2`` row; session ``linuxmx``)
SCHED2_CASE = (
    [
        [(OP_RUN, 1, 0), (OP_LOCK, 0, 0), (OP_RUN, 1_500_000, 0), (OP_RESCHED, 0, 0),
         (OP_RUN, 1, 0), (OP_UNLOCK, 0, 0), (OP_RESCHED, 0, 0), (OP_RUN, 1000, 0),
         (OP_LOCK, 0, 0), (OP_RUN, 200, 0), (OP_UNLOCK, 0, 0), (OP_RESCHED, 0, 0),
         (OP_RUN, 4_000_000, 0), (OP_LOCK, 0, 0), (OP_RUN, 6_000_000, 0), (OP_UNLOCK, 0, 0)],
        [(OP_RUN, 1000, 0), (OP_LOCK, 0, 0), (OP_RUN, 1000, 0), (OP_UNLOCK, 0, 0),
         (OP_RESCHED, 0, 0), (OP_RUN, 6_000_000, 0), (OP_LOCK, 0, 0), (OP_RUN, 6_000_000, 0),
         (OP_RESCHED, 0, 0), (OP_RUN, 4_000_000, 0), (OP_UNLOCK, 0, 0), (OP_RESCHED, 0, 0),
         (OP_RUN, 1, 0), (OP_LOCK, 0, 0), (OP_RUN, 6_000_000, 0), (OP_UNLOCK, 0, 0),
         (OP_RESCHED, 0, 0)],
        [(OP_RUN, 200, 0), (OP_LOCK, 0, 0), (OP_RUN, 1, 0), (OP_UNLOCK, 0, 0),
         (OP_RUN, 200, 0), (OP_LOCK, 0, 0), (OP_RUN, 6_000_000, 0), (OP_UNLOCK, 0, 0),
         (OP_RUN, 300_000, 0), (OP_LOCK, 0, 0), (OP_RUN, 300_000, 0), (OP_RESCHED, 0, 0),
         (OP_RUN, 1000, 0), (OP_UNLOCK, 0, 0), (OP_RESCHED, 0, 0)],
    ],
    [True, True, True],
    1,
    2,
)  # fmt: skip
SCHED2_SCHED = "fifo"
