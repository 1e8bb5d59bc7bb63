"""Batched EACCEPT of mapped pages: the enclave's loop after MODIFY_TYPES or
RESTRICT_PERMISSIONS (``epcsim.workloads.edmm.eaccept_range``), a run of pages at once.

Per page the reference runs, with one enclave entry per page (the removal stress test):
EENTER, EACCEPT, its cost, EEXIT; or, in one entry, EACCEPT and its cost. A resident page
that is not mapped yet (never touched since ADD_PAGES) first takes the mapping fault. When
nothing can interleave (the conditions of ``epcsim.fast.ioctl.batch._quiet``: no event due by the
run's end, no task waiting for a CPU, need_resched clear) and each page's EACCEPT succeeds,
every page does the same thing at a fixed offset in time, so the run is applied at once.

EACCEPT's outcome is restated once, compiled, by ``eaccept_word_ok`` (keep it in step with
``EncluMixin.eaccept``): a valid, unblocked REG/TCS/TRIM page whose SECINFO (type, RWX,
PENDING, MODIFIED, PR) equals the request, and for a PR or MODIFIED change an epoch fully
tracked (``SecsState.tracked``). ``accepts`` (this batch) adds the page's owner and address
in NumPy and calls it per page; the compiled EACCEPT loop (``fast/driver/thread.py``,
``MODE_EACCEPT``, PATHS.md E1) calls it on the page it is at, its owner and address being
the enclave's by the regime (a page of ``desc`` is its own; checked there all the same).
The batch stops at the first page that would fail; that page runs the reference. The
tracking state cannot change inside the run: the thread's own exits only clear its LP from
``tracking``, and it is not there (outside the enclave, or inside since before the run,
where it stays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from epcsim.arch import SGX_SECINFO_RESERVED_MASK, PageType, secinfo_page_type
from epcsim.isa.epcm import (
    BEPOCH_MASK,
    EPCM_BLOCKED,
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PR,
    EPCM_PT_SHIFT,
    EPCM_SECINFO_MASK,
    EPCM_VALID,
)

if TYPE_CHECKING:
    from epcsim.isa import SgxCpu
    from epcsim.isa.secs import SecsState
    from epcsim.user.thread import EnclaveThread

_STATE_BITS = 0x38


def _request_allowed(flags: int) -> bool:
    """``eaccept``'s #GP checks on SECINFO alone: no reserved bits, an allowed combination."""
    if flags & SGX_SECINFO_RESERVED_MASK & ~_STATE_BITS:
        return False
    pt = secinfo_page_type(flags)
    pending, modified, pr = bool(flags & 8), bool(flags & 16), bool(flags & 32)
    return (pt == PageType.REG and (pr or pending) and not modified) or (
        pt in (PageType.TCS, PageType.TRIM) and modified and not pending and not pr
    )


_PT_REG, _PT_TCS, _PT_TRIM = int(PageType.REG), int(PageType.TCS), int(PageType.TRIM)
#: what a successful EACCEPT clears in the EPCM word
EACCEPT_CLEARS = EPCM_PENDING | EPCM_MODIFIED | EPCM_PR


@njit(cache=True, nogil=True)
def eaccept_word_ok(word, bepoch, epoch, tracking, flags):
    """``EncluMixin.eaccept``'s outcome from the page's EPCM word and BEPOCH, for a request
    ``_request_allowed`` passed, by an LP inside the page's own enclave at its own address:
    0 (success: the caller clears ``EACCEPT_CLEARS``) exactly when the leaf returns 0.
    ``epoch``/``tracking``: the SECS's epoch and whether its tracking set is non-empty."""
    w = int(word)
    if not w & EPCM_VALID or w & EPCM_BLOCKED:
        return False  # #PF
    pt = w >> EPCM_PT_SHIFT
    if pt != _PT_REG and pt != _PT_TCS and pt != _PT_TRIM:
        return False  # #PF
    if (w & EPCM_SECINFO_MASK) != (flags & EPCM_SECINFO_MASK):
        return False  # PAGE_ATTRIBUTES_MISMATCH
    if flags & (EPCM_MODIFIED | EPCM_PR):  # the epoch must be tracked (SecsState.tracked)
        behind = (epoch - int(bepoch)) & BEPOCH_MASK
        return behind >= 2 or (behind == 1 and not tracking)  # else NOT_TRACKED
    return True


@njit(cache=True, nogil=True)
def _words_ok(words, bepochs, epoch, tracking, flags):
    ok = np.empty(words.size, np.bool_)
    for j in range(words.size):
        ok[j] = eaccept_word_ok(words[j], bepochs[j], epoch, tracking, flags)
    return ok


def accepts(cpu: SgxCpu, st: SecsState, pages: np.ndarray, linaddrs, flags: int) -> np.ndarray:
    """Which EACCEPTs (``EncluMixin.eaccept``) of ``pages`` at ``linaddrs`` with ``flags``
    succeed, for an LP inside ``st``'s enclave: the owner and address here, the rest by
    ``eaccept_word_ok`` (the one restatement)."""
    e = cpu.epcm
    ok = (e.secs[pages] == st.epc) & (e.linaddr[pages] == linaddrs)
    ok &= _words_ok(e.flags[pages], e.bepoch[pages], int(st.epoch), bool(st.tracking), flags)
    return ok


