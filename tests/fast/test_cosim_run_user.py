"""The core's ``run_user`` (``Task.run_user``) against SimPy, event for event (issue 9).

The enclave thread's resident run is user-mode time, and ``Task.run_user`` differs from
``Task.run`` in what a lock released after it sees and in when busy time is counted: it
leaves ``step_end``/``step_ns`` alone and adds ``busy_ns`` once the step is over. The
generated programs of ``cosim_cases.scenarios`` with some ``RUN`` ops turned into ``USER``
ops (``cosim_cases.user_scenarios``; inside critical sections too, where an unlock right
after the step tells the two apart through ``_freed_from``) must complete every op at the
same instant on both engines, with the same traces, busy times, step fields and event
counts.
"""

from __future__ import annotations

from cosim_cases import EXAMPLES, user_scenarios
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.cosim.program import OP_LOCK, OP_RUN, OP_UNLOCK, OP_USER, run_core
from epcsim.fast.cosim.simpy_program import run_simpy


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(user_scenarios(), st.booleans(), st.booleans())
def test_run_user_matches_simpy_event_for_event(scenario, elide, via_requests):
    programs, starts, nr_mutexes = scenario
    n = len(programs)
    kw = {"starts": starts, "nr_mutexes": nr_mutexes, "elide": elide}
    core = run_core(programs, n, **kw)
    ref = run_simpy(programs, n, via_requests=via_requests, **kw)
    assert core.handed_back is None
    assert core.done == ref.done
    assert core.traces == ref.traces
    assert core.comparable() == ref.comparable()


def test_run_user_is_not_run() -> None:
    """One task, a user step then a kernel step in a lock: ``run_user`` moves neither
    ``step_end`` nor ``step_ns`` and counts busy time; with the step not elided (another
    task's event is due inside it) busy time is counted when its timeout is processed."""
    for elide in (True, False):
        progs = [[(OP_RUN, 7, 0), (OP_USER, 100, 0)], [(OP_LOCK, 0, 0), (OP_USER, 30, 0),
                                                        (OP_UNLOCK, 0, 0)]]  # fmt: skip
        core = run_core(progs, 2, elide=elide)
        ref = run_simpy(progs, 2, elide=elide)
        assert core.comparable() == ref.comparable()
        busy, _, _, _, _, step_end, step_ns = core.tasks[0]
        assert (busy, step_end, step_ns) == (107, 7, 7)
        assert core.tasks[1][0] == 30 and core.tasks[1][6] == 0
