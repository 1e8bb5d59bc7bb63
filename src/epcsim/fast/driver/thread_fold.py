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
    fold_threads(system, [thread], encl, secs, ks, [ts])


def fold_threads(
    system: System,
    threads: list[Task],
    encl: Any,
    secs: Any,
    ks: Any,
    rows: list[Any],
    stacked: Any = None,
) -> None:
    """``fold_thread`` of several threads on the core (PATHS.md N1, session ``nthreads``):
    thread ``threads[r]``'s row ``rows[r]`` (``tstate.stack``'s views; ``rows[0]`` holds
    the latency buffer they share, flushed once, in the order the faults ended), the
    kernel's arrays once, and every LP's state from ``K_INSIDE``'s bits: an LP is inside
    the enclave when its bit is set and a thread of ``threads`` holds it.

    ``stacked``: the machine's ``TState`` the rows are views of (``tstate.stack``), or
    None. Given, the rows' counters and page-count deltas are folded as whole columns
    (``fold_stacked``) instead of row by row - the same sums (session ``many64``: row 10's
    64 rows folded ~3 times a slice, ~200 us a fold row by row)."""
    fold_kernel(system, encl, secs, ks)
    if stacked is not None:
        fold_stacked(system, encl, stacked, len(rows))
    else:
        fold_rows(system, encl, rows)
    _fold_lps(system, threads, encl, secs, ks, rows, stacked)


def fold_rows(system: System, encl: Any, rows: list[Any]) -> None:
    """Each row's ``Counters`` deltas and page-count deltas into the Python objects, then
    zeroed, row by row (``fold_threads``)."""
    stats = system.sgx.stats
    for ts in rows:
        tc = ts.tc
        for name, v in zip(T.TCOUNTERS, ts.tcnt.tolist(), strict=True):
            if v:
                setattr(stats, name, getattr(stats, name) + v)
        # folded as deltas, zeroed: the thread served after KB_SECS folds after every
        # served step (``stream_ksgxd.Session.step``), its call's part already folded
        ts.tcnt[:] = 0
        encl.page_cnt -= int(tc[T.TC_REMOVED])  # REMOVE_PAGES' shrink, as deltas too
        tc[T.TC_REMOVED] = 0
        encl.page_cnt += int(tc[T.TC_ADDED])  # ADD_PAGES' grow
        tc[T.TC_PAGE_CNT] += int(tc[T.TC_ADDED])
        tc[T.TC_ADDED] = 0


def fold_stacked(system: System, encl: Any, tsx: Any, n: int) -> None:
    """``fold_rows`` of ``n`` stacked rows (``tstate.stack``: ``tsx.tc``/``tsx.tcnt`` the
    rows one after another) as whole columns: each counter's sum over the rows, the page
    count's deltas summed, ``TC_PAGE_CNT`` grown row by row in one operation, then the
    deltas zeroed. Integer sums: the same values ``fold_rows`` adds one row at a time."""
    stats = system.sgx.stats
    tcnt = tsx.tcnt.reshape(n, len(T.TCOUNTERS))
    for name, v in zip(T.TCOUNTERS, tcnt.sum(axis=0).tolist(), strict=True):
        if v:
            setattr(stats, name, getattr(stats, name) + v)
    tcnt[:] = 0
    tc = tsx.tc.reshape(n, T.N_TC)
    encl.page_cnt -= int(tc[:, T.TC_REMOVED].sum())
    tc[:, T.TC_REMOVED] = 0
    encl.page_cnt += int(tc[:, T.TC_ADDED].sum())
    tc[:, T.TC_PAGE_CNT] += tc[:, T.TC_ADDED]
    tc[:, T.TC_ADDED] = 0


def _fold_lps(
    system: System,
    threads: list[Task],
    encl: Any,
    secs: Any,
    ks: Any,
    rows: list[Any],
    stacked: Any,
) -> None:
    """The shared latency buffer, each thread's ``entered`` and every LP's state
    (``fold_threads``)."""
    flush_latencies(system, rows[0])
    inside = int(ks.ke[K.K_INSIDE])
    # a group's rows (``stacked``) are enclave threads by construction (``group_regime``
    # takes no plain task); each is asserted below
    if stacked is None and not all(isinstance(t, EnclaveThread) for t in threads):
        if inside:  # a defect guard: nothing on the core enters for it
            raise RuntimeError("fast_core: an LP inside the enclave for the ioctl's task")
        return
    # every LP of this enclave: SecsState.inside/busy_tcs, SgxCpu.lp_eid/lp_tcs (the
    # tracking set is ``fold_kernel``'s, from its mask). Only this enclave's LPs are its
    # threads' (the regime: no other LP inside it); another enclave's (a Python task's,
    # while the thread is served) are left (session ``twoencl3``: two enclaves on the core)
    hw = system.cpu
    for c in range(len(hw.lp_eid)):
        if hw.lp_eid[c] == secs.eid:
            hw.lp_eid[c] = -1
            hw.lp_tcs[c] = -1
    secs.inside = set()
    secs.busy_tcs = set()
    if stacked is not None:
        ent = stacked.tc.reshape(len(rows), T.N_TC)[:, T.TC_ENTERED].tolist()
    else:
        ent = [int(ts.tc[T.TC_ENTERED]) for ts in rows]
    for thread, e in zip(threads, ent, strict=True):
        assert isinstance(thread, EnclaveThread)
        thread.entered = bool(e)
        lp = thread.cpu
        if lp is None or not (inside >> lp) & 1:
            continue
        # the implicit TCS (tcs_index -1) stands for no page: no busy TCS, lp_tcs -1
        tcs_epc = int(encl.epc[thread.tcs_index]) if thread.tcs_index >= 0 else -1
        secs.inside.add(lp)
        if tcs_epc >= 0:
            secs.busy_tcs.add(tcs_epc)
        hw.lp_eid[lp] = secs.eid
        hw.lp_tcs[lp] = tcs_epc
