"""The compiled core with the FIFO variants against SimPy, event for event (issue 9,
session ``fifo``).

``Machine(mutex="fifo")`` (``FifoMutex``: a contender sleeps on the wait list at once, the
unlock hands the lock to the first waiter) and ``Machine(sched="fifo")``
(``FifoRunQueue``: free CPUs handed out in FIFO order, no vruntime placement, user steps
never preempted) are the model's simplified comparison, which ``epcsim demo`` runs beside
Linux's. The core restates them next to the Linux decisions (``fast/cosim/mutex.py``,
``task.py``, ``dispatch.py``); here the generated task programs of ``test_cosim`` (with
``USER`` steps, and waits inside critical sections: a FIFO waiter never needs a running
owner) run on the core, on SimPy, and switched between the two at drawn instants
(``transfer``), with each combination of the variants: the same ops at the same instants,
the same traces (``sleep``/``handoff`` included), counters, CPUs, busy times, vruntimes,
events processed and, stopped after ``n`` events, the same queue.
"""

from __future__ import annotations

from cosim_cases import EXAMPLES, scenarios, user_scenarios
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.cosim.program import OP_LOCK, OP_RUN, OP_UNLOCK, OP_USER, run_core
from epcsim.fast.cosim.program_served import run_served
from epcsim.fast.cosim.simpy_program import run_simpy

#: (mutex, sched): every combination with a FIFO variant (Linux's is test_cosim's)
VARIANTS = st.sampled_from([("fifo", "fifo"), ("fifo", "cfs"), ("linux", "fifo")])
switch_points = st.lists(st.integers(1, 12), max_size=14)


@st.composite
def fifo_scenarios(draw):
    """``test_cosim``'s programs, some RUN ops made USER, maybe a WAIT inside a lock."""
    programs, starts, nr_mutexes = draw(
        user_scenarios() if draw(st.booleans()) else scenarios(wait_in_lock=True)
    )
    return programs, starts, nr_mutexes


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(fifo_scenarios(), VARIANTS, st.booleans(), st.booleans())
def test_fifo_variants_match_simpy_event_for_event(scenario, variant, elide, via_requests):
    programs, starts, nr_mutexes = scenario
    mutex, sched = variant
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide, "mutex": mutex}
    core = run_core(programs, n, sched=sched, **kw)
    ref = run_simpy(programs, n, sched=sched, via_requests=via_requests, **kw)
    if mutex == "linux" and core.handed_back is not None:
        # Linux's wait list (an owner asleep in its critical section) is outside the regime
        assert core.handed_back == "mutex wait list"
        assert ref.done[: len(core.done)] == core.done
        return
    assert core.handed_back is None
    assert core.done == ref.done
    assert core.traces == ref.traces
    assert core.comparable() == ref.comparable()


@settings(max_examples=EXAMPLES // 4, deadline=None)
@given(fifo_scenarios(), VARIANTS, st.booleans(), switch_points, st.floats(0, 1))
def test_fifo_variants_move_between_engines(scenario, variant, elide, switches, where):
    """Served by SimPy and moved to the core and back at drawn instants (a FIFO waiter
    queued, or handed the lock with its wake-up queued, moves both ways): to the end, and
    stopped after ``n`` events with SimPy's queue."""
    programs, starts, nr_mutexes = scenario
    mutex, sched = variant
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    kw |= {"mutex": mutex, "sched": sched}
    ref = run_simpy(programs, n, **kw)
    got, ran, _ = run_served(programs, n, switches=switches, **kw)
    if any("handed back" in r for r in ran):
        assert mutex == "linux"  # Linux's wait list, outside the regime
    assert got.comparable() == ref.comparable()
    n_events = 1 + int(where * (ref.pops - 1))
    stopped = run_simpy(programs, n, max_steps=n_events, **kw)
    got, _, _ = run_served(programs, n, switches=switches, max_steps=n_events, **kw)
    assert got.comparable() == stopped.comparable()


def test_generated_fifo_runs_move_sleepers_and_hand_over():
    """A guard on what the properties above draw: FIFO waiters moved to the core (queued
    and handed over), CPUs handed out in another order than CFS's, user steps."""
    seen = {"msleep": 0, "handoff": 0, "cpu_order": 0, "user": 0}

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(fifo_scenarios(), switch_points)
    def probe(scenario, switches):
        programs, starts, nr_mutexes = scenario
        n = len(programs)
        kw = {"starts": starts, "nr_mutexes": nr_mutexes}
        moved: dict[str, int] = {}
        got, _, _ = run_served(
            programs, n, switches=switches, moved=moved, mutex="fifo", sched="fifo", **kw
        )
        seen["msleep"] += moved.get("msleep", 0) > 0
        seen["handoff"] += any(e == "handoff" for tr in got.traces for _, e, _ in tr)
        cfs = run_simpy(programs, n, mutex="fifo", sched="cfs", **kw)
        seen["cpu_order"] += [t[1:3] for t in got.tasks] != [t[1:3] for t in cfs.tasks]
        seen["user"] += any(op == OP_USER for p in programs for op, _, _ in p)

    probe()
    assert all(v >= 5 for v in seen.values()), seen


def test_fifo_lock_is_handed_to_the_waiter_in_order():
    """t1 and t2 contend while t0 holds the lock: they sleep, and each unlock hands it to
    the first waiter (no spinning, no stealing: t0 re-locking at once waits its turn).
    On 4 CPUs a woken sleeper takes the free deque's head (t1 CPU 3, t2 the CPU t1 left),
    where CFS would put it back on its previous CPU."""
    crit = [(OP_LOCK, 0, 0), (OP_RUN, 100, 0), (OP_UNLOCK, 0, 0)]
    programs = [crit * 2, [(OP_RUN, 10, 0), *crit], [(OP_RUN, 20, 0), *crit]]
    core = run_core(programs, 4, mutex="fifo", sched="fifo")
    ref = run_simpy(programs, 4, mutex="fifo", sched="fifo")
    assert core.comparable() == ref.comparable()
    owners = [who for _, e, who in core.traces[0] if e == "handoff"]
    assert owners == ["t1", "t2", "t0"]
    assert core.mutexes[0][4] == 3  # handoffs
    assert [t[2] for t in core.tasks] == [2, 3, 1]  # last CPUs: the free deque's order
    cfs = run_core(programs, 4, mutex="fifo", sched="cfs")
    assert cfs.comparable() == run_simpy(programs, 4, mutex="fifo", sched="cfs").comparable()
    assert [t[2] for t in cfs.tasks] == [0, 1, 2]
