"""The enclave thread's ``access_stream`` and fault path as a compiled state machine
(PATHS.md T0-T7).

``thread_resume(st, ks, ts, t)`` runs task ``t`` (the enclave thread) from its pc until an
engine request blocks it (``R_BLOCKED``), the core or the driver hands back (``R_STOP``), or
Python must serve a request first (``R_SVC``), as ``ksgxd.ksgxd_resume`` does for ksgxd:
one pc per point of the table, a step's effect applied when the task is resumed after its
``run`` (a pc named ``*_RUN`` means "the run is over, apply it"). Every engine action is a
request through ``cosim.request.perform`` and ends its pc (what follows it is the next
pc's), so the same machine can be served by SimPy one request at a time (``cosim/served``,
PATHS.md "The hand-back's mechanism"): ``R_BLOCKED`` from any request means "resumed at the
saved pc once it is done"; the answer of ``RQ_WAKE`` is read from ``T_RQ_RET``.

The order of every step is ``user/thread.py``'s ``access_stream``/``enter``/``_fault``,
``kernel/fault.py``'s ``sgx_vma_fault``, ``kernel/encl.py``'s ``load_page``/``eldu`` and
``kernel/main.py``'s ``alloc_epc_page``; a change there changes this file in the same
commit (DESIGN.md, "Where a new kernel feature goes"). The stream is the one
``Enclave.access_pages`` runs (``System._call``): its process starts with the call, and
when the stream is over the thread leaves its CPU (an AEX, as ``on_switch_out`` does) and
its process ends. What the regime excludes is a hand-back (``kstate.KB_*``), decided
before the step that would need it.

Decisions (2026-11-26, issue 9 session ``tdriver``):

* ``sgx_vma_fault``'s SIGBUS and EAUG decisions (no page entry, ``vm_max_prot_bits``) read
  arrays nothing in the regime changes (no ioctl runs), so they are taken before the AEX
  (``KB_SIGBUS``, ``KB_EAUG``), not under the lock as the reference takes them: the state
  handed back is then the loop top's, where the Python generator can resume.
* A stream that ends with a #PF to the runtime (the VMA or the EPCM refuses an access)
  hands back (``KB_PF``) with ``tc[TC_I]`` at the refused access: ``_pf_code`` asks the
  CPU model in Python.
* With the thread alone (``tc[TC_ALONE]``), an allocation that would wake ksgxd hands back
  before the allocation (``KB_WAKE``, the lock held): the call's end, or the entry of row
  1's regime. With ksgxd on the core it wakes it as ``wake_ksgxd`` does.

Three loops share the machine (``tc[TC_MODE]``): ``access_stream`` (T0-T7), the EACCEPT
loop (E0-E4, session ``eacc``) and MODIFY_TYPES' page loop (M1-M4, session ``mtrim2``: its
own rows are ``trim.py``'s ``trim_rows``, inlined here; it shares T4-T5's ELDU).

The pc numbering is ``thread_pc.py`` and the stop at a hooked loop top ``hook_stop.py``
(split out by session ``tidy``, 2026-11-26, for the modules that read them without running
the machine). This file stays past ~500 lines on purpose: ``thread_run`` is one compiled
function of ~330 lines, a branch per pc, and splitting its rows into helpers (as
``trim_rows`` is) would change the machine's compiled code and its inline choices, which a
split by concept must not; the next change to T0-T7 or E1-E4 that touches the rows anyway
is the time to move the E rows out as ``trim_rows`` is.

The thread's stops (decisions 2026-11-26, session ``tstops``; what the user path does with
each is ``stream_stops.py``'s docstring, "The thread's stops"):

* Every stop in the middle of an iteration is at ``P_LOCKED``, under ``encl->lock``,
  before anything of the fault's rest is applied - the SECS to load, -ENOMEM, and an
  ELDU that would fail: ``sgx_encl_eldu``'s record and ELDU's checks (``eldu_check``)
  are read there, before the allocation (the free list's head is the page it will take;
  no time passes and the thread holds the lock, so nothing changes them), then
  ``P_ALLOC`` allocates. The Python fault path goes on from exactly there.
* EENTER/ERESUME's checks are read at T0 before the leaf's run (``eldu.tcs_refused``):
  a failing entry stops at the loop top (``KB_ENTRY``). After the run the same checks
  can fail only (1) with the TCS's PTE zapped by ksgxd during the run (``KB_TCS`` at the
  loop top, ``enter()``'s retry), or (2) with the implicit TCS, the SECS written back
  during it (the thread served after ``KB_SECS``: ``KB_TCS`` at the loop top, as
  ``enter()`` retries through ``_ensure_tcs``). Proof that nothing else can: the TCS's
  EPCM entry is EBLOCKed, written back or removed only after its PTE is zapped (phase C
  zaps before EBLOCK; EREMOVE/EMODT are ioctls, outside the regime), PENDING/MODIFIED
  come from ioctls too, the SECS leaves only through ``KB_SECS`` (or with every child,
  the explicit TCS included, whose PTE is then zapped), and ``initialized`` never goes
  back. ``KB_ENTRY`` at ``P_ENTER_RUN`` is therefore a defect guard.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.access import resident_run, young_again
from epcsim.fast.cosim.borrow import borrow, member, member_at, unborrow
from epcsim.fast.cosim.request import (
    RQ_EXIT,
    RQ_LOCK,
    RQ_RUN,
    RQ_RUN_USER,
    RQ_UNLOCK,
    RQ_WAKE,
    perform,
)
from epcsim.fast.cosim.state import (
    C_INTERRUPTS,
    C_NOW,
    C_SERVED,
    R_BLOCKED,
    R_OK,
    T_CPU,
    T_PC,
    T_RQ_RET,
)
from epcsim.fast.driver import trim
from epcsim.fast.driver.eldu import RAW, eldu_check, eldu_commit, enter_check, tcs_refused
from epcsim.fast.driver.encls import epcm_secs_is_mine
from epcsim.fast.driver.hook_stop import hook_stop
from epcsim.fast.driver.ksgxd import R_SVC, _blocked, _stop
from epcsim.fast.driver.kstate import (
    CN_WAKEUPS,
    K_CHILD_CNT,
    K_ENCL_ID,
    K_EPOCH,
    K_FT_N,
    K_INITIALIZED,
    K_INSIDE,
    K_LRU_ROW,
    K_NR_FREE,
    K_NR_RECORDS,
    K_SECS_EPC,
    K_SLEEPING,
    K_SVC,
    K_SVC_ARG,
    K_TRACKING,
    K_VA_ROW,
    KB_EAUG,
    KB_ELDU,
    KB_ENOMEM,
    KB_ENTRY,
    KB_LEAF,
    KB_PAGE,
    KB_PF,
    KB_SECS_LOAD,
    KB_SIGBUS,
    KB_TCS,
    KB_TOP,
    KB_UNEXPECTED,
    KB_WAKE,
    SVC_FT_FULL,
    SVC_LAT_FULL,
    SVC_TRUNCATE,
    SVC_UNSEAL,
)
from epcsim.fast.driver.resched import thread_resched
from epcsim.fast.driver.thread_pc import (
    P_ACCESS,
    P_ALLOC,
    P_ALLOCATED,
    P_DONE,
    P_EBUSY,
    P_EEXIT_RUN,
    P_ELDU_RUN,
    P_END,
    P_ENTER_RUN,
    P_ERESCHED,
    P_FAULT_RUN,
    P_FRESCHED,
    P_LEAF_RUN,
    P_LOCKED,
    P_MAP,
    P_NEXT,
    P_TOP,
    P_TRUNCATED,
    P_UNLOCKED,
    P_URESCHED,
    P_USER_RUN,
    P_WOKEN,
)
from epcsim.fast.driver.trim import P_DIRECT, P_MEAGAIN, per_page_pc, trim_rows
from epcsim.fast.driver.tstate import (
    CAUSE_NO_FREE_PAGE,
    MODE_EACCEPT,
    MODE_TRIM,
    N_TC,
    TC_ACCESS_NS,
    TC_ALONE,
    TC_BUSY,
    TC_CAUSE,
    TC_CHUNK_MAX,
    TC_DONE,
    TC_EACCEPT_NS,
    TC_EENTER_NS,
    TC_EEXIT_NS,
    TC_ELDU_NS,
    TC_ENTERED,
    TC_EPP,
    TC_ERESUME_NS,
    TC_ESLOT,
    TC_FAULT_NS,
    TC_FINISHED,
    TC_FLAGS,
    TC_FREE_ROW,
    TC_HOOK,
    TC_I,
    TC_IDX,
    TC_K,
    TC_K2,
    TC_LAT_N,
    TC_LOW,
    TC_MODE,
    TC_N,
    TC_NOTE_N,
    TC_NOTE_STEP,
    TC_OFF,
    TC_PAGE,
    TC_RET,
    TC_SECINFO,
    TC_SGX2,
    TC_SLOT,
    TC_T0,
    TC_TCS,
    TC_VID,
    TCOUNTERS,
    TN_ACCESSES,
    TN_EACCEPT,
    TN_EBUSY,
    TN_ELDU,
    TN_FAULTS,
    TN_RETRIES,
    TState,
)
from epcsim.fast.eaccept import EACCEPT_CLEARS, eaccept_word_ok
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
from epcsim.kernel.epc import OWNER_SHIFT, SGX_EPC_PAGE_RECLAIMER_TRACKED
from epcsim.kernel.page_list import HEAD, LEN

_KSGXD_WAITQ = 0  #: the core's wait queue row of ``ksgxd_waitq``
_MAP_CLEAR = 0xFF ^ ENCL_PAGE_PTE_YOUNG


@njit(cache=True, nogil=True, inline="always")
def _aex(ks, lp):
    """``hw.aex(lp)``: the LP leaves the enclave (``inside``, ``busy_tcs``), and leaves the
    tracking set of the last ETRACK (``K_INSIDE``/``K_TRACKING`` are LP bit masks: PATHS.md
    N2, session ``nthreads``)."""
    bit = np.int64(1) << lp
    ks.ke[K_INSIDE] &= ~bit
    ks.ke[K_TRACKING] &= ~bit


@njit(cache=True, nogil=True, inline="always")
def _inside(ks, lp):
    """Whether ``lp`` is inside the enclave (its bit of ``K_INSIDE``; -1: no CPU, not)."""
    return lp >= 0 and (ks.ke[K_INSIDE] >> lp) & 1 != 0


@njit(cache=True, nogil=True, inline="always")
def thread_row(tsx, r):
    """Thread ``r``'s ``TState`` in the stacked one the machine takes (``tstate.stack``,
    PATHS.md N1): views of its ``tc``/``tcnt`` rows and its stream; ``prot``, the shared
    latency buffer and the loops' rows whole. One thread (``tc`` of ``N_TC``): the tuple
    itself, whatever the task row."""
    if tsx.tc.size == N_TC:
        return tsx
    a = r * N_TC
    tc = tsx.tc[a : a + N_TC]
    m = len(TCOUNTERS)
    off = tc[TC_OFF]
    b = off + tc[TC_N]
    return TState(
        tc, tsx.tcnt[r * m : (r + 1) * m], tsx.pages[off:b], tsx.writes[off:b], tsx.prot,
        tsx.lat, tsx.notes, tsx.calls,
    )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _eaccept(ks, tc, idx, page):
    """E1's leaf outcome (``EncluMixin.eaccept``, ``fast.eaccept.eaccept_word_ok``) for
    page ``idx`` at EPC ``page``: its owner and address are the enclave's and its index's
    (a page of ``desc`` in the regime; a page that is not stops all the same)."""
    if page < 0 or not epcm_secs_is_mine(ks, page):
        return False
    if (ks.owner_index[page] >> OWNER_SHIFT) != idx:
        return False
    ke = ks.ke
    return eaccept_word_ok(
        ks.eflags[page], ks.bepoch[page], ke[K_EPOCH], ke[K_TRACKING] != 0, tc[TC_SECINFO]
    )


@njit(cache=True, nogil=True, inline="always")
def _latency(st, ts, tcl):
    """The fault's latency into the latency buffer, whose count is ``tcl[TC_LAT_N]`` (row
    0's ``tc``: one buffer for every thread row, in the order the faults end)."""
    n = tcl[TC_LAT_N]
    ts.lat[n] = st.clk[C_NOW] - ts.tc[TC_T0]
    tcl[TC_LAT_N] = n + 1


