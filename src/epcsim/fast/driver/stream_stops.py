"""Where a stream's thread stopped on the compiled core, and how its caller goes on (issue 9;
PATHS.md, "What is built for the stream", "The EACCEPT loop" and "The MODIFY_TYPES loop"):
the stop codes the generator goes on from, the ioctl loops' ends, and the readers of a
stopped direct reclaim's batch.

Why a module of its own: both sides of a stop decode it the same way - ``CoreStream.run``
(``core_stream.py``) when the thread stops on the core, and ``Session``'s
``_thread_stopped`` (``session_stops.py``) when it stops served by SimPy. Split from
``core_stream.py`` by session ``split2``, no code changed.

* *The thread's stops* (decisions 2026-11-26, session ``tstops``; ``thread.py`` has the
  machine's side). Each of the machine's stops is one of:
  (a) *at a loop top*, where the generator goes on (``_RESUMABLE``): the TCS fault, a #PF
  to the runtime, SIGBUS, EAUG (decided before the iteration's first step, session
  ``integ``), and EENTER/ERESUME failing (``KB_ENTRY``): the leaf's checks are read at T0
  before its run (``eldu.tcs_refused``), so the stop is the loop top's, where ``enter()``
  reports it; with the implicit TCS, the SECS gone during the run (only after
  ``KB_SECS``) is ``enter()``'s retry, ``KB_TCS`` at the loop top.
  (b) *in a fault, under ``encl->lock``* (``thread_pc.P_LOCKED``, ``IN_FAULT``): the SECS to
  load (``KB_SECS_LOAD``: only the thread served after ``KB_SECS`` meets it), -ENOMEM
  (``KB_ENOMEM``: no free page, the LRU empty - every page isolated by a reclaimer), an
  ELDU that would fail (``KB_ELDU``: its record and checks are now read *before* the
  allocation, which nothing between changes). Nothing of the fault's rest is applied, so
  the rest is the reference's own code from the lock on:
  ``EnclaveThread.fault_locked`` (``kernel/fault.sgx_vma_fault_locked``, then the
  latency, SIGBUS or the return to user), run in the thread's process - by ``run`` after
  the same hand-back as (a) on the core, by ``Session.on_stop`` when served - and the
  stream goes on (``STREAM_ON``) or ends with SIGBUS (``STREAM_SIGBUS``). A tampered
  store is therefore no longer refused at entry. The same stops in ``_ensure_tcs``' fault
  on the TCS (``vma_fault.tcs_fault``, ``tc[TC_TCS_RETRY]``; session ``tcsuser``) go on with
  ``EnclaveThread.tcs_fault_locked`` (``_fault_rest``): its SIGBUS is the entry's.
  (c) *not reachable, a defect guard*: ``KB_ENTRY`` after the entry's run (the leaf's
  checks change during the run only through the TCS's zap or the SECS's eviction, both
  stops of their own: ``thread.py``), ``KB_UNEXPECTED`` (a page of another enclave, a
  list link broken). ``RuntimeError`` if met, never a different result; the first is
  shown on a hand-made machine state (``test_the_entry_checks_are_decided_at_the_loop_
  top``).
* *The #PF that ends a stream* is returned as such (``STREAM_PF``): after a resident run an IPI
  may have AEXed the thread, and the generator's own loop top would ERESUME first.
"""

from __future__ import annotations

from typing import Any

from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.thread_pc import P_LOCKED, P_PARK, P_TOP

#: the stops the generator goes on from, each at a loop top (or before the iteration's
#: first step): the core's own, the TCS fault, a failing EENTER/ERESUME, a #PF to the
#: runtime, SIGBUS, EAUG, and the EACCEPT loop's failing leaf (the thread inside at the
#: page: ``enclu_on_page``'s ``enter()`` is then nothing, PATHS.md E1)
_RESUMABLE = frozenset((K.KB_TOP, K.KB_TCS, K.KB_ENTRY, K.KB_PF, K.KB_SIGBUS, K.KB_EAUG, K.KB_LEAF))
#: the thread's stops in a fault under encl->lock (``thread_pc.P_LOCKED``), before anything
#: of the fault's rest is applied: the rest runs in Python (``EnclaveThread.fault_locked``)
IN_FAULT = frozenset((K.KB_SECS_LOAD, K.KB_ENOMEM, K.KB_ELDU))
#: ``CoreStream.run``'s ``end`` for the MODIFY_TYPES loop stopped under ``encl->lock`` at
#: its page (``KB_PAGE``, or T4's ``IN_FAULT`` stops): the caller runs the page from
#: ``_load`` on in Python (``ioctl_sgx2._page_locked``)
END_LOCKED = -100
#: ... stopped in its direct reclaim's batch before the SECS's eviction (``KB_SECS`` in
#: ``reclaim_run``'s row 1, the thread at ``P_DIRECT``): the caller runs the batch's rest in
#: Python (``sgx_reclaim_write_back`` from ``CoreStream.direct``), then the page
END_DIRECT = -101
#: ... the ADD_PAGES loop stopped at its page's ``sgx_encl_grow`` (``KB_GROW`` at
#: ``add.P_AGROW``): the VA page's allocation found the free list empty, the page's own EPC
#: page allocated (``CoreStream.grow_page``); the caller runs the page from the grow on in
#: Python (``kernel.ioctl_add._add_page_rest``; session ``addrun``)
END_GROW = -102


