"""SimPy -> core, the mutexes' part of ``to_core`` (``transfer_to_core.py``): each mutex's
row (owner, counters, ``FifoMutex``'s wait list, ``LinuxMutex``'s pick-up times, OSQ,
HANDOFF and wait list) and the check that every ``LinuxMutex`` waiter is a moved contender
past the wait list's append (``transfer_lsleep.py``).

Why a module of its own: split from ``transfer_to_core.py`` by session ``linuxmx`` when
carrying ``LinuxMutex``'s sleeping half took it past 500 lines: the mutexes' rows are one
concept.
"""

from __future__ import annotations

from typing import Any

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    LS_SLEEP,
    M_CONTENDED,
    M_FIFO,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFF,
    M_HANDOFFS,
    M_OSQ_LEN,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    M_WAITERS,
)


def waiters_moved(sv: Served, tix: dict[Any, int], lsl: dict[int, Any]) -> bool:
    """Every ``LinuxMutex`` waiter a task ``to_core`` read inside ``_sleeping`` past
    ``SCHED1`` (``lsl``: ``transfer_lsleep.LSlow`` by task)."""
    for lk in sv.mutexes:
        if isinstance(lk, LinuxMutex):
            for w in lk._waiters:
                lw = lsl.get(tix[w.task])
                if lw is None or lw[1] < LS_SLEEP:
                    return False
    return True


def mutexes_in(sv: Served, tix: dict[Any, int]) -> None:
    """Each mutex's row of ``st.mtx``, ``st.osq`` and ``st.wl`` from SimPy's."""
    st = sv.st
    for i, mx in enumerate(sv.mutexes):
        r = st.mtx[i]
        r[M_OWNER] = -1 if mx.owner is None else tix[mx.owner]
        r[M_CONTENDED] = mx.contended
        r[M_WAIT_NS] = mx.wait_ns
        r[M_STEALS] = mx.steals
        r[M_HANDOFFS] = mx.handoffs
        r[M_SPIN_ACQUIRED] = mx.spin_acquired
        st.osq[i] = -1
        st.wl[i] = -1
        if isinstance(mx, FifoMutex):
            r[M_FIFO] = 1
            r[M_HANDOFF] = r[M_FREE_SINCE] = r[M_FREED_FROM] = r[M_HANDED_AT] = 0
            r[M_OSQ_LEN] = 0
            r[M_WAITERS] = len(mx._waiters)
            st.wl[i, : len(mx._waiters)] = [tix[w] for w, _ in mx._waiters]
            continue
        assert isinstance(mx, LinuxMutex)
        r[M_FIFO] = 0
        r[M_HANDOFF] = int(mx.handoff)
        r[M_FREE_SINCE] = mx._free_since
        r[M_FREED_FROM] = mx._freed_from
        r[M_HANDED_AT] = mx._handed_at
        r[M_OSQ_LEN] = len(mx._osq)
        r[M_WAITERS] = len(mx._waiters)
        st.osq[i, : len(mx._osq)] = [tix[task] for task in mx._osq]
        st.wl[i, : len(mx._waiters)] = [tix[w.task] for w in mx._waiters]


__all__ = ["mutexes_in", "waiters_moved"]
