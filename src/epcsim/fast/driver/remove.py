"""The REMOVE_PAGES loop's own rows (PATHS.md R3-R5), compiled into the thread's machine.

``kernel/ioctl_sgx2._page_loop`` of REMOVE_PAGES runs on the thread's machine in
``tstate.MODE_REMOVE`` (session ``ioctlcore``; PATHS.md "The REMOVE_PAGES loop"): the
loop is MODIFY_TYPES' (``trim.trim_rows``: the page top, the direct batch, the lock,
``run(ioctl_page)``, ``_load`` with T4-T5's ELDU and -EAGAIN, the unlock and the notes),
only ``per_page`` differs, and its rows are here, inlined into ``trim_rows`` (no new
machine, one compile):

R3 ``run(emodpr)``, the probe counted (its #PF decided before, with everything else:
   ``remove_takes``), ``unmark_page_reclaimable``: off the LRU, or -EBUSY for a page a
   reclaimer isolated during the run (the unlock, a stop at the page top with
   ``TC_MRET``, no cause);
R4 the unlock, ``run(zap_ptes)``, the zap, the lock;
R5 ``run(eremove)``, EREMOVE (the EPCM entry cleared, the SECS's child count), the page
   freed (``sgx_free_epc_page``: the free list's tail, ``nr_free``, the free timeline),
   ``erase_page``'s arrays and ``page_cnt`` (a delta, ``TC_REMOVED``); then M4's unlock.

The order of every step is ``kernel/ioctl_sgx2.py``'s (``sgx_ioc_enclave_remove_pages``'
``per_page``, ``erase_page``), ``kernel/encl.py``'s ``free_epc_page``/``shrink`` and
``kernel/main.py``'s ``unmark_page_reclaimable``/``free_epc_page``; a change there changes
this file.
"""

from __future__ import annotations

import errno

import numpy as np
from numba import njit

from epcsim.arch import PageType
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_UNLOCK, perform
from epcsim.fast.cosim.state import C_NOW, R_OK, T_PC
from epcsim.fast.driver.ksgxd import R_SVC, _blocked, _stop
from epcsim.fast.driver.kstate import (
    K_CHILD_CNT,
    K_INSIDE,
    K_LRU_ROW,
    K_NR_FREE,
    K_SECS_CHILDREN,
    K_SECS_EPC,
    KB_TOP,
    KB_UNEXPECTED,
    ft_full,
    ft_record,
)
from epcsim.fast.driver.page_counts import count_move, page_class
from epcsim.fast.driver.tstate import (
    TC_EMODPR_NS,
    TC_EREMOVE_NS,
    TC_ESLOT,
    TC_IDX,
    TC_MRET,
    TC_REMOVED,
    TC_ZAP_NS,
    TN_EMODPR,
    TN_EREMOVE,
)
from epcsim.fast.ops.encl_page import zap_ptes
from epcsim.fast.ops.epc import free_page
from epcsim.fast.ops.lru import lru_unmark
from epcsim.isa.epcm import EPCM_MODIFIED, EPCM_PENDING, EPCM_PT_SHIFT, EPCM_VALID
from epcsim.kernel.encl_page import ENCL_PAGE_PRESENT, ENCL_PAGE_TYPE_SHIFT
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU, SGX_EPC_PAGE_RECLAIMER_TRACKED

# -- the REMOVE_PAGES loop's pcs (thread.py's P_NAMES names them) -------------------------
P_REMODPR = 29  #: R3: the page loaded: ``run(emodpr)``
P_EMODPR_RUN = 30  #: R3: ``run(emodpr)`` is over: the probe counted, the unmark
P_RZAP = 31  #: R4: unlocked: ``run(zap_ptes)``
P_RZAP_RUN = 32  #: R4: ``run(zap_ptes)`` is over: the zap, the lock
P_RLOCKED = 33  #: R5: ``encl->lock`` taken again: ``run(eremove)``
P_EREMOVE_RUN = 34  #: R5: ``run(eremove)`` is over: EREMOVE, the free, the arrays
P_REBUSY_UNLOCKED = 35  #: R3: unlocked after -EBUSY: stop at the page top
NAMES = ("remodpr", "emodpr", "rzap", "zap", "rlocked", "eremove", "ebusy unlocked")

P_TOP = 0  #: the thread machine's page top (``thread_pc.P_TOP``)
_EBUSY = -errno.EBUSY
_PT_TRIM = int(PageType.TRIM)
#: ``erase_page``: ``present`` and ``type`` cleared (bits of the page's flags)
_ERASE_KEEP = 0xFF ^ (ENCL_PAGE_PRESENT | (7 << ENCL_PAGE_TYPE_SHIFT))
_MAX_PROT_CLEAR = 0xFF ^ 7  #: ``max_prot`` cleared: the low bits of ``prot``
_TRACKED_CLEAR = 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED


