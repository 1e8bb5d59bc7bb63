"""The parked NOPAGE flood's hooks in the kernel's state, on the core (``fast/flood.py``;
the engine half is ``cosim/flood_park.py``, session ``flood6``).

``fast/flood.py``'s parking reads and writes the enclave's state at a few points: whether
a retry may park (``NopageFlood.parkable``), the skipped ERESUMEs' Accessed bit on the TCS
(``tcs_accessed``, ``_touch``), and the page a retrier waits for loaded, or its TCS zapped,
by another task (``page_changed``). These are those points over the machines' ``KState``,
each restating the method it is named after; the machines call them where the reference
calls the hook (``thread.py``'s ``P_FRESCHED``, ``vma_fault.py``'s ELDU, ``reclaim.py``'s
young test and zap).

A parked retrier's TCS zapped (``_tcs_zapped``: the ERESUME of the cycle under way fails
if the TCS is blocked by its end; session ``floodq``, before it the reclaimer handed back
at the zap): ``page_zapped`` after the zap, ``tcs_blocked`` after the EBLOCK, and the
``FL_ERESUME`` timer (``flood_park.tcs_zapped``) reads that flag as the ERESUME ends.
When it finds the TCS blocked (``tcs_first``: the decision's fault would be the TCS's)
the thread's machine hands back (``KB_TCS`` at ``P_PARK``): that continuation is not
restated - row 10's shape and the drawn cases never met it (the EBLOCK comes after
``encl->lock``, which the parked herd's decisions keep busy).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.cosim.flood_decision import force, next_parked
from epcsim.fast.cosim.flood_park import tcs_zapped, touched_since
from epcsim.fast.cosim.state import (
    C_NOW,
    T_CPU,
    T_FL,
    T_FL_IDX,
    T_FL_SEQ,
    T_FL_TCS,
    T_FL_TCSBLK,
    T_RESCHED,
)
from epcsim.fast.driver.kstate import K_INSIDE, K_LRU_ROW, K_NR_FREE, K_SECS_EPC
from epcsim.fast.driver.tstate import TC_ENTERED, TC_IDX, TC_TCS, TC_TCS_RETRY
from epcsim.kernel.encl_page import (
    ENCL_PAGE_PRESENT,
    ENCL_PAGE_PTE_PRESENT,
    ENCL_PAGE_PTE_YOUNG,
)
from epcsim.kernel.page_list import LEN


@njit(cache=True, nogil=True, inline="always")
def parkable(st, ks, tc, t):
    """``NopageFlood.parkable(thread, index, eresume)``: the free lists empty, the LRU not,
    the thread on its CPU with need_resched clear (the flag: the tick is asked at the
    decision instants, ``flood_decision.resched_due``), its page still absent and unmapped,
    the SECS resident (no ioctl runs and the enclave is alive in the regime). An access's
    retries (``eresume``): the thread entered and AEXed, its TCS mapped. The TCS fault's
    (``tc[TC_TCS_RETRY]``, ``_ensure_tcs``' ``eresume=False``; session ``floodq``): the
    page is the TCS."""
    idx = tc[TC_IDX]
    tcs = tc[TC_TCS]
    cpu = st.tasks[t, T_CPU]
    kc = ks.kc
    if not (
        kc[K_NR_FREE] == 0
        and ks.epc_ends[kc[K_LRU_ROW], LEN] > 0
        and tcs >= 0
        and cpu >= 0
        and st.tasks[t, T_RESCHED] == 0
        and ks.pflags[idx] & ENCL_PAGE_PRESENT != 0
        and ks.desc[idx] < 0
        and ks.pflags[idx] & ENCL_PAGE_PTE_PRESENT == 0
        and ks.ke[K_SECS_EPC] >= 0
    ):
        return False
    if tc[TC_TCS_RETRY] != 0:
        return idx == tcs
    return (
        tc[TC_ENTERED] != 0
        and (ks.ke[K_INSIDE] >> cpu) & 1 == 0
        and ks.pflags[tcs] & ENCL_PAGE_PTE_PRESENT != 0
    )


@njit(cache=True, nogil=True, inline="always")
def touch(st, ks, t, now):
    """``_touch(p, now)``: the skipped ERESUMEs' Accessed bit on row ``t``'s TCS up to
    ``now`` (``EnclaveThread._tcs_accessed``)."""
    if touched_since(st.tasks, t, now):
        tcs = st.tasks[t, T_FL_TCS]
        ks.pflags[tcs] |= ENCL_PAGE_PTE_YOUNG


@njit(cache=True, nogil=True, inline="always")
def tcs_accessed(st, ks, index):
    """``tcs_accessed``: the reclaimer is about to test page ``index``'s Accessed bit; a
    parked retrier whose TCS it is has it brought up to date first."""
    tasks = st.tasks
    now = st.clk[C_NOW]
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0 and tasks[r, T_FL_TCS] == index:
            touch(st, ks, r, now)


@njit(cache=True, nogil=True, inline="always")
def page_zapped(st, ks, index):
    """``page_changed`` after the reclaimer zapped page ``index``'s PTE: the retriers on it
    or whose TCS it is resume at their next decision, in ``parked``'s order; for a TCS
    (unmapped now) ``_tcs_zapped`` first (``flood_park.tcs_zapped``: whether the cycle's
    ERESUME fails, session ``floodq``)."""
    tasks = st.tasks
    r = next_parked(tasks, np.int64(-1))
    while r >= 0:
        tcs = tasks[r, T_FL_TCS]
        if tasks[r, T_FL_IDX] == index or tcs == index:
            if tcs == index and ks.pflags[index] & ENCL_PAGE_PTE_PRESENT == 0:
                tcs_zapped(st, r)
            force(st, r)
        r = next_parked(tasks, tasks[r, T_FL_SEQ])


@njit(cache=True, nogil=True, inline="always")
def tcs_blocked(st, index):
    """The reclaimer's EBLOCK of page ``index`` applied: a parked row whose TCS it is finds
    it blocked at its next ERESUME's end (``_tcs_zapped``'s test, ``FL_ERESUME``)."""
    tasks = st.tasks
    for r in range(tasks.shape[0]):
        if tasks[r, T_FL] != 0 and tasks[r, T_FL_TCS] == index:
            tasks[r, T_FL_TCSBLK] = 1


@njit(cache=True, nogil=True, inline="always")
def page_loaded(st, index):
    """``page_changed`` after ELDU loaded page ``index``: the retriers waiting for it resume
    at their next decision, in ``parked``'s order (a TCS is never loaded on the core: its
    fault hands back)."""
    tasks = st.tasks
    r = next_parked(tasks, np.int64(-1))
    while r >= 0:
        if tasks[r, T_FL_IDX] == index or tasks[r, T_FL_TCS] == index:
            force(st, r)
        r = next_parked(tasks, tasks[r, T_FL_SEQ])


__all__ = ["page_loaded", "page_zapped", "parkable", "tcs_accessed", "tcs_blocked", "touch"]
