"""``runqueue.poke_spinners`` (``Machine._poke_spinners``), directed (session ``suite4``).

CFS: a wake-up that finds no idle CPU and preempts nobody pokes every spinner (in
``Machine.spinning``'s order, when each began: ``T_SPIN_SEQ``), so each re-checks now and
from then on ends its spin at the next tick, where need_resched is set for it (a task
waits for its CPU): ``spin_fail``, then the wait list. PATHS.md ("Several threads on the
core", Left 3) found no test that failed with the poke skipped: a spinner that misses it
still sees the tick at its next re-check, and the drawn programs never held the lock
across a tick while a task waited. Here the owner holds it 10 ms, and the wake-up comes
from a sleeper whose vruntime (20 ms of run) is behind nobody's by the wake-up
granularity. The mutations this catches (by hand in a scratch worktree, 2026-11-27):
``poke_spinners``' ``poke`` skipped - the spinners go on to the unlock (``spin_acquire``,
no ``spin_fail``); both cases fail (``done`` differs from SimPy's). The spinners poked
in reverse order (``T_SPIN_SEQ`` descending) fails the two-spinner case (the
``spin_fail``s, sleeps and wake-ups swap, as in SimPy with ``Machine._poke_spinners``
reversed; session ``fixes``). Session ``suite4`` had reported it passing: its mutation
reversed ``leave_cpu``'s loop (``Machine._owner_off_cpu``), whose text was the same,
and that order cannot show - only the OSQ head watches the owner, the spinners behind it
follow in the OSQ's order (``LinuxMutex._fire``), in SimPy as on the core (PATHS.md,
"Several threads on the core", step 2's Left 3).

``run_core(many=True)`` sets ``clk[C_MANY]`` as ``run_threads`` does; without it the
spinner beside a waiting task is a hand-back (``HB_SPIN_RQ``).
"""

from __future__ import annotations

import pytest

from epcsim.engine.sched import TICK_NS
from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_RUN,
    OP_SPAWN,
    OP_UNLOCK,
    OP_WAIT,
    OP_WAKE,
    run_core,
)
from epcsim.fast.cosim.simpy_program import run_simpy

HOLD_NS = 10_000_000  #: the owner's critical section after the wake-up: across a tick
SLEEPER_NS = 20_000_000  #: the sleeper's run before it sleeps: its vruntime


def programs(spinners: int) -> list[list[tuple[int, int, int]]]:
    """t0 sleeps on q1 until the sleeper wakes it, takes m0, starts the spinners (each
    spins on m0: its owner is on a CPU), runs 100 us and wakes the sleeper (q0) with
    every CPU busy, then holds m0 ``HOLD_NS`` more. The last task is the sleeper."""
    owner = [(OP_WAIT, 1, 0), (OP_LOCK, 0, 0)]
    owner += [(OP_SPAWN, 1 + i, 0) for i in range(spinners)]
    owner += [(OP_RUN, 100_000, 0), (OP_WAKE, 0, 0), (OP_RUN, HOLD_NS, 0), (OP_UNLOCK, 0, 0)]
    spin = [[(OP_RUN, 1 + 1000 * i, 0), (OP_LOCK, 0, 0), (OP_RUN, 1000, 0), (OP_UNLOCK, 0, 0)]
            for i in range(spinners)]  # fmt: skip
    sleeper = [(OP_RUN, SLEEPER_NS, 0), (OP_WAKE, 1, 0), (OP_WAIT, 0, 0), (OP_RUN, 1_000_000, 0)]
    return [owner, *spin, sleeper]


@pytest.mark.parametrize("spinners", [1, 2])
def test_a_wakeup_that_preempts_nobody_makes_the_spinners_watch_the_tick(spinners: int) -> None:
    progs = programs(spinners)
    kw = {
        "starts": [True] + [False] * spinners + [True],
        "nr_mutexes": 1,
        "nr_queues": 2,
        "mutex": "linux",
        "sched": "cfs",
    }
    cpus = spinners + 1
    core = run_core(progs, cpus, many=True, **kw)
    ref = run_simpy(progs, cpus, **kw)
    assert core.handed_back is None
    assert core.done == ref.done
    assert core.traces == ref.traces
    assert core.comparable() == ref.comparable()
    assert core.sched[1] == 0  # the wake-up preempted nobody: the poke's branch
    trace = core.traces[0]
    woke = SLEEPER_NS + 1 + 100_000  # the sleeper's wake-up (t0 ran 1 ns to its LOCK)
    spinner_names = [f"t{1 + i}" for i in range(spinners)]
    # each spinner leaves its spin at a tick while the owner still holds m0 (the first
    # tick past the spinner's slice), in the order it began, then sleeps
    fails = [(ns, t) for ns, e, t in trace if e == "spin_fail"]
    assert [t for _, t in fails] == spinner_names
    tick = fails[0][0]
    assert tick % TICK_NS == 0 and woke < tick < woke + HOLD_NS
    assert all(ns == tick for ns, _ in fails)
    assert [t for _, e, t in trace if e == "sleep"] == spinner_names
    assert [t for _, e, t in trace if e == "wake"] == spinner_names
    assert not any(e == "spin_acquire" for _, e, _ in trace)
