"""ksgxd's loop and ``sgx_reclaim_pages`` as a compiled state machine (PATHS.md K0, A-D).

``ksgxd_resume(st, ks, t)`` runs task ``t`` (ksgxd) from its pc until a primitive of the
core blocks it (``R_BLOCKED``: the core resumes it at the same pc when its event is due),
the core or the driver hands back (``R_STOP``), or Python must serve a request first
(``R_SVC``: ``kc[K_SVC]``; the task stays at its pc and is resumed there by the next
call). Each pc is one point of PATHS.md's table: a step's effect is applied when the task
is resumed after the step's ``run`` (the engine's rule: charge first, apply after), so a
pc named ``*_RUN`` means "the run is over, apply it".

The batch itself (rows A-D) is ``reclaim.reclaim_run`` since 2026-11-26 (session
``mtrim2``, PATHS.md "The MODIFY_TYPES loop", decision item 2): one compiled copy that
``sgx_reclaim_direct`` runs too, with ksgxd's locals in its row 0 of ``ks.rc``/``ks.batch``.
This machine keeps K0 (the sleep, the wake-up, the watermark checks, ``ksgxd_batches`` and
``ksgxd_pages_reclaimed``, the loop tail's ``cond_resched()``: ``resched.py``) and, while a
batch runs, mirrors the batch's pc into its task pc
(the A-D pcs keep their numbers), so the Python side that continues a batch reads it
where it always did.

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

import numpy as np
from numba import njit

from epcsim.fast.cosim.borrow import borrow, member, member_at
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.request import RQ_RUN, RQ_SLEEP, perform
from epcsim.fast.cosim.state import R_BLOCKED, R_OK, R_STOP, T_PC
from epcsim.fast.driver.kstate import (
    CN_BATCHES,
    CN_PAGES,
    K_HB,
    K_HB_PAGE,
    K_HIGH,
    K_LRU_ROW,
    K_NR_FREE,
    K_SLEEPING,
    K_TOP_STOP,
    K_WAKEUP_NS,
    KB_TOP,
    RC_NK,
    RC_PC,
)
from epcsim.fast.driver.reclaim import reclaim_run
from epcsim.fast.driver.reclaim_pc import (
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
    RECLAIM_KSGXD,
)
from epcsim.fast.driver.resched import kernel_resched
from epcsim.kernel.page_list import LEN

#: ``R_*`` of the core, and one more: Python must serve ``kc[K_SVC]`` before the task goes on
R_SVC = 3

# -- the program counter (PATHS.md's rows) ----------------------------------------------------
P_TOP = 0  #: K0: the loop top
P_WAIT = 1  #: K0: ``wait_event``'s loop (asleep, or just woken: check the condition)
P_WAKEUP_RUN = 2  #: K0: ``run(wakeup)`` is over
# A-D's pcs are reclaim.py's (P_ISOLATED_RUN ... P_D_UNLOCKED, P_A), in the same numbering
P_CHECK = 20  #: K0: ``if sgx_should_reclaim(high)``, the batch's own check
#: K0: the loop tail's ``cond_resched()`` is over (``resched.py``, session ``onecpu2``)
P_KRESCHED = 26
P_NAMES = (
    "top", "wait", "wakeup", "isolated", "B", "age", "B locked", "backing", "C", "zap",
    "C locked", "eblock", "D", "D locked", "ewb1", "etrack", "ewb2", "ipi", "ewb3", "stored",
    "check", "ewb done", "B unlocked", "C unlocked", "D unlocked", "A", "resched",
)  # fmt: skip
assert P_NAMES.index("resched") == P_KRESCHED and P_KRESCHED > P_A

_KSGXD_WAITQ = 0  #: the core's wait queue row of ``ksgxd_waitq``
#: ``reclaim_run``'s row as an ``int64``, not a constant: numba types a constant argument
#: ``Literal[int](0)`` and compiles the callee once per literal, so ksgxd's 0 and the
#: direct reclaimer's 1 would be two compiles of A-D (measured: two signatures)
_ROW_KSGXD = np.int64(RECLAIM_KSGXD)


@njit(cache=True, nogil=True, inline="always")
def should_reclaim(ks, watermark):
    """``sgx_should_reclaim``: free pages below ``watermark`` and the LRU non-empty."""
    return ks.kc[K_NR_FREE] < watermark and ks.epc_ends[ks.kc[K_LRU_ROW], LEN] > 0


@njit(cache=True, nogil=True, inline="always")
def _stop(st, ks, t, pc, code, page):
    """The driver's own hand-back, before the step at ``pc`` that needs Python."""
    st.tasks[t, T_PC] = pc
    ks.kc[K_HB] = code
    ks.kc[K_HB_PAGE] = page
    return hand_back(st, 100 + code, t)


