"""A driver call from Python: take the arrays of a live ``System``, drive ksgxd's state
machine on the compiled core, serve its requests, fold the result back (PATHS.md).

``run_ksgxd(system)`` is the call step 1 builds (issue 9, DESIGN.md step 2 part 2): ksgxd
alone. The entry instant is the one ``Sgx.wake_ksgxd`` creates when ksgxd sleeps and the
enclave thread is done: the call wakes ksgxd exactly as ``wake_ksgxd`` does (the wake-up's
event takes the next eid, ``ksgxd_wakeups`` counts it) and runs until ksgxd sleeps again
(the core's queue is empty) or a hand-back. On a clean end every object is as the
reference leaves it after ``wake_ksgxd(); env.run()`` - the differential test
(``tests/fast/test_driver_ksgxd.py``) compares them all. After a hand-back the arrays are
as the reference's just before the named step, but the Python generator of ksgxd is not
at that step: moving the queue back into SimPy (PATHS.md's hand-back) is step 3, not
built, so the ``System`` must not be run further (``KsgxdResult.handed_back`` says why).

Decisions (2026-11-26, issue 9 session ``kdriver``):

* The regime is checked at entry and refused with ValueError (``system:`` and why): one
  enclave, initialized, every LRU page its own; ``tag`` contents, ``KernelLru``, the
  ``linux`` mutex, no NOPAGE flood; ksgxd asleep and the SimPy queue empty (no other task
  will run); no LP inside the enclave and no ETRACK epoch open (so ETRACK never finds
  PREV_TRK_INCMPL and no IPI makes anyone AEX); no odd LINADDR; the backing store already
  holds this enclave's 8-byte records (its ``_width`` and ``_eid`` are set).
* Each EWB was sealed inline (``fast/ops/tag_sealing``) at first; since session
  ``fastseal`` the seal is deferred, and since ``lazyseal`` left to the first Python reader
  of the record (``kstate``, "Deferred sealing"; ``driver/unsealed.py``).
* Python work the arrays cannot do ends the call with a request and resumes it at the same
  pc: a VA page's first row of versions (``VaPages._new_row``, as ``set_version`` does it),
  a backing chunk's row (``add_chunk``: asked at the D step, before the lock, where the
  reference adds it inside ``store`` a few steps later - the same row numbers, since no
  other record is stored in between), a record kept raw (``store`` itself), full buffers.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from epcsim.arch import encls_failed
from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.borrow import borrow, member
from epcsim.fast.cosim.dispatch import next_resume
from epcsim.fast.cosim.state import (
    C_HB,
    C_MIN_VR,
    C_TRACE_LEN,
    HANDED_BACK,
    HB_NAMES,
    IDLE,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_OWNER,
    R_STOP,
    T_PC,
    T_STATE,
    TRACE_EVENTS,
    TS_SLEEP,
    CoState,
)
from epcsim.fast.cosim.waitqueue import wake_up
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver.engine_state import fold_clock, fold_task, take_engine
from epcsim.fast.driver.ksgxd import P_NAMES, P_WAIT, R_SVC, ksgxd_run
from epcsim.fast.driver.reclaim_pc import N_RECLAIMERS
from epcsim.fast.driver.unsealed import unsealed_of
from epcsim.fast.ops import row_lists, tag_sealing
from epcsim.isa.sealing import pack_pcmd
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.system import System

#: ``drive`` returned because Python must serve ``kc[K_SVC]``
SERVE = -10


@njit(cache=True, nogil=True)
def drive(st, kt, pending):  # type: ignore[no-untyped-def]
    """The core's loop with ksgxd as its one task: resume ``pending`` (>= 0: a task that
    ended the last call with a request) first, then every task as its event comes due.
    Returns ``IDLE``, ``HANDED_BACK`` or ``SERVE``. The tuples are borrowed once for the
    loop (``cosim.borrow``): a machine's call passes a pointer."""
    pk = borrow((st, kt))
    t = pending
    while True:
        if t < 0:
            t = next_resume(member(pk, 0))
            if t < 0:
                return t
        r = ksgxd_run(pk, t)
        if r == R_SVC:
            return SERVE
        if r == R_STOP:
            return HANDED_BACK
        t = -1


