"""A ``run`` step's timeout popped in place after the spinners' pokes before it
(``cosim.run_over``, session ``row1keep``).

When a task's step cannot be elided because a spinner's poke is due before it ends, the
core takes the timeout's eid, pops and fires the pokes itself, and - when the timeout is
then the least event - pops it in place, so the task goes on without leaving its machine.
These tests hold that to SimPy's order on the co-simulation programs: stopped by the event
budget at every event of a lock steal under a spin (the events still queued, with SimPy's
eids: a stop between a poke and the timeout must leave the timeout queued), drawn stops in
crowded programs with the spinners beside the run queue (re-armed pokes at the tick), and
guard that the programs take it.

Run to the end (every op's instant, the traces, the counters and the pops) is
``test_cosim.py::test_core_matches_simpy_event_for_event``: ``run_core`` takes this
shortcut wherever it applies, so that property covers it on the same generated programs
(each file had its own copy of it, the same assertions on the same draws, until the
lead's 2026-11-27 tidy, found by ``duplicates``).
"""

from __future__ import annotations

from cosim_cases import EXAMPLES, PICKUP, programs_taking
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.cosim.program import OP_LOCK, OP_LOOP, OP_RESCHED, OP_RUN, OP_UNLOCK, run_core
from epcsim.fast.cosim.simpy_program import run_simpy

#: t0 drops the lock and takes it again at once, then holds it across t1's pick-up poke:
#: the poke fires inside t0's long step, finds the owner running and re-arms - the step's
#: timeout comes next (row 1's ksgxd between EBLOCK and EWB, the thread spinning)
_STEAL = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_LOCK, 0, 0),
          (OP_RUN, 3 * PICKUP, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * PICKUP, 0)]  # fmt: skip
STEAL = [[*_STEAL, (OP_LOOP, 0, 5)], [(OP_RUN, 7, 0), *_STEAL, (OP_LOOP, 1, 5)]]
#: the same with the owner's step ending at the poke's instant: the poke pops first (its
#: eid is older) and, the timeout due then, its wait succeeds - not a re-arm
_TIE = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_LOCK, 0, 0),
        (OP_RUN, PICKUP, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * PICKUP, 0)]  # fmt: skip
TIE = [[*_TIE, (OP_LOOP, 0, 5)], [(OP_RUN, 7, 0), *_TIE, (OP_LOOP, 1, 5)]]


def test_stopped_at_every_event_of_a_steal():
    """Stopped by the event budget after each ``n``, the core is SimPy after ``n`` steps,
    queued events and eids included (the timeout queued when the stop falls between the
    poke and it); and the same when the step ends at the poke's instant."""
    for programs, least in ((STEAL, 5), (TIE, 0)):
        full = run_core(programs, 2)
        assert full.handed_back is None
        assert full.extra["ran_over"] >= least, full.extra
        for n in range(1, full.pops + 1):
            core = run_core(programs, 2, max_pops=n)
            ref = run_simpy(programs, 2, max_steps=n)
            assert core.comparable() == ref.comparable(), n


#: a run's length: ties with the pick-up, a pick-up's scale, past a tick (4 ms)
RUNS = st.sampled_from([1, 200, PICKUP, 1000, 300_000, 1_500_000, 4_000_000, 6_000_000])


@st.composite
def crowded_locks(draw):  # type: ignore[no-untyped-def]
    """``(programs, nr_cpus)``: 2-4 tasks on 1-2 CPUs, each 1-4 critical sections on one
    mutex, some held across a ``cond_resched``: spinners beside the run queue, their
    pokes re-armed at the tick."""
    n = draw(st.integers(2, 4))
    progs = []
    for _ in range(n):
        p = []
        for _ in range(draw(st.integers(1, 4))):
            p += [(OP_RUN, draw(RUNS), 0), (OP_LOCK, 0, 0), (OP_RUN, draw(RUNS), 0)]
            if draw(st.booleans()):
                p += [(OP_RESCHED, 0, 0), (OP_RUN, draw(RUNS), 0)]
            p.append((OP_UNLOCK, 0, 0))
        progs.append(p)
    return progs, draw(st.integers(1, 2))


@settings(max_examples=EXAMPLES // 4, deadline=None)
@given(crowded_locks(), st.sampled_from(["cfs", "fifo"]), st.integers(0, 80))
def test_ran_over_beside_the_run_queue(scenario, sched, n):
    """More tasks than CPUs with ``C_MANY`` (``run_threads``' regime: spinners beside the
    run queue), stopped after a drawn number of events (0: the end)."""
    programs, nr_cpus = scenario
    kw = {"sched": sched}
    core = run_core(programs, nr_cpus, max_pops=n or 1 << 24, many=True, **kw)
    assert core.handed_back in (None, "event budget spent")
    ref = run_simpy(programs, nr_cpus, max_steps=n, **kw)
    assert core.comparable() == ref.comparable()


def test_generated_programs_take_it():
    """A guard on the properties above: the drawn programs run over pokes."""
    seen = programs_taking("ran_over")
    assert seen >= 10, seen
