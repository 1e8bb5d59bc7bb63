"""A spinner's poke (``LinuxMutex._poke``): its own module because the run queue pokes
spinners too (``Machine._owner_off_cpu``, ``_resched``, ``_poke_spinners``) and the spin
reads the run queue (the tick, need_resched): ``runqueue`` and ``spin`` both import it.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import schedule
from epcsim.fast.cosim.state import (
    EV_POKE,
    EV_RESUME,
    NORMAL,
    SE_PENDING,
    SE_TRIGGERED,
    T_SPIN_EV,
    T_SPIN_GEN,
    T_SPIN_M,
)


@core_jit
def poke(st, t, delay):  # type: ignore[no-untyped-def]
    """``LinuxMutex._poke``: the spinner ``t`` re-checks ``delay`` ns from now. Nothing if
    it is not waiting (not spinning, or its wait already triggered)."""
    tasks = st.tasks
    if tasks[t, T_SPIN_M] < 0 or tasks[t, T_SPIN_EV] != SE_PENDING:
        return
    if delay <= 0:
        tasks[t, T_SPIN_EV] = SE_TRIGGERED
        schedule(st, np.int64(0), np.int64(NORMAL), np.int64(EV_RESUME), t, np.int64(0))
    else:
        schedule(st, delay, np.int64(NORMAL), np.int64(EV_POKE), t, tasks[t, T_SPIN_GEN])


__all__ = ["poke"]
