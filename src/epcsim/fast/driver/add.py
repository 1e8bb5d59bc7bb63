"""The ADD_PAGES loop's rows (PATHS.md A0-A4), compiled into the thread's machine.

``kernel/ioctl_add.sgx_ioc_enclave_add_pages``' page loop runs on the thread's machine in
``tstate.MODE_ADD`` (session ``addcore``; PATHS.md "The ADD_PAGES loop"): the task is the
process's ioctl task on the thread row (as MODIFY_TYPES' from ``Enclave.modify_types``),
the enclave not yet initialized. Its rows are here, reached from ``trim.trim_rows``'s page
top: no new machine, but ``add_rows`` is compiled on its own, not inlined into
``thread_run`` (``add_rows``' docstring says why):

A0 the page top: what the core takes is decided there, before anything is applied
   (``add_takes``: the page not present, the SECS resident, no LP inside); otherwise a
   stop at the page top (``KB_TOP``), where Python's loop runs the page from its own top
   - an exact re-entry (A1's loop keeps no state but the EPC's);
A1 ``sgx_alloc_epc_page(reclaim=true)``: the free list's head, or, while it is empty, one
   ``sgx_reclaim_pages`` in the adder's context (``reclaim.reclaim_run``'s row 1, as
   M1's), counted as the reference counts it; the free timeline's point and T4's wake-up
   of ksgxd (``sgx_should_reclaim(low)``). An empty LRU (-ENOMEM) stops at the page top;
A2 ``sgx_encl_grow``: ``page_cnt + 1`` (a delta, ``TC_ADDED``), and every 512 pages its VA
   page (session ``addrun``): ``sgx_alloc_va_page``'s allocation - A1's loop for owner VA,
   its reclaim batch included (``TC_ADD_VA`` -1 meanwhile), an empty LRU (-ENOMEM) a stop
   there (``KB_GROW``: Python's ``_add_page_rest`` runs the grow, the page's own EPC page
   allocated) -, ``run(epa)``, EPA (a service: ``SVC_EPA``, the version slots' index is
   Python's), and ``sgx_encl_add_va_page`` once the lock is taken (``SVC_VA_ADD``:
   ``VaPageList.add``). A direct batch stopped before another enclave's SECS eviction
   (``KB_SECS``) goes on as A1's, then ``_add_page_rest`` (``CoreStream.grow_page``);
A3 the lock, ``run(ioctl_page)``, ``run(eadd)``, EADD (the EPCM entry, the tag of a zero
   page, the SECS's child count; MRENCLAVE's block is Python's, fed in page order when the
   call stops: PATHS.md, "The measurement does not depend on timing"), the page entry;
A4 ``sgx_mark_page_reclaimable``, the unlock, the page counted; back to A0.

A0's ``cond_resched()`` (the reference's, before ``sgx_encl_add_page``) and A1's after a
direct batch are requests with pcs of their own (``resched.py``, session ``onecpu2``).

The order of every step is ``kernel/ioctl_add.py``'s (``sgx_ioc_enclave_add_pages``,
``sgx_encl_add_page``), ``kernel/main.py``'s ``alloc_epc_page``, ``kernel/encl.py``'s
``grow`` and ``isa/encls.py``'s ``eadd``; a change there changes this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import SGX_VA_SLOT_COUNT, PageType
from epcsim.fast.cosim.borrow import member, member_at
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_UNLOCK, RQ_WAKE, perform
from epcsim.fast.cosim.state import C_NOW, R_OK, T_PC, T_RQ_RET
from epcsim.fast.driver.ksgxd import R_SVC, _blocked, _stop
from epcsim.fast.driver.kstate import (
    CN_WAKEUPS,
    K_CHILD_CNT,
    K_ENCL_ID,
    K_INITIALIZED,
    K_INSIDE,
    K_LRU_ROW,
    K_NR_FREE,
    K_SECS_CHILDREN,
    K_SECS_EPC,
    K_SLEEPING,
    K_SVC,
    K_SVC_ARG,
    KB_GROW,
    KB_TOP,
    KB_UNEXPECTED,
    RC_NK,
    RC_PC,
    SVC_EPA,
    SVC_VA_ADD,
    ft_full,
    ft_record,
)
from epcsim.fast.driver.page_counts import count_move, page_class
from epcsim.fast.driver.reclaim import reclaim_run
from epcsim.fast.driver.reclaim_pc import P_A as RECLAIM_START
from epcsim.fast.driver.reclaim_pc import R_RETURNED, RECLAIM_DIRECT
from epcsim.fast.driver.resched import thread_resched
from epcsim.fast.driver.tstate import (
    TC_ADD_FLAGS,
    TC_ADD_VA,
    TC_ADDED,
    TC_DONE,
    TC_EADD_NS,
    TC_ENTERED,
    TC_EPA_NS,
    TC_ESLOT,
    TC_FREE_ROW,
    TC_I,
    TC_IDX,
    TC_IOCTL_NS,
    TC_LOW,
    TC_PAGE,
    TC_PAGE_CNT,
    TC_VA_DIRECT,
    TN_ALLOC_RECLAIM,
    TN_DIRECT_PAGES,
    TN_EADD,
)
from epcsim.fast.ops.epc import alloc_from_node
from epcsim.fast.ops.lru import lru_mark
from epcsim.isa.epcm import EPCM_PT_SHIFT, EPCM_VALID
from epcsim.kernel.encl_page import ENCL_PAGE_PRESENT, ENCL_PAGE_TYPE_SHIFT
from epcsim.kernel.epc import OWNER_VA, SGX_EPC_PAGE_RECLAIMER_TRACKED
from epcsim.kernel.page_list import LEN

# -- the ADD_PAGES loop's pcs (thread.py's P_NAMES names them), after ``retry.py``'s -------
P_AALLOC = 38  #: A1: ``sgx_alloc_epc_page``'s loop top
P_ADIRECT = 39  #: A1: its ``sgx_reclaim_pages`` under way (``reclaim_run``, row 1)
P_AWOKEN = 40  #: A1: ``wake_ksgxd``'s wake-up is done (its answer in ``T_RQ_RET``)
P_AGROW = 41  #: A2: ``sgx_encl_grow`` (no VA page), then the lock
P_ALOCKED = 42  #: A3: ``encl->lock`` taken: ``run(ioctl_page)``
P_AIOCTL_RUN = 43  #: A3: ``run(ioctl_page)`` is over: ``run(eadd)``
P_AEADD_RUN = 44  #: A3-A4: ``run(eadd)`` is over: EADD, the entry, the mark, the unlock
P_AUNLOCKED = 45  #: A4: unlocked after the page: ``c += 4096``
# the preemption points (``resched.py``, session ``onecpu2``), after the retry's late pc
P_ARESCHED = 46  #: A0: the page's ``cond_resched()`` is over: A0's checks again, then A1
P_ADRESCHED = 47  #: A1: ``cond_resched()`` after the direct batch is over: A1's loop top
NAMES = (
    "aalloc", "adirect", "awoken", "agrow", "alocked", "aioctl", "aeadd", "aunlocked",
    "aresched", "adresched",
)  # fmt: skip
P_ADD_FIRST = P_AALLOC
# A2's VA page (session ``addrun``), after the thread's preemption points, its ``P_UINTR``
# and its parked flood's pcs (thread_pc.py, which asserts the order)
P_AVAWOKEN = 55  #: A2: the VA page's ``wake_ksgxd`` is done (its answer in ``T_RQ_RET``)
P_AEPA = 56  #: A2: the VA page allocated: ``run(epa)``
P_AEPA_RUN = 57  #: A2: ``run(epa)`` is over: EPA (``SVC_EPA``), then ``page_cnt + 1``
LATE_NAMES = ("avawoken", "aepa", "aepa run")

P_TOP = 0  #: the thread machine's page top (``thread_pc.P_TOP``)
_KSGXD_WAITQ = 0  #: the core's wait queue row of ``ksgxd_waitq``
#: ``reclaim_run``'s row as an ``int64`` (``ksgxd._ROW_KSGXD`` says why: one compile of A-D)
_ROW_DIRECT = np.int64(RECLAIM_DIRECT)
_PT_TCS = int(PageType.TCS)
_TYPE_CLEAR = 0xFF ^ (7 << ENCL_PAGE_TYPE_SHIFT)
_PROT_KEEP = 0xFF ^ 0x3F  #: ``max_prot`` (bits 0-2) and ``vma_prot`` (3-5) replaced
_VA_SLOTS = SGX_VA_SLOT_COUNT
_OWNER_VA = np.int64(OWNER_VA)  #: ``sgx_alloc_va_page``'s owner (an int64: one compile)


@njit(cache=True, nogil=True, inline="always")
def add_takes(ks, tc, f):
    """A0's decisions for the page with flags ``f``, before anything is applied: not
    present (else ``xa_insert``'s -EBUSY), the SECS resident and not initialized (EADD's
    own checks; the range and the SECINFO were the ioctl's), no LP inside (the regime's).
    (Until session ``addrun`` also no VA page to grow: each 512th page was Python's.)"""
    if f & ENCL_PAGE_PRESENT:
        return False
    ke = ks.ke
    return ke[K_SECS_EPC] >= 0 and ke[K_INITIALIZED] == 0 and ke[K_INSIDE] == 0


@njit(cache=True, nogil=True)
def add_rows(p, t, pc):
    """Rows A0-A4 from ``pc`` (``P_TOP`` or an A pc) until the task parks, stops or needs
    a service - ``(pc, r)``: ``thread_run`` returns ``r`` - or the page is done -
    ``(P_TOP, -1)``: the next page top (module docstring). On ``thread_run``'s borrowed
    tuples ``p``, and not inlined (as ``reclaim_run``): inlined into ``thread_run`` these
    rows made the ``run_pair`` path's cold compile 63.4 -> 80.5 s, compiled on their own
    with ``unborrow(p)`` ~18 s more still; reading the fields through ``member`` it is
    within the noise of main's (``benchmarks/cold_pair.py`` alternated, BENCHMARKS.md
    ``addcore``). One call a page: the seed build is unchanged (0.128 s)."""
    # each tuple borrowed in place, its fields loaded where read (``cosim.borrow``):
    # ``unborrow(p)`` here loaded all ~70 arrays and took ~18 s of cold compile
    st = sp = member(p, 0)  # the CoState, for the core's primitives
    kq = member(p, 1)  # the slots' KStates, for ``reclaim_run`` (A1)
    ts = member(p, 2)
    tc = ts.tc
    # its own enclave's slot: its ``KState`` and its ``encl->lock`` (the core's mutex row)
    es = tc[TC_ESLOT]
    ks = member_at(kq, es)
    kc = ks.kc
    ke = ks.ke
    tcnt = ts.tcnt
    while True:
        if pc in (P_TOP, P_ARESCHED):  # trim_rows checked the range's end
            idx = ts.pages[tc[TC_I]]
            if not add_takes(ks, tc, ks.pflags[idx]):
                # at P_ARESCHED, after the page's cond_resched(): Python's loop calls it
                # once more from the page top, a no-op then (resched.py's docstring)
                return pc, _stop(st, ks, t, P_TOP, KB_TOP, idx)
            if pc == P_TOP:
                # the page's cond_resched(), then A0's checks again (another task may
                # have run meanwhile)
                r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
                if r != R_OK:
                    return pc, _blocked(st, t, P_ARESCHED, r)
                pc = P_ARESCHED
                continue
            tc[TC_IDX] = idx
            pc = P_AALLOC
            continue
        if pc == P_AALLOC or (
            pc == P_AGROW
            and tc[TC_ADD_VA] <= 0
            and (tc[TC_PAGE_CNT] + tc[TC_ADDED]) % _VA_SLOTS == 0
        ):
            # A1's sgx_alloc_epc_page(reclaim=true), for the page, or (from P_AGROW) for
            # A2's VA page: sgx_encl_grow's sgx_alloc_va_page every 512 pages, owner VA
            # (TC_ADD_VA -1 while in its reclaim: P_ADRESCHED comes back to P_AGROW)
            va = pc == P_AGROW
            if ft_full(ks):  # room for the allocation's point first
                st.tasks[t, T_PC] = pc
                return pc, R_SVC
            row = tc[TC_FREE_ROW]
            lru = ks.epc_ends[kc[K_LRU_ROW], LEN]
            if ks.epc_ends[row, LEN] == 0:
                if lru == 0:  # -ENOMEM
                    if va:
                        # Python's, from the grow on, the page's own EPC page in TC_PAGE
                        # (kernel/ioctl_add._add_page_rest frees it)
                        tc[TC_ADD_VA] = 0
                        return pc, _stop(st, ks, t, P_AGROW, KB_GROW, tc[TC_IDX])
                    # Python's loop from the page top (the same state)
                    return pc, _stop(st, ks, t, P_TOP, KB_TOP, tc[TC_IDX])
                tcnt[TN_ALLOC_RECLAIM] += 1  # a signal cannot be pending on the core
                ks.rc[RECLAIM_DIRECT, RC_PC] = RECLAIM_START
                if va:
                    tc[TC_ADD_VA] = -1
                    tc[TC_VA_DIRECT] += 1
                pc = P_ADIRECT
                continue
            page = alloc_from_node(
                ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, ks.owner_encl,
                row, ke[K_ENCL_ID], _OWNER_VA if va else tc[TC_IDX],
            )  # fmt: skip
            if ks.eflags[page] & EPCM_VALID:  # EADD/EPA would #PF on a free page: a guard
                return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, page)
            kc[K_NR_FREE] -= 1
            if va:
                tc[TC_ADD_VA] = page + 1
            else:
                tc[TC_PAGE] = page
            ft_record(ks, st.clk[C_NOW])
            if not (kc[K_NR_FREE] < tc[TC_LOW] and lru > 0):  # sgx_should_reclaim(low)
                pc = P_AEPA if va else P_AGROW
                continue
            woken = P_AVAWOKEN if va else P_AWOKEN
            r = perform(sp, t, np.int64(RQ_WAKE), np.int64(_KSGXD_WAITQ))  # wake_ksgxd
            if r != R_OK:
                return pc, _blocked(st, t, woken, r)
            pc = woken
            continue
        if pc == P_ADIRECT:
            r = reclaim_run(sp, kq, t, _ROW_DIRECT)
            if r != R_RETURNED:  # the batch's pc is its row's: the thread's stays here
                st.tasks[t, T_PC] = P_ADIRECT
                return pc, r
            tcnt[TN_DIRECT_PAGES] += ks.rc[RECLAIM_DIRECT, RC_NK]
            # alloc_epc_page's cond_resched()
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return pc, _blocked(st, t, P_ADRESCHED, r)
            pc = P_ADRESCHED
            continue
        if pc == P_ADRESCHED:  # the allocation loop's top: the page's, or its VA page's
            pc = P_AGROW if tc[TC_ADD_VA] < 0 else P_AALLOC
            continue
        if pc in (P_AWOKEN, P_AVAWOKEN):  # the page's, or its VA page's
            if st.tasks[t, T_RQ_RET] != 0:  # ksgxd was asleep on ksgxd_waitq
                kc[K_SLEEPING] = 0
                ks.cnt[CN_WAKEUPS] += 1
            pc = P_AEPA if pc == P_AVAWOKEN else P_AGROW
            continue
        if pc == P_AGROW:  # no VA page to grow, or it is allocated (above)
            tc[TC_ADDED] += 1  # sgx_encl_grow: page_cnt + 1
            r = perform(sp, t, np.int64(RQ_LOCK), es)
            if r != R_OK:
                return pc, _blocked(st, t, P_ALOCKED, r)
            pc = P_ALOCKED
            continue
        if pc == P_AEPA:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EPA_NS])  # __epa's run
            if r != R_OK:
                return pc, _blocked(st, t, P_AEPA_RUN, r)
            pc = P_AEPA_RUN
            continue
        if pc == P_AEPA_RUN:
            # EPA's effect and sgx_alloc_va_page's count, in Python; then the grow's
            # page_cnt + 1 and the lock (P_AGROW with TC_ADD_VA set)
            kc[K_SVC] = SVC_EPA
            kc[K_SVC_ARG] = tc[TC_ADD_VA] - 1
            st.tasks[t, T_PC] = P_AGROW
            return pc, R_SVC
        if pc == P_ALOCKED:
            if tc[TC_ADD_VA] != 0:  # sgx_encl_add_va_page (encl->va_pages' head), in Python
                kc[K_SVC] = SVC_VA_ADD
                kc[K_SVC_ARG] = tc[TC_ADD_VA] - 1
                tc[TC_ADD_VA] = 0
                st.tasks[t, T_PC] = P_ALOCKED
                return pc, R_SVC
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_IOCTL_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_AIOCTL_RUN, r)
            pc = P_AIOCTL_RUN
            continue
        if pc == P_AIOCTL_RUN:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EADD_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_AEADD_RUN, r)
            pc = P_AEADD_RUN
            continue
        if pc == P_AEADD_RUN:
            idx = tc[TC_IDX]
            page = tc[TC_PAGE]
            flags = tc[TC_ADD_FLAGS]
            pt = (flags >> 8) & 0xFF
            rwx = 0 if pt == _PT_TCS else flags & 7  # the CPU zeroes a TCS's RWX
            tcnt[TN_EADD] += 1
            ks.eflags[page] = EPCM_VALID | (pt << EPCM_PT_SHIFT) | rwx  # Epcm.clear, then
            ks.bepoch[page] = 0
            ks.etag[page] = 0  # a zero page (no ``src``: StreamCore.add)
            ke[K_SECS_CHILDREN] += 1
            # the page entry: present, epc, type, max_prot and the loader's vma_prot
            max_prot = 3 if pt == _PT_TCS else flags & 7
            was = page_class(ks.desc, ks.pflags, idx)
            ks.pflags[idx] = (
                (ks.pflags[idx] & _TYPE_CLEAR) | ENCL_PAGE_PRESENT | (pt << ENCL_PAGE_TYPE_SHIFT)
            )
            ks.desc[idx] = page
            count_move(ke, was, page_class(ks.desc, ks.pflags, idx))
            ts.prot[idx] = (ts.prot[idx] & _PROT_KEEP) | max_prot | (max_prot << 3)
            ke[K_CHILD_CNT] += 1
            ks.epc_flags[page] |= SGX_EPC_PAGE_RECLAIMER_TRACKED  # mark_page_reclaimable
            if lru_mark(ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], page):
                return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, page)
            r = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if r != R_OK:
                return pc, _blocked(st, t, P_AUNLOCKED, r)
            pc = P_AUNLOCKED
            continue
        if pc == P_AUNLOCKED:
            tc[TC_I] += 1  # c += 4096 (no progress hook: StreamCore.add)
            tc[TC_DONE] += 1
            return P_TOP, -1
        return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, -1)


__all__ = ["LATE_NAMES", "NAMES", "P_ADD_FIRST", "P_AGROW", "add_rows", "add_takes"]
