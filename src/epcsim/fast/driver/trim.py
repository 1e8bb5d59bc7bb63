"""The MODIFY_TYPES loop's own rows (PATHS.md M1-M4), compiled into the thread's machine.

``kernel/ioctl_sgx2._page_loop`` of MODIFY_TYPES(TRIM) runs on the enclave thread's
machine (``thread.thread_run``) in ``tstate.MODE_TRIM`` (decision of session ``mtrim``,
PATHS.md "The MODIFY_TYPES loop", item 1; built by session ``mtrim2``): the ioctl's task is
the enclave thread's, and M2's ELDU is the fault's rows T4-T5 (``P_LOCKED`` to
``P_TRUNCATED``), which the mode shares, branching where the loop differs from a fault
(after the truncation to M3, at -EBUSY to the -EAGAIN stop). This module holds the rest,
``trim_rows``, called by ``thread_run`` (one machine; ``trim_rows`` compiled on its own, once,
not inlined: session ``ccomp``, below), so a reader finds the M rows in one place:

M1 the page top: ``sgx_reclaim_direct`` (the batch is ``reclaim.reclaim_run``'s row 1, the
   thread's pc ``P_DIRECT`` meanwhile), then ``encl->lock``;
M2 ``run(ioctl_page)``, then ``_load``'s and ``per_page``'s decisions all at once, before
   anything is applied (``_trim_takes`` and EMODT's outcome; a page the core does not take
   stops there, ``KB_PAGE``, where ``ioctl_sgx2._page_locked`` goes on): resident and
   BEING_RECLAIMED -> -EAGAIN (``CAUSE_BEING_RECLAIMED``), resident -> M3, evicted -> T4;
M3 ``run(emodt)``, EMODT (``fast/emodt.emodt_apply``), ``run(etrack)``, ETRACK
   (``encls.etrack``), no IPI, ``encl.type[index]``;
M4 the unlock, the page counted and noted (``OpRecord.note``'s points in ``ts.notes``; an
   ``on_pages`` mark is left to Python at the next page top), back to M1;
-EAGAIN: the unlock, then a stop at the page top with ``TC_MRET`` and ``TC_CAUSE``
   (M5 is Python's), or - the runtime's retry allowed (``retry.call_again``) - M5 and the
   next call's M0 on the core (``retry.retry_rows``, session ``eagain``).

REMOVE_PAGES' loop (``tstate.MODE_REMOVE``, session ``ioctlcore``) shares these rows but
``per_page``: at M2 its decisions are ``remove.remove_takes``/``remove_word_ok`` and its
page goes on in ``remove.remove_rows`` (R3-R5), back to M4's unlock here.

The order of every step is ``kernel/ioctl_sgx2.py``'s (``_page_loop``, ``_load``,
``sgx_ioc_enclave_modify_types``' ``per_page``, ``sgx_enclave_etrack``) and
``kernel/reclaim.py``'s ``sgx_reclaim_direct``; a change there changes this file.

Why ``trim_rows`` is not inlined into ``thread_run`` (session ``ccomp``, 2026-11-27): the
thread's machine was one function of ~1,450 statements once numba had inlined every
``inline="always"`` callee, and numba's untyped inlining pass and its SSA reconstruction
grow faster than the function (``benchmarks/cold_compile.py`` with numba's ``run_pass``
events: 15 s and 7 s of ``thread_run``'s 46 s). Compiled on its own (one caller, one
signature: the borrowed ``CoState``/``KState``, the thread's ``TState`` row, ints), the
ioctl loops' ~540 statements no longer enlarge the fault path's function; one call a step
of the loop, which row 1 (faults) never takes. ``vma_fault.fault_rows`` stays inlined: as a
call (its ``TState`` row by value) row 1 was ~10% slower. PATHS.md, "The machines' cold
compile (2026-11-27, session ccomp)".
"""

from __future__ import annotations

import errno

import numpy as np
from numba import njit