def accept_run(
    t: EnclaveThread, first: int, limit: int, flags: int, entry_per_page: bool
) -> tuple[int, int, int]:
    """Apply up to ``limit`` EACCEPTs from ``first`` at once: pages all mapped, or all
    resident but unmapped (each then takes the mapping fault: AEX, ``sgx_vma_fault`` finds
    it resident and inserts the PTE, ERESUME). Returns ``(pages, clock at the start, ns
    per page)``; 0 pages: run the reference."""
    from epcsim.fast.ioctl.batch import _quiet

    encl, sgx, m, hw = t.encl, t.sgx, t.m, t.hw
    costs = m.costs
    if not sgx.fast or not _request_allowed(flags) or encl.dead or first >= encl.nr_pages:
        return 0, 0, 0
    if encl.epc[first] < 0:  # absent or evicted: EAUG or ELDU, not this batch
        return 0, 0, 0
    fault = not encl.pte_present[first]
    fault_in = costs.aex + costs.fault_entry
    steps: tuple[int, ...] = (costs.eaccept,)
    if fault:
        steps = (fault_in, costs.eresume, *steps)
    if entry_per_page:
        steps = (costs.eenter, *steps, costs.eexit)
    period = sum(steps)
    k = _quiet(t, encl, period, min(limit, encl.nr_pages - first))
    if k <= 0:
        return 0, 0, 0
    lp = t.cpu
    assert lp is not None
    if entry_per_page:
        if t.entered:
            return 0, 0, 0
        if t.tcs_index >= 0 and not encl.pte_present[t.tcs_index]:
            return 0, 0, 0
        if t.tcs_index < 0 and not t._secs_resident():
            return 0, 0, 0
    elif not t.entered or t.aexed:
        return 0, 0, 0
    secs = encl.secs_epc
    st = hw.secs_at.get(secs) if secs >= 0 else None
    if st is None or not st.initialized or lp in st.tracking:
        return 0, 0, 0
    sl = slice(first, first + k)
    run = (encl.pte_present[sl] != fault) & (encl.epc[sl] >= 0)
    if fault:  # sgx_vma_fault maps it: present, VMA within max_prot, not BEING_RECLAIMED
        vma = encl.vma_prot[sl]
        run &= encl.present[sl] & ~encl.reclaiming[sl] & ((encl.max_prot[sl] & vma) == vma)
    k = int(np.argmin(run)) if not run.all() else k
    if k <= 0:
        return 0, 0, 0
    idx = np.arange(first, first + k, dtype=np.int64)
    pages = encl.epc[first : first + k].astype(np.int64)
    linaddrs = (encl.base + (idx << 12)).astype(np.uint64)
    if not (st.contains(int(linaddrs[0])) and st.contains(int(linaddrs[-1]))):
        return 0, 0, 0
    ok = accepts(hw, st, pages, linaddrs, flags)
    k = int(np.argmin(ok)) if not ok.all() else k
    if k <= 0:
        return 0, 0, 0
    tcs = t._tcs_epc()
    # EENTER ... EEXIT around each page: the pair applied once (a refused entry changes
    # nothing, and the reference then reports it)
    if entry_per_page and hw.eenter(lp, tcs, secs):
        return 0, 0, 0
    if fault and not hw.resumes_after_aex(lp, tcs, secs):
        if entry_per_page:
            hw.eexit(lp)
        return 0, 0, 0
    if fault:  # AEX then ERESUME, once
        hw.aex(lp)
        if hw.eresume(lp, tcs, secs):
            raise RuntimeError("ERESUME refused after resumes_after_aex")
    if entry_per_page:
        hw.eexit(lp)
    if entry_per_page or fault:
        t._tcs_accessed()  # each EENTER's or ERESUME's page walk (EnclaveThread._tcs_accessed)
    t.entry_fault = None
    pages, idx = pages[:k], idx[:k]
    e = hw.epcm
    e.pending[pages] = e.modified[pages] = e.pr[pages] = False
    t0 = m.now
    if fault:
        encl.pte_present[first : first + k] = True
        encl.pte_young[first : first + k] = False  # test_and_clear_young after insert
        sgx.stats.page_faults += k
        sgx.fault_latency_ns.append_many(fault_in, k)
        # encl->lock is taken and dropped in each fault, right after its entry
        before = costs.eenter if entry_per_page else 0
        encl.lock.released(t0 + (k - 1) * period + before + fault_in)
    t.busy_ns += k * period
    m.elided += k * sum(1 for ns in steps if ns > 0)
    sgx.batched_pages += k
    m.env._now = t0 + k * period
    return k, t0, period


__all__ = ["EACCEPT_CLEARS", "accept_run", "accepts", "eaccept_word_ok"]
