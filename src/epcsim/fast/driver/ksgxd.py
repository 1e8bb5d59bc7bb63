"""ksgxd's loop and ``sgx_reclaim_pages`` as a compiled state machine (PATHS.md K0, A-D).

``ksgxd_resume(st, ks, t)`` runs task ``t`` (ksgxd) from its pc until a primitive of the
core blocks it (``R_BLOCKED``: the core resumes it at the same pc when its event is due),
the core or the driver hands back (``R_STOP``), or Python must serve a request first
(``R_SVC``: ``kc[K_SVC]``; the task stays at its pc and is resumed there by the next
call). Each pc is one point of PATHS.md's table: a step's effect is applied when the task
is resumed after the step's ``run`` (the engine's rule: charge first, apply after), so a
pc named ``*_RUN`` means "the run is over, apply it".

The order of every step is ``kernel/main.py``'s ``Sgx._ksgxd`` and ``kernel/reclaim.py``'s
``sgx_reclaim_pages``/``reclaimer_write``/``sgx_encl_ewb``; a change there changes this file
in the same commit (DESIGN.md, "Where a new kernel feature goes"). What the regime excludes
is a hand-back (``kstate.KB_*``), decided before the step that would need it.

Its ``KB_UNEXPECTED`` stops (``RuntimeError`` in ``Session.on_stop`` and ``CoreStream.run``)
are defect guards no state of the user path reaches (re-checked 2026-11-26, session
``pstored``): the LRU's links broken (``pop_head_many``, ``free_page``: only the list ops
change them); a page of another enclave isolated (on the core one enclave is the regime's;
served, A runs in the step of K0's check, which stops with ``KB_TOP`` first when
``_served_regime`` fails, e.g. a second enclave created between two steps); no VA page or
slot (``sgx_encl_grow`` adds a VA page per 512 pages and REMOVE_PAGES keeps them, so the
slots outnumber the pages that can hold one; the reference's ``take_slot`` would fail
there too); ``NOT_CHILD`` (only REG/TCS pages are marked reclaimable and EMODT makes TRIM
or TCS, both children; a batch page EREMOVEd meanwhile fails EWB's EPCM check instead, as
in the reference). The child removed during a served page's D step is not among them: the
SECS's eviction then follows that page's EWB (``KB_SECS`` at ``P_STORED``).

Every engine action is a request through ``request.perform`` and every request, the
unlocks included, is followed by its own pc (``P_*_UNLOCKED`` after the three unlocks), so
the machine runs served by SimPy one request at a time as well (``cosim/served.py``,
``served_ksgxd.py``): there ``perform`` answers ``R_BLOCKED`` to each and the machine is
called again at the pc after it.
"""

from __future__ import annotations

from numba import njit