from epcsim.arch import PageType
from epcsim.fast.cosim.borrow import member, unborrow
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN, RQ_UNLOCK, perform
from epcsim.fast.cosim.state import C_NOW, R_OK, T_CPU, T_PC
from epcsim.fast.driver.add import NAMES as ADD_NAMES
from epcsim.fast.driver.add import P_ADD_FIRST, add_rows
from epcsim.fast.driver.encls import etrack
from epcsim.fast.driver.ksgxd import _blocked, _stop, should_reclaim
from epcsim.fast.driver.kstate import (
    K_CPUMASK,
    K_EPOCH,
    K_INSIDE,
    K_SECS_EPC,
    K_TRACKING,
    KB_PAGE,
    KB_TOP,
    KB_UNEXPECTED,
    RC_NK,
    RC_PC,
)
from epcsim.fast.driver.reclaim import reclaim_run
from epcsim.fast.driver.reclaim_pc import P_A as RECLAIM_START
from epcsim.fast.driver.reclaim_pc import R_RETURNED, RECLAIM_DIRECT
from epcsim.fast.driver.remove import NAMES as REMOVE_NAMES
from epcsim.fast.driver.remove import (
    P_REBUSY_UNLOCKED,
    P_REMODPR,
    remove_rows,
    remove_takes,
    remove_word_ok,
)
from epcsim.fast.driver.retry import LATE_NAMES as RETRY_LATE_NAMES
from epcsim.fast.driver.retry import NAMES as RETRY_NAMES
from epcsim.fast.driver.retry import P_MRESCHED, P_MSYSCALL_RUN, call_again, retry_rows
from epcsim.fast.driver.tstate import (
    CAUSE_BEING_RECLAIMED,
    MODE_ADD,
    MODE_REMOVE,
    TC_CAUSE,
    TC_DIRECT,
    TC_DONE,
    TC_EMODT_NS,
    TC_ESLOT,
    TC_ETRACK_NS,
    TC_I,
    TC_IDX,
    TC_IOCTL_NS,
    TC_LOW,
    TC_MARKS,
    TC_MODE,
    TC_MRET,
    TC_N,
    TC_NEW_TYPE,
    TC_NOTE_N,
    TC_NOTE_STEP,
    TN_DIRECT_CALLS,
    TN_DIRECT_PAGES,
    TN_EMODT,
    thread_row,
)
from epcsim.fast.emodt import emodt_apply, emodt_word_ok
from epcsim.kernel.encl_page import (
    ENCL_PAGE_BEING_RECLAIMED,
    ENCL_PAGE_PRESENT,
    ENCL_PAGE_TYPE_SHIFT,
)

# the thread machine's pcs these rows meet (``thread.py`` checks they are its own)
P_TOP = 0
P_LOCKED = 5
# -- the MODIFY_TYPES loop's pcs (thread.py's P_NAMES names them) --------------------------
P_DIRECT = 19  #: M1: ``sgx_reclaim_direct``'s batch under way (``reclaim_run``, row 1)
P_MLOCK = 20  #: M1: take ``encl->lock``
P_MLOCKED = 21  #: M2: ``encl->lock`` taken: ``run(ioctl_page)``
P_IOCTL_RUN = 22  #: M2: ``run(ioctl_page)`` is over: ``_load``'s decisions
P_MEMODT = 23  #: M3: the page resident: ``run(emodt)``
P_EMODT_RUN = 24  #: M3: ``run(emodt)`` is over: EMODT, then ``run(etrack)``
P_MTRACK_RUN = 25  #: M3: ``run(etrack)`` is over: ETRACK, ``send_ipi`` (none), the type
P_MUNLOCKED = 26  #: M4: unlocked after the page: ``c += 4096``, the progress
P_MEAGAIN = 27  #: M2: -EAGAIN: unlock
P_MEAGAIN_UNLOCKED = 28  #: M2: unlocked after -EAGAIN: stop at the page top

#: the names of the pcs from ``P_DIRECT`` on (``thread_pc.P_NAMES``): M's, R's, the retry's
PER_PAGE_NAMES = (
    "direct", "mlock", "mlocked", "ioctl", "memodt", "emodt", "metrack", "munlocked",
    "eagain", "eagain unlocked", *REMOVE_NAMES, *RETRY_NAMES, *ADD_NAMES, *RETRY_LATE_NAMES,
)  # fmt: skip
assert P_ADD_FIRST == P_MSYSCALL_RUN + 1  # the pcs' order: M's, R's, the retry's, A's
assert P_ADD_FIRST + len(ADD_NAMES) == P_MRESCHED  # ... then the retry's late pc
#: ``reclaim_run``'s row as an ``int64`` (``ksgxd._ROW_KSGXD`` says why: one compile of A-D)
_ROW_DIRECT = np.int64(RECLAIM_DIRECT)
_PT_REG = int(PageType.REG)
_PT_TCS = int(PageType.TCS)
_PT_TRIM = int(PageType.TRIM)
_EAGAIN = -errno.EAGAIN
_TYPE_CLEAR = 0xFF ^ (7 << ENCL_PAGE_TYPE_SHIFT)


