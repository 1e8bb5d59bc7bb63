"""``SGX_IOC_ENCLAVE_ADD_PAGES`` batched: ``add_run`` applies a run of
``sgx_encl_add_page`` calls at once (the conditions are the package docstring's), and
``_measure`` gives MRENCLAVE the same EADD and EEXTEND blocks in the same order as the
reference (``epcsim.isa.measure``).

Why a module of its own: ADD_PAGES is SGX1's loop (``sgx_ioc_enclave_add_pages``), with its
own conditions (``sgx_encl_grow``'s VA pages, the allocator's node, the measurement), apart
from the SGX2 loops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PAGE_SHIFT, PAGE_SIZE, SGX_VA_SLOT_COUNT, PageType
from epcsim.fast.ioctl.batch import MAX_RUN, _finish, _quiet, _run_of
from epcsim.fast.ioctl.layouts import _encl_add, _epcm_eadd
from epcsim.isa.measure import eadd_blocks, eextend_headers, tag_chunk
from epcsim.kernel.encl import PROT_R, PROT_W
from epcsim.kernel.epc import (
    OWNER_VA,
    SGX_EPC_PAGE_RECLAIMER_TRACKED,
)

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.isa import SgxCpu
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.progress import ProgressHook


#: pages hashed per MRENCLAVE update in a measured run (bounds the temporary buffer)
MEASURE_BLOCK = 1024


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
    from epcsim.kernel.ioctl_add import content_for

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


def measure_added(encl: SgxEncl, index: int, k: int, flags: int) -> None:
    """MRENCLAVE's EADD blocks of the ``k`` unmeasured pages from ``index`` that the
    compiled core added (``StreamCore.add``, session ``addcore``), in page order, as each
    page's ``Measurement.eadd`` would have fed them: the core does not hash (PATHS.md "The
    ADD_PAGES loop": the blocks and their order do not depend on timing), so the caller
    feeds them at the core's stop, before any page of its own. In runs of ``MAX_RUN``
    pages (the same bytes in the same order: one hash): since session ``addrun`` a build's
    pages past the EPC are one core call, and its blocks at once (64 B a page and their
    temporaries) raised ``epcsim run``'s peak RSS at 4 GiB from 284 to 359 MiB."""
    st = encl.sgx.cpu.secs_state(encl.secs_epc)
    pt = (flags >> 8) & 0xFF
    eadd_flags = flags & ~7 if pt == PageType.TCS else flags
    for a in range(index, index + k, MAX_RUN):
        idx = np.arange(a, min(a + MAX_RUN, index + k), dtype=np.int64)
        linaddrs = (encl.base + (idx << PAGE_SHIFT)).astype(np.uint64)
        _measure(encl.sgx.cpu, st, None, linaddrs - np.uint64(st.base), eadd_flags, False)


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


__all__ = ["MEASURE_BLOCK", "add_run", "measure_added"]