@njit(cache=True, nogil=True)
def thread_resume(st, kt, ts, t):
    """Run the enclave thread (task ``t``) from its pc: returns R_BLOCKED, R_STOP or
    R_SVC (R_BLOCKED too once its process has ended: nothing resumes it). For a caller
    outside the core's loop; the loop borrows the tuples once and calls ``thread_run``."""
    return thread_run(borrow((st, kt, ts)), t)


@njit(cache=True, nogil=True)
def thread_run(p, t):
    """``thread_resume`` on the tuples ``p`` borrows (``cosim.borrow``: one pointer and no
    reference counting per call, PATHS.md "Per fault on the core")."""
    sp = member(p, 0)  # the CoState borrowed for the core's primitives (cosim.borrow)
    kq = member(p, 1)  # the slots' KStates (``kstate.N_SLOTS``), for ``reclaim_run`` (M1)
    # the CoState and KState kept borrowed, not unborrowed (session ``fault2``): a borrowed
    # named tuple loads each field where it is used. Unborrowed here, LLVM loaded and
    # spilled every field any row uses (~200 words, and ~90 stack slots zeroed) at each
    # entry, ~40% of this function's host time on row 2, though a resumption reads a few
    # of them. The TState (8 arrays) is unborrowed: ``thread_row`` builds a thread's row
    # of it as a tuple
    st = sp
    tsx = unborrow(member(p, 2))  # every thread row's (``tstate.stack``; one thread: its own)
    ts = thread_row(tsx, t)
    tcl = tsx.tc  # row 0's: the shared latency buffer's count
    tc = ts.tc
    # its own enclave's slot: its ``KState`` and its ``encl->lock`` (the core's mutex row)
    es = tc[TC_ESLOT]
    ks = member_at(kq, es)
    kc = ks.kc
    ke = ks.ke
    tcnt = ts.tcnt
    pages = ts.pages
    pc = st.tasks[t, T_PC]
    while True:
        # -- M: the MODIFY_TYPES loop's rows (``trim.py``; T4-T5 below are shared) -----------
        if tc[TC_MODE] >= MODE_TRIM and (pc == P_TOP or pc >= P_DIRECT):
            if pc == P_TOP and tc[TC_HOOK] != 0 and hook_stop(st, ks, ts):
                return _stop(st, ks, t, P_TOP, KB_TOP, -1)
            pc, r = trim_rows(st, ks, ts, sp, kq, t, pc, p)
            if r >= 0:
                return r
            continue
        # -- T0: enter() ---------------------------------------------------------------------
        if pc == P_TOP:
            if tc[TC_HOOK] != 0 and hook_stop(st, ks, ts):
                return _stop(st, ks, t, P_TOP, KB_TOP, -1)
            if tc[TC_I] >= tc[TC_N]:
                pc = P_END
                continue
            if st.tasks[t, T_CPU] < 0:  # enter(): acquire_cpu, as Task.run(0) does
                r = perform(sp, t, np.int64(RQ_RUN), np.int64(0))
                if r != R_OK:
                    return _blocked(st, t, P_TOP, r)
            if tc[TC_ENTERED] != 0 and _inside(ks, st.tasks[t, T_CPU]):
                pc = P_ACCESS
                continue
            # _tcs_ready: the TCS mapped, or with the implicit TCS (-1) the SECS resident
            if tc[TC_TCS] >= 0:
                if not ks.pflags[tc[TC_TCS]] & ENCL_PAGE_PTE_PRESENT:
                    return _stop(st, ks, t, P_TOP, KB_TCS, tc[TC_TCS])
            elif ke[K_SECS_EPC] < 0:
                return _stop(st, ks, t, P_TOP, KB_TCS, -1)
            # EENTER/ERESUME's own checks, before the run: a leaf that would fail stops
            # here, at the loop top, where ``enter()`` takes it (decision 2026-11-26,
            # module docstring: P_ENTER_RUN's failure is then only the TCS's zap)
            if tcs_refused(ks, tc[TC_TCS]):
                return _stop(st, ks, t, P_TOP, KB_ENTRY, tc[TC_TCS])
            ns = tc[TC_ERESUME_NS] if tc[TC_ENTERED] != 0 else tc[TC_EENTER_NS]
            r = perform(sp, t, np.int64(RQ_RUN), ns)
            if r != R_OK:
                return _blocked(st, t, P_ENTER_RUN, r)
            pc = P_ENTER_RUN
            continue
        if pc == P_ENTER_RUN:
            tcs = tc[TC_TCS]
            if tcs >= 0:
                ret = enter_check(ks, ks.desc[tcs])
            else:  # the implicit TCS (SgxCpu.eenter): the SECS resident and initialized
                ret = 0 if ke[K_SECS_EPC] >= 0 and ke[K_INITIALIZED] != 0 else 1
            if ret != 0:
                if tcs >= 0 and not ks.pflags[tcs] & ENCL_PAGE_PTE_PRESENT:
                    # ksgxd zapped the TCS during the step: the loop's TCS fault
                    return _stop(st, ks, t, P_TOP, KB_TCS, tcs)
                if tcs < 0 and ke[K_SECS_EPC] < 0:
                    # the implicit TCS, the SECS written back during the step (the thread
                    # served after ksgxd's KB_SECS): ``enter()`` retries through
                    # ``_ensure_tcs``, as from the loop top
                    return _stop(st, ks, t, P_TOP, KB_TCS, -1)
                # not reachable (module docstring, "The thread's stops"): a defect guard
                return _stop(st, ks, t, P_ENTER_RUN, KB_ENTRY, tcs)
            ke[K_INSIDE] |= np.int64(1) << st.tasks[t, T_CPU]
            tc[TC_ENTERED] = 1
            if tcs >= 0:
                ks.pflags[tcs] |= ENCL_PAGE_PTE_YOUNG  # _tcs_accessed
            pc = P_ACCESS
            continue
        # -- T1: a resident run, T2: a fault ----------------------------------------------------
        if pc == P_ACCESS:
            i = tc[TC_I]
            idx = pages[i]
            f = ks.pflags[idx]
            if tc[TC_MODE] == MODE_EACCEPT:
                # -- E1: enclu_on_page, inside: the page mapped runs the leaf, else faults
                if f & ENCL_PAGE_PTE_PRESENT:
                    page = ks.desc[idx]
                    if not _eaccept(ks, tc, idx, page):
                        # the leaf would fail (or a page the regime does not know): the
                        # thread inside, where Python's enclu_on_page runs it (enter() is
                        # then nothing); nothing of the page applied
                        return _stop(st, ks, t, P_ACCESS, KB_LEAF, idx)
                    ks.eflags[page] &= ~EACCEPT_CLEARS
                    tcnt[TN_EACCEPT] += 1
                    r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EACCEPT_NS])
                    if r != R_OK:
                        return _blocked(st, t, P_LEAF_RUN, r)
                    pc = P_LEAF_RUN
                    continue
                # enclu_on_page faults with ``_fault`` (below): no access_error() check first
            elif f & ENCL_PAGE_PTE_PRESENT:
                j = min(tc[TC_N], i + tc[TC_CHUNK_MAX])
                k, k2 = resident_run(
                    pages[i:j], ts.writes[i:j], ks.pflags, ks.desc, ts.prot, ks.eflags,
                    ks.etag, np.bool_(True),
                )  # fmt: skip
                if k2 == 0:  # the EPCM refuses the first access: the stream ends
                    return _stop(st, ks, t, P_ACCESS, KB_PF, idx)
                tc[TC_K] = k
                tc[TC_K2] = k2
                r = perform(sp, t, np.int64(RQ_RUN_USER), k2 * tc[TC_ACCESS_NS])
                if r != R_OK:
                    return _blocked(st, t, P_USER_RUN, r)
                pc = P_USER_RUN
                continue
            else:
                vma = ts.prot[idx] >> PROT_VMA_SHIFT
                if not vma & 1 or (ts.writes[i] and not vma & 2):
                    return _stop(st, ks, t, P_ACCESS, KB_PF, idx)  # access_error()
            # T2 (both loops): sgx_vma_fault's EAUG/SIGBUS decisions, taken before the AEX
            if not f & ENCL_PAGE_PRESENT:
                code = KB_EAUG if tc[TC_SGX2] != 0 else KB_SIGBUS
                return _stop(st, ks, t, P_ACCESS, code, idx)
            vma = ts.prot[idx] >> PROT_VMA_SHIFT
            if (ts.prot[idx] & 7 & vma) != vma:
                return _stop(st, ks, t, P_ACCESS, KB_SIGBUS, idx)
            # _fault: AEX, #PF into the kernel
            if tc[TC_ENTERED] != 0 and _inside(ks, st.tasks[t, T_CPU]):
                _aex(ks, st.tasks[t, T_CPU])
            tc[TC_IDX] = idx
            tc[TC_T0] = st.clk[C_NOW]
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_FAULT_NS])
            if r != R_OK:
                return _blocked(st, t, P_FAULT_RUN, r)
            pc = P_FAULT_RUN
            continue
        if pc == P_USER_RUN:
            if st.clk[C_INTERRUPTS] != 0 and st.clk[C_SERVED] == 0:
                # a user step cut short by a wake-up preemption: not reached with the
                # thread and ksgxd alone (resched.py's docstring); a defect guard
                return _stop(st, ks, t, P_USER_RUN, KB_UNEXPECTED, -1)
            i = tc[TC_I]
            k2 = tc[TC_K2]
            tcnt[TN_ACCESSES] += k2
            young_again(pages[i : i + k2], ks.pflags)
            tc[TC_I] = i + k2
            tc[TC_DONE] += k2
            if k2 < tc[TC_K]:  # the EPCM refuses pages[i + k2]: the stream ends
                return _stop(st, ks, t, P_ACCESS, KB_PF, pages[i + k2])
            # the loop's cond_resched()
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return _blocked(st, t, P_URESCHED, r)
            pc = P_URESCHED
            continue
        if pc in (P_URESCHED, P_FRESCHED):
            pc = P_TOP
            continue
        # -- T3: sgx_vma_fault ----------------------------------------------------------------
        if pc == P_FAULT_RUN:
            tcnt[TN_FAULTS] += 1
            r = perform(sp, t, np.int64(RQ_LOCK), es)
            if r != R_OK:
                return _blocked(st, t, P_LOCKED, r)
            pc = P_LOCKED
            continue
        # -- T4: __sgx_encl_load_page, sgx_alloc_epc_page(reclaim=False) ----------------------
        if pc == P_LOCKED:
            idx = tc[TC_IDX]
            if ks.desc[idx] >= 0:  # resident: loaded meanwhile, or being reclaimed
                pc = P_EBUSY if ks.pflags[idx] & ENCL_PAGE_BEING_RECLAIMED else P_MAP
                continue
            if ke[K_SECS_EPC] < 0:
                return _stop(st, ks, t, P_LOCKED, KB_SECS_LOAD, idx)
            if kc[K_FT_N] >= ks.ft.shape[0]:
                kc[K_SVC] = SVC_FT_FULL
                st.tasks[t, T_PC] = P_LOCKED
                return R_SVC
            row = tc[TC_FREE_ROW]
            nfree = ks.epc_ends[row, LEN]
            lru = ks.epc_ends[kc[K_LRU_ROW], LEN]
            if nfree == 0 and lru == 0:
                return _stop(st, ks, t, P_LOCKED, KB_ENOMEM, idx)
            after = kc[K_NR_FREE] - (1 if nfree > 0 else 0)
            wake = after < tc[TC_LOW] and lru > 0  # sgx_should_reclaim(low) after it
            if wake and tc[TC_ALONE] != 0 and kc[K_SLEEPING] != 0:
                return _stop(st, ks, t, P_LOCKED, KB_WAKE, idx)
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
                    return R_SVC
                tc[TC_RET] = ret
            pc = P_ALLOC
            continue
        if pc == P_ALLOC:
            idx = tc[TC_IDX]
            if tc[TC_RET] != 0:
                return _stop(st, ks, t, P_LOCKED, KB_ELDU, idx)
            row = tc[TC_FREE_ROW]
            nfree = ks.epc_ends[row, LEN]
            if tc[TC_MODE] >= MODE_TRIM and nfree > 0:
                # per_page's outcome decided before the ELDU, on the word ELDU will write
                word = np.int64(eldu_word(tc[TC_FLAGS], (tc[TC_FLAGS] >> 8) & 0xFF, False))
                if not trim.ioctl_word_ok(tc, word):
                    return _stop(st, ks, t, P_LOCKED, KB_PAGE, idx)
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
            n = kc[K_FT_N]
            ks.ft[n, 0] = st.clk[C_NOW]
            ks.ft[n, 1] = kc[K_NR_FREE]
            kc[K_FT_N] = n + 1
            if not wake:
                pc = P_ALLOCATED if tc[TC_PAGE] >= 0 else P_EBUSY
                continue
            r = perform(sp, t, np.int64(RQ_WAKE), np.int64(_KSGXD_WAITQ))  # wake_ksgxd
            if r != R_OK:
                return _blocked(st, t, P_WOKEN, r)
            pc = P_WOKEN
            continue
        if pc == P_WOKEN:
            if st.tasks[t, T_RQ_RET] != 0:  # ksgxd was asleep on ksgxd_waitq
                kc[K_SLEEPING] = 0
                ks.cnt[CN_WAKEUPS] += 1
            pc = P_ALLOCATED if tc[TC_PAGE] >= 0 else P_EBUSY
            continue
        # -- T5: sgx_encl_eldu (the record checked at P_LOCKED) ------------------------------
        if pc == P_ALLOCATED:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_ELDU_NS])
            if r != R_OK:
                return _blocked(st, t, P_ELDU_RUN, r)
            pc = P_ELDU_RUN
            continue
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
                return R_SVC
            ke[K_NR_RECORDS] -= got
            pc = P_TRUNCATED
            continue
        if pc == P_TRUNCATED:
            idx = tc[TC_IDX]
            page = tc[TC_PAGE]
            va_free_slot(
                ks.va_used, ks.va_prev, ks.va_next, ks.va_ends, ke[K_VA_ROW], tc[TC_VID],
                tc[TC_SLOT], np.bool_(True),
            )  # fmt: skip
            ks.desc[idx] = page
            # load_page: secs_child_cnt, sgx_mark_page_reclaimable
            ke[K_CHILD_CNT] += 1
            ks.epc_flags[page] |= SGX_EPC_PAGE_RECLAIMER_TRACKED
            if lru_mark(ks.epc_prev, ks.epc_next, ks.epc_ends, ks.epc_flags, kc[K_LRU_ROW], page):
                return _stop(st, ks, t, P_TRUNCATED, KB_UNEXPECTED, page)
            pc = per_page_pc(tc) if tc[TC_MODE] >= MODE_TRIM else P_MAP  # M, R: no PTE
            continue
        # -- T6: map, unlock; T7: -EBUSY, unlock ------------------------------------------------
        if pc == P_EBUSY and tc[TC_MODE] >= MODE_TRIM:
            tc[TC_CAUSE] = CAUSE_NO_FREE_PAGE  # sgx_alloc_epc_page(reclaim=false): -EBUSY
            pc = P_MEAGAIN
            continue
        if pc in (P_MAP, P_EBUSY):
            if tcl[TC_LAT_N] >= ts.lat.size:
                kc[K_SVC] = SVC_LAT_FULL
                st.tasks[t, T_PC] = pc
                return R_SVC
            idx = tc[TC_IDX]
            if pc == P_MAP:
                ks.pflags[idx] = (ks.pflags[idx] | ENCL_PAGE_PTE_PRESENT) & _MAP_CLEAR
            else:
                tcnt[TN_RETRIES] += 1
            r = perform(sp, t, np.int64(RQ_UNLOCK), es)
            if r != R_OK:
                return _blocked(st, t, P_UNLOCKED, r)
            pc = P_UNLOCKED
            continue
        if pc == P_UNLOCKED:
            _latency(st, ts, tcl)  # _fault, after sgx_vma_fault returned
            # _fault_return's cond_resched()
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return _blocked(st, t, P_FRESCHED, r)
            pc = P_FRESCHED
            continue
        # -- E2-E4: the EACCEPT loop's page after its leaf --------------------------------------
        if pc == P_LEAF_RUN:
            done = tc[TC_I] + 1
            if done % tc[TC_NOTE_STEP] == 0 or done == tc[TC_N]:  # OpRecord.note
                n = tc[TC_NOTE_N]
                ts.notes[n, 0] = st.clk[C_NOW]
                ts.notes[n, 1] = done
                tc[TC_NOTE_N] = n + 1
            if tc[TC_EPP] == 0:
                pc = P_NEXT
                continue
            if tc[TC_ENTERED] == 0 or not _inside(ks, st.tasks[t, T_CPU]):  # leave(): AEXed
                tc[TC_ENTERED] = 0
                pc = P_NEXT
                continue
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EEXIT_NS])
            if r != R_OK:
                return _blocked(st, t, P_EEXIT_RUN, r)
            pc = P_EEXIT_RUN
            continue
        if pc == P_EEXIT_RUN:
            # hw.eexit: leaves as an AEX does (nothing if an IPI AEXed it meanwhile)
            _aex(ks, st.tasks[t, T_CPU])
            tc[TC_ENTERED] = 0
            pc = P_NEXT
            continue
        if pc == P_NEXT:
            # the loop's cond_resched(), then i += 1
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return _blocked(st, t, P_ERESCHED, r)
            pc = P_ERESCHED
            continue
        if pc == P_ERESCHED:
            tc[TC_I] += 1
            tc[TC_DONE] += 1
            pc = P_TOP
            continue
        # -- the end of the stream: System._call's release_cpu, the process's end -------------
        if pc == P_END:
            if tc[TC_ENTERED] != 0 and _inside(ks, st.tasks[t, T_CPU]):
                _aex(ks, st.tasks[t, T_CPU])  # on_switch_out
            tc[TC_FINISHED] = 1
            st.tasks[t, T_PC] = P_DONE
            perform(sp, t, np.int64(RQ_EXIT), np.int64(0))
            return R_BLOCKED
        if pc == P_DONE:
            return R_BLOCKED
        return _stop(st, ks, t, pc, KB_UNEXPECTED, -1)


__all__ = ["thread_resume", "thread_run"]
