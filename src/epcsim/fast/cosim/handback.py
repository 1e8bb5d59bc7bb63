"""Stopping the core at the edge of its regime (the ``HB_*`` codes of ``state``).

The first hand-back wins: the code, the task that met it and the instant stay in ``clk``
and every later primitive call sees ``clk[C_HB] != 0`` through ``next_resume``.
"""

from __future__ import annotations

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.state import C_HB, C_HB_NOW, C_HB_TASK, C_NOW, R_STOP


@core_jit
def hand_back(st, code, task):  # type: ignore[no-untyped-def]
    clk = st.clk
    if clk[C_HB] == 0:
        clk[C_HB] = code
        clk[C_HB_TASK] = task
        clk[C_HB_NOW] = clk[C_NOW]
    return R_STOP
