"""A spinner's wake-up taken without the queue (``cosim.spin.resume_now``, session ``fault3``).

When a spinner's timed poke fires and its wait succeeds with nothing else due at that
instant, the core resumes the spinner at once instead of scheduling its wake-up and popping
it next: it takes the eid and counts the pop as the queue would. These tests hold that to
SimPy's own order - time, then priority, then eid - on the generated programs of
``test_cosim.py``, at every point a run can be stopped (the events still queued, with
SimPy's eids: a stop between the poke and the wake-up must leave the wake-up in the queue),
and guard that the programs take it.

Run to the end (every op's instant, the traces, the counters and the pops) is
``test_cosim.py::test_core_matches_simpy_event_for_event``: ``run_core`` takes this
shortcut wherever it applies, so that property covers it on the same generated programs
(each file had its own copy of it, the same assertions on the same draws, until the
lead's 2026-11-27 tidy, found by ``duplicates``).
"""

from __future__ import annotations

from cosim_cases import PICKUP, programs_taking

from epcsim.fast.cosim.program import OP_LOCK, OP_LOOP, OP_RUN, OP_UNLOCK, run_core
from epcsim.fast.cosim.simpy_program import run_simpy

#: two tasks passing one lock back and forth: every hand-over is a spinner's timed poke
#: (``mutex_pickup`` after the unlock) with nothing else due at its instant
_PING = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_RUN, 2 * PICKUP, 0)]
PING_PONG = [[*_PING, (OP_LOOP, 0, 6)], [(OP_RUN, 7, 0), *_PING, (OP_LOOP, 1, 6)]]


def test_stopped_at_every_event_of_a_ping_pong():
    """Stopped by the event budget after each ``n`` of a run whose every hand-over takes
    the shortcut, the core is SimPy after ``n`` steps, queued events and eids included:
    a stop right after a poke fired keeps the spinner's wake-up queued (not taken)."""
    for elide in (True, False):
        full = run_core(PING_PONG, 2, elide=elide)
        assert full.handed_back is None
        assert full.extra["resumed_now"] >= 10, full.extra
        for n in range(1, full.pops + 1):
            core = run_core(PING_PONG, 2, elide=elide, max_pops=n)
            ref = run_simpy(PING_PONG, 2, elide=elide, max_steps=n)
            assert core.comparable() == ref.comparable(), n


def test_generated_programs_take_the_shortcut():
    """A guard on the property above: the drawn programs resume spinners at once (33 of
    these 150 when written; the ping-pong above covers the stops around it)."""
    seen = programs_taking("resumed_now")
    assert seen >= 15, seen
