"""``sgx_reclaim_pages``, one batch, as a compiled state machine shared by the reclaimers
(PATHS.md rows A-D; "The MODIFY_TYPES loop", decision item 2).

Why its own function: the kernel runs the same batch from two tasks - ksgxd
(``ksgxd()``'s loop, ``ksgxd.py``'s K0) and, with ``sgx_reclaim_direct``, the task of an
SGX2 ioctl (the thread machine's ``MODE_TRIM``, PATHS.md M1). One copy of rows A-D serves
both: ``reclaim_run`` is ``@njit`` and *not* inlined, so numba compiles it once for both
machines (one signature: the ``CoState`` and ``KState`` borrowed by ``member``, two ints)
instead of a second copy of its ~300 lines in each caller's cold compile.

What belongs to one reclaimer lives in its row ``r`` (``RECLAIM_KSGXD`` 0, ``RECLAIM_DIRECT``
1) of ``ks.rc`` (``kstate.RC_*``: the batch's pc, sizes, loop index, the current EWB's VA
slot, result and record, the IPI's mask) and of ``ks.batch`` (the isolated pages); the
global scalars (free pages, the buffers) stay shared in ``kc``, and both reclaimers take
pages from the one LRU and meet on ``encl->lock``, which orders any two task rows as the
reference's mutex does. Each page is its own enclave's (PATHS.md "Two enclaves in the
regime", decision item 2, built by session ``twoencl2``): phase A keeps its enclave slot in
``batch[r, k, 3]`` (its owner compared with ``K_SLOT_ID0``/``1``), and every later step of
the page works on that slot's ``KState`` (``member_at``: its ``ke``, page arrays, VA list,
backing file) and locks that slot's ``encl->lock`` (the core's mutex row = the slot); the
IPI adds the thread's CPU only when the thread is that enclave's (``K_THREAD_SLOT``). With
one enclave both slots are the same ``KState`` and every page's slot is 0.

The caller's contract (where it enters, ``R_RETURNED``, ``R_STOP``, ksgxd's task pc) is
``reclaim_pc.py``'s docstring, with the pcs and exits; the steps of ``sgx_encl_ewb`` and
``sgx_reclaimer_write`` that neither block nor leave the machine are ``reclaimer_write.py``'s.

The order of every step is ``kernel/reclaim.py``'s ``sgx_reclaim_pages``/
``reclaimer_write``/``sgx_encl_ewb``; a change there changes this file in the same commit.
The defect guards (``KB_UNEXPECTED``) are ``ksgxd.py``'s docstring's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.cosim.borrow import member_at
from epcsim.fast.cosim.flood_park import page_freed, wake_all
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_UNLOCK, perform
from epcsim.fast.cosim.state import C_FL_PARKED, C_NOW, R_OK, T_CPU
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
from epcsim.fast.driver.flood_rows import page_zapped, tcs_accessed, tcs_blocked
from epcsim.fast.driver.kstate import (
    CN_IPI,
    CN_RECLAIM_BATCHES,
    CN_SCANNED,
    CN_YOUNG,
    K_AGE_CHECK,
    K_B_WIDTH,
    K_BACKING_ALLOC,
    K_CHILD_CNT,
    K_EBLOCK_NS,
    K_ETRACK_NS,
    K_EWB_FAILURES,
    K_EWB_NS,
    K_INITIALIZED,
    K_IPI_NS,
    K_LRU_OPS,
    K_LRU_ROW,
    K_NR_FREE,
    K_NR_RECORDS,
    K_NR_TO_SCAN,
    K_REFCOUNT,
    K_SECS_EPC,
    K_SLOT_ID0,
    K_SLOT_ID1,
    K_SVC,
    K_SVC_ARG,
    K_SVC_E,
    K_SVC_R,
    K_VA_ROW,
    K_WARN_N,
    K_ZAP,
    KB_RELEASE,
    KB_SECS,
    KB_UNEXPECTED,
    RC_I,
    RC_IPI_MASK,
    RC_NB,
    RC_NK,
    RC_PC,
    RC_RET,
    RC_SLOT,
    RC_VA,
    RC_VID,
    SVC_CHUNK,
    SVC_STORE,
    SVC_WARN_FULL,
    W_EBLOCK,
    W_ETRACK,
    W_EWB,
    ft_full,
    ft_record,
)

# the pc and the exits (``reclaim_pc``)
from epcsim.fast.driver.reclaim_pc import (
    _NOT_TRACKED_CLEAR,
    P_A,
    P_AGE_RUN,
    P_B,
    P_B_LOCKED,
    P_B_UNLOCKED,
    P_BACKING_RUN,
    P_C,
    P_C_LOCKED,
    P_C_UNLOCKED,
    P_D,
    P_D_LOCKED,
    P_D_UNLOCKED,
    P_EBLOCK_RUN,
    P_ETRACK_RUN,
    P_EWB1_RUN,
    P_EWB2_RUN,
    P_EWB3_RUN,
    P_EWB_DONE,
    P_IPI_RUN,
    P_ISOLATED_RUN,
    P_STORED,
    P_ZAP_RUN,
    R_RETURNED,
    _rblocked,
    _rstop,
    _rsvc,
    _warn,
)
from epcsim.fast.driver.reclaimer_write import (
    clear_epc_page,
    ipi_aex,
    ipi_mask,
    store_record,
    va_free_slot,
)
from epcsim.fast.ops import backing as backing_ops
from epcsim.fast.ops.encl_page import test_and_clear_young, zap_ptes
from epcsim.fast.ops.epc import free_page
from epcsim.fast.ops.lru import lru_putback
from epcsim.fast.ops.page_list import list_add_tail, list_del, pop_head_many
from epcsim.fast.ops.va import va_take_slot
from epcsim.kernel.encl_page import ENCL_PAGE_BEING_RECLAIMED
from epcsim.kernel.epc import OWNER_SHIFT, SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.page_list import HEAD, LEN


@njit(cache=True, nogil=True)
def reclaim_run(sp, kq, t, r):
    """One ``sgx_reclaim_pages`` batch run by task ``t`` as reclaimer ``r``, from
    ``rc[r, RC_PC]`` until it blocks, stops, needs a service or returns (module
    docstring). ``sp``/``kq``: the ``CoState`` and the slots' ``KState``s
    (``kstate.N_SLOTS``) borrowed by the caller's ``member`` (one pointer each,
    ``cosim.borrow``)."""
    st = sp
    ks = member_at(kq, np.int64(0))
    kc = ks.kc
    cnt = ks.cnt
    rw = ks.rc[r]
    batch = ks.batch[r]
    pc = rw[RC_PC]
    # The steps' blocks stand in step order, and a step that completes *falls through* to
    # the next step's block (``pc = P_NEXT`` without ``continue``: every block is guarded by
    # its ``pc`` test, which LLVM folds on that edge), so a page's steps run without the
    # loop head's reload and its jump on ``pc`` (session ``fault4``: ~20% of this
    # function's samples sat there, the jump a mispredicted indirect one, ~15 a page).
    # ``continue`` - back to the head, which reloads the page's slot - stays wherever
    # ``RC_I`` changes (a new page: its slot may be the other enclave's), for the backward
    # edges (the next page, ETRACK/IPI's EWB retries) and inside a block whose rest must
    # not run. A new step's block goes where its predecessor falls into it.
    while True:
        # the current page's enclave slot (``batch[i, 3]``, phase A's): every step of the
        # page works on its enclave's ``KState`` and locks its ``encl->lock`` (the core's
        # mutex row = the slot), as the kernel takes ``encl_page->encl`` per page. The
        # slots' global fields are the same arrays, so ``ks`` serves both. Phase A reads
        # only global fields and the slot of each page it isolates.
        i = rw[RC_I]
        es = batch[i, 3] if i < batch.shape[0] else np.int64(0)
        # the slot's ``KState`` kept borrowed (a pointer into the caller's tuple), not
        # unborrowed: each field is loaded where a step uses it (session ``fault2``). The
        # whole tuple unborrowed here made LLVM load and spill all of its ~60 fields at
        # every step, ~half of this function's host time on row 1
        ks = member_at(kq, es)
        ke = ks.ke
        # -- A: isolate under sgx_reclaimer_lock, the krefs under the same lock ------------
        if pc == P_A:
            cnt[CN_RECLAIM_BATCHES] += 1
            n = pop_head_many(
                ks.epc_prev, ks.epc_next, ks.epc_flags, np.int64(SGX_EPC_PAGE_ON_LRU), ks.epc_ends,
                kc[K_LRU_ROW], kc[K_NR_TO_SCAN], batch[:, 0],
            )  # fmt: skip
            if n < 0:
                return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, -1)
            if st.clk[C_FL_PARKED] > 0 and ks.epc_ends[kc[K_LRU_ROW], LEN] == 0:
                wake_all(st)  # ``lru_changed``: -EBUSY turns -ENOMEM (fast/flood.py)
            cnt[CN_SCANNED] += n
            for k in range(n):
                page = batch[k, 0]
                # its enclave's slot (``kstate.K_SLOT_ID0``/``1``): neither is a page the
                # regime excludes
                if ks.owner_encl[page] == kc[K_SLOT_ID0]:
                    s = np.int64(0)
                elif ks.owner_encl[page] == kc[K_SLOT_ID1]:
                    s = np.int64(1)
                else:
                    return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, page)
                member_at(kq, s).ke[K_REFCOUNT] += 1  # kref_get of its enclave
                batch[k, 1] = ks.owner_index[page] >> OWNER_SHIFT
                batch[k, 2] = -1
                batch[k, 3] = s
            rw[RC_NB] = n
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_LRU_OPS] * max(1, n))
            if res != R_OK:
                return _rblocked(rw, P_ISOLATED_RUN, res)
            pc = P_ISOLATED_RUN
        if pc == P_ISOLATED_RUN:
            rw[RC_I] = 0
            rw[RC_NK] = 0
            pc = P_B
            continue
        # -- B: the age check, then the backing and BEING_RECLAIMED under encl->lock -------
        if pc == P_B:
            if rw[RC_I] >= rw[RC_NB]:
                rw[RC_I] = 0
                pc = P_C
                continue
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_AGE_CHECK])
            if res != R_OK:
                return _rblocked(rw, P_AGE_RUN, res)
            pc = P_AGE_RUN
        if pc == P_AGE_RUN:
            i = rw[RC_I]
            if st.clk[C_FL_PARKED] > 0:
                tcs_accessed(st, ks, batch[i, 1])  # a parked retrier's ERESUMEs (flood.py)
            if test_and_clear_young(ks.pflags, batch[i, 1]):
                cnt[CN_YOUNG] += 1
                lru_putback(
                    ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], batch[i, 0]
                )
                if ke[K_REFCOUNT] == 1:
                    return _rstop(st, ks, t, r, pc, KB_RELEASE, batch[i, 0])
                ke[K_REFCOUNT] -= 1
                rw[RC_I] = i + 1
                pc = P_B
                continue
            res = perform(sp, t, np.int64(RQ_LOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_B_LOCKED, res)
            pc = P_B_LOCKED
        if pc == P_B_LOCKED:
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_BACKING_ALLOC])
            if res != R_OK:
                return _rblocked(rw, P_BACKING_RUN, res)
            pc = P_BACKING_RUN
        if pc == P_BACKING_RUN:
            i = rw[RC_I]
            index = batch[i, 1]
            c = index // backing_ops.CHUNK
            # sgx_encl_alloc_backing: the chunk's row (Python), once the file has a width
            # (``get_backing``: a file's first record is ``store``'s, at D: ``SVC_STORE``)
            if ke[K_B_WIDTH] != 0 and ks.b_chunk_row[c] < 0:
                kc[K_SVC] = SVC_CHUNK
                kc[K_SVC_ARG] = c
                kc[K_SVC_E] = es
                return _rsvc(rw, P_BACKING_RUN)
            batch[i, 2] = backing_ops.backing_pin(ks.b_pcmd_gen, index)
            ks.pflags[index] |= ENCL_PAGE_BEING_RECLAIMED
            res = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_B_UNLOCKED, res)
            pc = P_B_UNLOCKED
        if pc == P_B_UNLOCKED:
            i = rw[RC_I]
            k = rw[RC_NK]
            batch[k, 0] = batch[i, 0]
            batch[k, 1] = batch[i, 1]
            batch[k, 2] = batch[i, 2]
            batch[k, 3] = batch[i, 3]
            rw[RC_NK] = k + 1
            rw[RC_I] = i + 1
            pc = P_B
            continue
        # -- C: zap the PTEs, then EBLOCK under encl->lock -----------------------------------
        if pc == P_C:
            if rw[RC_I] >= rw[RC_NK]:
                rw[RC_I] = 0
                pc = P_D
                continue
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_ZAP])
            if res != R_OK:
                return _rblocked(rw, P_ZAP_RUN, res)
            pc = P_ZAP_RUN
        if pc == P_ZAP_RUN:
            zap_ptes(ks.pflags, batch[rw[RC_I], 1])
            if st.clk[C_FL_PARKED] > 0:
                page_zapped(st, ks, batch[rw[RC_I], 1])  # ``page_changed`` (fast/flood.py)
            res = perform(sp, t, np.int64(RQ_LOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_C_LOCKED, res)
            pc = P_C_LOCKED
        if pc == P_C_LOCKED:
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_EBLOCK_NS])
            if res != R_OK:
                return _rblocked(rw, P_EBLOCK_RUN, res)
            pc = P_EBLOCK_RUN
        if pc == P_EBLOCK_RUN:
            if kc[K_WARN_N] >= ks.warn.shape[0]:
                kc[K_SVC] = SVC_WARN_FULL
                return _rsvc(rw, P_EBLOCK_RUN)
            page = batch[rw[RC_I], 0]
            ret = eblock(ks, page)
            if ret != 0:
                _warn(ks, W_EBLOCK, ret, page)
            elif st.clk[C_FL_PARKED] > 0:
                tcs_blocked(st, batch[rw[RC_I], 1])  # a parked retrier's TCS (flood_rows.py)
            res = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_C_UNLOCKED, res)
            pc = P_C_UNLOCKED
        if pc == P_C_UNLOCKED:
            rw[RC_I] += 1
            pc = P_C
            continue
        # -- D: EWB under encl->lock (sgx_reclaimer_write), then free the page --------------
        if pc == P_D:
            i = rw[RC_I]
            if i >= rw[RC_NK]:
                rw[RC_PC] = P_A
                return R_RETURNED  # the batch returns (its caller counts its pages)
            if ke[K_CHILD_CNT] == 1 and ke[K_INITIALIZED] != 0 and ke[K_SECS_EPC] >= 0:
                return _rstop(st, ks, t, r, pc, KB_SECS, batch[i, 0])
            c = batch[i, 1] // backing_ops.CHUNK
            # the chunk's row is B's (P_BACKING_RUN); here only for a batch whose B ran
            # before the file's first record gave it a width (``EnclaveBacking.get_backing``);
            # a file still without one stores its first record through Python (below:
            # ``backing_store`` finds no row, ``SVC_STORE``, which lays the file out)
            if ke[K_B_WIDTH] != 0 and ks.b_chunk_row[c] < 0:
                kc[K_SVC] = SVC_CHUNK
                kc[K_SVC_ARG] = c
                kc[K_SVC_E] = es
                return _rsvc(rw, P_D)
            vid = ks.va_ends[ke[K_VA_ROW], HEAD]
            if vid < 0:
                return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, batch[i, 0])
            res = perform(sp, t, np.int64(RQ_LOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_D_LOCKED, res)
            pc = P_D_LOCKED
        if pc == P_D_LOCKED:
            index = batch[rw[RC_I], 1]
            ks.pflags[index] &= 0xFF ^ ENCL_PAGE_BEING_RECLAIMED
            # sgx_alloc_va_slot on the head VA page; a page that fills moves to the tail
            row = ke[K_VA_ROW]
            vid = np.int64(ks.va_ends[row, HEAD])  # int64: one signature of the list ops
            slot, full = va_take_slot(ks.va_used[vid])
            if slot < 0:
                return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, batch[rw[RC_I], 0])
            if full:
                list_del(ks.va_prev, ks.va_next, ks.va_ends, row, vid)
                list_add_tail(ks.va_prev, ks.va_next, ks.va_ends, row, vid)
            rw[RC_VID] = vid
            rw[RC_VA] = ks.va_epc_of[vid]
            rw[RC_SLOT] = slot
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_EWB_NS])
            if res != R_OK:
                return _rblocked(rw, P_EWB1_RUN, res)
            pc = P_EWB1_RUN
        if pc in (P_EWB1_RUN, P_EWB2_RUN, P_EWB3_RUN):
            ret = ewb(ks, r, batch[rw[RC_I], 0], rw[RC_VA], rw[RC_SLOT])
            if ret == NEED_VA_ROW:
                return _rsvc(rw, pc)
            if ret == NOT_CHILD:
                return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, batch[rw[RC_I], 0])
            if ret == NOT_TRACKED and pc == P_EWB1_RUN:
                res = perform(sp, t, np.int64(RQ_RUN), kc[K_ETRACK_NS])
                if res != R_OK:
                    return _rblocked(rw, P_ETRACK_RUN, res)
                pc = P_ETRACK_RUN
                continue
            if ret == NOT_TRACKED and pc == P_EWB2_RUN:
                # send_ipi: its enclave's cpumask now, an IPI if another CPU is in it
                mask = ipi_mask(st, kc, ke, es)
                rw[RC_IPI_MASK] = mask
                if mask & ~(1 << st.tasks[t, T_CPU]) != 0:
                    cnt[CN_IPI] += 1
                    res = perform(sp, t, np.int64(RQ_RUN), kc[K_IPI_NS])
                    if res != R_OK:
                        return _rblocked(rw, P_IPI_RUN, res)
                pc = P_IPI_RUN
                continue
            rw[RC_RET] = ret
            pc = P_EWB_DONE
        if pc == P_ETRACK_RUN:
            if kc[K_WARN_N] >= ks.warn.shape[0]:
                kc[K_SVC] = SVC_WARN_FULL
                return _rsvc(rw, P_ETRACK_RUN)
            ret = etrack(ks)
            if ret != 0:
                _warn(ks, W_ETRACK, ret, ke[K_SECS_EPC])
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_EWB_NS])
            if res != R_OK:
                return _rblocked(rw, P_EWB2_RUN, res)
            pc = P_EWB2_RUN
            continue
        if pc == P_IPI_RUN:
            # every LP of the mask inside the enclave takes an AEX
            ipi_aex(kc, ke, es, rw[RC_IPI_MASK])
            res = perform(sp, t, np.int64(RQ_RUN), kc[K_EWB_NS])
            if res != R_OK:
                return _rblocked(rw, P_EWB3_RUN, res)
            pc = P_EWB3_RUN
            continue
        if pc == P_EWB_DONE:
            # sgx_encl_ewb after its retries: WARN (the Python side keeps encls_failed's
            # rule), a failure frees the slot and loses the page, a success stores it
            i = rw[RC_I]
            ret = rw[RC_RET]
            if ret != 0:
                if kc[K_WARN_N] >= ks.warn.shape[0]:
                    kc[K_SVC] = SVC_WARN_FULL
                    return _rsvc(rw, pc)
                _warn(ks, W_EWB, ret, batch[i, 0])
                va_free_slot(ks, rw[RC_VID], rw[RC_SLOT])
                kc[K_EWB_FAILURES] += 1
                pc = P_STORED
                continue
            # the record unsealed (the tag, the version: kstate's deferred sealing), stored
            index = batch[i, 1]
            got = store_record(ks, rw, index, batch[i, 2])
            # NEED_PYTHON (a PCMD lost, a raw record) or, in a file without a record yet,
            # NEED_CHUNK (its first record sets its width): Python stores it sealed
            if got < 0:
                seal_record(ks, r, index)
                kc[K_SVC] = SVC_STORE
                kc[K_SVC_ARG] = i
                kc[K_SVC_R] = r
                kc[K_SVC_E] = es
                return _rsvc(rw, P_STORED)
            defer(ks, index)
            ke[K_NR_RECORDS] += got
            pc = P_STORED
        if pc == P_STORED:
            i = rw[RC_I]
            page = batch[i, 0]
            index = batch[i, 1]
            if ke[K_CHILD_CNT] == 1 and ke[K_INITIALIZED] != 0 and ke[K_SECS_EPC] >= 0:
                # the SECS's eviction is decided before the page's D (KB_SECS at P_D);
                # served, a Python task between two steps may remove a child meanwhile
                # (REMOVE_PAGES' EREMOVE, a trim's) while this page's EWB runs, making it
                # the last child's: ksgxd's generator goes on from here, encl->lock held
                # (``sgx_reclaim_write_back(..., ewbed=(RC_RET, RC_VA, RC_SLOT))``, from the
                # child count's drop). Never on the core: no task there removes a child.
                return _rstop(st, ks, t, r, pc, KB_SECS, page)
            if ft_full(ks):
                return _rsvc(rw, P_STORED)
            # encl->epc_page = NULL whatever EWB returned; the VA reference on success
            clear_epc_page(ks, ke, index, rw[RC_RET], rw[RC_VID], rw[RC_SLOT])
            ke[K_CHILD_CNT] -= 1
            res = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if res != R_OK:
                return _rblocked(rw, P_D_UNLOCKED, res)
            pc = P_D_UNLOCKED
        if pc == P_D_UNLOCKED:
            i = rw[RC_I]
            page = batch[i, 0]
            # kref_put: the last reference runs sgx_encl_release (Python: ksgxd's generator
            # from here). Checked here, not before the page's D: served by SimPy, Python
            # tasks run between the machine's steps and may put the enclave's own
            # references meanwhile (the process closing it)
            if ke[K_REFCOUNT] == 1:
                return _rstop(st, ks, t, r, pc, KB_RELEASE, page)
            ke[K_REFCOUNT] -= 1
            ks.epc_flags[page] &= _NOT_TRACKED_CLEAR
            if free_page(
                ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, ks.owner_encl,
                np.int64(ks.free_row[page]), page,
            ) != 0:  # fmt: skip
                return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, page)
            kc[K_NR_FREE] += 1
            ft_record(ks, st.clk[C_NOW])
            if st.clk[C_FL_PARKED] > 0:
                page_freed(st)  # ``sgx_free_epc_page``'s hook (fast/flood.py)
            rw[RC_I] = i + 1
            pc = P_D
            continue
        return _rstop(st, ks, t, r, pc, KB_UNEXPECTED, -1)


__all__ = ["reclaim_run"]
