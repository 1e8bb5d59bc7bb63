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
from epcsim.kernel import encls
from epcsim.kernel.backing import BackingRecord
from epcsim.kernel.encl import SECS_INDEX
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.main import Sgx


def send_ipi(sgx: Sgx, task: Task, encl: SgxEncl) -> Gen:
    """``on_each_cpu_mask(sgx_encl_cpumask(encl), sgx_ipi_cb, NULL, true)``.

    The mask is the union of ``mm_cpumask`` over the enclave's mms (spec §6.3 D.1.d, §9),
    computed at the moment of the call (after ETRACK). Every logical processor in it that is
    inside the enclave takes an AEX, which is what lets the ETRACK'd epoch complete. The AEX is
    the CPU's (``SgxCpu.aex``); the thread that was running there learns of it through the
    CPU model's AEX callback, which the user layer owns - the kernel sets no thread state.
    Costs an IPI round trip when another CPU is targeted (the sender's own CPU runs the empty
    callback directly).
    """
    mask = encl.cpumask()
    others = [c for c in mask if c != task.cpu]
    if others:
        sgx.stats.ipi += 1
        yield from task.run(sgx.m.costs.ipi)
    for lp in mask:
        if encl.secs_epc >= 0 and sgx.cpu.inside(lp) == encl.secs_epc:
            sgx.cpu.aex(lp)


def etrack(sgx: Sgx, task: Task, encl: SgxEncl, *, warn: bool = True) -> Gen:
    """ETRACK on the enclave's SECS (see :func:`epcsim.kernel.encls.etrack`)."""
    return (yield from encls.etrack(sgx, task, encl.secs_epc, warn=warn))


def encl_ewb(sgx: Sgx, task: Task, encl: SgxEncl, page: int, index: int) -> Gen:
    """``sgx_encl_ewb``: take a VA slot, EWB with the three-stage retry, store the record.

    Returns ``(ret, va, slot)``. Caller holds ``encl->lock``.
    """
    va, slot = encl.va_alloc_slot()
    pginfo = PageInfo()  # EWB takes no LINADDR nor SECS: one PAGEINFO serves every attempt
    ret, sealed = yield from encls.ewb(sgx, task, pginfo, page, va, slot)
    if ret == SgxReturn.NOT_TRACKED:
        yield from etrack(sgx, task, encl)  # WARN if it fails; EWB is retried regardless
        ret, sealed = yield from encls.ewb(sgx, task, pginfo, page, va, slot)
        if ret == SgxReturn.NOT_TRACKED:
            # The cpumask is computed after ETRACK; the IPI forces AEX on those CPUs.
            yield from send_ipi(sgx, task, encl)
            ret, sealed = yield from encls.ewb(sgx, task, pginfo, page, va, slot)
    if ret and encls_failed(ret):
        encls.encls_warn(sgx, ret, "EWB", f"EPC page {page}")
    if ret:
        encl.va_free_slot(va, slot, to_head=False)
        sgx.ewb_failures += 1  # the page contents are lost
        return ret, -1, -1
    backing = encl.backing
    bidx = backing.secs_index if index == SECS_INDEX else index
    backing.store(bidx, BackingRecord(sealed.contents, sealed.pcmd, va, slot))
    return 0, va, slot


def reclaimer_write(sgx: Sgx, task: Task, encl: SgxEncl, page: int, index: int) -> Gen:
    """``sgx_reclaimer_write`` (caller holds ``encl->lock``): EWB the page, then the SECS if
    that was the last resident child of an initialized enclave.

    Spec §6.3 D.2-D.3: the child's ``epc_page`` is cleared and ``secs_child_cnt`` dropped
    whatever EWB returned, and once the SECS has been through ``sgx_encl_ewb`` it is freed
    with ``sgx_encl_free_epc_page`` (EREMOVE + free) whatever *that* EWB returned: after a
    failed SECS EWB the SECS contents are lost, like a failed child EWB loses the child.
    """
    encl.reclaiming[index] = False
    ret, va, slot = yield from encl_ewb(sgx, task, encl, page, index)
    yield from reclaimer_written(sgx, task, encl, index, ret, va, slot)


