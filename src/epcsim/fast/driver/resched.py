"""The machines' preemption points: ``cond_resched()`` as an ``RQ_RESCHED`` request, and the
enclave thread's ``on_switch_out`` (PATHS.md "One CPU: the thread and ksgxd sharing it",
S2-S3, item 1 of its list; session ``onecpu2``).

Until session ``onecpu2`` the machines skipped every ``cond_resched()`` as "nothing in the
regime": each runnable task had its own CPU, so nobody waited for one, need_resched stayed
clear and the call did nothing. On one CPU (the thread and ksgxd sharing it) the call is
where a task gives its CPU to the other (``Task.cond_resched``, ``engine/machine.py``): so
each of the reference's calls on the machines' paths is a request of its own, followed by a
pc of its own (the request may block: the task then waits in the run queue, and the core
resumes it at that pc once picked, ``dispatch.cont_after_pick``):

=====================  ========================================================  ==========
machine                the reference's ``cond_resched()``                        pc after it
=====================  ========================================================  ==========
thread (T1)            ``access_stream`` after a resident run's user step        P_URESCHED
thread (T6/T7)         ``_fault_return``: the return to user after the fault     P_FRESCHED
thread (E4)            ``eaccept_range`` after the page                          P_ERESCHED
thread (A0)            ``sgx_ioc_enclave_add_pages``' page, before its add       P_ARESCHED
thread (A1)            ``sgx_alloc_epc_page`` after a direct reclaim batch       P_ADRESCHED
thread (M5)            ``sys_ioctl``'s return to user (the runtime's retry)      P_MRESCHED
ksgxd (K0)             ``Sgx._ksgxd``'s loop tail (after a batch, or none)       P_KRESCHED
=====================  ========================================================  ==========

The SGX2 page loop (M1-M4, R3-R5) has none of its own: ``_page_loop`` calls none, and
``sgx_reclaim_direct`` returns after its batch. Every ``mutex_lock``'s might_sleep is the
core's own (``cosim/mutex.lock``, session ``onecpu``).

With two CPUs a request changes nothing: nobody waits for a CPU, so ``cond_resched`` finds
need_resched clear and answers ``R_OK`` at once, no event, no time (every differential test
passes unchanged). Served by SimPy (``perform`` records it, ``R_BLOCKED``), it costs one
served step more where it is met (ksgxd's: one per batch).

*Why a stop at a loop top after the request is still exact*: where the machine stops at a
loop top whose Python generator calls ``cond_resched()`` once more before going on (ksgxd's
``KB_TOP`` at K0's top: ``Sgx._ksgxd(moved=...)``'s tail after ``rest``; ADD_PAGES' page
top re-checked at ``P_ARESCHED``), that second call is a no-op: it runs at the instant the
first one returned, with need_resched clear (``_leave_cpu`` clears it, a kept CPU clears it)
and a slice that starts then (``tick_resched``: the tick is not after the slice's start;
FIFO: no time of the slice used), or, if the first found nothing to do, on the same state.

*``on_switch_out``* (``EnclaveThread._switch_out``): the thread that gives its CPU up
inside the enclave takes an AEX (``switch_out``: its LP's bit of ``K_INSIDE`` and of the
tracking set), at the
instant it leaves the CPU - before the task the run queue picks runs (its event is due
after this request returns). On the core the machine does it when the request left the
thread without a CPU (``thread_resched``); served by SimPy the thread's own hook does it
(the small arrays are folded into the Python objects between two served steps). The other
place a task leaves its CPU for the queue, a user step interrupted by a wake-up preemption
(``EV_INTR``, ``dispatch.next_resume``), is not reached by the machines: only the thread
wakes ksgxd (T4, A1: in kernel mode), so with the thread and ksgxd alone ksgxd's wake-up
never finds the thread in a user step (PATHS.md "One CPU", S1). The thread guards it at
``P_USER_RUN`` (a step that ran less than it asked: ``KB_UNEXPECTED``).

ksgxd's ``send_ipi`` with the thread off its CPU needs nothing new: the mask has the
thread's CPU only while it holds one (``reclaim.py``'s ``P_EWB2_RUN``), and an LP left by a
switch-out is outside already.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.cosim.borrow import member_at
from epcsim.fast.cosim.request import RQ_RESCHED, perform
from epcsim.fast.cosim.state import C_SERVED, T_CPU, T_LAST_CPU
from epcsim.fast.driver.kstate import K_INSIDE, K_TRACKING

_RQ_RESCHED = np.int64(RQ_RESCHED)
_ZERO = np.int64(0)


@njit(cache=True, nogil=True, inline="always")
def switch_out(ks, entered, lp):
    """``EnclaveThread._switch_out`` of the thread that left ``lp`` (``entered``: its
    ``TC_ENTERED``): losing the CPU inside the enclave is an AEX (``hw.aex(lp)``: ``lp``'s
    bit of ``K_INSIDE`` and ``K_TRACKING``, LP bit masks since session ``nthreads``)."""
    bit = np.int64(1) << lp
    if entered != 0 and lp >= 0 and ks.ke[K_INSIDE] & bit != 0:
        ks.ke[K_INSIDE] &= ~bit
        ks.ke[K_TRACKING] &= ~bit


@njit(cache=True, nogil=True)
def thread_resched(sp, kq, t, entered, es):
    """The thread's ``cond_resched()``: the request, and ``on_switch_out`` if it left the
    thread without its CPU on the core (waiting in the run queue: ``R_BLOCKED``; or the
    heap full after the yield: ``R_STOP``). Returns the request's answer. ``entered`` and
    ``es`` are the thread's ``TC_ENTERED`` and ``TC_ESLOT`` (its enclave's slot in ``kq``).
    On the machine's borrowed ``CoState`` (``sp``) and slots, and scalars: one compile for
    every caller (``thread_run``, ``add_rows``, the retry's rows), and not inlined -
    inlined at its six sites it made the ``run_pair`` path's cold compile ~25% longer
    (``BENCHMARKS.md`` ``onecpu2``)."""
    r = perform(sp, t, _RQ_RESCHED, _ZERO)
    if sp.clk[C_SERVED] == 0 and sp.tasks[t, T_CPU] < 0:
        switch_out(member_at(kq, es), entered, sp.tasks[t, T_LAST_CPU])  # the CPU it left
    return r


@njit(cache=True, nogil=True, inline="always")
def kernel_resched(sp, t):
    """A kernel thread's ``cond_resched()`` (ksgxd's: no switch-out hook)."""
    return perform(sp, t, _RQ_RESCHED, _ZERO)


__all__ = ["kernel_resched", "switch_out", "thread_resched"]