def resumable(code: int, pc: int) -> bool:
    """Whether the thread's stop ``code`` at ``pc`` is one the generator goes on from at
    its loop top (``_RESUMABLE``; a failing entry only before its run: ``KB_ENTRY`` after
    it is the machine's defect guard, ``thread.py``)."""
    # (``KB_TCS`` at ``P_PARK``: a parked retrier's ERESUME found its TCS blocked - in
    # the middle of its park, not a loop top; a guard, never met: PATHS.md ``uflood``)
    return code in _RESUMABLE and (code != K.KB_ENTRY or pc == P_TOP) and pc != P_PARK


def _fault_rest(thread: Any, tc: Any) -> Any:
    """The rest of a fault the thread's machine stopped under ``encl->lock`` (``IN_FAULT``
    at ``P_LOCKED``), in Python from the lock on: an access's (``fault_locked``), or
    ``_ensure_tcs``' on the TCS (``tc[TC_TCS_RETRY]``: ``tcs_fault_locked``, whose SIGBUS is
    the entry's; session ``tcsuser``). Returns its generator (True: mapped or -EBUSY)."""
    if tc[T.TC_TCS_RETRY]:
        return thread.tcs_fault_locked(int(tc[T.TC_T0]))
    return thread.fault_locked(int(tc[T.TC_IDX]), int(tc[T.TC_T0]))


def park_rest(thread: Any, tc: Any, moved: Any = None) -> Any:
    """The rest of ``_fault_or_park`` in Python for a retry the thread's machine would park
    (``KB_PARK``, served: ``moved`` None, the loop from its ``parkable`` test) or had parked
    on the core (``moved``: ``(park, decided)``, ``transfer_flood.py``); an access's, or
    ``_ensure_tcs``' on the TCS (``tc[TC_TCS_RETRY]``), whose failure is the entry's (as
    ``tcs_fault_locked``). Returns its generator (True: mapped or -EBUSY). Session
    ``uflood``."""
    from epcsim.arch import PF_USER
    from epcsim.user.insn import X86_TRAP_PF, EnclaveException

    tcs = bool(tc[T.TC_TCS_RETRY])
    ok = yield from thread.parks(int(tc[T.TC_IDX]), not tcs, True, moved)
    if tcs and not ok:
        addr = thread.encl.linaddr(thread.tcs_index)
        thread.entry_fault = EnclaveException(X86_TRAP_PF, PF_USER, addr)
    return ok


def _direct_rest(
    ks: Any, encls: list[Any]
) -> tuple[list[tuple[int, Any, int, int]], int, tuple[int, int, int] | None]:
    """Where the direct reclaim's batch (``reclaim_run``'s row 1) stopped before the SECS's
    eviction: its kept pages ``(page, enclave, index, pinned)`` - each page's own enclave,
    ``encls[slot]`` (its slot in ``batch[:, 3]``, session ``twoencl3``) -, the page ``j``
    whose D step is next and, stopped at ``P_STORED``, that page's ``sgx_encl_ewb`` result
    ``(ret, va, slot)`` with ``encl->lock`` held (as ksgxd's ``Session._rest_of_batch``
    reads row 0)."""
    from epcsim.fast.driver.reclaim_pc import P_STORED, RECLAIM_DIRECT

    rw = ks.rc[RECLAIM_DIRECT]
    j, nk = int(rw[K.RC_I]), int(rw[K.RC_NK])
    rows = [
        (page, encls[slot], index, pinned)
        for page, index, pinned, slot in ks.batch[RECLAIM_DIRECT, :nk, :4].tolist()
    ]
    ewbed = None
    if int(rw[K.RC_PC]) == P_STORED:
        ewbed = (int(rw[K.RC_RET]), int(rw[K.RC_VA]), int(rw[K.RC_SLOT]))
    return rows, j, ewbed


def direct_rest(sgx: Any, task: Any, direct: Any) -> Any:
    """The rest of a direct batch the core stopped before a SECS's eviction
    (``CoreStream.direct``, ``_direct_rest``'s): each page not yet stored pinned again in
    its own enclave's file, then ``sgx_reclaim_write_back`` from page ``j``; returns the
    pages it wrote back (the caller counts them as ``direct_reclaim_pages``)."""
    from epcsim.kernel.reclaim import sgx_reclaim_write_back

    rows, j, ewbed = direct
    for _page, encl, index, pinned in rows[j + (ewbed is not None) :]:
        encl.backing._pinned_gen[index] = pinned
    kept = [(page, encl, index) for page, encl, index, _ in rows]
    return (yield from sgx_reclaim_write_back(sgx, task, kept, j, ewbed=ewbed))


def add_grow(code: int, pc: int) -> bool:
    """The ADD_PAGES loop's stop at its page's ``sgx_encl_grow`` (``END_GROW``)."""
    from epcsim.fast.driver.add import P_AGROW

    return code == K.KB_GROW and pc == P_AGROW


def _trim_locked(code: int, pc: int) -> bool:
    """The MODIFY_TYPES loop's stops under ``encl->lock`` with nothing of the page applied:
    its own (``KB_PAGE`` after ``run(ioctl_page)`` or at T4) and T4's fault stops."""
    from epcsim.fast.driver.trim import P_IOCTL_RUN

    if code == K.KB_PAGE:
        return pc in (P_IOCTL_RUN, P_LOCKED)
    return code in IN_FAULT and pc == P_LOCKED


__all__ = [
    "END_DIRECT",
    "END_GROW",
    "END_LOCKED",
    "IN_FAULT",
    "add_grow",
    "direct_rest",
    "park_rest",
    "resumable",
]