def reclaimer_written(
    sgx: Sgx, task: Task, encl: SgxEncl, index: int, ret: int, va: int, slot: int
) -> Gen:
    """The rest of ``sgx_reclaimer_write`` once the child's ``sgx_encl_ewb`` returned
    ``(ret, va, slot)`` (caller holds ``encl->lock``). A function of its own only so that
    the compiled driver, which did that EWB and stopped before the child count's drop made
    it the last child's (``KB_SECS`` at ``P_STORED``), resumes here: the same statements in
    the same order as one function (a ``yield from`` adds no event)."""
    encl.epc[index] = -1
    if ret == 0:
        encl.set_va(index, va, slot)
    encl.secs_child_cnt -= 1
    if encl.secs_child_cnt == 0 and encl.initialized and encl.secs_epc >= 0:
        yield from task.run(sgx.m.costs.backing_alloc)
        secs = encl.secs_epc
        ret, va, slot = yield from encl_ewb(sgx, task, encl, secs, SECS_INDEX)
        if ret == 0:
            encl.secs_va = (va, slot)
            sgx.stats.secs_evictions += 1
        yield from encl.free_epc_page(task, secs)
        encl.secs_epc = -1


def sgx_reclaim_pages(sgx: Sgx, task: Task) -> Gen:
    """One batch of ``sgx_reclaim_pages()``. Returns the number of pages written out."""
    costs = sgx.m.costs
    epc = sgx.epc
    stats = sgx.stats
    stats.reclaim_batches += 1

    # Phase A - isolate from the LRU head under sgx_reclaimer_lock. The kref is taken under
    # the same lock, so no page is ever isolated without one: the time is charged after.
    isolated = sgx.lru.isolate(sgx.nr_to_scan)
    sgx.lru_changed()
    stats.reclaim_scanned += len(isolated)
    chunk: list[tuple[int, SgxEncl, int]] = []
    for page in isolated:
        encl = sgx.enclaves.get(epc.owner_encl.item(page))
        if encl is None or encl.dead:  # kref_get_unless_zero failed: release owns it now
            epc.flags[page] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
            continue
        encl.refcount += 1
        chunk.append((page, encl, epc.owner_index.item(page)))
    yield from task.run(costs.lru_op * max(1, len(isolated)))

    # Phase B - age check, then backing allocation and BEING_RECLAIMED under encl->lock.
    kept: list[tuple[int, SgxEncl, int]] = []
    uses_age = sgx.lru.uses_age  # the policy's constant
    for page, encl, index in chunk:
        young = False
        if uses_age:
            yield from task.run(costs.age_check)
            young = encl.test_and_clear_young(index)
        if young:
            stats.reclaim_young += 1
            sgx.lru.putback(page)
            if encl.kref_put():  # kref_put(&encl->refcount, sgx_encl_release)
                yield from encl.release(task)
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
        yield from encls.eblock(sgx, task, page)
        task.unlock(encl.lock)

    return (yield from sgx_reclaim_write_back(sgx, task, kept))


def sgx_reclaim_write_back(
    sgx: Sgx,
    task: Task,
    kept: list[tuple[int, SgxEncl, int]],
    start: int = 0,
    written: bool = False,
    ewbed: tuple[int, int, int] | None = None,
) -> Gen:
    """Phase D of ``sgx_reclaim_pages`` from the batch's page ``start`` on: EWB under
    ``encl->lock``, then free the EPC page. Returns the batch's page count (``len(kept)``).
    ``start`` > 0 resumes a batch whose first pages the compiled driver wrote back
    (``epcsim.fast.driver.served_ksgxd``: the SECS's eviction, ``KB_SECS``); ``written``:
    page ``start`` too, up to ``encl->lock``'s release (the driver stopped before the
    ``kref_put`` that drops the enclave's last reference, ``KB_RELEASE``); ``ewbed``: page
    ``start``'s ``sgx_encl_ewb`` returned ``(ret, va, slot)`` and ``encl->lock`` is still
    held (the driver stopped before the child count's drop, which a Python task's EREMOVE
    between two served steps made the last child's: ``KB_SECS`` at ``P_STORED``)."""
    epc = sgx.epc
    for k in range(start, len(kept)):
        page, encl, index = kept[k]
        if ewbed is not None and k == start:
            yield from reclaimer_written(sgx, task, encl, index, *ewbed)
            task.unlock(encl.lock)
        elif not written or k > start:
            yield from task.lock(encl.lock)
            yield from reclaimer_write(sgx, task, encl, page, index)
            task.unlock(encl.lock)
        if encl.kref_put():  # kref_put(&encl->refcount, sgx_encl_release)
            yield from encl.release(task)
        epc.flags[page] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
        sgx.free_epc_page(page)
    return len(kept)


def sgx_reclaim_direct(sgx: Sgx, task: Task) -> Gen:
    """``sgx_reclaim_direct``: one batch if free < LOW, called without ``encl->lock``."""
    if sgx.direct_reclaim and sgx.should_reclaim(sgx.low_pages):
        sgx.stats.direct_reclaim_calls += 1
        n = yield from sgx_reclaim_pages(sgx, task)
        sgx.stats.direct_reclaim_pages += n


__all__ = ["sgx_reclaim_direct", "sgx_reclaim_pages", "sgx_reclaim_write_back"]
