"""The enclave slots on the Python side: up to two enclaves for the compiled machines
(PATHS.md "Two enclaves in the regime", items 1, 2, 6 and 7; built by session ``twoencl2``).

Why: the machines take one ``KState`` per enclave slot (``kstate.N_SLOTS``, a numba
``UniTuple``) and take each batch page's enclave per page (``reclaim.py``: its slot in
``batch[r, k, 3]``, its ``KState``, its ``encl->lock`` as the core's mutex row = the slot).
Slot ``s`` is the ``s``-th enclave in ``sgx.enclaves`` order (creation). Here: the regime
with up to ``n`` enclaves (``check_slots``: ``bridge``'s one-enclave checks, per enclave),
slot 1's ``KState`` (``slot_state``: slot 0's global arrays, the enclave's own ``ke``,
page arrays, VA list and backing file), and a service for a slot (``serve_slots``: a
chunk's row or a record stored in *that* enclave's file; a VA row, a full buffer once).
The fold is ``bridge._fold`` per slot (its global part folds once: ``fold_kernel``'s
deltas are zeroed when folded).

What uses two slots: ``bridge.run_ksgxd`` (ksgxd alone, the tests' direct entry:
``tests/fast/test_two_enclaves_core.py``) and, since session ``twoencl3``, the user path -
``stream_ksgxd.Session`` over ``sgx.enclaves``' slots, its entries and served steps taking,
folding and serving each slot (``refresh_slots``, ``take_slots``, ``fold_slots``,
``serve_thread_slots``, ``drive_slots``), the regime's files by ``file_ok`` and SECS states
by ``secs_of`` (``tests/fast/test_two_enclaves_user.py``). The tests' other direct entries
(``thread_bridge.run_thread``/``run_pair``, ``served_ksgxd``) keep one enclave.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver.bridge import (
    _big_arrays,
    _kernel_state,
    _refuse,
    _serve,
    fold_kernel,
    refresh_layout,
    take_ids,
    take_small,
)
from epcsim.fast.driver.unsealed import unsealed_of
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.system import System


def check_slots(
    system: System, n: int, fifo: bool = False, flood: bool = False
) -> list[tuple[Any, Any]]:
    """The regime (module docstring) with up to ``n`` enclaves, each as the one enclave
    was (PATHS.md "Two enclaves in the regime", item 7): ``[(encl, SECS state)]`` in
    ``sgx.enclaves`` order, the enclave slots' order. ``fifo``: the model's FIFO run queue
    and mutex are taken too (``threads_bridge``, whose fold handles them); ``flood``: so is
    ``nopage_flood="bulk"`` (``threads_bridge``: the parked flood, ``cosim/flood_park.py``)."""
    sgx = system.sgx
    m = system.machine
    if system.cpu.content_mode != "tag":
        _refuse("content_mode is not 'tag'")
    if type(sgx.lru) is not KernelLru:
        _refuse("the reclaim policy is not KernelLru")
    if not isinstance(m.rq, CfsRunQueue | FifoRunQueue if fifo else CfsRunQueue):
        _refuse("the scheduler is not CFS")
    if sgx.flood is not None and (not flood or sgx.flood.parked):
        _refuse("the NOPAGE flood is on")
    if m.nr_cpus > 63:
        _refuse("more than 63 CPUs (the LP masks are int64: kstate.K_INSIDE)")
    if not 1 <= len(sgx.enclaves) <= n:
        _refuse(f"{len(sgx.enclaves)} enclaves, the driver models {n}")
    pairs = [(encl, _check_enclave(system, encl, fifo)) for encl in sgx.enclaves.values()]
    task = sgx.ksgxd_task
    if task is None or not sgx.ksgxd_sleeping or len(sgx.ksgxd_waitq._waiters) != 1:
        _refuse("ksgxd is not asleep on ksgxd_waitq")
    if m.env._queue:
        _refuse("the SimPy queue is not empty: another task would run")
    if any(r is not None for r in m.running) or m.spinning:
        _refuse("a task holds a CPU")
    if system.cpu.epcm.has_aside():
        _refuse("an EPCM entry's SECS or LINADDR is kept aside (the driver derives them)")
    epc = sgx.epc
    on_lru = (epc.flags & SGX_EPC_PAGE_ON_LRU) != 0
    if not np.all(np.isin(epc.owner_encl[on_lru], [e.id for e, _ in pairs])):
        _refuse("a page of another owner is on the LRU")
    return pairs


def _check_enclave(system: System, encl: Any, fifo: bool = False) -> Any:
    """``check_slots``' checks of one enclave; its SECS state."""
    if not encl.initialized or encl.dead or encl.secs_epc < 0:
        _refuse("the enclave is not initialized with its SECS resident")
    kind = LinuxMutex | FifoMutex if fifo else LinuxMutex
    if not isinstance(encl.lock, kind) or encl.lock.owner is not None or encl.lock._waiters:
        _refuse("encl->lock is not a free linux mutex")
    st = system.cpu.secs_state(encl.secs_epc)
    if st.inside or st.tracking or st.busy_tcs:
        _refuse("an LP is inside the enclave or an ETRACK epoch is open")
    if not file_ok(encl, st):
        _refuse("the backing store holds no 8-byte record of this enclave yet")
    return st


