"""``SGX_IOC_ENCLAVE_REMOVE_PAGES`` batched: ``remove_run`` applies a run of the page loop's
EMODPR probe, PTE zap, EREMOVE and ``sgx_free_epc_page`` at once, with the LRU's
``sgx_unmark_page_reclaimable`` (``_lru_unmark_many``) and the EPC's free lists
(``_epc_free_many``) for many pages.

Why a module of its own: one ioctl (``sgx_enclave_remove_pages``), the only batch that gives
pages back to the allocator, hence its two helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PageType
from epcsim.fast.ioctl.batch import _finish, _quiet, _resident_run, _run_of
from epcsim.fast.ioctl.layouts import _encl_remove, _epcm_clear
from epcsim.kernel.epc import (
    OWNER_NONE,
    SGX_EPC_PAGE_IS_FREE,
    SGX_EPC_PAGE_ON_LRU,
    SGX_EPC_PAGE_POISON,
    SGX_EPC_PAGE_RECLAIMER_TRACKED,
)
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.progress import ProgressHook


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


__all__ = ["remove_run"]
