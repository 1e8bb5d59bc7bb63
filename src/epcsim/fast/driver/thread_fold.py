"""The enclave thread's side of a fold: ``KState``'s and ``TState``'s small arrays back into
the Python objects after the thread's machine ran (the kernel's via ``bridge.fold_kernel``,
and the thread's: counters, fault latencies, ``entered``, the LP's state).

Why a module of its own: three callers fold the thread, each with its own engine part -
``thread_bridge``'s ``_fold`` at a driver call's end, ``core_stream.py`` at each stop of
the user path's hook, ``stream_ksgxd.py``'s session after each step SimPy serves - so the
fold is not the driver call's (split from ``thread_bridge.py`` by session ``tidy`` when it
passed 500 lines; no code changed but ``_flush_latencies``' public name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Task
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import fold_kernel
from epcsim.user.thread import EnclaveThread

if TYPE_CHECKING:
    from epcsim.system import System


def flush_latencies(system: System, ts: Any) -> None:
    """The thread's fault latencies of the call so far into the histogram, in order."""
    n = int(ts.tc[T.TC_LAT_N])
    hist = system.sgx.fault_latency_ns
    hist.extend(ts.lat[:n])  # append each, in order (one batch: ~1.4 us a fault less)
    ts.tc[T.TC_LAT_N] = 0


def fold_thread(system: System, thread: Task, encl: Any, secs: Any, ks: Any, ts: Any) -> None:
    """``KState``'s and ``TState``'s small arrays back into the Python objects (the kernel's
    and the thread's: counters, latencies, ``entered``, the LP's state); the engine's (the
    core's rows) are the caller's. Folding twice is folding once (as ``fold_kernel``).
    A plain ``Task`` on the thread row (the ioctl's task, ``CoreStream.plain``) has no
    ``entered`` and no LP state to fold: it never enters, its machine (``MODE_TRIM``)
    never runs an entry or an exit, so ``K_INSIDE`` stays the 0 ``CoreStream._ready``
    required (no LP inside) and the LPs are as Python left them."""
    sgx = system.sgx
    fold_kernel(system, encl, secs, ks)
    tc = ts.tc
    stats = sgx.stats
    for name, v in zip(T.TCOUNTERS, ts.tcnt.tolist(), strict=True):
        setattr(stats, name, getattr(stats, name) + v)
    # folded as deltas, zeroed: the thread served after KB_SECS folds after every served
    # step (``stream_ksgxd.Session.step``), its call's part already folded at the stop
    ts.tcnt[:] = 0
    flush_latencies(system, ts)
    encl.page_cnt -= int(tc[T.TC_REMOVED])  # REMOVE_PAGES' shrink, as deltas too
    tc[T.TC_REMOVED] = 0
    encl.page_cnt += int(tc[T.TC_ADDED])  # ADD_PAGES' grow
    tc[T.TC_PAGE_CNT] += int(tc[T.TC_ADDED])
    tc[T.TC_ADDED] = 0
    if not isinstance(thread, EnclaveThread):
        if ks.ke[K.K_INSIDE]:  # a defect guard: nothing on the core enters for it
            raise RuntimeError("fast_core: an LP inside the enclave for the ioctl's task")
        return
    thread.entered = bool(tc[T.TC_ENTERED])
    # the thread's LP: SecsState.inside/busy_tcs/tracking, SgxCpu.lp_eid/lp_tcs
    hw = system.cpu
    for lp in range(len(hw.lp_eid)):
        hw.lp_eid[lp] = -1
        hw.lp_tcs[lp] = -1
    secs.inside = set()
    secs.busy_tcs = set()
    if ks.ke[K.K_INSIDE] and thread.cpu is not None:
        # the implicit TCS (tcs_index -1) stands for no page: no busy TCS, lp_tcs -1
        tcs_epc = int(encl.epc[thread.tcs_index]) if thread.tcs_index >= 0 else -1
        secs.inside = {thread.cpu}
        secs.busy_tcs = {tcs_epc} if tcs_epc >= 0 else set()
        hw.lp_eid[thread.cpu] = secs.eid
        hw.lp_tcs[thread.cpu] = tcs_epc
        if ks.ke[K.K_TRACKING]:
            secs.tracking = {thread.cpu}
