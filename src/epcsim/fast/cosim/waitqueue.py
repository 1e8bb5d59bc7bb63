"""``WaitQueue`` as ksgxd uses it: ``wait_event`` sleeps, ``wake_up`` wakes every sleeper.

``wait_event(cond)`` is a loop the caller's state machine owns: while the condition is
false, ``sleep_on`` queues the task and releases its CPU (``Task.sleep``); the core resumes
it at its pc once the wake-up's event is processed and it has a CPU again
(``acquire_cpu``: an idle CPU, as CFS's ``select_idle_sibling`` picks it), and the caller
re-checks the condition. ``wake_up`` succeeds every sleeper's event now, in the order they
went to sleep: each takes an eid there, as ``Event.succeed`` does.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.state import EV_RESUME, NORMAL, R_BLOCKED, T_STATE, TS_SLEEP
from epcsim.fast.cosim.task import release_cpu


@core_jit
def sleep_on(st, t, q):  # type: ignore[no-untyped-def]
    """One sleep of ``wait_event``'s loop: always R_BLOCKED."""
    n = st.wq[q]
    st.wql[q, n] = t
    st.wq[q] = n + 1
    release_cpu(st, t)
    st.tasks[t, T_STATE] = TS_SLEEP
    return R_BLOCKED


@core_jit
def wake_up(st, q):  # type: ignore[no-untyped-def]
    """``wake_up``: whether anyone was sleeping."""
    n = st.wq[q]
    if n == 0:
        return False
    st.wq[q] = 0
    for i in range(n):
        schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), st.wql[q, i], np.int64(0))
        st.wql[q, i] = -1
    return True
