"""The enclave thread's ``access_stream`` and fault path as a compiled state machine
(PATHS.md T0-T7; the fault's rows T3-T7 are ``vma_fault.py``'s).

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
  before it (``KB_WAKE``): ``vma_fault.py``'s docstring.

Three loops share the machine (``tc[TC_MODE]``): ``access_stream`` (T0-T7), the EACCEPT
loop (E0-E4, session ``eacc``) and MODIFY_TYPES' page loop (M1-M4, session ``mtrim2``: its
own rows are ``trim.py``'s ``trim_rows``, called here; it shares T4-T5's ELDU).

The pc numbering is ``thread_pc.py`` and the stop at a hooked loop top ``hook_stop.py``
(split out by session ``tidy``, 2026-11-26, for the modules that read them without running
the machine). The fault path's rows T3-T7 are ``vma_fault.py``'s ``fault_rows``, and the
stacked rows' view ``tstate.thread_row`` (split out by session ``nthreads2``, 2026-11-27,
when this file passed 670 lines; no step changed). ``thread_row`` and ``fault_rows`` are
``inline="always"`` (the fault path: as a call, ``fault_rows`` made row 1 ~10% slower,
session ``ccomp``); ``trim_rows`` is compiled on its own, called from here with one
signature (inlined it made this one function of ~1,450 statements, whose cold compile
numba's inlining and SSA passes made superlinear; ``trim.py``). What
stays here is the loops: T0-T2 (the entry, the resident run, the fault's entry), E1-E4 and
the stream's end; the E rows are the next to move out (as ``eaccept_rows``) if this file
grows again.

The blocks stand in step order and a step that completes falls through to the next
step's block (``pc = P_NEXT`` without ``continue``; every block is guarded by its ``pc``
test, which LLVM folds on that edge), as in ``reclaim.reclaim_run`` and ``vma_fault``'s
rows (session ``fault4``, 2026-11-27): a fault's steps from T0 to its unlock run without
the loop head's jump on ``pc``, an indirect jump the loop could not thread. ``continue``
stays on the backward edges (to T0) and inside a block whose rest must not run; T2's
block is guarded by ``pc == P_ACCESS`` so that a resident run falls past it.

The thread's stops (decisions 2026-11-26, session ``tstops``; what the user path does with
each is ``stream_stops.py``'s docstring, "The thread's stops"):

* Every stop in the middle of an iteration is at ``P_LOCKED``, under ``encl->lock``
  (``vma_fault.py``'s docstring).
* EENTER/ERESUME's checks are read at T0 before the leaf's run (``eldu.tcs_refused``): a
  failing entry stops at the loop top (``KB_ENTRY``). After the run the same checks can
  fail only (1) with the TCS's PTE zapped by ksgxd during the run (``enter()``'s retry:
  back to T0's TCS fault, ``vma_fault.tcs_fault``), or (2) with the implicit TCS, the SECS
  written back during it (the thread served after ``KB_SECS``: ``KB_TCS`` at the loop top,
  as ``enter()`` retries through ``_ensure_tcs``). Proof that nothing else can: the TCS's
  EPCM entry is EBLOCKed, written back or removed only after its PTE is zapped (phase C
  zaps before EBLOCK; EREMOVE/EMODT are ioctls, outside the regime), PENDING/MODIFIED come
  from ioctls too, the SECS leaves only through ``KB_SECS`` (or with every child, the
  explicit TCS included, whose PTE is then zapped), and ``initialized`` never goes back.
  ``KB_ENTRY`` at ``P_ENTER_RUN`` is therefore a defect guard.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.access import resident_run, young_again
from epcsim.fast.cosim.borrow import borrow, member, member_at, unborrow
from epcsim.fast.cosim.flood_park import park_begin, park_end, park_wait
from epcsim.fast.cosim.request import (
    RQ_EXIT,
    RQ_RUN,
    RQ_RUN_USER,
    perform,
)
from epcsim.fast.cosim.state import (
    C_FL_AEXF,
    C_FLOOD,
    C_HB,
    C_INTERRUPTS,
    C_MANY,
    C_NOW,
    C_SERVED,
    INTR_SERVED,
    R_BLOCKED,
    R_OK,
    R_STOP,
    T_CPU,
    T_FL_LEFT,
    T_FL_TCSFIRST,
    T_INTR,
    T_PC,
    T_RQ_RET,
    T_USER_T0,
)
from epcsim.fast.driver.eldu import enter_check, tcs_refused
from epcsim.fast.driver.encls import epcm_secs_is_mine
from epcsim.fast.driver.flood_rows import parkable, touch
from epcsim.fast.driver.hook_stop import hook_stop
from epcsim.fast.driver.ksgxd import R_SVC, _blocked, _stop
from epcsim.fast.driver.kstate import (
    K_EPOCH,
    K_INITIALIZED,
    K_INSIDE,
    K_SECS_EPC,
    K_SVC,
    K_TRACKING,
    KB_EAUG,
    KB_ENTRY,
    KB_LEAF,
    KB_PARK,
    KB_PF,
    KB_SIGBUS,
    KB_TCS,
    KB_TOP,
    KB_UNEXPECTED,
    SVC_LAT_FULL,
)
from epcsim.fast.driver.resched import thread_resched
from epcsim.fast.driver.thread_pc import (
    P_ACCESS,
    P_DONE,
    P_EEXIT_RUN,
    P_END,
    P_ENTER_RUN,
    P_ERESCHED,
    P_FAULT_RUN,
    P_FRESCHED,
    P_LEAF_RUN,
    P_NEXT,
    P_PARK,
    P_PARK_LAT,
    P_TOP,
    P_UINTR,
    P_URESCHED,
    P_USER_RUN,
)
from epcsim.fast.driver.trim import P_DIRECT, trim_rows
from epcsim.fast.driver.tstate import (
    MODE_EACCEPT,
    MODE_STREAM,
    MODE_TRIM,
    TC_ACCESS_NS,
    TC_CHUNK_MAX,
    TC_DONE,
    TC_EACCEPT_NS,
    TC_EENTER_NS,
    TC_EEXIT_NS,
    TC_ENTERED,
    TC_EPP,
    TC_ERESUME_NS,
    TC_ESLOT,
    TC_FAULT_NS,
    TC_FINISHED,
    TC_HOOK,
    TC_I,
    TC_IDX,
    TC_K,
    TC_K2,
    TC_LAT_N,
    TC_MODE,
    TC_N,
    TC_NOTE_N,
    TC_NOTE_STEP,
    TC_SECINFO,
    TC_SGX2,
    TC_T0,
    TC_TCS,
    TC_TCS_RETRY,
    TN_ACCESSES,
    TN_EACCEPT,
    TN_EBUSY,
    TN_FAULTS,
    TN_RETRIES,
    thread_row,
)
from epcsim.fast.driver.vma_fault import fault_rows, is_fault_pc, tcs_fault
from epcsim.fast.eaccept import EACCEPT_CLEARS, eaccept_word_ok
from epcsim.kernel.encl_page import (
    ENCL_PAGE_PRESENT,
    ENCL_PAGE_PTE_PRESENT,
    ENCL_PAGE_PTE_YOUNG,
    PROT_VMA_SHIFT,
)
from epcsim.kernel.epc import OWNER_SHIFT


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
    ke = ks.ke
    tcnt = ts.tcnt
    pages = ts.pages
    pc = st.tasks[t, T_PC]
    while True:
        # -- M: the MODIFY_TYPES loop's rows (``trim.py``; T4-T5 below are shared) -----------
        if tc[TC_MODE] >= MODE_TRIM and (pc == P_TOP or pc >= P_DIRECT):
            if pc == P_TOP and tc[TC_HOOK] != 0 and hook_stop(st, ks, ts):
                return _stop(st, ks, t, P_TOP, KB_TOP, -1)
            pc, r = trim_rows(st, ks, sp, kq, t, pc, p)
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
                pc = P_ACCESS  # falls through P_ENTER_RUN's test
            else:
                # _tcs_ready: the TCS mapped, or with the implicit TCS (-1) the SECS resident
                # (not: the TCS fault, ``vma_fault.tcs_fault``, or its hand-back ``KB_TCS``)
                tcs = tc[TC_TCS]
                if (tcs >= 0 and not ks.pflags[tcs] & ENCL_PAGE_PTE_PRESENT) or (
                    tcs < 0 and ke[K_SECS_EPC] < 0
                ):
                    pc, r = tcs_fault(st, ks, ts, sp, t)
                    if r >= 0:
                        return r
                    continue
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
        if pc == P_ENTER_RUN:
            tcs = tc[TC_TCS]
            if tcs >= 0:
                ret = enter_check(ks, ks.desc[tcs])
            else:  # the implicit TCS (SgxCpu.eenter): the SECS resident and initialized
                ret = 0 if ke[K_SECS_EPC] >= 0 and ke[K_INITIALIZED] != 0 else 1
            if ret != 0:
                if tcs >= 0 and not ks.pflags[tcs] & ENCL_PAGE_PTE_PRESENT:
                    # ksgxd zapped the TCS during the step: ``enter()``'s retry, the TCS
                    # fault (T0's check: ``tcs_fault``; the user path too since session
                    # ``tcsuser``, under the parked flood since ``floodq``)
                    pc = P_TOP
                    continue
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
                pc = P_USER_RUN  # falls through: T2 below is guarded, then P_USER_RUN's block
            else:
                vma = ts.prot[idx] >> PROT_VMA_SHIFT
                if not vma & 1 or (ts.writes[i] and not vma & 2):
                    return _stop(st, ks, t, P_ACCESS, KB_PF, idx)  # access_error()
            if pc == P_ACCESS:
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
                tc[TC_TCS_RETRY] = 0  # an access's fault (its retries park as one)
                tc[TC_T0] = st.clk[C_NOW]
                r = perform(sp, t, np.int64(RQ_RUN), tc[TC_FAULT_NS])
                if r != R_OK:
                    return _blocked(st, t, P_FAULT_RUN, r)
                pc = P_FAULT_RUN
        if pc == P_USER_RUN and st.tasks[t, T_INTR] == INTR_SERVED:
            # served, ``run_user`` cut short by a preemption (``C_MANY``; SimPy did its
            # ``_schedule``, the switch-out AEX by the thread's hook): the accesses of the
            # time run (``T_RQ_RET``), then the loop's ``cond_resched`` as below
            st.tasks[t, T_INTR] = 0
            tc[TC_K2] = st.tasks[t, T_RQ_RET] // tc[TC_ACCESS_NS]
            tc[TC_K] = tc[TC_K2]
            pc = P_UINTR
        if pc == P_USER_RUN and st.tasks[t, T_INTR] != 0:
            # the step cut short by a wake-up preemption (``C_MANY``: more tasks than
            # CPUs; ``dispatch.next_resume`` charged the time run): ``run_user``'s
            # ``_schedule`` - the switch-out AEX as the thread leaves its CPU - and once it
            # runs again the accesses of the time run (``ran // access``), no #PF
            st.tasks[t, T_INTR] = 0
            tc[TC_K2] = (st.clk[C_NOW] - st.tasks[t, T_USER_T0]) // tc[TC_ACCESS_NS]
            tc[TC_K] = tc[TC_K2]
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return _blocked(st, t, P_UINTR, r)
            pc = P_UINTR
            continue
        if pc in (P_USER_RUN, P_UINTR):
            clk = st.clk
            if pc == P_USER_RUN and clk[C_INTERRUPTS] != 0 and clk[C_SERVED] + clk[C_MANY] == 0:
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
            pc = P_TOP  # P_URESCHED's block, done here
            continue
        if pc in (P_URESCHED, P_FRESCHED):
            if (
                pc == P_FRESCHED
                and st.clk[C_FLOOD] != 0
                and tc[TC_MODE] == MODE_STREAM
                and parkable(st, ks, tc, t)
            ):
                # ``_fault_or_park``: the retry failed for want of a free EPC page and the
                # next ones would fail alike: the thread parks (``fast/flood.py``); the TCS
                # fault's retries (``eresume=False``) have no ERESUME in their cycle
                if st.clk[C_SERVED] != 0:
                    # served by SimPy (the user path after a stop: Python tasks run between
                    # its steps, and the flood's parks are ``NopageFlood``'s there): the
                    # park is Python's, ``EnclaveThread.parks`` (session ``uflood``)
                    return _stop(st, ks, t, P_FRESCHED, KB_PARK, tc[TC_IDX])
                ens = 0 if tc[TC_TCS_RETRY] != 0 else tc[TC_ERESUME_NS]
                park_begin(st, t, es, tc[TC_IDX], tc[TC_TCS], ens)
                return _blocked(st, t, P_PARK, R_STOP if st.clk[C_HB] != 0 else R_BLOCKED)
            pc = P_TOP
            continue
        # -- T7': a parked NOPAGE retrier (``fast/flood.py``, ``cosim/flood_park.py``) -------
        if pc == P_PARK:
            if not park_wait(st, t):
                return _blocked(st, t, P_PARK, R_STOP if st.clk[C_HB] != 0 else R_BLOCKED)
            if st.tasks[t, T_FL_TCSFIRST] != 0:
                # the cycle's ERESUME found the TCS zapped and blocked (``_tcs_zapped``'s
                # ``tcs_first``): the decision's fault is the TCS's - not restated (never
                # met: PATHS.md, session ``floodq``), handed back before the decision
                return _stop(st, ks, t, P_PARK, KB_TCS, tc[TC_TCS])
            touch(st, ks, t, st.clk[C_NOW])
            n = park_end(st, t)
            tcnt[TN_FAULTS] += n
            tcnt[TN_EBUSY] += n
            tcnt[TN_RETRIES] += n
            st.tasks[t, T_FL_LEFT] = n
            pc = P_PARK_LAT
            continue
        if pc == P_PARK_LAT:
            # the skipped retries' latencies (``_count``), then ``_fault(charged=True)``
            left = st.tasks[t, T_FL_LEFT]
            lat = ts.lat
            while left > 0:
                n = tcl[TC_LAT_N]
                if n >= lat.size:
                    st.tasks[t, T_FL_LEFT] = left
                    ks.kc[K_SVC] = SVC_LAT_FULL
                    st.tasks[t, T_PC] = P_PARK_LAT
                    return R_SVC
                k = min(left, lat.size - n)
                lat[n : n + k] = st.clk[C_FL_AEXF]
                tcl[TC_LAT_N] = n + k
                left -= k
            st.tasks[t, T_FL_LEFT] = 0
            tc[TC_T0] = st.clk[C_NOW] - tc[TC_FAULT_NS]
            pc = P_FAULT_RUN
            continue
        # -- T3-T7: sgx_vma_fault, ELDU, the map or -EBUSY, the unlock (``vma_fault.py``) ----
        if is_fault_pc(pc):
            pc, r = fault_rows(st, ks, ts, sp, kq, t, pc, tcl)
            if r >= 0:
                return r
            continue  # P_FRESCHED's block (its flood park check) or the ioctl loops' rows
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
        if pc == P_EEXIT_RUN:
            # hw.eexit: leaves as an AEX does (nothing if an IPI AEXed it meanwhile)
            _aex(ks, st.tasks[t, T_CPU])
            tc[TC_ENTERED] = 0
            pc = P_NEXT
        if pc == P_NEXT:
            # the loop's cond_resched(), then i += 1
            r = thread_resched(sp, kq, t, tc[TC_ENTERED], es)
            if r != R_OK:
                return _blocked(st, t, P_ERESCHED, r)
            pc = P_ERESCHED
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
