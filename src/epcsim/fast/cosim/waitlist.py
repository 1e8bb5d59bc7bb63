"""``lock->wait_list`` of a ``LinuxMutex`` and its trylock (``engine/mutex.py``: ``_take``,
``_waiters``), for the sleeping half (``mutex_sleep.py``, session ``runq64``).

The list is the mutex's row of ``wl`` (``wl[m, :mtx[m, M_WAITERS]]``, first first), shared
with ``FifoMutex``'s sleepers (a mutex is one kind or the other). A ``LinuxMutex`` waiter
stays queued from its first sleep to its acquisition (``_Waiter``), so a free lock taken
by anyone else while it is queued is a *steal*: ``take`` counts it, as ``_take`` and
``Task.lock``'s fast path (``_fast_taken``) do.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.state import M_OWNER, M_STEALS, M_WAITERS, TR_STEAL
from epcsim.fast.cosim.trace import log


@core_jit
def take(st, t, m):  # type: ignore[no-untyped-def]
    """``LinuxMutex._take``: ``t`` owns the free ``m``; a steal when the wait list's first
    is another task (its ``steal`` trace row)."""
    mtx = st.mtx
    mtx[m, M_OWNER] = t
    if mtx[m, M_WAITERS] > 0 and st.wl[m, 0] != t:
        mtx[m, M_STEALS] += 1
        log(st, np.int64(TR_STEAL), t, m)


@core_jit
def append(st, t, m):  # type: ignore[no-untyped-def]
    """``_waiters.append(w)``."""
    n = st.mtx[m, M_WAITERS]
    st.wl[m, n] = t
    st.mtx[m, M_WAITERS] = n + 1


@core_jit
def remove(st, t, m):  # type: ignore[no-untyped-def]
    """``_waiters.remove(w)``: the rest keep their order."""
    wl = st.wl
    n = st.mtx[m, M_WAITERS]
    j = 0
    for i in range(n):
        if wl[m, i] != t:
            wl[m, j] = wl[m, i]
            j += 1
    for i in range(j, n):
        wl[m, i] = -1
    st.mtx[m, M_WAITERS] = j


__all__ = ["append", "remove", "take"]
