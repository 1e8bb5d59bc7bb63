"""The reclaimer: ``sgx_reclaim_pages``, ``sgx_encl_ewb``, ``sgx_reclaim_direct`` (spec §6).

One batch takes up to ``SGX_NR_TO_SCAN`` (16) pages off the LRU head and runs the kernel's
four phases - isolate, age + backing, zap + EBLOCK, EWB - with the same locks held at each
stage (spec §6.4). EWB retries in three stages (EWB; ETRACK + EWB; IPI + EWB), so ETRACKs and
IPIs happen only when EWB reports SGX_NOT_TRACKED. The SECS goes out with its last child.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from epcsim.arch import SgxReturn, encls_failed
from epcsim.engine.machine import Gen, Task
from epcsim.isa import PageInfo
from epcsim.kernel.backing import BackingRecord
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.main import Sgx


def send_ipi(sgx: Sgx, task: Task, encl: SgxEncl) -> Gen:
    """``on_each_cpu_mask(sgx_encl_cpumask(encl), sgx_ipi_cb, NULL, true)``.

    Every logical processor in the mask that is inside the enclave takes an AEX, which is what
    lets the ETRACK'd epoch complete. Costs an IPI round trip when another CPU is targeted.
    """
    mask = encl.cpumask()
    others = [c for c in mask if c != task.cpu]
    if others:
        sgx.stats.ipi += 1
        yield from task.run(sgx.m.costs.ipi)
    for lp in mask:
        runner = sgx.m.running[lp]
        if sgx.cpu.inside(lp) == encl.secs_epc and encl.secs_epc >= 0:
            sgx.cpu.aex(lp)
            if runner is not None and hasattr(runner, "aexed"):
                runner.aexed = True


def etrack(sgx: Sgx, task: Task, encl: SgxEncl) -> Gen:
    yield from task.run(sgx.m.costs.etrack)
    sgx.stats.etrack += 1
    return sgx.cpu.etrack(encl.secs_epc)


def encl_ewb(sgx: Sgx, task: Task, encl: SgxEncl, page: int, index: int) -> Gen:
    """``sgx_encl_ewb``: take a VA slot, EWB with the three-stage retry, store the record.

    Returns ``(ret, va, slot)``. Caller holds ``encl->lock``.
    """
    costs = sgx.m.costs
    va, slot = encl.va_alloc_slot()
    pginfo = PageInfo()

    def attempt() -> Gen:
        yield from task.run(costs.ewb)
        sgx.stats.ewb_attempts += 1
        return sgx.cpu.ewb(pginfo, page, va, slot)

    ret, sealed = yield from attempt()
    if ret == SgxReturn.NOT_TRACKED:
        yield from etrack(sgx, task, encl)  # WARN if it fails; EWB is retried regardless
        ret, sealed = yield from attempt()
        if ret == SgxReturn.NOT_TRACKED:
            # The cpumask is computed after ETRACK; the IPI forces AEX on those CPUs.
            yield from send_ipi(sgx, task, encl)
            ret, sealed = yield from attempt()
    if ret:
        encl.va_free_slot(va, slot, to_head=False)
        sgx.ewb_failures += 1  # the kernel WARNs; the page contents are lost
        sgx.warnings.append(f"EWB of EPC page {page} failed ({ret})")
        return ret, -1, -1
    bidx = encl.backing.secs_index if index < 0 else index
    encl.backing.store(bidx, BackingRecord(sealed.contents, sealed.pcmd, va, slot))
    sgx.stats.ewb += 1
    return 0, va, slot


def reclaimer_write(sgx: Sgx, task: Task, encl: SgxEncl, page: int, index: int) -> Gen:
    """``sgx_reclaimer_write`` (caller holds ``encl->lock``): EWB the page, then the SECS if
    that was the last resident child of an initialized enclave."""
    encl.reclaiming[index] = False
    ret, va, slot = yield from encl_ewb(sgx, task, encl, page, index)
    if ret == 0:
        encl.va_page[index] = va
        encl.va_slot[index] = slot
    # These happen even when EWB failed (a kernel-bug path: the data is lost).
    encl.epc[index] = -1
    encl.secs_child_cnt -= 1
    if encl.secs_child_cnt == 0 and encl.initialized and encl.secs_epc >= 0:
        yield from task.run(sgx.m.costs.backing_alloc)
        secs = encl.secs_epc
        ret, va, slot = yield from encl_ewb(sgx, task, encl, secs, -1)
        if ret == 0:
            encl.secs_va = (va, slot)
            encl.free_epc_page(secs)
            encl.secs_epc = -1
            sgx.stats.secs_evictions += 1


def sgx_reclaim_pages(sgx: Sgx, task: Task) -> Gen:
    """One batch of ``sgx_reclaim_pages()``. Returns the number of pages written out."""
    costs = sgx.m.costs
    epc = sgx.epc
    stats = sgx.stats
    stats.reclaim_batches += 1

    # Phase A - isolate from the LRU head under sgx_reclaimer_lock.
    isolated = sgx.lru.isolate(sgx.nr_to_scan)
    stats.reclaim_scanned += len(isolated)
    yield from task.run(costs.lru_op * max(1, len(isolated)))
    chunk: list[tuple[int, SgxEncl, int]] = []
    for page in isolated:
        encl = sgx.enclaves.get(int(epc.owner_encl[page]))
        if encl is None or encl.dead:  # kref_get_unless_zero failed: release owns it now
            epc.flags[page] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
            continue
        encl.refcount += 1
        chunk.append((page, encl, int(epc.owner_index[page])))

    # Phase B - age check, then backing allocation and BEING_RECLAIMED under encl->lock.
    kept: list[tuple[int, SgxEncl, int]] = []
    for page, encl, index in chunk:
        young = False
        if sgx.lru.uses_age:
            yield from task.run(costs.age_check)
            young = encl.test_and_clear_young(index)
        if young:
            stats.reclaim_young += 1
            sgx.lru.putback(page)
            encl.put()
            continue
        yield from task.lock(encl.lock)
        yield from task.run(costs.backing_alloc)
        encl.backing.get_backing(index)
        encl.reclaiming[index] = True
        task.unlock(encl.lock)
        kept.append((page, encl, index))

    # Phase C - zap PTEs (no encl->lock), then EBLOCK under encl->lock.
    for page, encl, index in kept:
        yield from task.run(costs.zap_ptes)
        encl.zap_ptes(index)
        yield from task.lock(encl.lock)
        yield from task.run(costs.eblock)
        stats.eblock += 1
        ret = sgx.cpu.eblock(page)
        if encls_failed(ret):
            sgx.warnings.append(f"EBLOCK of EPC page {page} returned {ret}")
        task.unlock(encl.lock)

    # Phase D - EWB under encl->lock, then free the EPC page.
    for page, encl, index in kept:
        yield from task.lock(encl.lock)
        yield from reclaimer_write(sgx, task, encl, page, index)
        task.unlock(encl.lock)
        encl.put()
        epc.flags[page] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
        sgx.free_epc_page(page)
    return len(kept)


def sgx_reclaim_direct(sgx: Sgx, task: Task) -> Gen:
    """``sgx_reclaim_direct``: one batch if free < LOW, called without ``encl->lock``."""
    if sgx.direct_reclaim and sgx.should_reclaim(sgx.low_pages):
        sgx.stats.direct_reclaim_calls += 1
        n = yield from sgx_reclaim_pages(sgx, task)
        sgx.stats.direct_reclaim_pages += n


__all__ = ["sgx_reclaim_direct", "sgx_reclaim_pages"]
