"""The enclave thread's side of a driver call: its arrays, scalars and counters (PATHS.md T).

What the thread's rows add to ``kstate.KState`` (PATHS.md, "What is built": the state the
thread adds): the stream (``pages``, ``writes``), the enclave's ``prot`` array (the VMA
and ``vm_max_prot_bits``, which ``KState`` does not carry), the loop's scalars and the
thread's own state that lives in Python objects - ``entered``, the ``AccessOutcome`` - in
``tc`` (``TC_*`` columns); the ``Counters`` the thread's rows add to in ``tcnt``
(``TCOUNTERS``); the fault latencies in ``lat`` (appended in order, folded with
``LatencyHistogram.append``). Whether the thread's LP is inside the enclave
(``SecsState.inside``/``busy_tcs``, ``SgxCpu.lp_eid``/``lp_tcs``: one thread, one LP, one
flag) is ``kstate.K_INSIDE``, since ksgxd's ETRACK and IPI read and change it too.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit

# -- tc: the thread's scalars ------------------------------------------------------------------
TC_I = 0  #: the stream's index (``access_stream``'s ``i``)
TC_N = 1  #: the stream's length
TC_CHUNK_MAX = 2  #: ``chunk_max``: the longest resident run charged as one step
TC_K = 3  #: ``resident_run``'s ``k`` of the step under way
TC_K2 = 4  #: its ``k2``
TC_IDX = 5  #: the faulting page
TC_T0 = 6  #: when its fault began (``_fault``'s ``t0``)
TC_PAGE = 7  #: the EPC page allocated for its ELDU
TC_ENTERED = 8  #: ``EnclaveThread.entered``
#: where the thread's stream starts in ``pages``/``writes`` (0 but for the stacked rows of
#: several threads, ``stack``; whether its LP is inside is ``kstate.K_INSIDE``'s bit)
TC_OFF = 9
TC_TCS = 10  #: ``tcs_index``
TC_DONE = 11  #: ``AccessOutcome.done``
TC_LAT_N = 12  #: latencies in ``lat``
#: rows of a call's ``lat`` (``thread_bridge._thread_state``): a full buffer stops the core
#: for Python's fold (``SVC_LAT_FULL``), so its size changes how often a call comes back,
#: never a result (the histogram appends the batches in order;
#: ``tests/fast/test_fold_buffers.py``). 8,192 (64 KiB, allocated per call) hold row 1's
#: 6,912 faults a call, which stopped twice at 4,096 (session ``fault5``)
LAT_ROWS = 8192
TC_RET = 13  #: the ELDU check's result (0: the record verified)
TC_TAG = 14  #: the content tag ELDU restores (u64 bits)
TC_FLAGS = 15  #: the record's SECINFO.FLAGS
TC_VA = 16  #: the VA page holding the page's version
TC_SLOT = 17  #: its slot
TC_VID = 18  #: its VA page number (``VaIds``)
TC_VROW = 19  #: its row of versions (``VaPages``)
TC_BUSY = 20  #: ``reclaimer_writing_to_pcmd`` of the ELDU under way
TC_BASE = 21  #: ``encl->base``
TC_FREE_ROW = 22  #: the free list (the one node's row of ``epc_ends``)
TC_LOW = 23  #: ``Sgx.low_pages``
TC_SGX2 = 24  #: ``Sgx.sgx2``
TC_ALONE = 25  #: 1: the thread alone (hand back before waking ksgxd), 0: with ksgxd
TC_FINISHED = 26  #: the stream is over and the thread's process ended
TC_ACCESS_NS = 27  #: ``Costs`` the state machine charges: access
TC_EENTER_NS = 28
TC_ERESUME_NS = 29
TC_FAULT_NS = 30  #: aex + fault_entry
TC_ELDU_NS = 31
#: 1: the call was entered from ``access_stream``'s loop top (``driver/stream.py``): stop at
#: a loop top before the stream's end and before any fault iteration that could hand back
#: mid-way (``hook_stop.hook_stop``), so the Python generator goes on from there
TC_HOOK = 32
#: the loop the machine runs (decision 2026-11-26, issue 9 session ``eacc``: one machine,
#: two loops sharing the fault rows T2-T7): ``MODE_STREAM`` is ``access_stream``,
#: ``MODE_EACCEPT`` ``workloads.edmm.eaccept_range``'s per-page loop (PATHS.md E0-E4)
TC_MODE = 33
TC_SECINFO = 34  #: EACCEPT's SECINFO.FLAGS (the request, checked once by ``_request_allowed``)
TC_EPP = 35  #: ``entry_per_page``: EEXIT after each page's EACCEPT
TC_EACCEPT_NS = 36  #: ``Costs`` the loop charges: eaccept, eexit
TC_EEXIT_NS = 37
TC_NOTE_STEP = 38  #: ``OpRecord.note``'s step (``max(1, pages // PROGRESS_POINTS)``)
TC_NOTE_N = 39  #: points in ``notes``
TC_I0 = 40  #: the index the call was entered at (the 256-page marks stop after it)
TC_MARKS = 41  #: 1: ``on_pages`` is set: stop at each 256-page mark for Python to call it
#: the MODIFY_TYPES loop (``MODE_TRIM``, PATHS.md M0-M5): ``Costs`` it charges
TC_IOCTL_NS = 42  #: ioctl_page
TC_EMODT_NS = 43
TC_ETRACK_NS = 44
TC_DIRECT = 45  #: ``Sgx.direct_reclaim``: M1 runs ``sgx_reclaim_direct``
#: why the page's load gave -EAGAIN (``CAUSE_*``: ``IoctlResult.extra["eagain_cause"]``)
TC_CAUSE = 46
TC_MRET = 47  #: the ioctl's ``ret`` when the loop stopped at a page top (0 or -EAGAIN)
TC_NEW_TYPE = 48  #: EMODT's new page type (``ModifyTypesArgs.page_type``)
#: the REMOVE_PAGES loop (``MODE_REMOVE``, PATHS.md R3-R5): ``Costs`` it charges
TC_EMODPR_NS = 49
TC_ZAP_NS = 50
TC_EREMOVE_NS = 51
TC_REMOVED = 52  #: pages removed, not yet folded (``SgxEncl.page_cnt -= n``: ``shrink``)
#: the runtime's -EAGAIN retry on the core (``MODE_TRIM``, PATHS.md "The runtime's retry",
#: session ``eagain``): 1 while the machine may end a call with -EAGAIN and make the next
#: one itself (``drive_range``: the return to user space, ``offset + count``, the syscall)
TC_RETRY = 53
TC_CALL_I0 = 54  #: the range index where the current call started (its ``count`` is from it)
TC_CALLS_LEFT = 55  #: calls the runtime may still make after the current one (its guard)
TC_CALL_N = 56  #: rows in ``calls``
TC_USER_RETURN_NS = 57  #: ``Costs`` the retry charges: user_return, syscall
TC_SYSCALL_NS = 58
#: ``drive_range``'s calls in a row with no progress before the current one, and its
#: ``max_stalled`` (0: none): the call that reaches it is Python's
TC_STALLED = 59
TC_MAX_STALLED = 60
#: the ADD_PAGES loop (``MODE_ADD``, PATHS.md A0-A4, session ``addcore``)
TC_ADD_FLAGS = 61  #: the SECINFO's flags (type and RWX)
TC_EADD_NS = 62  #: ``Costs`` it charges: eadd (and ioctl_page, ``TC_IOCTL_NS``)
TC_PAGE_CNT = 63  #: ``SgxEncl.page_cnt`` at the call's entry (A0's VA-page decision)
TC_ADDED = 64  #: pages grown, not yet folded (``SgxEncl.page_cnt += n``: ``grow``)
#: the enclave slot of the thread's (or the ioctl task's) own enclave (``kstate.N_SLOTS``,
#: PATHS.md "Two enclaves in the regime", session ``twoencl3``): its ``KState`` in the
#: machines' tuple and its ``encl->lock`` (the core's mutex row = the slot); ``kc``'s
#: ``K_THREAD_SLOT`` is the same. Not ``TC_SLOT``, which is the VA slot of the ELDU under way
TC_ESLOT = 65
#: ADD_PAGES' VA page (A2, session ``addrun``): ``sgx_encl_grow``'s new VA page + 1 from its
#: allocation until ``add_va_page`` under ``encl->lock`` (0: none under way), and the EPA
#: cost it charges
TC_ADD_VA = 66
TC_EPA_NS = 67
#: ... and the reclaim batches its allocations ran on the core (a count for the tests'
#: guard, ``StreamCore.va_reclaims``; not a ``stats()`` counter)
TC_VA_DIRECT = 68
#: TCS faults the machine ran (``vma_fault.tcs_fault``: ``_ensure_tcs``' fault on the TCS;
#: session ``tcsfault``, from the user path too since session ``tcsuser``): not a kernel
#: counter (the faults are in ``TN_FAULTS``), the tests' guard that the rows ran
TC_TCS_FAULTS = 69
#: 1 while the fault under way is that TCS fault (``_fault_or_park(tcs, eresume=False)``,
#: whose retries park on other terms than an access's: ``flood_rows.parkable``; session
#: ``floodq``), 0 for an access's (set by ``tcs_fault``, cleared by T2's fault entry). A
#: stop under ``encl->lock`` in it goes on as ``_ensure_tcs`` does too
#: (``EnclaveThread.tcs_fault_locked``: its SIGBUS is the entry's, reported at the TCS's
#: address; session ``tcsuser``). An access's fault on the TCS page itself has the same
#: ``TC_IDX``, hence a flag
TC_TCS_RETRY = 70
N_TC = 71

MODE_STREAM = 0
MODE_EACCEPT = 1
MODE_TRIM = 2  #: ``kernel/ioctl_sgx2._page_loop`` of MODIFY_TYPES (session ``mtrim2``)
#: ``_page_loop`` of REMOVE_PAGES (session ``ioctlcore``): MODE_TRIM's rows but ``per_page``;
#: the two are "the ioctl loops", ``mode >= MODE_TRIM``
MODE_REMOVE = 3
#: ``kernel/ioctl_add.sgx_ioc_enclave_add_pages``' page loop (session ``addcore``): an ioctl
#: loop too (``mode >= MODE_TRIM``: its page top is ``trim_rows``'), its rows ``add.py``'s
MODE_ADD = 4

#: ``TC_CAUSE``: ``ioctl_sgx2.EAGAIN_BEING_RECLAIMED`` and ``EAGAIN_NO_FREE_PAGE``
CAUSE_NONE = 0
CAUSE_BEING_RECLAIMED = 1
CAUSE_NO_FREE_PAGE = 2

#: the ``Counters`` fields the thread's rows add to, in ``tcnt``'s column order
TCOUNTERS = (
    "enclave_accesses", "page_faults", "alloc_ebusy", "fault_retries", "eldu", "eaccept",
    "emodt", "direct_reclaim_calls", "direct_reclaim_pages", "emodpr", "eremove", "eadd",
    "alloc_reclaim_batches",
)  # fmt: skip
(
    TN_ACCESSES, TN_FAULTS, TN_EBUSY, TN_RETRIES, TN_ELDU, TN_EACCEPT, TN_EMODT,
    TN_DIRECT_CALLS, TN_DIRECT_PAGES, TN_EMODPR, TN_EREMOVE, TN_EADD, TN_ALLOC_RECLAIM,
) = range(len(TCOUNTERS))  # fmt: skip

#: ``notes``: the EACCEPT loop's ``OpRecord.note`` points ``(ns, pages done)``, folded into
#: ``OpRecord.progress`` by the caller (``core_stream.CoreStream``); ``calls``: the ioctl
#: calls the machine ended with -EAGAIN and called again (``TC_RETRY``), one row each:
#: ``(range index where it stopped, the instant back in the runtime, CAUSE_*)``
TState = namedtuple("TState", "tc tcnt pages writes prot lat notes calls")
TState.__doc__ = "The thread's arrays of one driver call (module docstring)."


def stack(rows: list[Any]) -> tuple[Any, list[Any]]:
    """Several threads' ``TState``s as one the machine takes (PATHS.md N1, session
    ``nthreads``): ``tc`` and ``tcnt`` stacked one row per thread (thread ``r``'s row ``r``)
    and flattened, the streams concatenated (``TC_OFF``), the fault latencies in *one*
    buffer shared by the rows, its count in row 0's ``TC_LAT_N`` (the histogram keeps the
    order the faults completed in across threads, ``LatencyHistogram``'s exact samples).
    The machine's ``TState`` is then of one thread's type (every array one-dimensional),
    so ``thread_run`` keeps its one signature; it takes its row's views
    (``thread_row``, below). Returns the machine's ``TState`` and each row's, as views of
    the same memory, for Python to serve and fold (``rows[0].lat`` is the shared buffer).
    ``rows``: one ``TState`` per thread, as ``thread_bridge._thread_state`` makes them."""
    n = len(rows)
    tc = np.zeros((n, N_TC), np.int64)
    tcnt = np.zeros((n, len(TCOUNTERS)), np.int64)
    sizes = [r.pages.size for r in rows]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pages = np.zeros(int(offs[-1]), np.int64)
    writes = np.zeros(int(offs[-1]), np.bool_)
    lat = rows[0].lat
    out = []
    for r, row in enumerate(rows):
        a, b = int(offs[r]), int(offs[r + 1])
        tc[r] = row.tc
        tc[r, TC_OFF] = a
        tcnt[r] = row.tcnt
        pages[a:b] = row.pages
        writes[a:b] = row.writes
        view = row._replace(tc=tc[r], tcnt=tcnt[r], pages=pages[a:b], writes=writes[a:b])
        out.append(view._replace(lat=lat))
    machine = rows[0]._replace(tc=tc.reshape(-1), tcnt=tcnt.reshape(-1), pages=pages, writes=writes)
    return machine, out


@njit(cache=True, nogil=True, inline="always")
def thread_row(tsx, r):
    """Thread ``r``'s ``TState`` in the stacked one the machine takes (``stack``,
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