@njit(cache=True, nogil=True, inline="always")
def _trim_takes(st, ks, ts, t, idx, f):
    """Whether the core runs MODIFY_TYPES' page ``idx`` (pflags ``f``) from ``_load`` on:
    present (else -EFAULT), a transition ``per_page`` allows (REG -> TRIM/TCS, TCS ->
    TRIM; else -EINVAL), the SECS resident, and ``sgx_enclave_etrack`` sure to succeed with
    no IPI: no LP inside, the last epoch's tracking set empty, no other CPU in the
    enclave's cpumask than the caller's (PATHS.md M3: the regime makes these hold; each is
    a stop, never a different result)."""
    if not f & ENCL_PAGE_PRESENT:
        return False
    tc = ts.tc
    old = (f >> ENCL_PAGE_TYPE_SHIFT) & 7  # SgxEncl.type: bits of the page's flags
    new = tc[TC_NEW_TYPE]
    if not (old == _PT_REG or (old == _PT_TCS and new == _PT_TRIM)):
        return False
    if new != _PT_TRIM:  # REG -> TCS zaps and unmarks (per_page's other rows): Python
        return False
    ke = ks.ke
    if ke[K_SECS_EPC] < 0 or ke[K_INSIDE] != 0 or ke[K_TRACKING] != 0:
        return False
    cpu = st.tasks[t, T_CPU]
    return cpu >= 0 and (ke[K_CPUMASK] & ~(1 << cpu)) == 0


@njit(cache=True, nogil=True, inline="always")
def ioctl_word_ok(tc, word):
    """The loop's ``per_page`` outcome from the page's EPCM word (resident, or the one ELDU
    will write): MODIFY_TYPES' EMODT (``emodt_word_ok``), or REMOVE_PAGES' probe and
    EREMOVE (``remove.remove_word_ok``)."""
    if tc[TC_MODE] == MODE_REMOVE:
        return remove_word_ok(word)
    return emodt_word_ok(word, tc[TC_NEW_TYPE])


@njit(cache=True, nogil=True, inline="always")
def per_page_pc(tc):
    """Where the loop goes with its page loaded: M3 (EMODT) or R3 (the EMODPR probe)."""
    return P_REMODPR if tc[TC_MODE] == MODE_REMOVE else P_MEMODT


