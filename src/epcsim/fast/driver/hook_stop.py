"""Whether the enclave thread's machine stops at a hooked loop top (``tc[TC_HOOK]``): the
stream's end, an ``on_pages`` mark, a mutex trace about to fill, and - the thread alone - a
fault iteration that could hand back in its middle, where the Python generator cannot go
on from (PATHS.md "What is built for the stream").

Why a module of its own: it is the one decision the machine and the Python user path share
about where the core leaves the stream to Python (``stream.py``'s hook, ``stream_stops.py``'s
"The thread's stops" say what Python does then), read before any step of an iteration;
``thread.py``'s ``thread_run`` calls it at T0 and before the M loop's rows (``trim.py``).
``inline="always"``: its code is compiled into ``thread_run`` as before (moved from
``thread.py`` by session ``tidy``, no code changed; ``fast/driver/__init__``'s
``drop_stale`` lists every module of this package, so an edit here drops the cached
machine code).
"""

from __future__ import annotations

from numba import njit

from epcsim.fast.cosim.state import C_TRACE_LEN
from epcsim.fast.driver.kstate import K_LRU_ROW, K_NR_FREE, K_SECS_EPC, K_SLEEPING
from epcsim.fast.driver.tstate import (
    TC_ALONE,
    TC_FREE_ROW,
    TC_HOOK,
    TC_I,
    TC_I0,
    TC_LOW,
    TC_MARKS,
    TC_N,
)
from epcsim.kernel.encl_page import ENCL_PAGE_PTE_PRESENT
from epcsim.kernel.page_list import LEN

#: trace rows kept free at a hooked loop top: one iteration of the thread writes a few, and
#: ksgxd on the core meanwhile ~8 a page (three lock/unlock pairs) for the pages it
#: reclaims during the iteration (a 10 us resident run or one fault: a handful)
TRACE_ROOM = 4096


@njit(cache=True, nogil=True, inline="always")
def hook_stop(st, ks, ts):
    """``tc[TC_HOOK]`` (a call entered from ``access_stream``'s loop top, ksgxd asleep):
    whether the core stops at this loop top and lets the Python generator go on. It stops
    at the stream's end (the generator returns the outcome) and before a fault iteration
    that could hand back in its middle - where the generator cannot go on from: the
    allocation would wake ksgxd (``KB_WAKE``) or finds no free page (``KB_ENOMEM``), the
    SECS is evicted (``KB_SECS_LOAD``). The test is the allocation's own (``P_LOCKED``)
    read early: with ksgxd asleep nothing else changes these values before the thread's
    lock, and a stop that proves unnecessary costs one Python iteration, never a result.
    (Records an ELDU would refuse, ``KB_ELDU``, stop at ``P_LOCKED`` too, where the user
    path's caller goes on in Python: ``core_stream.py``.) A mutex trace about to fill
    stops it too (``HB_TRACE_FULL`` would come in the middle of an iteration:
    ``TRACE_ROOM`` rows are kept free, for the thread's few and what ksgxd writes
    meanwhile).

    With ksgxd on the core too (``tc[TC_ALONE] == 0``, session ``upair``: the pair entered
    from the loop top, ``stream.py``) only the stream's end and the trace stop it: T4 wakes
    ksgxd on the core, -EBUSY retries there, and ksgxd hands back (``KB_SECS``) before it
    would evict the SECS; the fault stops under the lock (``KB_ENOMEM``, ``KB_ELDU``) go
    on in Python. ``tc[TC_HOOK] == 2`` (the thread served by SimPy to its loop top
    after a stop in the middle of an iteration) stops at the first loop top."""
    tc = ts.tc
    i = tc[TC_I]
    if i >= tc[TC_N] or tc[TC_HOOK] == 2:
        return True
    if tc[TC_MARKS] != 0 and i % 256 == 0 and i != tc[TC_I0]:
        return True  # the EACCEPT loop's on_pages mark: Python calls it (PATHS.md E4)
    cap = st.trace.shape[0]
    if cap > 0 and st.clk[C_TRACE_LEN] + TRACE_ROOM > cap:
        return True
    if tc[TC_ALONE] == 0:
        return False  # the pair: ksgxd is on the core, T4 wakes it there
    if ks.pflags[ts.pages[i]] & ENCL_PAGE_PTE_PRESENT:
        return False  # a resident run: its only stop is KB_PF, at a loop top
    kc = ks.kc
    ke = ks.ke
    if ke[K_SECS_EPC] < 0 or kc[K_SLEEPING] == 0:
        return True
    nfree = ks.epc_ends[tc[TC_FREE_ROW], LEN]
    if nfree == 0:
        return True
    lru = ks.epc_ends[kc[K_LRU_ROW], LEN]
    return kc[K_NR_FREE] - 1 < tc[TC_LOW] and lru > 0