@njit(cache=True, nogil=True, inline="always")
def remove_word_ok(word):
    """Whether EMODPR's probe of a page with EPCM word ``word`` gives #PF *and* EREMOVE
    will succeed on it (PATHS.md R3, R5): valid, type TRIM, neither PENDING nor MODIFIED -
    an accepted TRIM page (``isa/edmm.emodpr``'s order: invalid #PF, PENDING or MODIFIED
    PAGE_NOT_MODIFIABLE, not REG #PF; ``isa/encls.eremove``: an accepted TRIM page always
    succeeds). Anything else is Python's (-EPERM, or another type's outcome)."""
    w = np.int64(word)
    if not w & EPCM_VALID or w & (EPCM_PENDING | EPCM_MODIFIED):
        return False
    return (w >> EPCM_PT_SHIFT) == _PT_TRIM


@njit(cache=True, nogil=True, inline="always")
def remove_takes(ks, f):
    """``per_page``'s checks that need no EPCM word, for a page with flags ``f``: present
    (else ``_load``'s -EFAULT), ``encl.type`` TRIM (else -EPERM), the SECS resident, no LP
    inside (the regime's; EREMOVE of an accepted TRIM page would not care)."""
    if not f & ENCL_PAGE_PRESENT or ((f >> ENCL_PAGE_TYPE_SHIFT) & 7) != _PT_TRIM:
        return False
    ke = ks.ke
    return ke[K_SECS_EPC] >= 0 and ke[K_INSIDE] == 0


@njit(cache=True, nogil=True, inline="always")
def remove_rows(st, ks, ts, sp, t, pc):
    """Rows R3-R5 from ``pc`` until the task parks, stops (-EBUSY: at the page top, the
    lock released) or needs a service - ``(pc, r)``: ``thread_run`` returns ``r`` - or the
    page is done - ``(-1, -1)``: ``trim_rows`` goes on at M4's unlock (``encl->lock``
    held)."""
    kc = ks.kc
    ke = ks.ke
    tc = ts.tc
    tcnt = ts.tcnt
    while True:
        if pc == P_REMODPR:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EMODPR_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_EMODPR_RUN, r)
            pc = P_EMODPR_RUN
            continue
        if pc == P_EMODPR_RUN:
            idx = tc[TC_IDX]
            page = ks.desc[idx]
            tcnt[TN_EMODPR] += 1  # the probe: #PF, decided before (remove_word_ok)
            ef = ks.epc_flags[page]
            if ef & SGX_EPC_PAGE_RECLAIMER_TRACKED:  # sgx_unmark_page_reclaimable
                if not ef & SGX_EPC_PAGE_ON_LRU:  # isolated during the run: -EBUSY
                    tc[TC_MRET] = _EBUSY
                    r = perform(sp, t, np.int64(RQ_UNLOCK), tc[TC_ESLOT])
                    if r != R_OK:
                        return pc, _blocked(st, t, P_REBUSY_UNLOCKED, r)
                    pc = P_REBUSY_UNLOCKED
                    continue
                lru_unmark(ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], page)
                ks.epc_flags[page] &= _TRACKED_CLEAR
            r = perform(sp, t, np.int64(RQ_UNLOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_RZAP, r)
            pc = P_RZAP
            continue
        if pc == P_RZAP:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_ZAP_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_RZAP_RUN, r)
            pc = P_RZAP_RUN
            continue
        if pc == P_RZAP_RUN:
            zap_ptes(ks.pflags, tc[TC_IDX])
            r = perform(sp, t, np.int64(RQ_LOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_RLOCKED, r)
            pc = P_RLOCKED
            continue
        if pc == P_RLOCKED:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EREMOVE_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_EREMOVE_RUN, r)
            pc = P_EREMOVE_RUN
            continue
        if pc == P_EREMOVE_RUN:
            if ft_full(ks):  # room for the free's point, before anything
                st.tasks[t, T_PC] = P_EREMOVE_RUN
                return pc, R_SVC
            idx = tc[TC_IDX]
            page = ks.desc[idx]
            tcnt[TN_EREMOVE] += 1
            ks.eflags[page] = 0  # Epcm.clear
            ks.bepoch[page] = 0
            ke[K_SECS_CHILDREN] -= 1
            if free_page(
                ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, ks.owner_encl,
                ks.free_row[page], page,
            ) != 0:  # fmt: skip
                return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, page)
            kc[K_NR_FREE] += 1
            ft_record(ks, st.clk[C_NOW])
            ke[K_CHILD_CNT] -= 1  # erase_page
            was = page_class(ks.desc, ks.pflags, idx)
            ks.desc[idx] = -1
            ks.pflags[idx] &= _ERASE_KEEP
            count_move(ke, was, page_class(ks.desc, ks.pflags, idx))
            ts.prot[idx] &= _MAX_PROT_CLEAR
            tc[TC_REMOVED] += 1  # shrink: page_cnt - 1
            return -1, -1
        if pc == P_REBUSY_UNLOCKED:  # the call returns -EBUSY: Python's M5
            return pc, _stop(st, ks, t, P_TOP, KB_TOP, -1)
        return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, -1)
