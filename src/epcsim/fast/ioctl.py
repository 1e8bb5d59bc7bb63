"""Batched runs of the enclave ioctls' page loops: ADD_PAGES, MODIFY_TYPES(TRIM), REMOVE_PAGES.

Each loop (``sgx_ioc_enclave_add_pages``, ``_page_loop`` of the SGX2 ioctls) does per page a
fixed sequence of steps with fixed costs. When nothing can interleave with a run of pages,
every page of the run does exactly what the reference does, at a fixed offset in time, so
the run is applied at once and its cost charged in one sum. "Nothing can interleave" is
``_quiet``: no event due up to and including the run's end (the elision rule of
``Task.run``), no task waiting for a CPU (``need_resched`` stays false), ``encl->lock`` idle.
Each run function adds the conditions of its own loop and stops the run at the first page
that does not meet them; that page runs the reference code:

* ``add_run`` (``sgx_encl_add_page``): the offset has no page yet, the allocator's node has
  a free page for it (and for the VA page ``sgx_encl_grow`` adds every 512 pages: EPA runs
  in the batch, through the ISA's ``epa``) and the free count stays at or above the low
  watermark (no ksgxd wake-up, no reclaim); EADD (and EEXTEND) cannot fail on
  a free page of a created, uninitialized enclave. MRENCLAVE gets the same bytes in the same
  order (``epcsim.isa.measure.eadd_blocks``/``eextend_headers``).
* ``modify_trim_run`` (``sgx_enclave_modify_types`` with TRIM): the page is resident and not
  BEING_RECLAIMED, REG or TCS, EMODT succeeds (``fast/emodt.emodt_word_ok``: valid, REG or
  TCS in the EPCM, neither PENDING nor MODIFIED), no LP is
  inside the enclave and no other CPU is in its mm cpumask (ETRACK succeeds, no IPI), the
  free count is at or above the low watermark (``sgx_reclaim_direct`` does nothing).
* ``remove_run`` (``sgx_enclave_remove_pages``): the page is resident, not BEING_RECLAIMED,
  an accepted TRIM page (the EMODPR probe takes #PF), on the LRU or untracked, not poisoned;
  freeing pages only raises the free count, so direct reclaim stays idle.

The EPCM, the enclave's page arrays and ``sgx_epc_page`` are written through the ``_epcm_*``
and ``_encl_*`` functions below only, so a layout change touches those.

A ``progress`` hook (``ProgressHook``) marked ``observe_only`` (a progress bar) is called once
per page, in order, with the clock set to that page's end, as in the reference; the page
arrays it could read already hold the whole run. A hook without the mark may act (a test
sends a signal from one), so the callers take no batched run then
(``epcsim.kernel.ioctl.hook_may_act``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PAGE_SHIFT, PAGE_SIZE, SGX_VA_SLOT_COUNT, PageType
from epcsim.isa.measure import eadd_blocks, eextend_headers, tag_chunk
from epcsim.kernel.encl import PROT_R, PROT_W
from epcsim.kernel.epc import (
    OWNER_NONE,
    OWNER_VA,
    SGX_EPC_PAGE_IS_FREE,
    SGX_EPC_PAGE_ON_LRU,
    SGX_EPC_PAGE_POISON,
    SGX_EPC_PAGE_RECLAIMER_TRACKED,
)
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.engine.machine import Machine, Task
    from epcsim.isa import SgxCpu
    from epcsim.isa.secs import SecsState
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.ioctl import ProgressHook

_PT_TRIM = int(PageType.TRIM)
#: pages hashed per MRENCLAVE update in a measured run (bounds the temporary buffer)
MEASURE_BLOCK = 1024
#: longest run one call applies: each call scans its window, so a bounded window keeps a
#: range that is cut into many runs (events, VA pages) linear in its length. It also bounds
#: the run's temporaries (index, address and timeline arrays, ~100 B a page at their peak)
#: to a few hundred KiB: with 65,536-page runs they were megabytes, freed blocks above glibc's
#: mmap threshold raise that threshold, later ones stay on the heap, and the process kept
#: them - row 8 of BENCHMARKS.md measured 72-85 B of RSS per page for the fast engine at
#: 256 MiB + 256 MiB against 25 B with 4,096-page runs (the reference: 38-47 B). The price:
#: ADD_PAGES of 524,288 pages took 0.52-0.70 µs a page against 0.40-0.46 with 65,536-page
#: runs (each run's fixed work, alternating runs on the shared machine).
MAX_RUN = 1 << 12


# -- what every batch needs ---------------------------------------------------------------------
def _quiet(task: Task, encl: SgxEncl, period: int, limit: int) -> int:
    """How many pages of ``period`` ns each can run before anything else could: 0 if some
    other task could interleave now."""
    m = task.m
    limit = min(limit, MAX_RUN)
    if limit <= 0 or period <= 0 or task.cpu is None or task._resched:
        return 0
    if m.rq.waiting() or not encl.lock.idle():
        return 0
    if m.flood is not None and m.flood.parked:  # their retries would take encl->lock
        return 0
    nxt = m.env.peek()
    if nxt == float("inf"):
        return limit
    return max(0, min(limit, (int(nxt) - 1 - m.now) // period))


def _finish(
    task: Task,
    encl: SgxEncl,
    k: int,
    period: int,
    steps: tuple[int, ...],
    progress: ProgressHook | None,
    count0: int,
    extra: tuple[int, np.ndarray] | None = None,
) -> None:
    """Charge ``k`` pages of ``period`` ns (``steps``: the costs of the ``Task.run`` calls of
    one page, each elided), release ``encl->lock`` at the last page's end, call the hook.
    ``extra`` = (ns, mask): the pages of ``mask`` take one more step of ``ns`` (EPA)."""
    m: Machine = task.m
    t0 = m.now
    ends = np.arange(1, k + 1, dtype=np.int64) * period
    nsteps = k * sum(1 for ns in steps if ns > 0)
    if extra is not None:
        ns, mask = extra
        ends += np.cumsum(mask.astype(np.int64)) * ns
        nsteps += int(mask.sum()) * (ns > 0)
    end = t0 + int(ends[-1])
    encl.lock.released(end)
    task.busy_ns += int(ends[-1])
    m.elided += nsteps
    encl.sgx.batched_pages += k
    if progress is not None:
        for j in range(k):
            m.env._now = t0 + int(ends[j])
            progress(encl, count0 + (j + 1) * PAGE_SIZE)
    m.env._now = end


def _run_of(mask: np.ndarray) -> int:
    """Length of the leading run of True."""
    return int(np.argmin(mask)) if not mask.all() else int(mask.size)


# -- state adapters (the only writers of the layouts) ---------------------------------------
def _epcm_eadd(cpu: SgxCpu, pages, pt: int, rwx: int, secs: int, linaddrs, contents) -> None:
    """EADD (``EnclsMixin.eadd``) of each page: ``contents`` is None (zero pages), a list of
    4 KiB ``bytes`` (``full`` mode) or of 64-bit tags."""
    e = cpu.epcm
    if e.data is not None:
        if contents is None:
            e.data[pages] = 0
        else:
            e.data[pages] = np.frombuffer(b"".join(contents), np.uint8).reshape(-1, PAGE_SIZE)
    elif contents is None:  # _store_contents: a tag only outside full mode
        e.tag[pages] = 0
    else:
        e.tag[pages] = np.asarray(contents, dtype=np.uint64)
    e.valid[pages] = True
    e.pt[pages] = pt
    e.rwx[pages] = rwx
    e.pending[pages] = e.modified[pages] = e.pr[pages] = e.blocked[pages] = False
    e.secs[pages] = secs
    e.linaddr[pages] = linaddrs
    e.bepoch[pages] = 0


def _epcm_emodt_trim(cpu: SgxCpu, pages, epochs, now: int) -> None:
    """EMODT to TRIM (``EdmmMixin.emodt``): MODIFIED, RWX and PR cleared, BEPOCH stamped
    (``now``: the SECS's epoch after the batch's ETRACKs, see ``Epcm.stamp_epochs``). One
    page's change, compiled: ``fast/emodt.emodt_apply``."""
    e = cpu.epcm
    e.pt[pages] = PageType.TRIM
    e.modified[pages] = True
    e.rwx[pages] = 0
    e.pr[pages] = False
    e.stamp_epochs(pages, epochs, now)


