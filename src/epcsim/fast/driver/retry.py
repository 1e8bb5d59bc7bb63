"""The runtime's -EAGAIN retry of MODIFY_TYPES(TRIM), compiled into the thread's machine
(PATHS.md "The runtime's retry on the core", issue 9 session ``eagain``).

Without direct reclaim, while ksgxd is awake, a MODIFY_TYPES call ends with -EAGAIN at
the first page whose ELDU finds no free EPC page, and ``workloads.edmm.drive_range`` calls
again from ``offset + count``: the demo's run makes 47,836 calls for 47,872 pages. Each
call going back to Python (a new ``CoreStream``, the session taken and folded, ksgxd
served by SimPy meanwhile) cost more than the page it trims, so these rows make the
runtime's next call on the core: after M4's unlock of an -EAGAIN page (``trim.py``'s
``P_MEAGAIN_UNLOCKED``), what the reference does between two calls, in its order:

M5 ``_page_loop`` returns (``out.ret``, ``out.count``: the row of ``ts.calls``),
   ``sgx_ioctl`` clears ``SGX_ENCL_IOCTL``; ``sys_ioctl``: **run(user_return)**, then
   ``deliver_signal`` (nothing: none pending, ``TC_RETRY``'s condition, and no task that
   could send one runs on the core) and ``cond_resched`` (a request, ``P_MRESCHED`` after
   it: ``resched.py``, session ``onecpu2``); back in ``drive_range``: the call counted,
   -EAGAIN and its instant (``OpRecord.eagain_at``: the row's instant), ``offset + count``;
M0 ``ioctl()``: ``leave()`` (nothing: the thread left the enclave before the first
   call), ``sys_ioctl``: **run(syscall)**, ``sgx_ioctl``'s test-and-set of
   ``SGX_ENCL_IOCTL`` (free: no other task runs an ioctl on the core), the argument
   checks (a sub-range of a range that passed them), then the new call's first page top
   (``trim.py``'s M1, through ``thread_run``'s hook stops).

The runtime's bookkeeping of each such call (``OpRecord.calls``, ``first_call_*``,
``eagain``, ``eagain_at``, ``on_call``) is done by Python from ``ts.calls`` when the
machine next stops (``drive_range``'s ``core_calls``), exactly as if each call had
returned there; a hook that reads the kernel's state at a call's return keeps that call
in Python (``TC_RETRY`` 0). The call that reaches ``drive_range``'s ``max_stalled`` (calls
in a row with ``count`` 0: ``TC_STALLED``, ``TC_MAX_STALLED``) is left to Python, whose
loop gives up there, and so is the last call its runaway guard allows (``TC_CALLS_LEFT``).
Calls with ``count`` 0 are most of them: while ksgxd writes a batch back the free pool
stays empty, and the runtime calls again and again (a 64-page EPC's 3x heap: 163 of 175
calls).
"""

from __future__ import annotations

import errno

import numpy as np
from numba import njit

from epcsim.fast.cosim.request import RQ_RUN, perform
from epcsim.fast.cosim.state import C_NOW, R_OK
from epcsim.fast.driver.ksgxd import _blocked
from epcsim.fast.driver.resched import thread_resched
from epcsim.fast.driver.tstate import (
    MODE_TRIM,
    TC_CALL_I0,
    TC_CALL_N,
    TC_CALLS_LEFT,
    TC_CAUSE,
    TC_ENTERED,
    TC_ESLOT,
    TC_I,
    TC_MAX_STALLED,
    TC_MODE,
    TC_MRET,
    TC_N,
    TC_RETRY,
    TC_STALLED,
    TC_SYSCALL_NS,
    TC_USER_RETURN_NS,
)