from epcsim.arch import SGX_VA_SLOT_COUNT
from epcsim.fast.cosim.borrow import borrow, member, unborrow
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_SLEEP, RQ_UNLOCK, perform
from epcsim.fast.cosim.state import C_NOW, R_BLOCKED, R_OK, R_STOP, T_CPU, T_PC
from epcsim.fast.driver.encls import (
    NEED_VA_ROW,
    NOT_CHILD,
    NOT_TRACKED,
    defer,
    eblock,
    etrack,
    ewb,
    seal_record,
)
from epcsim.fast.driver.kstate import (
    CN_BATCHES,
    CN_IPI,
    CN_PAGES,
    CN_RECLAIM_BATCHES,
    CN_SCANNED,
    CN_YOUNG,
    K_AGE_CHECK,
    K_BACKING_ALLOC,
    K_CHILD_CNT,
    K_CPUMASK,
    K_CT,
    K_EBLOCK_NS,
    K_ENCL_ID,
    K_ETRACK_NS,
    K_EWB_FAILURES,
    K_EWB_NS,
    K_FT_N,
    K_HB,
    K_HB_PAGE,
    K_HIGH,
    K_I,
    K_INITIALIZED,
    K_INSIDE,
    K_IPI_MASK,
    K_IPI_NS,
    K_LRU_OPS,
    K_LRU_ROW,
    K_MAC,
    K_NB,
    K_NK,
    K_NR_FREE,
    K_NR_RECORDS,
    K_NR_TO_SCAN,
    K_PACKED,
    K_REFCOUNT,
    K_RET,
    K_SECS_EPC,
    K_SLEEPING,
    K_SLOT,
    K_SVC,
    K_SVC_ARG,
    K_THREAD_T,
    K_TOP_STOP,
    K_TRACKING,
    K_VA,
    K_VA_ROW,
    K_VID,
    K_WAKEUP_NS,
    K_WARN_N,
    K_ZAP,
    KB_RELEASE,
    KB_SECS,
    KB_TOP,
    KB_UNEXPECTED,
    SVC_CHUNK,
    SVC_FT_FULL,
    SVC_STORE,
    SVC_WARN_FULL,
    W_EBLOCK,
    W_ETRACK,
    W_EWB,
)
from epcsim.fast.ops import backing as backing_ops
from epcsim.fast.ops.encl_page import test_and_clear_young, zap_ptes
from epcsim.fast.ops.epc import free_page
from epcsim.fast.ops.lru import lru_putback
from epcsim.fast.ops.page_list import list_add, list_add_tail, list_del, pop_head_many
from epcsim.fast.ops.va import va_take_slot
from epcsim.kernel.encl_page import ENCL_PAGE_BEING_RECLAIMED
from epcsim.kernel.epc import OWNER_SHIFT, SGX_EPC_PAGE_ON_LRU, SGX_EPC_PAGE_RECLAIMER_TRACKED
from epcsim.kernel.page_list import HEAD, LEN

#: ``R_*`` of the core, and one more: Python must serve ``kc[K_SVC]`` before the task goes on
R_SVC = 3

# -- the program counter (PATHS.md's rows) ----------------------------------------------------
P_TOP = 0  #: K0: the loop top
P_WAIT = 1  #: K0: ``wait_event``'s loop (asleep, or just woken: check the condition)
P_WAKEUP_RUN = 2  #: K0: ``run(wakeup)`` is over
P_ISOLATED_RUN = 3  #: A: ``run(lru_op * max(1, n))`` is over
P_B = 4  #: B: the next isolated page
P_AGE_RUN = 5  #: B: ``run(age_check)`` is over
P_B_LOCKED = 6  #: B: ``encl->lock`` taken
P_BACKING_RUN = 7  #: B: ``run(backing_alloc)`` is over
P_C = 8  #: C: the next kept page
P_ZAP_RUN = 9  #: C: ``run(zap_ptes)`` is over
P_C_LOCKED = 10
P_EBLOCK_RUN = 11
P_D = 12  #: D: the next kept page
P_D_LOCKED = 13
P_EWB1_RUN = 14  #: D: the first EWB's run is over
P_ETRACK_RUN = 15
P_EWB2_RUN = 16
P_IPI_RUN = 17
P_EWB3_RUN = 18
P_STORED = 19  #: D: the record is in the backing store (after a Python store)
P_CHECK = 20  #: K0: ``if sgx_should_reclaim(high)``, the batch's own check
P_EWB_DONE = 21  #: D: ``sgx_encl_ewb``'s result is final
P_B_UNLOCKED = 22  #: B: ``encl->lock`` released after the backing
P_C_UNLOCKED = 23  #: C: released after EBLOCK
P_D_UNLOCKED = 24  #: D: released after EWB
P_NAMES = (
    "top", "wait", "wakeup", "isolated", "B", "age", "B locked", "backing", "C", "zap",
    "C locked", "eblock", "D", "D locked", "ewb1", "etrack", "ewb2", "ipi", "ewb3", "stored",
    "check", "ewb done", "B unlocked", "C unlocked", "D unlocked",
)  # fmt: skip

