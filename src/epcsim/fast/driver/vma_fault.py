"""The enclave thread's fault path (PATHS.md T3-T7) as rows of its machine, compiled into
``thread.thread_run``.

From the end of the fault's entry (``run(aex + fault_entry)``, pc ``P_FAULT_RUN``) to the
``cond_resched()`` after the fault returns: ``kernel/fault.py``'s ``sgx_vma_fault`` (T3:
``encl->lock``), ``kernel/encl.py``'s ``__sgx_encl_load_page`` and ``kernel/main.py``'s
``sgx_alloc_epc_page(reclaim=false)`` with its ``wake_ksgxd`` (T4), ``sgx_encl_eldu``'s
ELDU, the backing's truncation and ``load_page``'s bookkeeping (T5), the mapping or -EBUSY,
the unlock, and ``user/thread.py``'s ``_fault``'s latency and ``_fault_return``'s
``cond_resched()`` (T6-T7). A change to any of them changes this file in the same commit.
The MODIFY_TYPES and REMOVE_PAGES loops (``tstate.MODE_TRIM`` and above) share T4-T5, their
ELDU, and leave the rows after the truncation (to ``trim.per_page_pc``) and at -EBUSY (to
``trim.P_MEAGAIN``).

Why a module of its own (session ``nthreads2``, 2026-11-27, splitting ``thread.py`` past
~500 lines by concept): the fault path is its own concept - the kernel's side of the
thread's machine - and the loops' rows (T0-T2, E1-E4, the stream's end) stay in
``thread.py``. ``fault_rows`` is ``inline="always"`` as ``trim.trim_rows`` is: numba
inlines it into ``thread_run`` (one machine, one signature, one compile); it runs the rows
in its own loop until the task parks, stops or needs a service (``(pc, r)``, ``r >= 0``:
``thread_run`` returns ``r``) or its pc leaves them (``(pc, -1)``: ``thread_run`` goes on
there). The steps of every row are the ones ``thread.py`` held, unchanged. The rows
stand in step order and a completed step falls through to the next row's block (no
``continue``: ``thread.py``'s docstring, session ``fault4``), so a fault from T3 to its
unlock takes no jump on ``pc``.

Decisions (2026-11-26, sessions ``tdriver`` and ``tstops``; ``thread.py``'s docstring has
the rest):

* Every stop in the middle of an iteration is at ``P_LOCKED``, under ``encl->lock``,
  before anything of the fault's rest is applied - the SECS to load, -ENOMEM, and an
  ELDU that would fail: ``sgx_encl_eldu``'s record and ELDU's checks (``eldu_check``)
  are read there, before the allocation (the free list's head is the page it will take;
  no time passes and the thread holds the lock, so nothing changes them), then
  ``P_ALLOC`` allocates. The Python fault path goes on from exactly there.
* With the thread alone (``tc[TC_ALONE]``), an allocation that would wake ksgxd hands back
  before the allocation (``KB_WAKE``, the lock held): the call's end, or the entry of row
  1's regime. With ksgxd on the core it wakes it as ``wake_ksgxd`` does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_UNLOCK, RQ_WAKE, perform
from epcsim.fast.cosim.state import (
    C_FL_PARKED,
    C_NOW,
    R_OK,
    T_PC,
    T_RQ_RET,
)
from epcsim.fast.driver import trim
from epcsim.fast.driver.eldu import RAW, eldu_check, eldu_commit
from epcsim.fast.driver.flood_rows import page_loaded
from epcsim.fast.driver.ksgxd import R_SVC, _blocked, _stop
from epcsim.fast.driver.kstate import (
    CN_WAKEUPS,
    K_CHILD_CNT,
    K_ENCL_ID,
    K_LRU_ROW,
    K_NR_FREE,
    K_NR_RECORDS,
    K_SECS_EPC,
    K_SLEEPING,
    K_SVC,
    K_SVC_ARG,
    K_VA_ROW,
    KB_ELDU,
    KB_ENOMEM,
    KB_PAGE,
    KB_SECS_LOAD,
    KB_TCS,
    KB_UNEXPECTED,
    KB_WAKE,
    SVC_LAT_FULL,
    SVC_TRUNCATE,
    SVC_UNSEAL,
    ft_full,
    ft_record,
)
from epcsim.fast.driver.page_counts import count_move, page_class
from epcsim.fast.driver.resched import thread_resched
from epcsim.fast.driver.thread_pc import (
    P_ALLOC,
    P_ALLOCATED,
    P_EBUSY,
    P_ELDU_RUN,
    P_FAULT_RUN,
    P_FRESCHED,
    P_LOCKED,
    P_MAP,
    P_TOP,
    P_TRUNCATED,
    P_UNLOCKED,
    P_WOKEN,
)
from epcsim.fast.driver.trim import P_MEAGAIN, per_page_pc
from epcsim.fast.driver.tstate import (
    CAUSE_NO_FREE_PAGE,
    MODE_TRIM,
    TC_ALONE,
    TC_BUSY,
    TC_CAUSE,
    TC_ELDU_NS,
    TC_ENTERED,
    TC_ESLOT,
    TC_FAULT_NS,
    TC_FLAGS,
    TC_FREE_ROW,
    TC_IDX,
    TC_LAT_N,
    TC_LOW,
    TC_MODE,
    TC_PAGE,
    TC_RET,
    TC_SLOT,
    TC_T0,
    TC_TCS,
    TC_TCS_FAULTS,
    TC_TCS_RETRY,
    TC_VID,
    TN_EBUSY,
    TN_ELDU,
    TN_FAULTS,
    TN_RETRIES,
)
from epcsim.fast.ops import backing as backing_ops
from epcsim.fast.ops.epc import alloc_from_node
from epcsim.fast.ops.epcm import eldu_word
from epcsim.fast.ops.lru import lru_mark
from epcsim.fast.ops.pcmd import reclaimer_writing_to_pcmd
from epcsim.fast.ops.va import va_free_slot
from epcsim.kernel.encl_page import (
    ENCL_PAGE_BEING_RECLAIMED,
    ENCL_PAGE_PRESENT,
    ENCL_PAGE_PTE_PRESENT,
    ENCL_PAGE_PTE_YOUNG,
    PROT_VMA_SHIFT,
)
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED
from epcsim.kernel.page_list import HEAD, LEN

_KSGXD_WAITQ = 0  #: the core's wait queue row of ``ksgxd_waitq``
_MAP_CLEAR = 0xFF ^ ENCL_PAGE_PTE_YOUNG


@njit(cache=True, nogil=True, inline="always")
def is_fault_pc(pc):
    """Whether ``pc`` is one of T3-T7's (``P_FAULT_RUN`` to ``P_EBUSY``, ``P_WOKEN``,
    ``P_UNLOCKED``; ``P_END``/``P_DONE`` sit between them in ``thread_pc``)."""
    return (P_FAULT_RUN <= pc <= P_EBUSY) or pc in (P_WOKEN, P_UNLOCKED)


@njit(cache=True, nogil=True, inline="always")
def _latency(st, ts, tcl):
    """The fault's latency into the latency buffer, whose count is ``tcl[TC_LAT_N]`` (row
    0's ``tc``: one buffer for every thread row, in the order the faults end)."""
    n = tcl[TC_LAT_N]
    ts.lat[n] = st.clk[C_NOW] - ts.tc[TC_T0]
    tcl[TC_LAT_N] = n + 1