def _epcm_clear(cpu: SgxCpu, pages) -> None:
    """``Epcm.clear`` of each page (EREMOVE)."""
    e = cpu.epcm
    e.valid[pages] = False
    e.pt[pages] = 0
    e.rwx[pages] = 0
    e.pending[pages] = e.modified[pages] = e.pr[pages] = e.blocked[pages] = False
    e.secs[pages] = -1
    e.linaddr[pages] = 0
    e.bepoch[pages] = 0


def _encl_add(encl: SgxEncl, sl: slice, pages, pt: int, max_prot: int) -> None:
    """``sgx_encl_add_page``'s page entry; the loader maps it with ``max_prot``."""
    encl.present[sl] = True
    encl.epc[sl] = pages
    encl.type[sl] = pt
    encl.max_prot[sl] = max_prot
    encl.vma_prot[sl] = max_prot


def _encl_remove(encl: SgxEncl, sl: slice) -> None:
    """``sgx_enclave_remove_pages``: PTEs zapped, the entry erased."""
    encl.pte_present[sl] = False
    encl.pte_young[sl] = False
    encl.epc[sl] = -1
    encl.present[sl] = False
    encl.type[sl] = 0
    encl.max_prot[sl] = 0


# -- SGX_IOC_ENCLAVE_ADD_PAGES ------------------------------------------------------------------
def _add_period(task: Task, measure: bool) -> tuple[int, tuple[int, ...]]:
    c = task.m.costs
    steps = (c.ioctl_page, c.eadd) + ((c.eextend,) * 16 if measure else ())
    return sum(steps), steps