P_TOP = 0  #: the thread machine's page top (``thread_pc.P_TOP``)
P_MRETURN_RUN = 36  #: M5: ``run(user_return)`` is over: the call's row, ``run(syscall)``
P_MSYSCALL_RUN = 37  #: M0: ``run(syscall)`` is over: the next call's first page top
#: the names of the pcs from ``P_MRETURN_RUN`` on (``thread_pc.P_NAMES``)
NAMES = ("user return", "syscall")
#: M5: ``sys_ioctl``'s ``cond_resched()`` is over: the call's row, ``run(syscall)`` (session
#: ``onecpu2``; after ADD_PAGES' pcs, so the numbering of the others stays)
P_MRESCHED = 48
LATE_NAMES = ("mresched",)
_EAGAIN = -errno.EAGAIN


@njit(cache=True, nogil=True, inline="always")
def call_again(ts):
    """Whether the machine, the call's -EAGAIN page unlocked, ends the call and makes the
    runtime's next one itself (module docstring): retrying allowed for this call
    (``TC_RETRY``), MODIFY_TYPES' -EAGAIN, ``max_stalled`` not reached, the runaway
    guard allows another, and a row is free in ``calls``."""
    tc = ts.tc
    if tc[TC_MAX_STALLED] > 0 and _stalled(tc) >= tc[TC_MAX_STALLED]:
        return False
    return (
        tc[TC_RETRY] != 0
        and tc[TC_MODE] == MODE_TRIM
        and tc[TC_MRET] == _EAGAIN
        and tc[TC_I] < tc[TC_N]
        and tc[TC_CALLS_LEFT] > 0
        and tc[TC_CALL_N] < ts.calls.shape[0]
    )


@njit(cache=True, nogil=True, inline="always")
def _stalled(tc):
    """``drive_range``'s ``stalled`` after the current call (-EAGAIN): one more if its
    ``count`` is 0, else 0."""
    return tc[TC_STALLED] + 1 if tc[TC_I] == tc[TC_CALL_I0] else 0


@njit(cache=True, nogil=True, inline="always")
def retry_rows(st, kq, ts, sp, t, pc):
    """M5 and M0 from ``pc`` (``P_MEAGAIN_UNLOCKED`` with ``call_again``, or one of this
    module's pcs) until the task parks - ``(pc, r)``: ``thread_run`` returns ``r`` - or
    the next call is at its first page top - ``(P_TOP, -1)``."""
    tc = ts.tc
    if pc != P_MRETURN_RUN and pc != P_MSYSCALL_RUN and pc != P_MRESCHED:
        # the call's -EAGAIN, unlocked
        r = perform(sp, t, np.int64(RQ_RUN), tc[TC_USER_RETURN_NS])
        if r != R_OK:
            return pc, _blocked(st, t, P_MRETURN_RUN, r)
        pc = P_MRETURN_RUN
    if pc == P_MRETURN_RUN:
        # deliver_signal: nothing (module docstring); cond_resched: the request
        r = thread_resched(sp, kq, t, tc[TC_ENTERED], tc[TC_ESLOT])
        if r != R_OK:
            return pc, _blocked(st, t, P_MRESCHED, r)
        pc = P_MRESCHED
    if pc == P_MRESCHED:
        # drive_range's record, at the instant the call is back in the runtime
        n = tc[TC_CALL_N]
        ts.calls[n, 0] = tc[TC_I]
        ts.calls[n, 1] = st.clk[C_NOW]
        ts.calls[n, 2] = tc[TC_CAUSE]
        tc[TC_CALL_N] = n + 1
        tc[TC_CALLS_LEFT] -= 1
        tc[TC_STALLED] = _stalled(tc)
        tc[TC_MRET] = 0
        tc[TC_CAUSE] = 0
        r = perform(sp, t, np.int64(RQ_RUN), tc[TC_SYSCALL_NS])
        if r != R_OK:
            return pc, _blocked(st, t, P_MSYSCALL_RUN, r)
    tc[TC_CALL_I0] = tc[TC_I]  # the new call's count starts here
    return P_TOP, -1


__all__ = [
    "LATE_NAMES",
    "NAMES",
    "P_MRESCHED",
    "P_MRETURN_RUN",
    "P_MSYSCALL_RUN",
    "call_again",
    "retry_rows",
]