@njit(cache=True, nogil=True, inline="always")
def _blocked(st, t, pc, r):
    """Park the task at ``pc`` after a primitive that blocked or stopped it."""
    st.tasks[t, T_PC] = pc
    return r


@njit(cache=True, nogil=True)
def ksgxd_resume(st, kt, t):
    """Run ksgxd (task ``t``) from its pc: returns R_BLOCKED, R_STOP or R_SVC. For a
    caller outside the core's loop; the loop borrows the tuples once and calls
    ``ksgxd_run``."""
    return ksgxd_run(borrow((st, kt)), t)


@njit(cache=True, nogil=True)
def ksgxd_run(p, t):
    """``ksgxd_resume`` on the tuples ``p`` borrows (``cosim.borrow``: one pointer and no
    reference counting per call, PATHS.md "Per fault on the core")."""
    sp = member(p, 0)  # the CoState borrowed for the core's primitives (cosim.borrow)
    kq = member(p, 1)  # the slots' KStates (``kstate.N_SLOTS``), for ``reclaim_run``
    st = sp  # borrowed, not unborrowed: each field loaded where it is used (thread_run)
    ks = member_at(kq, np.int64(0))  # K0 reads global fields only: any slot
    kc = ks.kc
    cnt = ks.cnt
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
                return _blocked(
                    st, t, P_WAIT, perform(sp, t, np.int64(RQ_SLEEP), np.int64(_KSGXD_WAITQ))
                )
            kc[K_SLEEPING] = 0
            r = perform(sp, t, np.int64(RQ_RUN), kc[K_WAKEUP_NS])
            if r != R_OK:
                return _blocked(st, t, P_WAKEUP_RUN, r)
            pc = P_WAKEUP_RUN
            continue
        if pc in (P_WAKEUP_RUN, P_CHECK):
            if kc[K_TOP_STOP] != 0:  # served, outside the regime: its generator's check
                return _stop(st, ks, t, P_CHECK, KB_TOP, -1)
            if not should_reclaim(ks, kc[K_HIGH]):
                r = kernel_resched(sp, t)  # the loop tail's cond_resched(), no batch
                if r != R_OK:
                    return _blocked(st, t, P_KRESCHED, r)
                pc = P_TOP
                continue
            cnt[CN_BATCHES] += 1
            pc = P_A
            continue
        if pc == P_KRESCHED:
            pc = P_TOP
            continue
        # -- A-D: sgx_reclaim_pages, ksgxd as reclaimer row 0 (reclaim.py) ----------------
        ks.rc[RECLAIM_KSGXD, RC_PC] = pc
        r = reclaim_run(sp, kq, t, _ROW_KSGXD)
        pc = ks.rc[RECLAIM_KSGXD, RC_PC]
        if r != R_RETURNED:
            st.tasks[t, T_PC] = pc  # the task's pc mirrors the batch's (reclaim.py)
            return r
        cnt[CN_PAGES] += ks.rc[RECLAIM_KSGXD, RC_NK]
        # the batch returns; the loop tail's cond_resched() (a KB_TOP stop at the top
        # next: its generator's own tail calls it again, a no-op, resched.py)
        r = kernel_resched(sp, t)
        if r != R_OK:
            return _blocked(st, t, P_KRESCHED, r)
        pc = P_TOP


__all__ = ["P_NAMES", "R_SVC", "ksgxd_resume", "ksgxd_run", "should_reclaim"]
_ = (R_BLOCKED, R_STOP)
#: A-D's pcs, re-exported: the Python side names ksgxd's batch steps from this module
PHASE_PCS = (
    P_A, P_ISOLATED_RUN, P_B, P_AGE_RUN, P_B_LOCKED, P_BACKING_RUN, P_B_UNLOCKED, P_C,
    P_ZAP_RUN, P_C_LOCKED, P_EBLOCK_RUN, P_C_UNLOCKED, P_D, P_D_LOCKED, P_EWB1_RUN,
    P_ETRACK_RUN, P_EWB2_RUN, P_IPI_RUN, P_EWB3_RUN, P_EWB_DONE, P_STORED, P_D_UNLOCKED,
)  # fmt: skip