@njit(cache=True, nogil=True, inline="always")
def tcs_fault(st, ks, ts, sp, t):
    """T0's TCS fault (``EnclaveThread._ensure_tcs``, session ``tcsfault``): the TCS is not
    mapped, so EENTER/ERESUME takes a #PF on it, the kernel's ``sgx_vma_fault`` on the TCS's
    address loads it (T3-T7 below, ``TC_IDX`` the TCS: the lock, ELDU, the map or -EBUSY,
    the unlock, the latency, ``_fault_return``'s ``cond_resched()``), and the machine goes
    back to T0, whose TCS check is ``_ensure_tcs``' loop (another fault after -EBUSY) and
    whose entry is ``enter()``'s retry. The thread is not inside here (T0 checked), so
    ``_fault``'s AEX is nothing, and ``_fault`` runs without ``access_stream``'s
    ``access_error()`` check. ``(pc, r)`` as ``fault_rows``. With the parked flood
    (``C_FLOOD``, session ``floodq``) its failed retries park on the TCS fault's terms
    (``_fault_or_park(tcs, eresume=False)``: ``TC_TCS_RETRY``, ``flood_rows.parkable``,
    ``thread.py``'s ``P_FRESCHED``; no ERESUME in the cycle).

    Its stops and how each goes on (session ``tcsuser``, 2026-11-27: the user path's, from
    any CPU count; before, only ``run_threads`` ran it, under ``C_MANY``). A stop under
    ``encl->lock`` (``KB_SECS_LOAD``, ``KB_ENOMEM``, ``KB_ELDU`` at ``P_LOCKED``) is marked
    ``tc[TC_TCS_RETRY]``, and the user path goes on with ``EnclaveThread.tcs_fault_locked``:
    the fault's rest as an access's (``fault_locked``), but its SIGBUS is the entry's
    (``entry_fault``, the TCS's address), then the loop top - which *is* ``_ensure_tcs``'
    continuation: its ``while`` is ``enter()``'s ``_tcs_ready`` check, and the rest of
    ``enter()`` before it does nothing here (``_fault_return``'s ``cond_resched`` leaves the
    thread on its CPU, so no ``acquire_cpu``; the TCS unmapped at T0, so the thread is not
    inside). A stop at a loop top (``KB_TOP`` after ``P_FRESCHED``, a served thread's first)
    is the same loop top. ``run_threads`` ends its run at any stop, as before.

    Where it hands back as before (``KB_TCS`` at the loop top, nothing applied):

    * the implicit TCS (the SECS to load: ``load_secs``, Python's);
    * ``sgx_vma_fault``'s EAUG and SIGBUS decisions on the TCS (no page entry, the VMA's
      protections past ``max_prot``): T2's checks, read before the fault as T2 reads them."""
    tc = ts.tc
    tcs = tc[TC_TCS]
    if tcs < 0:
        return P_FAULT_RUN, _stop(st, ks, t, P_TOP, KB_TCS, tcs)
    vma = ts.prot[tcs] >> PROT_VMA_SHIFT
    if not ks.pflags[tcs] & ENCL_PAGE_PRESENT or (ts.prot[tcs] & 7 & vma) != vma:
        return P_FAULT_RUN, _stop(st, ks, t, P_TOP, KB_TCS, tcs)
    tc[TC_TCS_FAULTS] += 1
    tc[TC_IDX] = tcs
    # its retries park on the TCS fault's terms (``flood_rows``), a stop in it goes on as
    # ``_ensure_tcs`` (``stream_stops._fault_rest``)
    tc[TC_TCS_RETRY] = 1
    tc[TC_T0] = st.clk[C_NOW]
    r = perform(sp, t, np.int64(RQ_RUN), tc[TC_FAULT_NS])  # _fault: run(aex + fault_entry)
    if r != R_OK:
        return P_FAULT_RUN, _blocked(st, t, P_FAULT_RUN, r)
    return P_FAULT_RUN, -1