_ENCL_LOCK = 0  #: the core's mutex row of ``encl->lock``
_KSGXD_WAITQ = 0  #: the core's wait queue row of ``ksgxd_waitq``
_NOT_TRACKED_CLEAR = ~SGX_EPC_PAGE_RECLAIMER_TRACKED  # the flags share a word (kernel.epc)


@njit(cache=True, nogil=True, inline="always")
def should_reclaim(ks, watermark):
    """``sgx_should_reclaim``: free pages below ``watermark`` and the LRU non-empty."""
    return ks.kc[K_NR_FREE] < watermark and ks.epc_ends[ks.kc[K_LRU_ROW], LEN] > 0


@njit(cache=True, nogil=True, inline="always")
def _warn(ks, kind, ret, page):
    kc = ks.kc
    n = kc[K_WARN_N]
    ks.warn[n, 0] = kind
    ks.warn[n, 1] = ret
    ks.warn[n, 2] = page
    kc[K_WARN_N] = n + 1


@njit(cache=True, nogil=True, inline="always")
def _stop(st, ks, t, pc, code, page):
    """The driver's own hand-back, before the step at ``pc`` that needs Python."""
    st.tasks[t, T_PC] = pc
    ks.kc[K_HB] = code
    ks.kc[K_HB_PAGE] = page
    return hand_back(st, 100 + code, t)


@njit(cache=True, nogil=True, inline="always")
def _svc(st, ks, t, pc):
    st.tasks[t, T_PC] = pc
    return R_SVC


@njit(cache=True, nogil=True, inline="always")
def _blocked(st, t, pc, r):
    """Park the task at ``pc`` after a primitive that blocked or stopped it."""
    st.tasks[t, T_PC] = pc
    return r


@njit(cache=True, nogil=True)
def ksgxd_resume(st, ks, t):
    """Run ksgxd (task ``t``) from its pc: returns R_BLOCKED, R_STOP or R_SVC. For a
    caller outside the core's loop; the loop borrows the tuples once and calls
    ``ksgxd_run``."""
    return ksgxd_run(borrow((st, ks)), t)


