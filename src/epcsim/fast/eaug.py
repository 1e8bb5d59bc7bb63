"""Batched EAUG via EACCEPT: a run of ``augment_via_eaccept`` pages at once.

The reference (``epcsim.workloads.edmm.eaccept_range`` with SECINFO REG|RW|PENDING) takes,
per absent page: an AEX and a #PF into ``sgx_vma_fault`` -> ``sgx_encl_eaug_page``
(``encl->lock``, ``sgx_alloc_epc_page(reclaim=false)``, ``sgx_encl_grow``, EAUG, the page
on the LRU, the PTE inserted young), the fault's latency sample, ERESUME, then EACCEPT and
its cost. When nothing can interleave with a run of such pages, each page does exactly the
same thing at a fixed offset in time, so the run can be applied at once:

* no event is due up to and including the run's end (the elision rule of ``Task.run``),
  no other task waits for a CPU (so ``need_resched`` stays false), ``encl->lock`` is idle;
* the thread is inside the enclave and the AEX + ERESUME pair would succeed
  (``SgxCpu.resumes_after_aex``): the pair then leaves the LP as it was, so it is applied once;
* every page is absent and unmapped, no page of the run needs a new VA page
  (``sgx_encl_grow``: ``page_cnt % 512``), the allocator's node has a free page for each
  and the free count stays at or above the low watermark (so ksgxd is not woken);
* SECINFO is exactly REG|RW|PENDING, so EACCEPT of a page EAUG has just made succeeds
  (``EncluMixin.eaccept``: the EPCM then holds a valid, accepted RW REG page).

Anything else - the first page of a range, the page that needs a VA page, a low free count,
an event due - runs the reference code. What the batch writes is listed in ``_apply``; the
EPCM and the enclave's page arrays are written through ``_set_epcm`` and ``_set_encl`` only,
so a layout change touches those two functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT, PageType, SecinfoFlags, secinfo_flags
from epcsim.kernel.encl import PROT_R, PROT_W, PROT_X
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED

if TYPE_CHECKING:
    from epcsim.isa import SgxCpu
    from epcsim.kernel.encl import SgxEncl
    from epcsim.user.thread import EnclaveThread

#: the only SECINFO the batch accepts: what EAUG leaves (REG, RW, PENDING)
EAUG_SECINFO = secinfo_flags(PageType.REG, PROT_R | PROT_W, int(SecinfoFlags.PENDING))


def _set_epcm(cpu: SgxCpu, pages: np.ndarray, secs: int, linaddrs: np.ndarray) -> None:
    """EAUG (``EdmmMixin.eaug``) then a successful EACCEPT (``EncluMixin.eaccept``) of each
    page: a valid REG page, RW, accepted (PENDING/MODIFIED/PR clear), zeroed contents."""
    e = cpu.epcm
    if e.data is not None:  # _store_contents: full mode zeroes the bytes, else the tag
        e.data[pages] = 0
    else:
        e.tag[pages] = 0
    e.valid[pages] = True
    e.pt[pages] = PageType.REG
    e.rwx[pages] = PROT_R | PROT_W
    e.pending[pages] = False
    e.modified[pages] = False
    e.pr[pages] = False
    e.blocked[pages] = False
    e.secs[pages] = secs
    e.linaddr[pages] = linaddrs
    e.bepoch[pages] = 0


def _set_encl(encl: SgxEncl, idx: slice, pages: np.ndarray) -> None:
    """``sgx_encl_eaug_page``'s page entry and PTE: present REG page, ``vm_max_prot_bits``
    RWX, mapped and young."""
    encl.present[idx] = True
    encl.type[idx] = PageType.REG
    encl.max_prot[idx] = PROT_R | PROT_W | PROT_X
    encl.epc[idx] = pages
    encl.pte_present[idx] = True
    encl.pte_young[idx] = True


def _free_pages_valid(cpu: SgxCpu, ring: np.ndarray) -> bool:
    return bool(cpu.epcm.valid[ring].any())


def run_length(t: EnclaveThread, first: int, limit: int, flags: int) -> int:
    """How many pages from ``first`` (at most ``limit``) the batch may take now (0: run the
    reference for page ``first``). Checks every condition of the module docstring."""
    encl, sgx, m = t.encl, t.sgx, t.m
    hw = t.hw
    if limit <= 0 or flags != EAUG_SECINFO or not (sgx.fast and sgx.sgx2):
        return 0
    if not encl.initialized or encl.dead or t.cpu is None or t._resched:
        return 0
    if not t.entered or t.aexed or m.rq.waiting() or not encl.lock.idle():
        return 0
    if m.flood is not None and m.flood.parked:  # their retries would take encl->lock
        return 0
    secs = encl.secs_epc
    if secs < 0 or secs not in hw.secs_at:
        return 0
    if t.tcs_index >= 0 and not encl.pte_present[t.tcs_index]:
        return 0
    if not hw.resumes_after_aex(t.cpu, t._tcs_epc(), secs):
        return 0
    # sgx_encl_grow: no page of the run may need a new VA page (also bounds the scan)
    end = min(first + limit, encl.nr_pages, first + (-encl.page_cnt % SGX_VA_SLOT_COUNT))
    if first >= end:
        return 0
    # pages: absent and unmapped
    busy = encl.present[first:end] | encl.pte_present[first:end]
    k = int(np.argmax(busy)) if busy.any() else end - first
    # the allocator: the task's node, and the low watermark
    node = sgx._node_of(t)
    k = min(k, len(sgx.epc.free_lists[node]), sgx.epc.nr_free_pages - sgx.low_pages)
    # the clock: no event due up to and including the run's end
    costs = m.costs
    period = costs.aex + costs.fault_entry + costs.eaug + costs.eresume + costs.eaccept
    if period <= 0:
        return 0
    nxt = m.env.peek()
    if nxt != float("inf"):
        k = min(k, (int(nxt) - 1 - m.now) // period)
    if k <= 0:
        return 0
    st = hw.secs_at[secs]
    if not (st.initialized and st.contains(encl.linaddr(first + k - 1))):
        return 0
    return k


def eaug_eaccept_run(t: EnclaveThread, first: int, k: int) -> tuple[int, int]:
    """Apply ``k`` pages (``run_length`` said they may be batched) at once. Returns the
    clock at the first page's start and the time each page takes."""
    encl, sgx, m = t.encl, t.sgx, t.m
    hw = t.hw
    costs = m.costs
    stats = sgx.stats
    epc = sgx.epc
    fault_in = costs.aex + costs.fault_entry
    period = fault_in + costs.eaug + costs.eresume + costs.eaccept
    t0 = m.now
    node = sgx._node_of(t)
    fl = epc.free_lists[node]
    if _free_pages_valid(hw, fl.first(k)):
        raise RuntimeError("a free EPC page is valid in the EPCM")
    # AEX then ERESUME leave the LP as it was (resumes_after_aex): apply the pair once
    lp = t.cpu
    assert lp is not None
    hw.aex(lp)
    if hw.eresume(lp, t._tcs_epc(), encl.secs_epc):
        raise RuntimeError("ERESUME refused after resumes_after_aex")
    t._tcs_accessed()  # each ERESUME's page walk (EnclaveThread._tcs_accessed)
    # sgx_alloc_epc_page(reclaim=false) for each page, in list order
    pages = epc.alloc_many(node, k)
    idx = np.arange(first, first + k)
    epc.owner_encl[pages] = encl.id
    epc.owner_index[pages] = idx
    j = np.arange(k, dtype=np.int64)
    free0 = epc.nr_free_pages + k
    sgx.free_timeline.record_many(t0 + j * period + fault_in, free0 - 1 - j)
    encl.page_cnt += k  # sgx_encl_grow, no VA page
    # EAUG + EACCEPT
    linaddrs = (encl.base + (idx << 12)).astype(np.uint64)
    _set_epcm(hw, pages, encl.secs_epc, linaddrs)
    hw.secs_at[encl.secs_epc].child_count += k
    _set_encl(encl, slice(first, first + k), pages)
    encl.secs_child_cnt += k
    # sgx_mark_page_reclaimable
    epc.flags[pages] |= SGX_EPC_PAGE_RECLAIMER_TRACKED
    sgx.lru.mark_many(pages)
    # encl->lock: the last page's unlock follows its EAUG
    encl.lock.released(t0 + (k - 1) * period + fault_in + costs.eaug)
    stats.page_faults += k
    stats.eaug += k
    sgx.fault_latency_ns.append_many(fault_in + costs.eaug, k)
    # four elided steps a page: AEX + fault entry, EAUG, ERESUME, EACCEPT
    steps = sum(1 for ns in (fault_in, costs.eaug, costs.eresume, costs.eaccept) if ns > 0)
    m.elided += steps * k
    t.busy_ns += period * k
    t.entry_fault = None
    sgx.batched_pages += k
    m.env._now = t0 + period * k
    return t0, period


__all__ = ["EAUG_SECINFO", "eaug_eaccept_run", "run_length"]