@njit(cache=True, nogil=True, inline="always")
def fault_rows(st, ks, ts, sp, kq, t, pc, tcl):
    """Rows T3-T7 from ``pc`` (``is_fault_pc``) for task ``t``: ``(pc, r)`` with ``r >= 0``
    when the task parks, stops or needs a service (``thread_run`` returns ``r``), ``(pc,
    -1)`` when its pc leaves these rows (``P_FRESCHED``: back to T0; the ioctl loops'
    ``per_page_pc`` or ``P_MEAGAIN``). ``tcl`` is row 0's ``tc`` (the latencies' count)."""
    tc = ts.tc
    tcnt = ts.tcnt
    kc = ks.kc
    ke = ks.ke
    es = tc[TC_ESLOT]
    while True:
        # -- T3: sgx_vma_fault ----------------------------------------------------------------
        if pc == P_FAULT_RUN:
            tcnt[TN_FAULTS] += 1
            r = perform(sp, t, np.int64(RQ_LOCK), es)
            if r != R_OK:
                return pc, _blocked(st, t, P_LOCKED, r)
            pc = P_LOCKED
        # -- T4: __sgx_encl_load_page, sgx_alloc_epc_page(reclaim=False) ----------------------
        if pc == P_LOCKED:
            idx = tc[TC_IDX]
            if ks.desc[idx] >= 0:  # resident: loaded meanwhile, or being reclaimed
                pc = P_EBUSY if ks.pflags[idx] & ENCL_PAGE_BEING_RECLAIMED else P_MAP
                continue
            if ke[K_SECS_EPC] < 0:
                return pc, _stop(st, ks, t, P_LOCKED, KB_SECS_LOAD, idx)
            if ft_full(ks):
                st.tasks[t, T_PC] = P_LOCKED
                return pc, R_SVC
            row = tc[TC_FREE_ROW]
            nfree = ks.epc_ends[row, LEN]
            lru = ks.epc_ends[kc[K_LRU_ROW], LEN]
            if nfree == 0 and lru == 0:
                return pc, _stop(st, ks, t, P_LOCKED, KB_ENOMEM, idx)
            after = kc[K_NR_FREE] - (1 if nfree > 0 else 0)
            wake = after < tc[TC_LOW] and lru > 0  # sgx_should_reclaim(low) after it
            if wake and tc[TC_ALONE] != 0 and kc[K_SLEEPING] != 0:
                return pc, _stop(st, ks, t, P_LOCKED, KB_WAKE, idx)
            tc[TC_RET] = 0
            if nfree > 0:
                # sgx_encl_eldu's record and ELDU's checks, read before the allocation
                # (nothing either changes them; no time passes): a record that would fail
                # stops here, under the lock, where Python's fault path goes on (KB_ELDU)
                ret = eldu_check(ks, ts, idx, ks.epc_ends[row, HEAD])
                if ret == RAW:
                    kc[K_SVC] = SVC_UNSEAL
                    kc[K_SVC_ARG] = idx
                    st.tasks[t, T_PC] = P_ALLOC
                    return pc, R_SVC
                tc[TC_RET] = ret
            pc = P_ALLOC
        if pc == P_ALLOC:
            idx = tc[TC_IDX]
            if tc[TC_RET] != 0:
                return pc, _stop(st, ks, t, P_LOCKED, KB_ELDU, idx)
            row = tc[TC_FREE_ROW]
            nfree = ks.epc_ends[row, LEN]
            if tc[TC_MODE] >= MODE_TRIM and nfree > 0:
                # per_page's outcome decided before the ELDU, on the word ELDU will write
                word = np.int64(eldu_word(tc[TC_FLAGS], (tc[TC_FLAGS] >> 8) & 0xFF, False))
                if not trim.ioctl_word_ok(tc, word):
                    return pc, _stop(st, ks, t, P_LOCKED, KB_PAGE, idx)
            lru = ks.epc_ends[kc[K_LRU_ROW], LEN]
            after = kc[K_NR_FREE] - (1 if nfree > 0 else 0)
            wake = after < tc[TC_LOW] and lru > 0  # sgx_should_reclaim(low) after it
            if nfree > 0:
                page = alloc_from_node(
                    ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, ks.owner_encl,
                    row, ke[K_ENCL_ID], idx,
                )  # fmt: skip
                kc[K_NR_FREE] -= 1
                tc[TC_PAGE] = page
            else:
                tcnt[TN_EBUSY] += 1
                tc[TC_PAGE] = -1
            ft_record(ks, st.clk[C_NOW])
            if wake:
                r = perform(sp, t, np.int64(RQ_WAKE), np.int64(_KSGXD_WAITQ))  # wake_ksgxd
                if r != R_OK:
                    return pc, _blocked(st, t, P_WOKEN, r)
                pc = P_WOKEN
            else:
                pc = P_ALLOCATED if tc[TC_PAGE] >= 0 else P_EBUSY
        if pc == P_WOKEN:
            if st.tasks[t, T_RQ_RET] != 0:  # ksgxd was asleep on ksgxd_waitq
                kc[K_SLEEPING] = 0
                ks.cnt[CN_WAKEUPS] += 1
            pc = P_ALLOCATED if tc[TC_PAGE] >= 0 else P_EBUSY
        # -- T5: sgx_encl_eldu (the record checked at P_LOCKED) ------------------------------
        if pc == P_ALLOCATED:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_ELDU_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_ELDU_RUN, r)
            pc = P_ELDU_RUN
        if pc == P_ELDU_RUN:
            idx = tc[TC_IDX]
            tcnt[TN_ELDU] += 1
            eldu_commit(ks, ts, idx, tc[TC_PAGE])
            backing_ops.set_bit(ks.dmark, idx, np.bool_(False))  # the record goes: nothing to seal
            busy = reclaimer_writing_to_pcmd(ks.desc, ks.pflags, idx)
            got = backing_ops.backing_truncate(
                ks.b_present, ks.b_odd, ks.b_pcmd_live, ks.b_pcmd_kept, ks.b_pcmd_gen, idx, busy
            )
            if got == backing_ops.NEED_PYTHON:
                tc[TC_BUSY] = busy
                kc[K_SVC] = SVC_TRUNCATE
                kc[K_SVC_ARG] = idx
                st.tasks[t, T_PC] = P_TRUNCATED
                return pc, R_SVC
            ke[K_NR_RECORDS] -= got
            pc = P_TRUNCATED
        if pc == P_TRUNCATED:
            idx = tc[TC_IDX]
            page = tc[TC_PAGE]
            va_free_slot(
                ks.va_used, ks.va_prev, ks.va_next, ks.va_ends, ke[K_VA_ROW], tc[TC_VID],
                tc[TC_SLOT], np.bool_(True),
            )  # fmt: skip
            was = page_class(ks.desc, ks.pflags, idx)
            ks.desc[idx] = page
            count_move(ke, was, page_class(ks.desc, ks.pflags, idx))
            if st.clk[C_FL_PARKED] > 0:
                page_loaded(st, idx)  # the NOPAGE flood's ``page_changed`` (fast/flood.py)
            # load_page: secs_child_cnt, sgx_mark_page_reclaimable
            ke[K_CHILD_CNT] += 1
            ks.epc_flags[page] |= SGX_EPC_PAGE_RECLAIMER_TRACKED
            if lru_mark(ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], page):
                return pc, _stop(st, ks, t, P_TRUNCATED, KB_UNEXPECTED, page)
            if tc[TC_MODE] >= MODE_TRIM:  # M, R: no PTE (trim.py's per_page)
                return per_page_pc(tc), -1
            pc = P_MAP
        # -- T6: map, unlock; T7: -EBUSY, unlock -----------------------------------------------
        if pc == P_EBUSY and tc[TC_MODE] >= MODE_TRIM:
            tc[TC_CAUSE] = CAUSE_NO_FREE_PAGE  # sgx_alloc_epc_page(reclaim=false): -EBUSY
            return P_MEAGAIN, -1  # trim.py's -EAGAIN
        if pc in (P_MAP, P_EBUSY):
            if tcl[TC_LAT_N] >= ts.lat.size:
                kc[K_SVC] = SVC_LAT_FULL
                st.tasks[t, T_PC] = pc
                return pc, R_SVC
            idx = tc[TC_IDX]
            if pc == P_MAP:
                ks.pflags[idx] = (ks.pflags[idx] | ENCL_PAGE_PTE_PRESENT) & _MAP_CLEAR
            else:
                tcnt[TN_RETRIES] += 1
            r = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if r != R_OK:
                return pc, _blocked(st, t, P_UNLOCKED, r)
            pc = P_UNLOCKED
        if pc == P_UNLOCKED:
            _latency(st, ts, tcl)  # _fault, after sgx_vma_fault returned
            # _fault_return's cond_resched()
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return pc, _blocked(st, t, P_FRESCHED, r)
            return P_FRESCHED, -1  # thread_run: back to T0
        return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, -1)


__all__ = ["fault_rows", "is_fault_pc", "tcs_fault"]