@njit(cache=True, nogil=True)
def wake(st, t):  # type: ignore[no-untyped-def]
    """``wake_ksgxd``'s wake-up of the sleeping task (its event takes the next eid). On the
    state borrowed, as the machines call ``wake_up``: one compiled signature of it."""
    return wake_up(member(borrow((st,)), 0), np.int64(0))


@dataclass
class KsgxdResult:
    """What a call did: ``handed_back`` is None after a clean end (ksgxd asleep again),
    else the reason (``kstate.KB_NAMES`` or the core's ``HB_NAMES``) and ``pc`` the step
    before which the driver stopped."""

    handed_back: str | None
    pc: str
    page: int = -1
    services: dict[str, int] = field(default_factory=dict)


def _refuse(why: str) -> None:
    raise ValueError(f"system: outside the driver's regime ({why})")


def _check_regime(system: System) -> Any:
    """The regime of the one-enclave entries (``run_thread``, ``run_pair``): its enclave
    and SECS state."""
    from epcsim.fast.driver.slots import check_slots

    return check_slots(system, 1)[0]


def _core_state(system: System, trace: bool, encls: list[Any]) -> CoState:
    """The core at ``run_ksgxd``'s entry: ksgxd (its one task) asleep on ``ksgxd_waitq``,
    mutex row ``s`` enclave slot ``s``'s ``encl->lock``."""
    task = system.sgx.ksgxd_task
    assert task is not None
    co = take_engine(system, [task], encls[0].lock, trace, [e.lock for e in encls[1:]])
    co.tasks[0, T_STATE] = TS_SLEEP
    co.tasks[0, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = 0
    return co


def _kernel_state(system: System, encl: Any, secs: Any, ft_rows: int = K.FT_ROWS) -> Any:
    """The driver's ``KState`` of a live ``System``: the once-per-call part (the big arrays,
    the typed lists, the keys: ``_big_arrays``) and the per-step part (the scalars of
    ``kc``/``ku``: ``take_small``); ``ft_rows``: the free timeline buffer's
    (``kstate.FT_ROWS``)."""
    sgx = system.sgx
    cpu = system.cpu
    epc = sgx.epc
    costs = system.machine.costs
    kc = np.zeros(K.N_KC, np.int64)
    ke = np.zeros(K.N_KC, np.int64)
    lru = sgx.lru
    assert isinstance(lru, KernelLru)  # _check_regime
    kc[K.K_LRU_ROW] = lru.list.row
    take_ids(ke, encl, secs)
    kc[K.K_THREAD_T] = -1  # no enclave thread on the core (thread_bridge sets its row)
    kc[K.K_NTHREADS] = 1  # one when there is one (``threads_bridge`` sets more)
    kc[K.K_SLOT_ID0] = kc[K.K_SLOT_ID1] = encl.id  # one enclave: slot 1 is slot 0
    kc[K.K_LRU_OPS] = costs.lru_op
    kc[K.K_AGE_CHECK] = costs.age_check
    kc[K.K_BACKING_ALLOC] = costs.backing_alloc
    kc[K.K_ZAP] = costs.zap_ptes
    kc[K.K_EBLOCK_NS] = costs.eblock
    kc[K.K_EWB_NS] = costs.ewb
    kc[K.K_ETRACK_NS] = costs.etrack
    kc[K.K_IPI_NS] = costs.ipi
    kc[K.K_WAKEUP_NS] = costs.wakeup
    ku = np.array([cpu._next_version], np.uint64)
    free_row = np.full(epc.nr_pages, -1, np.int32)
    node = np.asarray(epc.node)
    for nd, fl in epc.free_lists.items():
        free_row[node == nd] = fl.row
    keys = tag_sealing.sealer_keys(cpu.sealer._enc_key, cpu.sealer._mac_key)
    sh, sm = tag_sealing.scratch()
    ks = K.KState(
        kc=kc, ke=ke, cnt=np.zeros(len(K.COUNTERS), np.int64), ku=ku,
        rc=np.zeros((N_RECLAIMERS, K.N_RC), np.int64),
        batch=np.zeros((N_RECLAIMERS, max(sgx.nr_to_scan, 1), 4), np.int64),
        ft=np.zeros((ft_rows, 2), np.int64), warn=np.zeros((64, 3), np.int64),
        free_row=free_row, vp_blocks=_vp_blocks(system),
        keys=keys, sh=sh, sm=sm, bscr=np.zeros(24, np.uint8),
        **unsealed_of(encl.backing, keys, encl.base, secs.eid).arrays(),
        **_big_arrays(system, encl),
    )  # fmt: skip
    take_small(system, encl, secs, ks)
    return ks


def take_ids(ke: Any, encl: Any, secs: Any) -> None:
    """An enclave's fixed columns of its slot's ``ke``."""
    ke[K.K_SECS_EPC] = encl.secs_epc
    ke[K.K_EID] = secs.eid
    ke[K.K_ENCL_ID] = encl.id
    ke[K.K_BASE] = encl.base
    ke[K.K_INITIALIZED] = int(encl.initialized)
    ke[K.K_VA_ROW] = encl.va.list.row


def _vp_blocks(system: System) -> Any:
    """The VA blocks as a typed list, made and grown by ``ops.row_lists``' cached functions
    (numba's own ``typed.List`` methods compile in every process, ~0.8 s)."""
    blocks = row_lists.new_u64_2d()
    for blk in system.cpu.va.blocks:
        row_lists.add_u64_2d(blocks, blk)
    return blocks


#: the ``KState`` fields that are the live objects' own arrays, in ``_big_values``' order
BIG_FIELDS = (
    "epc_prev", "epc_next", "epc_ends", "epc_flags", "owner_encl", "owner_index", "pflags",
    "desc", "va_epc_of", "va_used", "va_prev", "va_next", "va_ends", "eflags", "bepoch",
    "etag", "vp_epc", "vp_row", "b_present", "b_odd", "b_chunk_row", "b_contents", "b_mac",
    "b_flags", "b_high_row", "b_high", "b_pcmd_live", "b_pcmd_kept", "b_pcmd_gen",
)  # fmt: skip


def _big_values(system: System, encl: Any) -> tuple[Any, ...]:
    """The ``KState`` fields that are the live objects' own arrays (no copy: the machine
    writes them in place, so they never need folding), in ``BIG_FIELDS``' order. Each may
    be *replaced* by Python (a VA page's new row reallocates ``va_epc``/``va_row``, a new
    VA page grows ``encl.va_ids``/``encl.va``, an EAUG grows ``encl.pages``, a backing
    chunk's row grows the backing store's arrays): ``refresh_layout`` compares them by
    identity. A tuple, not a dict: ``refresh_layout`` runs around every served step
    (session ``slice``)."""
    sgx = system.sgx
    cpu = system.cpu
    epc = sgx.epc
    vp = cpu.va
    rows = encl.backing.compiled()
    b = encl.backing
    e = cpu.epcm
    va = encl.va
    return (
        epc.links.prev, epc.links.next, epc.links.ends, epc.owner_flags, epc.owner_encl,
        epc.owner_flags, encl.pages.flags, encl.pages.desc, encl.va_ids.epc, va.used,
        va.links.prev, va.links.next, va.links.ends, e.flags, e.bepoch, e.tag, vp.va_epc,
        vp.va_row, b.present.bits, b.odd.bits, b.chunk_row, rows.contents, rows.mac,
        rows.flags, b.high_row, rows.high, b.pcmd_live, b.pcmd_kept, b.pcmd_gen,
    )  # fmt: skip


def _big_arrays(system: System, encl: Any) -> dict[str, Any]:
    """``_big_values`` by ``KState`` field name."""
    return dict(zip(BIG_FIELDS, _big_values(system, encl), strict=True))


#: ``KState``'s big fields at once, in ``BIG_FIELDS``' order (one C call, not ~30 getattrs)
_big_of = operator.attrgetter(*BIG_FIELDS)


def refresh_layout(system: System, encl: Any, ks: Any, nblocks: int) -> tuple[Any, int]:
    """``ks`` with its big arrays those the Python objects hold now, and the length of its
    typed list of VA blocks (``nblocks``: the caller's count of it, since asking a typed
    list its length is a compiled call, ~50 us from Python).

    Decision (2026-11-26, issue 9 session ``ksync``): a layout change is detected by
    *identity*, not by a version counter kept by every Python container: each field of
    ``_big_arrays`` is compared with ``is`` to the object's attribute now, and the typed
    list of VA blocks by length (blocks are only appended). Python code that grows a
    container replaces its array (``np.resize``/``np.concatenate`` never keep the object),
    so a changed layout is always a different object, and an array changed in place is
    already shared. The check reads ~35 attributes (~5 us), paid only around served steps
    where Python ran in between; a ``KState`` is rebuilt (``_replace``) only on a change.
    """
    cur = _big_values(system, encl)
    changed: dict[str, Any] = {}
    if not all(map(operator.is_, _big_of(ks), cur)):  # (all the same: the common case)
        changed = {k: v for k, v in zip(BIG_FIELDS, cur, strict=True) if getattr(ks, k) is not v}
    blocks = system.cpu.va.blocks
    if len(blocks) != nblocks:  # (``_serve`` may have appended some already)
        nblocks = row_lists.rows_len_u64_2d(ks.vp_blocks)
        while nblocks < len(blocks):
            row_lists.add_u64_2d(ks.vp_blocks, blocks[nblocks])
            nblocks += 1
    return (ks._replace(**changed) if changed else ks), nblocks


def take_small(system: System, encl: Any, secs: Any, ks: Any) -> None:
    """The per-step part of ``_kernel_state``: the kernel's scalars from the Python objects
    into ``kc``/``ku`` (what Python may have changed since the machine last ran). The
    machine's own fields (its batch, loop index, request) are left alone; ``fold_kernel``
    is the inverse, so a take after a fold with nothing in between changes nothing."""
    sgx = system.sgx
    kc = ks.kc
    ke = ks.ke
    kc[K.K_NR_FREE] = sgx.epc.nr_free_pages
    kc[K.K_HIGH] = sgx.high_pages
    kc[K.K_NR_TO_SCAN] = sgx.nr_to_scan
    ke[K.K_CHILD_CNT] = encl.secs_child_cnt
    ke[K.K_SECS_CHILDREN] = secs.child_count
    ke[K.K_REFCOUNT] = encl.refcount
    # EINIT between two served steps: a session begun during the build (ADD_PAGES' loop
    # on the core, session ``addcore``) goes on after it, and D's SECS eviction reads it
    ke[K.K_INITIALIZED] = int(encl.initialized)
    ke[K.K_EPOCH] = secs.epoch
    ke[K.K_TRACKING] = lp_mask(secs.tracking)
    ke[K.K_INSIDE] = lp_mask(secs.inside)  # ETRACK's tracking set is the LPs inside
    kc[K.K_SLEEPING] = int(sgx.ksgxd_sleeping)
    mask = 0
    for c in encl.cpumask():
        mask |= 1 << c
    ke[K.K_CPUMASK] = mask
    ke[K.K_B_WIDTH] = encl.backing._width
    ks.ku[0] = system.cpu._next_version


def lp_mask(lps: Any) -> int:
    """A set of LPs as ``K_INSIDE``/``K_TRACKING``'s bit mask (PATHS.md N2)."""
    mask = 0
    for lp in lps:
        mask |= 1 << lp
    return mask


def lp_set(mask: int) -> set[int]:
    """``lp_mask``'s inverse."""
    return {lp for lp in range(mask.bit_length()) if (mask >> lp) & 1}


def _flush_timeline(system: System, ks: Any) -> None:
    n = int(ks.kc[K.K_FT_N])
    # ``record`` of each point in order, compiled (``fast/history.record_run``), read from
    # the buffer's rows as they are (``Timeline.record_pairs``)
    system.sgx.free_timeline.record_pairs(ks.ft[:n])
    ks.kc[K.K_FT_N] = 0


def _flush_warnings(system: System, ks: Any) -> None:
    from epcsim.kernel.encls import encls_warn

    sgx = system.sgx
    n = int(ks.kc[K.K_WARN_N])
    names = {K.W_EBLOCK: ("EBLOCK", "EPC page"), K.W_ETRACK: ("ETRACK", "SECS"),
             K.W_EWB: ("EWB", "EPC page")}  # fmt: skip
    for kind, ret, page in ks.warn[:n].tolist():
        if encls_failed(ret):
            name, what = names[kind]
            encls_warn(sgx, ret, name, f"{what} {page}")
    ks.kc[K.K_WARN_N] = 0


def _serve(system: System, encl: Any, ks: Any, counts: dict[str, int]) -> Any:
    """Do in Python what the call asked for (``kstate.SVC_*``); returns the KState to go
    on with (a VA row may add a block to the typed list)."""
    from epcsim.kernel.backing import BackingRecord, _unpack_flags

    kc = ks.kc
    ke = ks.ke
    code = int(kc[K.K_SVC])
    arg = int(kc[K.K_SVC_ARG])
    kc[K.K_SVC] = K.SVC_NONE
    counts[str(code)] = counts.get(str(code), 0) + 1
    if code == K.SVC_VA_ROW:
        vp = system.cpu.va
        row = vp._new_row()
        vp._set_row(arg, row)
        n = row_lists.rows_len_u64_2d(ks.vp_blocks)
        while n < len(vp.blocks):
            row_lists.add_u64_2d(ks.vp_blocks, vp.blocks[n])
            n += 1
        return ks._replace(vp_epc=vp.va_epc, vp_row=vp.va_row)
    if code == K.SVC_CHUNK:
        encl.backing.add_chunk(arg)
        return ks
    if code == K.SVC_STORE:
        r = int(kc[K.K_SVC_R])  # the reclaimer whose EWB it is (reclaim.py)
        index, pinned = int(ks.batch[r, arg, 1]), int(ks.batch[r, arg, 2])
        b = encl.backing
        ct = int(ks.rc[r, K.RC_CT]) & ((1 << 64) - 1)
        mac = int(ks.rc[r, K.RC_MAC]) & ((1 << 64) - 1)
        pcmd = pack_pcmd(
            _unpack_flags(int(ks.rc[r, K.RC_PACKED])), int(ke[K.K_EID]), mac.to_bytes(8, "little")
        )
        if pinned >= 0:
            b._pinned_gen[index] = pinned
        # ``store`` counts a new record in ``nr_records`` itself, and the machine did not
        # (``reclaim.py``'s ``SVC_STORE`` path adds nothing to ``K_NR_RECORDS``): nothing to
        # fold. (Until session ``twoencl3`` the count was taken back out of ``K_NR_RECORDS``
        # here, losing it at the fold: a file's first record - stored here - showed it.)
        b.store(index, BackingRecord(ct.to_bytes(8, "little"), pcmd))
        ke[K.K_B_WIDTH] = b._width  # a file's first record lays it out (PATHS.md item 5)
        return ks
    if code == K.SVC_FT_FULL:
        _flush_timeline(system, ks)
        return ks
    if code == K.SVC_WARN_FULL:
        _flush_warnings(system, ks)
        return ks
    raise RuntimeError(f"driver: unknown request {code}")


def _fold(system: System, pairs: list[tuple[Any, Any]], co: CoState, kt: Any) -> None:
    """The small arrays back into the Python objects: enclave slot ``s``'s ``pairs[s]``
    (its lock from mutex row ``s``, its ``KState`` ``kt[s]``)."""
    sgx = system.sgx
    m = system.machine
    task = sgx.ksgxd_task
    assert task is not None
    clk = co.clk
    fold_clock(m, clk)
    rq = m.rq
    assert isinstance(rq, CfsRunQueue)  # _check_regime
    rq.min_vruntime = int(clk[C_MIN_VR])
    fold_task(task, co.tasks[0])
    for c in range(m.nr_cpus):
        m.running[c] = task if co.cpus[c] == 0 else None
    for s, (encl, secs) in enumerate(pairs):
        mutex = encl.lock
        assert isinstance(mutex, LinuxMutex)  # _check_regime
        mx = co.mtx[s]
        mutex.owner = None if mx[M_OWNER] < 0 else task
        mutex._free_since = int(mx[M_FREE_SINCE])
        mutex._freed_from = int(mx[M_FREED_FROM])
        mutex._handed_at = int(mx[M_HANDED_AT])
        fold_kernel(system, encl, secs, kt[s])  # the global part folds once
    for ns, ev, _t, mu in co.trace[: clk[C_TRACE_LEN]].tolist():
        trace = pairs[mu][0].lock.trace
        if trace is not None:
            trace.append((ns, TRACE_EVENTS[ev], task.name))


def fold_kernel(system: System, encl: Any, secs: Any, ks: Any) -> None:
    """``KState``'s small arrays back into the Python objects (every driver call's, and
    around each served step: ``take_small`` is its inverse). The records the machines
    wrote unsealed stay so (``driver/unsealed.py``): the backing store seals them when
    Python first reads or writes one (``EnclaveBacking.sealed_at``). Counters, records,
    EWB failures and the resident/swapped counts are deltas, zeroed once added; the free
    timeline and the warnings are flushed; the rest are absolute values. Folding twice is
    folding once."""
    sgx = system.sgx
    kc = ks.kc
    ke = ks.ke
    stats = sgx.stats
    cnt = ks.cnt
    if cnt.any():  # (a served step folds ~45 times a batch: skip what is empty)
        for name, v in zip(K.COUNTERS, cnt.tolist(), strict=True):
            if v:
                setattr(stats, name, getattr(stats, name) + v)
        cnt[:] = 0  # folded as deltas: a second fold (around the next served step) adds none
    sgx.epc.nr_free_pages = int(kc[K.K_NR_FREE])
    if kc[K.K_FT_N]:
        _flush_timeline(system, ks)
    if kc[K.K_WARN_N]:
        _flush_warnings(system, ks)
    encl.secs_child_cnt = int(ke[K.K_CHILD_CNT])
    encl.refcount = int(ke[K.K_REFCOUNT])
    secs.child_count = int(ke[K.K_SECS_CHILDREN])
    # the tracking set as the machines left it (an LP bit mask: an ETRACK copied
    # ``K_INSIDE`` into it, each AEX took its LP out; PATHS.md N2)
    secs.tracking = lp_set(int(ke[K.K_TRACKING]))
    secs.epoch = int(ke[K.K_EPOCH])
    system.cpu._next_version = int(ks.ku[0])
    encl.backing.nr_records += int(ke[K.K_NR_RECORDS])
    sgx.ewb_failures += int(kc[K.K_EWB_FAILURES])
    ke[K.K_NR_RECORDS] = kc[K.K_EWB_FAILURES] = 0
    counts = encl.counts  # the running resident/swapped counts (driver/page_counts.py)
    counts.resident += int(ke[K.K_RESIDENT])
    counts.swapped += int(ke[K.K_SWAPPED])
    ke[K.K_RESIDENT] = ke[K.K_SWAPPED] = 0
    sgx.ksgxd_sleeping = bool(kc[K.K_SLEEPING])


def run_ksgxd(system: System, *, trace: bool | None = None) -> KsgxdResult:
    """Wake ksgxd (``Sgx.wake_ksgxd``) and run it on the compiled driver until it sleeps
    again or hands back. ``system`` must be in the regime (module docstring), with one
    enclave or two (PATHS.md "Two enclaves in the regime": each batch page's enclave
    slot, ``driver/slots.py``)."""
    from epcsim.fast.driver.slots import check_slots, kernel_slots, serve_slots

    pairs = check_slots(system, K.N_SLOTS)
    encls = [e for e, _ in pairs]
    if trace is None:
        trace = any(e.lock.trace is not None for e in encls)
    co = _core_state(system, trace, encls)
    kt = kernel_slots(system, pairs)
    ks = kt[0]
    sgx = system.sgx
    # Sgx.wake_ksgxd: the waiter's event succeeds now
    wake(co, 0)
    sgx.ksgxd_sleeping = False
    ks.kc[K.K_SLEEPING] = 0
    ks.cnt[K.CN_WAKEUPS] += 1
    counts: dict[str, int] = {}
    pending = -1
    while True:
        rc = drive(co, kt, pending)
        if rc != SERVE:
            break
        kt = serve_slots(system, encls, kt, counts)
        pending = 0
    ks = kt[0]
    _fold(system, pairs, co, kt)
    pc = P_NAMES[int(co.tasks[0, T_PC])]
    if rc == IDLE:
        return KsgxdResult(None, pc, services=counts)
    assert rc == HANDED_BACK
    hb = int(co.clk[C_HB])
    why = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
    return KsgxdResult(why, pc, int(ks.kc[K.K_HB_PAGE]), services=counts)


__all__ = ["KsgxdResult", "run_ksgxd"]