def file_ok(encl: Any, secs: Any, fresh: bool = True) -> bool:
    """The enclave's backing file as the machines take it: laid out for this enclave's
    8-byte records, or (``fresh``) without any record yet - its first is stored by Python
    through the machines' ``SVC_STORE``, which lays it out (PATHS.md "Two enclaves in the
    regime", item 5; session ``twoencl3``)."""
    b = encl.backing
    if b._width == 0:
        return fresh and b.nr_records == 0 and not b._odd
    return b._width == 8 and b._eid == secs.eid


def secs_of(system: System, encl: Any) -> Any:
    """The enclave's SECS state (``SecsState``), resident or evicted: the CPU keeps it by
    EID across an eviction (``SgxCpu.secs_by_eid``), and an evicted SECS's EID is its
    file's (its record's PCMD; ``EnclaveBacking._eid``). None if neither is known."""
    cpu = system.cpu
    if encl.secs_epc >= 0:
        return cpu.secs_at.get(encl.secs_epc)
    eid = encl.backing._eid
    return None if eid is None else cpu.secs_by_eid.get(eid)


def resident_secs(system: System, encl: Any) -> int:
    """``ke[K_SECS_EPC]`` of the enclave's slot: its SECS page while resident, -1 while
    evicted or written back with its EREMOVE to come (no longer in ``SgxCpu.secs_at``)."""
    e = encl.secs_epc
    return e if e >= 0 and e in system.cpu.secs_at else -1


def kernel_slots(
    system: System, pairs: list[tuple[Any, Any]], ft_rows: int = K.FT_ROWS
) -> tuple[Any, Any]:
    """The machines' tuple of slots for ``pairs`` (``check_slots``'): one enclave's
    ``KState`` twice, or one per enclave sharing the global arrays (the free timeline's
    buffer of ``ft_rows`` among them)."""
    e0, s0 = pairs[0]
    ks0 = _kernel_state(system, e0, s0, ft_rows)
    if len(pairs) == 1:
        return K.slots(ks0)
    e1, s1 = pairs[1]
    ks0.kc[K.K_SLOT_ID1] = e1.id
    return (ks0, slot_state(system, ks0, e1, s1))


def slot_state(system: System, ks0: Any, encl: Any, secs: Any) -> Any:
    """``encl``'s ``KState`` beside slot 0's ``ks0``: the same global arrays (the scalars
    ``kc``, the counters, the batches, the EPC, EPCM and VA versions, the keys), its own
    ``ke``, pages, VA list and backing file (``bridge._big_arrays``' enclave fields, the
    file's deferred-seal marks)."""
    ks = ks0._replace(
        ke=np.zeros(K.N_KC, np.int64),
        **unsealed_of(encl.backing, ks0.keys, encl.base, secs.eid).arrays(),
        **_big_arrays(system, encl),
    )
    take_ids(ks.ke, encl, secs)
    take_small(system, encl, secs, ks)
    return ks


def serve_slots(system: System, encls: list[Any], kt: Any, counts: dict[str, int]) -> Any:
    """``bridge._serve`` for the slots: a backing chunk's row or a record to store is the
    enclave of the slot the machine named (``K_SVC_E``); the rest (a VA page's row of
    versions, a full buffer) is global, served once, and a replaced global array is
    replaced in every slot. Returns the tuple to go on with."""
    kc = kt[0].kc
    if int(kc[K.K_SVC]) in (K.SVC_CHUNK, K.SVC_STORE):
        s = int(kc[K.K_SVC_E])
        ks = _serve(system, encls[s], kt[s], counts)
        if kt[1] is kt[0]:
            return K.slots(ks)
        return (ks, kt[1]) if s == 0 else (kt[0], ks)
    ks0 = _serve(system, encls[0], kt[0], counts)
    if kt[1] is kt[0]:
        return K.slots(ks0)
    return (ks0, kt[1]._replace(vp_epc=ks0.vp_epc, vp_row=ks0.vp_row))


def refresh_slots(system: System, encls: Any, kt: Any, nblocks: int) -> tuple[Any, int]:
    """``bridge.refresh_layout`` per slot: each slot's arrays those its enclave's and the
    global objects hold now (a replaced global array is replaced in every slot; the typed
    list of VA blocks, shared, grows once)."""
    ks0, nblocks = refresh_layout(system, encls[0], kt[0], nblocks)
    if kt[1] is kt[0]:
        return K.slots(ks0), nblocks
    ks1, nblocks = refresh_layout(system, encls[1], kt[1], nblocks)
    return (ks0, ks1), nblocks


def take_slots(system: System, encls: Any, secss: Any, kt: Any) -> None:
    """``bridge.take_small`` per slot (the global scalars once more: the same values) and
    each slot's ``K_SECS_EPC`` (``resident_secs``); a slot whose SECS state is unknown
    (``secs_of`` None: never in the regime) is left."""
    for s in range(len(encls)):
        ks = kt[s]
        if secss[s] is not None:
            take_small(system, encls[s], secss[s], ks)
        ks.ke[K.K_SECS_EPC] = resident_secs(system, encls[s])