def add_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    src: bytes | None,
    src_off: int,
    flags: int,
    measure: bool,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of ADD_PAGES from page ``index`` at once (see the module
    docstring); ``src[src_off:]`` holds their data (None: zero pages). Returns the pages
    added (0: run the reference for page ``index``)."""
    from epcsim.kernel.ioctl import content_for

    sgx = encl.sgx
    hw = sgx.cpu
    period, steps = _add_period(task, measure)
    epa_ns = task.m.costs.epa
    k = _quiet(task, encl, period + epa_ns, min(limit, encl.nr_pages - index))
    secs = encl.secs_epc
    st = hw.secs_at.get(secs) if secs >= 0 else None
    if k <= 0 or st is None or st.initialized:
        return 0
    k = min(k, _run_of(~encl.present[index : index + k]))
    if k <= 0:
        return 0
    # sgx_encl_grow: the pages whose page_cnt is a multiple of 512 also get a VA page
    grow = (encl.page_cnt + np.arange(k, dtype=np.int64)) % SGX_VA_SLOT_COUNT == 0
    need = np.arange(1, k + 1, dtype=np.int64) + np.cumsum(grow)  # EPC pages taken so far
    node = sgx._node_of(task)
    epc = sgx.epc
    fl = epc.free_lists[node]
    avail = min(len(fl), epc.nr_free_pages - sgx.low_pages)
    k = int(np.searchsorted(need, avail, side="right"))
    if k <= 0 or not st.contains(encl.linaddr(index + k - 1)):
        return 0
    grow = grow[:k]
    total = int(need[k - 1])
    ring = fl.first(total)
    if hw.epcm.valid[ring].any():
        return 0
    pt = (flags >> 8) & 0xFF
    rwx = 0 if pt == PageType.TCS else flags & 7
    eadd_flags = flags & ~7 if pt == PageType.TCS else flags
    max_prot = (PROT_R | PROT_W) if pt == PageType.TCS else flags & 7
    contents = None
    if src is not None:
        mode = hw.content_mode
        contents = [
            content_for(mode, src[src_off + j * PAGE_SIZE : src_off + (j + 1) * PAGE_SIZE])
            for j in range(k)
        ]
        if any(c is None for c in contents):
            return 0
    t0 = task.m.now
    # sgx_alloc_epc_page(reclaim=true) at each page's start, then the VA page's, in list order
    popped = epc.alloc_many(node, total)
    grown_before = np.cumsum(grow) - grow  # VA pages taken before page j
    pos = np.arange(k, dtype=np.int64) + grown_before
    pages = popped[pos]
    vas = popped[pos[grow] + 1]
    idx = np.arange(index, index + k, dtype=np.int64)
    epc.owner_encl[popped] = encl.id
    epc.owner_index[pages] = idx
    epc.owner_index[vas] = OWNER_VA
    start = t0 + np.arange(k, dtype=np.int64) * period + grown_before * epa_ns
    seq_time = np.repeat(start, 1 + grow.astype(np.int64))  # one record per page taken
    free0 = epc.nr_free_pages + total
    sgx.free_timeline.record_many(seq_time, free0 - 1 - np.arange(total, dtype=np.int64))
    for va in vas.tolist():  # EPA, sgx_alloc_va_page's count, then the head of va_pages
        if hw.epa(va):
            raise RuntimeError(f"EPA refused free EPC page {va}")
        encl.add_va_page(va)
    sgx.stats.epa += int(vas.size)
    sgx.stats.va_pages += int(vas.size)
    encl.page_cnt += k
    # EADD, then EEXTEND, in page order
    linaddrs = (encl.base + (idx << PAGE_SHIFT)).astype(np.uint64)
    _epcm_eadd(hw, pages, pt, rwx, secs, linaddrs, contents)
    st.child_count += k
    _measure(hw, st, pages, linaddrs - np.uint64(st.base), eadd_flags, measure)
    _encl_add(encl, slice(index, index + k), pages, pt, max_prot)
    encl.secs_child_cnt += k
    epc.flags[pages] |= SGX_EPC_PAGE_RECLAIMER_TRACKED
    sgx.lru.mark_many(pages)
    sgx.stats.eadd += k
    if measure:
        sgx.stats.eextend += 16 * k
    _finish(task, encl, k, period, steps, progress, count0, (epa_ns, grow))
    return k


def _measure(hw: SgxCpu, st, pages, offsets: np.ndarray, flags: int, measure: bool) -> None:
    """``Measurement.eadd`` then (with SGX_PAGE_MEASURE) sixteen ``eextend`` per page."""
    mr = st.measurement
    if not measure:
        mr.update_raw(eadd_blocks(offsets, flags).tobytes())
        return
    e = hw.epcm
    chunks = np.arange(16, dtype=np.uint64) * np.uint64(256)
    for a in range(0, pages.size, MEASURE_BLOCK):
        pg, off = pages[a : a + MEASURE_BLOCK], offsets[a : a + MEASURE_BLOCK]
        n = pg.size
        buf = np.zeros((n, 64 + 16 * (64 + 256)), dtype=np.uint8)
        buf[:, :64] = eadd_blocks(off, flags)
        ext = buf[:, 64:].reshape(n, 16, 320)
        ext[:, :, :64] = eextend_headers((off[:, None] + chunks[None, :]).reshape(-1)).reshape(
            n, 16, 64
        )
        if e.data is not None:
            ext[:, :, 64:] = e.data[pg].reshape(n, 16, 256)
        else:
            tags = e.tag[pg].tolist()
            cache: dict[int, np.ndarray] = {}
            for r, tag in enumerate(tags):
                body = cache.get(tag)
                if body is None:
                    raw = b"".join(tag_chunk(tag, c) for c in range(16))
                    body = cache[tag] = np.frombuffer(raw, np.uint8).reshape(16, 256)
                ext[r, :, 64:] = body
        mr.update_raw(buf.tobytes())


# -- SGX_IOC_ENCLAVE_MODIFY_TYPES (TRIM) ----------------------------------------------------------
def _resident_run(encl: SgxEncl, index: int, k: int) -> int:
    """``__sgx_encl_load_page`` returns 0 without loading: present, resident, not
    BEING_RECLAIMED."""
    sl = slice(index, index + k)
    return _run_of(encl.present[sl] & (encl.epc[sl] >= 0) & ~encl.reclaiming[sl])


def _emod_run(
    task: Task, encl: SgxEncl, index: int, limit: int, period: int
) -> tuple[int, SecsState | None]:
    """What a batched MODIFY_TYPES(TRIM) and RESTRICT_PERMISSIONS both need before their
    EMODT/EMODPR: a quiet run (``_quiet``), an initialized SECS that no LP is inside and that
    tracks no epoch (each page's ``sgx_enclave_etrack`` succeeds at once), direct reclaim
    idle, no other CPU in the enclave's cpumask (``send_ipi`` reaches nobody), and pages that
    ``__sgx_encl_load_page`` finds resident. Returns ``(pages, SECS state)``; 0 pages: run
    the reference for ``index``."""
    sgx = encl.sgx
    k = _quiet(task, encl, period, min(limit, encl.nr_pages - index))
    secs = encl.secs_epc
    st = sgx.cpu.secs_at.get(secs) if secs >= 0 else None
    if k <= 0 or st is None or not st.initialized or st.inside or st.tracking:
        return 0, None
    if sgx.direct_reclaim and sgx.should_reclaim(sgx.low_pages):
        return 0, None
    if any(cpu != task.cpu for cpu in encl.cpumask()):  # send_ipi would reach another CPU
        return 0, None
    return _resident_run(encl, index, k), st


def modify_trim_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of MODIFY_TYPES(TRIM) from page ``index`` at once (see the
    module docstring). Returns the pages changed (0: run the reference for ``index``)."""
    from epcsim.fast.emodt import emodt_words_ok  # numba: not on the reference's import

    sgx = encl.sgx
    hw = sgx.cpu
    c = task.m.costs
    steps = (c.ioctl_page, c.emodt, c.etrack)
    k, st = _emod_run(task, encl, index, limit, sum(steps))
    if k <= 0 or st is None:
        return 0
    secs = encl.secs_epc
    sl = slice(index, index + k)
    t = encl.type[sl]
    pages = encl.epc[sl].astype(np.int64)
    e = hw.epcm
    # the kernel's transition check, the page's own SECS (initialized: the ioctl checked),
    # then EMODT's outcome from the EPCM word (``fast/emodt``, the one restatement)
    ok = ((t == PageType.REG) | (t == PageType.TCS)) & (e.secs[pages] == secs)
    ok &= emodt_words_ok(e.flags[pages], _PT_TRIM)
    k = _run_of(ok)
    if k <= 0:
        return 0
    pages = pages[:k]
    sl = slice(index, index + k)
    # EMODT stamps the current epoch, then sgx_enclave_etrack starts the next one
    hw.epcm.advance_epoch(secs, st.epoch, st.epoch + k)  # the pages not stamped here
    _epcm_emodt_trim(hw, pages, st.epoch + np.arange(k, dtype=np.int64), st.epoch + k)
    st.epoch += k
    st.tracking = set()
    encl.type[sl] = PageType.TRIM
    sgx.stats.emodt += k
    sgx.stats.etrack += k
    _finish(task, encl, k, sum(steps), steps, progress, count0)
    return k


# -- SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS -------------------------------------------------------
def _epcm_emodpr(cpu: SgxCpu, pages, perm: int, epochs, now: int) -> None:
    """EMODPR (``EdmmMixin.emodpr``): RWX &= the new permissions, PR set, BEPOCH stamped
    (``now``: the SECS's epoch after the batch's ETRACKs, see ``Epcm.stamp_epochs``)."""
    e = cpu.epcm
    e.rwx[pages] = e.rwx[pages] & (perm & 7)
    e.pr[pages] = True
    e.stamp_epochs(pages, epochs, now)


def restrict_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    perm: int,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of RESTRICT_PERMISSIONS from page ``index`` at once: resident,
    not BEING_RECLAIMED, REG, and in the EPCM a valid REG page neither PENDING nor MODIFIED
    (EMODPR succeeds); ETRACK and the IPI as for ``modify_trim_run``. Returns the pages done
    (0: run the reference for ``index``)."""
    sgx = encl.sgx
    hw = sgx.cpu
    c = task.m.costs
    steps = (c.ioctl_page, c.emodpr, c.etrack)
    k, st = _emod_run(task, encl, index, limit, sum(steps))
    if k <= 0 or st is None:
        return 0
    secs = encl.secs_epc
    sl = slice(index, index + k)
    pages = encl.epc[sl].astype(np.int64)
    e = hw.epcm
    ok = (encl.type[sl] == PageType.REG) & e.valid[pages] & (e.pt[pages] == PageType.REG)
    ok &= ~e.pending[pages] & ~e.modified[pages] & (e.secs[pages] == secs)
    k = _run_of(ok)
    if k <= 0:
        return 0
    # EMODPR stamps the current epoch, then sgx_enclave_etrack starts the next one
    hw.epcm.advance_epoch(secs, st.epoch, st.epoch + k)  # the pages not stamped here
    _epcm_emodpr(hw, pages[:k], perm, st.epoch + np.arange(k, dtype=np.int64), st.epoch + k)
    st.epoch += k
    st.tracking = set()
    sgx.stats.emodpr += k
    sgx.stats.etrack += k
    _finish(task, encl, k, sum(steps), steps, progress, count0)
    return k


# -- SGX_IOC_ENCLAVE_REMOVE_PAGES ------------------------------------------------------------------
def _lru_unmark_many(lru, pages: np.ndarray) -> None:
    """``sgx_unmark_page_reclaimable`` of each page (all on the list) in order."""
    if type(lru).unmark is not KernelLru.unmark:
        for page in pages.tolist():
            lru.unmark(page)
        return
    if (~lru._flags[pages] & SGX_EPC_PAGE_ON_LRU).any():
        raise RuntimeError("unmark_many: a page is not on the LRU")
    lru.list.remove_many(pages)
    lru._flags[pages] &= ~SGX_EPC_PAGE_ON_LRU  # the flags' word (KernelLru)


def remove_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of REMOVE_PAGES from page ``index`` at once (see the module
    docstring). Returns the pages removed (0: run the reference for ``index``)."""
    sgx = encl.sgx
    hw = sgx.cpu
    c = task.m.costs
    steps = (c.ioctl_page, c.emodpr, c.zap_ptes, c.eremove)
    period = sum(steps)
    k = _quiet(task, encl, period, min(limit, encl.nr_pages - index))
    secs = encl.secs_epc
    st = hw.secs_at.get(secs) if secs >= 0 else None
    if k <= 0 or st is None:
        return 0
    if sgx.direct_reclaim and sgx.should_reclaim(sgx.low_pages):
        return 0
    k = _resident_run(encl, index, k)
    if k <= 0:
        return 0
    sl = slice(index, index + k)
    pages = encl.epc[sl].astype(np.int64)
    e = hw.epcm
    epc = sgx.epc
    flags = epc.flags[pages]
    tracked = (flags & SGX_EPC_PAGE_RECLAIMER_TRACKED) != 0
    ok = (encl.type[sl] == PageType.TRIM) & e.valid[pages] & (e.pt[pages] == PageType.TRIM)
    ok &= ~e.pending[pages] & ~e.modified[pages] & (e.secs[pages] == secs)
    ok &= ~tracked | sgx.lru.contains_many(pages)  # TRACKED, off the list: isolated, -EBUSY
    ok &= (flags & SGX_EPC_PAGE_POISON) == 0
    k = _run_of(ok)
    if k <= 0:
        return 0
    pages, tracked = pages[:k], tracked[:k]
    sl = slice(index, index + k)
    t0 = task.m.now
    period_j = np.arange(1, k + 1, dtype=np.int64) * period
    # sgx_unmark_page_reclaimable, then EREMOVE and sgx_free_epc_page at each page's end
    _lru_unmark_many(sgx.lru, pages[tracked])
    epc.flags[pages] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
    st.child_count -= k
    st.busy_tcs.difference_update(pages.tolist())
    _epcm_clear(hw, pages)
    free0 = epc.nr_free_pages
    _epc_free_many(epc, pages)
    sgx.free_timeline.record_many(t0 + period_j, free0 + np.arange(1, k + 1, dtype=np.int64))
    encl.secs_child_cnt -= k
    _encl_remove(encl, sl)
    encl.page_cnt -= k  # sgx_encl_shrink: VA pages are kept
    sgx.stats.emodpr += k
    sgx.stats.eremove += k
    _finish(task, encl, k, period, steps, progress, count0)
    return k


def _epc_free_many(epc, pages: np.ndarray) -> None:
    """``EpcPages.free`` of each page (none poisoned, all in use) in order: to the tail of
    each page's node list."""
    epc.owner_encl[pages] = -1
    epc.owner_index[pages] = OWNER_NONE
    nodes = epc.node_of_many(pages)
    for node in np.unique(nodes).tolist():
        epc.free_lists[node].extend(pages[nodes == node])
    epc.flags[pages] = SGX_EPC_PAGE_IS_FREE
    epc.nr_free_pages += int(pages.size)


__all__ = ["add_run", "modify_trim_run", "remove_run", "restrict_run"]