@njit(cache=True, nogil=True)
def ksgxd_run(p, t):
    """``ksgxd_resume`` on the tuples ``p`` borrows (``cosim.borrow``: one pointer and no
    reference counting per call, PATHS.md "Per fault on the core")."""
    st, ks = unborrow(p)
    sp = member(p, 0)  # the CoState borrowed for the core's primitives (cosim.borrow)
    kc = ks.kc
    cnt = ks.cnt
    batch = ks.batch
    pc = st.tasks[t, T_PC]
    while True:
        if pc == P_TOP:
            if kc[K_TOP_STOP] != 0:  # between two batches: its generator goes on (served)
                return _stop(st, ks, t, P_TOP, KB_TOP, -1)
            if not should_reclaim(ks, kc[K_HIGH]):
                kc[K_SLEEPING] = 1
                pc = P_WAIT
                continue
            pc = P_CHECK  # awake already: no wake-up run
            continue
        if pc == P_WAIT:
            if not should_reclaim(ks, kc[K_HIGH]):
                return _blocked(st, t, P_WAIT, perform(sp, t, RQ_SLEEP, _KSGXD_WAITQ))
            kc[K_SLEEPING] = 0
            r = perform(sp, t, RQ_RUN, kc[K_WAKEUP_NS])
            if r != R_OK:
                return _blocked(st, t, P_WAKEUP_RUN, r)
            pc = P_WAKEUP_RUN
            continue
        if pc in (P_WAKEUP_RUN, P_CHECK):
            if kc[K_TOP_STOP] != 0:  # served, outside the regime: its generator's check
                return _stop(st, ks, t, P_CHECK, KB_TOP, -1)
            if not should_reclaim(ks, kc[K_HIGH]):
                pc = P_TOP  # cond_resched(): nothing in the regime
                continue
            cnt[CN_BATCHES] += 1
            # -- A: isolate under sgx_reclaimer_lock, the krefs under the same lock --------
            cnt[CN_RECLAIM_BATCHES] += 1
            n = pop_head_many(
                ks.epc_prev, ks.epc_next, ks.epc_flags, SGX_EPC_PAGE_ON_LRU, ks.epc_ends,
                kc[K_LRU_ROW], kc[K_NR_TO_SCAN], batch[:, 0],
            )  # fmt: skip
            if n < 0:
                return _stop(st, ks, t, pc, KB_UNEXPECTED, -1)
            cnt[CN_SCANNED] += n
            for k in range(n):
                page = batch[k, 0]
                if ks.owner_encl[page] != kc[K_ENCL_ID]:
                    return _stop(st, ks, t, pc, KB_UNEXPECTED, page)
                kc[K_REFCOUNT] += 1
                batch[k, 1] = ks.owner_index[page] >> OWNER_SHIFT
                batch[k, 2] = -1
            kc[K_NB] = n
            r = perform(sp, t, RQ_RUN, kc[K_LRU_OPS] * max(1, n))
            if r != R_OK:
                return _blocked(st, t, P_ISOLATED_RUN, r)
            pc = P_ISOLATED_RUN
            continue
        if pc == P_ISOLATED_RUN:
            kc[K_I] = 0
            kc[K_NK] = 0
            pc = P_B
            continue
        # -- B: the age check, then the backing and BEING_RECLAIMED under encl->lock -------
        if pc == P_B:
            if kc[K_I] >= kc[K_NB]:
                kc[K_I] = 0
                pc = P_C
                continue
            r = perform(sp, t, RQ_RUN, kc[K_AGE_CHECK])
            if r != R_OK:
                return _blocked(st, t, P_AGE_RUN, r)
            pc = P_AGE_RUN
            continue
        if pc == P_AGE_RUN:
            i = kc[K_I]
            if test_and_clear_young(ks.pflags, batch[i, 1]):
                cnt[CN_YOUNG] += 1
                lru_putback(
                    ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], batch[i, 0]
                )
                if kc[K_REFCOUNT] == 1:
                    return _stop(st, ks, t, pc, KB_RELEASE, batch[i, 0])
                kc[K_REFCOUNT] -= 1
                kc[K_I] = i + 1
                pc = P_B
                continue
            r = perform(sp, t, RQ_LOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_B_LOCKED, r)
            pc = P_B_LOCKED
            continue
        if pc == P_B_LOCKED:
            r = perform(sp, t, RQ_RUN, kc[K_BACKING_ALLOC])
            if r != R_OK:
                return _blocked(st, t, P_BACKING_RUN, r)
            pc = P_BACKING_RUN
            continue
        if pc == P_BACKING_RUN:
            i = kc[K_I]
            index = batch[i, 1]
            batch[i, 2] = backing_ops.backing_pin(ks.b_pcmd_gen, index)
            ks.pflags[index] |= ENCL_PAGE_BEING_RECLAIMED
            r = perform(sp, t, RQ_UNLOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_B_UNLOCKED, r)
            pc = P_B_UNLOCKED
            continue
        if pc == P_B_UNLOCKED:
            i = kc[K_I]
            k = kc[K_NK]
            batch[k, 0] = batch[i, 0]
            batch[k, 1] = batch[i, 1]
            batch[k, 2] = batch[i, 2]
            kc[K_NK] = k + 1
            kc[K_I] = i + 1
            pc = P_B
            continue
        # -- C: zap the PTEs, then EBLOCK under encl->lock -----------------------------------
        if pc == P_C:
            if kc[K_I] >= kc[K_NK]:
                kc[K_I] = 0
                pc = P_D
                continue
            r = perform(sp, t, RQ_RUN, kc[K_ZAP])
            if r != R_OK:
                return _blocked(st, t, P_ZAP_RUN, r)
            pc = P_ZAP_RUN
            continue
        if pc == P_ZAP_RUN:
            zap_ptes(ks.pflags, batch[kc[K_I], 1])
            r = perform(sp, t, RQ_LOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_C_LOCKED, r)
            pc = P_C_LOCKED
            continue
        if pc == P_C_LOCKED:
            r = perform(sp, t, RQ_RUN, kc[K_EBLOCK_NS])
            if r != R_OK:
                return _blocked(st, t, P_EBLOCK_RUN, r)
            pc = P_EBLOCK_RUN
            continue
        if pc == P_EBLOCK_RUN:
            if kc[K_WARN_N] >= ks.warn.shape[0]:
                kc[K_SVC] = SVC_WARN_FULL
                return _svc(st, ks, t, P_EBLOCK_RUN)
            page = batch[kc[K_I], 0]
            ret = eblock(ks, page)
            if ret != 0:
                _warn(ks, W_EBLOCK, ret, page)
            r = perform(sp, t, RQ_UNLOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_C_UNLOCKED, r)
            pc = P_C_UNLOCKED
            continue
        if pc == P_C_UNLOCKED:
            kc[K_I] += 1
            pc = P_C
            continue
        # -- D: EWB under encl->lock (sgx_reclaimer_write), then free the page --------------
        if pc == P_D:
            i = kc[K_I]
            if i >= kc[K_NK]:
                cnt[CN_PAGES] += kc[K_NK]
                pc = P_TOP  # the batch returns; cond_resched(): nothing in the regime
                continue
            if kc[K_CHILD_CNT] == 1 and kc[K_INITIALIZED] != 0 and kc[K_SECS_EPC] >= 0:
                return _stop(st, ks, t, pc, KB_SECS, batch[i, 0])
            c = batch[i, 1] // backing_ops.CHUNK
            if ks.b_chunk_row[c] < 0:  # the record's chunk gets its row first (Python)
                kc[K_SVC] = SVC_CHUNK
                kc[K_SVC_ARG] = c
                return _svc(st, ks, t, P_D)
            vid = ks.va_ends[kc[K_VA_ROW], HEAD]
            if vid < 0:
                return _stop(st, ks, t, pc, KB_UNEXPECTED, batch[i, 0])
            r = perform(sp, t, RQ_LOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_D_LOCKED, r)
            pc = P_D_LOCKED
            continue
        if pc == P_D_LOCKED:
            index = batch[kc[K_I], 1]
            ks.pflags[index] &= 0xFF ^ ENCL_PAGE_BEING_RECLAIMED
            # sgx_alloc_va_slot on the head VA page; a page that fills moves to the tail
            row = kc[K_VA_ROW]
            vid = ks.va_ends[row, HEAD]
            slot, full = va_take_slot(ks.va_used[vid])
            if slot < 0:
                return _stop(st, ks, t, pc, KB_UNEXPECTED, batch[kc[K_I], 0])
            if full:
                list_del(ks.va_prev, ks.va_next, ks.va_ends, row, vid)
                list_add_tail(ks.va_prev, ks.va_next, ks.va_ends, row, vid)
            kc[K_VID] = vid
            kc[K_VA] = ks.va_epc_of[vid]
            kc[K_SLOT] = slot
            r = perform(sp, t, RQ_RUN, kc[K_EWB_NS])
            if r != R_OK:
                return _blocked(st, t, P_EWB1_RUN, r)
            pc = P_EWB1_RUN
            continue
        if pc in (P_EWB1_RUN, P_EWB2_RUN, P_EWB3_RUN):
            ret = ewb(ks, batch[kc[K_I], 0], kc[K_VA], kc[K_SLOT])
            if ret == NEED_VA_ROW:
                return _svc(st, ks, t, pc)
            if ret == NOT_CHILD:
                return _stop(st, ks, t, pc, KB_UNEXPECTED, batch[kc[K_I], 0])
            if ret == NOT_TRACKED and pc == P_EWB1_RUN:
                r = perform(sp, t, RQ_RUN, kc[K_ETRACK_NS])
                if r != R_OK:
                    return _blocked(st, t, P_ETRACK_RUN, r)
                pc = P_ETRACK_RUN
                continue
            if ret == NOT_TRACKED and pc == P_EWB2_RUN:
                # send_ipi: the cpumask now (the one at entry, and the enclave thread's
                # CPU while it holds one), an IPI if another CPU is in it
                mask = kc[K_CPUMASK]
                tt = kc[K_THREAD_T]
                if tt >= 0 and st.tasks[tt, T_CPU] >= 0:
                    mask |= 1 << st.tasks[tt, T_CPU]
                kc[K_IPI_MASK] = mask
                if mask & ~(1 << st.tasks[t, T_CPU]) != 0:
                    cnt[CN_IPI] += 1
                    r = perform(sp, t, RQ_RUN, kc[K_IPI_NS])
                    if r != R_OK:
                        return _blocked(st, t, P_IPI_RUN, r)
                pc = P_IPI_RUN
                continue
            kc[K_RET] = ret
            pc = P_EWB_DONE
            continue
        if pc == P_ETRACK_RUN:
            if kc[K_WARN_N] >= ks.warn.shape[0]:
                kc[K_SVC] = SVC_WARN_FULL
                return _svc(st, ks, t, P_ETRACK_RUN)
            ret = etrack(ks)
            if ret != 0:
                _warn(ks, W_ETRACK, ret, kc[K_SECS_EPC])
            r = perform(sp, t, RQ_RUN, kc[K_EWB_NS])
            if r != R_OK:
                return _blocked(st, t, P_EWB2_RUN, r)
            pc = P_EWB2_RUN
            continue
        if pc == P_IPI_RUN:
            # every LP of the mask inside the enclave takes an AEX: the thread's (its next
            # T0 runs ERESUME), which leaves the tracking set too
            tt = kc[K_THREAD_T]
            if tt >= 0 and kc[K_INSIDE] != 0:
                lp = st.tasks[tt, T_CPU]
                if lp >= 0 and (kc[K_IPI_MASK] >> lp) & 1:
                    kc[K_INSIDE] = 0
                    kc[K_TRACKING] = 0
            r = perform(sp, t, RQ_RUN, kc[K_EWB_NS])
            if r != R_OK:
                return _blocked(st, t, P_EWB3_RUN, r)
            pc = P_EWB3_RUN
            continue
        if pc == P_EWB_DONE:
            # sgx_encl_ewb after its retries: WARN (the Python side keeps encls_failed's
            # rule), a failure frees the slot and loses the page, a success stores it
            i = kc[K_I]
            ret = kc[K_RET]
            if ret != 0:
                if kc[K_WARN_N] >= ks.warn.shape[0]:
                    kc[K_SVC] = SVC_WARN_FULL
                    return _svc(st, ks, t, pc)
                _warn(ks, W_EWB, ret, batch[i, 0])
                _va_free_slot(ks, kc[K_VID], kc[K_SLOT])
                kc[K_EWB_FAILURES] += 1
                pc = P_STORED
                continue
            # the record unsealed (the tag, the version: kstate's deferred sealing)
            index = batch[i, 1]
            mac16 = ks.bscr[:16]
            ct8 = ks.bscr[16:24]
            _put_u64(mac16, 0, kc[K_MAC])
            for b in range(8, 16):
                mac16[b] = 0
            _put_u64(ct8, 0, kc[K_CT])
            got = backing_ops.backing_store(
                ks.b_present, ks.b_odd, ks.b_chunk_row, ks.b_contents, ks.b_mac, ks.b_flags,
                ks.b_high_row, ks.b_high, ks.b_pcmd_live, ks.b_pcmd_kept, ks.b_pcmd_gen,
                index, batch[i, 2], ct8, kc[K_PACKED], mac16,
            )  # fmt: skip
            if got < 0:  # NEED_PYTHON (a PCMD lost, a raw record): Python stores it sealed
                seal_record(ks, index)
                kc[K_SVC] = SVC_STORE
                kc[K_SVC_ARG] = i
                return _svc(st, ks, t, P_STORED)
            defer(ks, index)
            kc[K_NR_RECORDS] += got
            pc = P_STORED
            continue
        if pc == P_STORED:
            i = kc[K_I]
            page = batch[i, 0]
            index = batch[i, 1]
            if kc[K_CHILD_CNT] == 1 and kc[K_INITIALIZED] != 0 and kc[K_SECS_EPC] >= 0:
                # the SECS's eviction is decided before the page's D (KB_SECS at P_D);
                # served, a Python task between two steps may remove a child meanwhile
                # (REMOVE_PAGES' EREMOVE, a trim's) while this page's EWB runs, making it
                # the last child's: ksgxd's generator goes on from here, encl->lock held
                # (``sgx_reclaim_write_back(..., ewbed=(K_RET, K_VA, K_SLOT))``, from the
                # child count's drop). Never on the core: no task there removes a child.
                return _stop(st, ks, t, pc, KB_SECS, page)
            if kc[K_FT_N] >= ks.ft.shape[0]:
                kc[K_SVC] = SVC_FT_FULL
                return _svc(st, ks, t, P_STORED)
            # encl->epc_page = NULL whatever EWB returned; the VA reference on success
            if ks.desc[index] >= 0:
                ks.desc[index] = -1
            if kc[K_RET] == 0:
                ks.desc[index] = -2 - (kc[K_VID] * SGX_VA_SLOT_COUNT + kc[K_SLOT])
            kc[K_CHILD_CNT] -= 1
            r = perform(sp, t, RQ_UNLOCK, _ENCL_LOCK)
            if r != R_OK:
                return _blocked(st, t, P_D_UNLOCKED, r)
            pc = P_D_UNLOCKED
            continue
        if pc == P_D_UNLOCKED:
            i = kc[K_I]
            page = batch[i, 0]
            # kref_put: the last reference runs sgx_encl_release (Python: ksgxd's generator
            # from here). Checked here, not before the page's D: served by SimPy, Python
            # tasks run between the machine's steps and may put the enclave's own
            # references meanwhile (the process closing it)
            if kc[K_REFCOUNT] == 1:
                return _stop(st, ks, t, pc, KB_RELEASE, page)
            kc[K_REFCOUNT] -= 1
            ks.epc_flags[page] &= _NOT_TRACKED_CLEAR
            if free_page(
                ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, ks.owner_encl,
                ks.free_row[page], page,
            ) != 0:  # fmt: skip
                return _stop(st, ks, t, pc, KB_UNEXPECTED, page)
            kc[K_NR_FREE] += 1
            n = kc[K_FT_N]
            ks.ft[n, 0] = st.clk[C_NOW]
            ks.ft[n, 1] = kc[K_NR_FREE]
            kc[K_FT_N] = n + 1
            kc[K_I] = i + 1
            pc = P_D
            continue
        return _stop(st, ks, t, pc, KB_UNEXPECTED, -1)


@njit(cache=True, nogil=True, inline="always")
def _put_u64(row, at, value):
    for b in range(8):
        row[at + b] = (value >> (8 * b)) & 0xFF


@njit(cache=True, nogil=True, inline="always")
def _va_free_slot(ks, vid, slot):
    """``sgx_free_va_slot`` without the move to the head (a failed EWB)."""
    ks.va_used[vid, slot >> 3] &= 0xFF ^ (1 << (slot & 7))


__all__ = ["P_NAMES", "R_SVC", "ksgxd_resume", "ksgxd_run", "should_reclaim"]
_ = (R_BLOCKED, R_STOP, list_add)