def fold_slots(system: System, encls: Any, secss: Any, kt: Any, skip: int = -1) -> None:
    """``bridge.fold_kernel`` per slot but ``skip`` (the thread's, which ``fold_thread``
    folds): its global deltas fold once (zeroed when folded)."""
    for s in range(len(encls)):
        if s != skip and secss[s] is not None:
            fold_kernel(system, encls[s], secss[s], kt[s])


def serve_thread_slots(
    system: System, encls: Any, kt: Any, ts: Any, tslot: int, counts: dict[str, int]
) -> Any:
    """The thread's requests (``thread_bridge._serve_thread``'s: an unseal, a truncation, a
    full latency buffer) in its own slot; the kernel's ones as ``serve_slots``."""
    from epcsim.fast.driver.thread_bridge import _serve_thread

    code = int(kt[0].kc[K.K_SVC])
    if code in (K.SVC_LAT_FULL, K.SVC_TRUNCATE, K.SVC_UNSEAL):
        _serve_thread(system, encls[tslot], kt[tslot], ts, counts)  # no array replaced
        return kt
    if code in (K.SVC_EPA, K.SVC_VA_ADD):
        return serve_va_page(system, encls, kt, tslot, counts)
    return serve_slots(system, encls, kt, counts)


def serve_va_page(system: System, encls: Any, kt: Any, tslot: int, counts: dict[str, int]) -> Any:
    """ADD_PAGES' VA page on the core (``add.py`` A2, session ``addrun``), the two steps
    whose state Python keeps: ``SVC_EPA`` - ``__epa``'s count and EPA (``SgxCpu.epa``: the
    EPCM entry and the page's zeroed version slots, whose index ``VaPages`` keeps), then
    ``sgx_alloc_va_page``'s ``va_pages`` count (``SgxEncl.alloc_va_page``, after ``run(epa)``
    as there); ``SVC_VA_ADD`` - ``sgx_encl_add_va_page`` under ``encl->lock``
    (``SgxEncl.add_va_page``). Either may replace arrays the slots hold (``va_epc``, the VA
    list's): the slots' layout is refreshed (``refresh_slots``, its count of VA blocks
    taken from the typed list itself: none is added here)."""
    kc = kt[0].kc
    code = int(kc[K.K_SVC])
    va = int(kc[K.K_SVC_ARG])
    kc[K.K_SVC] = K.SVC_NONE
    counts[str(code)] = counts.get(str(code), 0) + 1
    sgx = system.sgx
    if code == K.SVC_EPA:
        sgx.stats.epa += 1
        if system.cpu.epa(va):  # a page off the free list: A2 checked it invalid (a guard)
            raise RuntimeError(f"fast_core: EPA of EPC page {va} failed on the core")
        sgx.stats.va_pages += 1
    else:
        encls[tslot].add_va_page(va)
        core = sgx.stream_core
        if core is not None:
            core.va_adds += 1
    kt, _ = refresh_slots(system, encls, kt, -1)
    return kt


def drive_slots(
    drive_fn: Any,
    system: System,
    encls: Any,
    co: Any,
    kt: Any,
    ts: Any,
    tslot: int,
    pending: int,
    counts: dict[str, int],
    rows: Any = None,
) -> tuple[int, Any]:
    """``thread_bridge.drive_serving`` over the slots: drive the pair until the core stops
    for something other than a Python service, each request served in the slot it names
    (the thread's in its own). Returns the core's code and the slots' tuple. ``rows``:
    several threads' stacked ``TState`` (``tstate.stack``): each thread's service gets its
    row's views (``SVC_UNSEAL``/``SVC_TRUNCATE`` read its ``tc``), a full latency buffer
    row 0's (the shared count; ``stream_group``, session ``n6user``)."""
    from epcsim.fast.driver.thread_bridge import SERVE
    from epcsim.fast.driver.tstate import N_TC

    nt = ts.tc.size // N_TC  # the thread rows 0 .. nt - 1, ksgxd past them (``drive``)
    while True:
        rc = drive_fn(co, kt, ts, pending)
        if rc > SERVE:
            return rc, kt
        if SERVE - rc < nt:
            row = ts
            if rows is not None:
                lat = int(kt[0].kc[K.K_SVC]) == K.SVC_LAT_FULL
                row = rows[0] if lat else rows[SERVE - rc]
            kt = serve_thread_slots(system, encls, kt, row, tslot, counts)
        else:
            kt = serve_slots(system, encls, kt, counts)
        pending = SERVE - rc


__all__ = [
    "check_slots",
    "drive_slots",
    "file_ok",
    "fold_slots",
    "kernel_slots",
    "refresh_slots",
    "resident_secs",
    "secs_of",
    "serve_slots",
    "serve_thread_slots",
    "serve_va_page",
    "slot_state",
    "take_slots",
]
