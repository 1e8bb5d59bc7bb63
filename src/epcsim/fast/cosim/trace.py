"""The mutex trace (``Mutex._log``): ``(ns, event, task, mutex)`` rows, off when empty.

The reference appends ``(ns, event, task name)`` to a mutex's ``trace`` list when the list
exists; here every mutex shares one buffer with a mutex column, and a buffer of no rows is
"trace off". A full buffer stops the core (``HB_TRACE_FULL``): a trace with a hole in it
would compare equal to nothing, so the run is void and the caller gives a larger buffer.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.state import C_NOW, C_TRACE_LEN, HB_TRACE_FULL


@core_jit
def log(st, event, task, m):  # type: ignore[no-untyped-def]
    trace = st.trace
    cap = trace.shape[0]
    if cap == 0:
        return
    clk = st.clk
    n = clk[C_TRACE_LEN]
    if n >= cap:
        hand_back(st, np.int64(HB_TRACE_FULL), task)
        return
    trace[n, 0] = clk[C_NOW]
    trace[n, 1] = event
    trace[n, 2] = task
    trace[n, 3] = m
    clk[C_TRACE_LEN] = n + 1