@njit(cache=True, nogil=True)
def trim_rows(st, ks, sp, kq, t, pc, p):
    """Rows M1-M4 from ``pc`` (``P_TOP`` or an M pc) until the task parks, stops or needs a
    service - ``(pc, r)``: ``thread_run`` returns ``r`` - or goes on in the shared rows -
    ``(P_LOCKED, -1)``: ``thread_run`` goes on at T4 (module docstring). ``p`` is
    ``thread_run``'s borrowed tuple, for ADD_PAGES' rows (``add.add_rows``, not inlined),
    and the thread's ``TState`` row is taken from it here, as ``thread_run`` takes it: passed
    by value, its 8 arrays made each call ~60 words of arguments (row 3's trim ~10% slower
    than inlined; the lead, 2026-11-28)."""
    ts = thread_row(unborrow(member(p, 2)), t)
    ke = ks.ke
    tc = ts.tc
    tcnt = ts.tcnt
    pages = ts.pages
    while True:
        if pc == P_MRESCHED:  # the retry's cond_resched() (retry.py), after A's pcs
            return retry_rows(st, kq, ts, sp, t, pc)
        if pc >= P_ADD_FIRST:  # ADD_PAGES' rows (add.py), A1 to A4
            return add_rows(p, t, pc)
        if pc > P_REBUSY_UNLOCKED:  # the runtime's next call after -EAGAIN (retry.py)
            return retry_rows(st, kq, ts, sp, t, pc)
        if pc >= P_REMODPR:  # REMOVE_PAGES' per_page (remove.py), then M4's unlock
            pc, r = remove_rows(st, ks, ts, sp, t, pc)
            if r >= 0:
                return pc, r
            r = perform(sp, t, np.int64(RQ_UNLOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_MUNLOCKED, r)
            pc = P_MUNLOCKED
            continue
        if pc == P_TOP:  # thread_run checked the hook's stops (``hook_stop``) first
            if tc[TC_I] >= tc[TC_N]:  # the range's end (hook_stop stops there first)
                return pc, _stop(st, ks, t, P_TOP, KB_TOP, -1)
            if tc[TC_MODE] == MODE_ADD:  # ADD_PAGES' page top (add.py's A0)
                return add_rows(p, t, pc)
            # sgx_reclaim_direct: one batch if free < LOW, without encl->lock
            if tc[TC_DIRECT] != 0 and should_reclaim(ks, tc[TC_LOW]):
                tcnt[TN_DIRECT_CALLS] += 1
                ks.rc[RECLAIM_DIRECT, RC_PC] = RECLAIM_START
                pc = P_DIRECT
                continue
            pc = P_MLOCK
            continue
        if pc == P_DIRECT:
            r = reclaim_run(sp, kq, t, _ROW_DIRECT)
            if r != R_RETURNED:  # the batch's pc is its row's: the thread's stays here
                st.tasks[t, T_PC] = P_DIRECT
                return pc, r
            tcnt[TN_DIRECT_PAGES] += ks.rc[RECLAIM_DIRECT, RC_NK]
            pc = P_MLOCK
            continue
        if pc == P_MLOCK:
            r = perform(sp, t, np.int64(RQ_LOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_MLOCKED, r)
            pc = P_MLOCKED
            continue
        if pc == P_MLOCKED:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_IOCTL_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_IOCTL_RUN, r)
            pc = P_IOCTL_RUN
            continue
        if pc == P_IOCTL_RUN:
            # _load and per_page's decisions, all before anything is applied: a page
            # the core does not take stops here, under the lock, where Python's
            # page_locked runs the reference's page (PATHS.md, "What is left")
            idx = pages[tc[TC_I]]
            tc[TC_IDX] = idx
            f = ks.pflags[idx]
            if tc[TC_MODE] == MODE_REMOVE:
                takes = remove_takes(ks, f)
            else:
                takes = _trim_takes(st, ks, ts, t, idx, f)
            if not takes:
                return pc, _stop(st, ks, t, P_IOCTL_RUN, KB_PAGE, idx)
            page = ks.desc[idx]
            if page >= 0:
                if f & ENCL_PAGE_BEING_RECLAIMED:  # __sgx_encl_load_page: -EBUSY
                    tc[TC_CAUSE] = CAUSE_BEING_RECLAIMED
                    pc = P_MEAGAIN
                    continue
                if not ioctl_word_ok(tc, np.int64(ks.eflags[page])):
                    return pc, _stop(st, ks, t, P_IOCTL_RUN, KB_PAGE, idx)
                pc = per_page_pc(tc)
                continue
            return P_LOCKED, -1  # T4-T5 (thread_run): sgx_encl_eldu, no reclaim
        if pc == P_MEMODT:
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_EMODT_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_EMODT_RUN, r)
            pc = P_EMODT_RUN
            continue
        if pc == P_EMODT_RUN:
            tcnt[TN_EMODT] += 1
            emodt_apply(ks.eflags, ks.bepoch, ks.desc[tc[TC_IDX]], tc[TC_NEW_TYPE], ke[K_EPOCH])
            r = perform(sp, t, np.int64(RQ_RUN), tc[TC_ETRACK_NS])
            if r != R_OK:
                return pc, _blocked(st, t, P_MTRACK_RUN, r)
            pc = P_MTRACK_RUN
            continue
        if pc == P_MTRACK_RUN:
            if etrack(ks) != 0:  # PREV_TRK_INCMPL: excluded at P_IOCTL_RUN (a guard)
                return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, tc[TC_IDX])
            # send_ipi: no other CPU in the mask (checked at P_IOCTL_RUN), no LP inside
            idx = tc[TC_IDX]  # encl.type[index] = new_type (its flags' type bits)
            ks.pflags[idx] = (ks.pflags[idx] & _TYPE_CLEAR) | (
                tc[TC_NEW_TYPE] << ENCL_PAGE_TYPE_SHIFT
            )
            r = perform(sp, t, np.int64(RQ_UNLOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_MUNLOCKED, r)
            pc = P_MUNLOCKED
            continue
        if pc == P_MUNLOCKED:
            done = tc[TC_I] + 1  # progress(encl, c): OpRecord.note's points
            if tc[TC_MARKS] != 0 and done % 256 == 0:
                pass  # on_pages' mark: the loop stops at the next page top, Python calls it
            elif done % tc[TC_NOTE_STEP] == 0 or done == tc[TC_N]:
                n = tc[TC_NOTE_N]
                ts.notes[n, 0] = st.clk[C_NOW]
                ts.notes[n, 1] = done
                tc[TC_NOTE_N] = n + 1
            tc[TC_I] = done
            tc[TC_DONE] += 1
            return P_TOP, -1  # the next page top: thread_run checks the hook's stops there
        if pc == P_MEAGAIN:
            tc[TC_MRET] = _EAGAIN
            r = perform(sp, t, np.int64(RQ_UNLOCK), tc[TC_ESLOT])
            if r != R_OK:
                return pc, _blocked(st, t, P_MEAGAIN_UNLOCKED, r)
            pc = P_MEAGAIN_UNLOCKED
            continue
        if pc == P_MEAGAIN_UNLOCKED:  # the call returns -EAGAIN
            if call_again(ts):  # the runtime's M5 and next call on the core (retry.py)
                return retry_rows(st, kq, ts, sp, t, pc)
            return pc, _stop(st, ks, t, P_TOP, KB_TOP, -1)  # Python's M5
        return pc, _stop(st, ks, t, pc, KB_UNEXPECTED, -1)


__all__ = ["ioctl_word_ok", "per_page_pc", "trim_rows"]
