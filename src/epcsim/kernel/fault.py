"""The enclave fault handler: ``sgx_vma_fault`` and ``sgx_encl_eaug_page`` (spec §8).

Runs on the faulting task with (conceptually) its ``mmap_lock`` held, so it never reclaims
directly: allocation failures with reclaimable pages around give -EBUSY, which becomes
VM_FAULT_NOPAGE - the access re-executes and faults again.
"""

from __future__ import annotations

from epcsim.arch import EBUSY, PageType
from epcsim.engine.machine import Gen, Task
from epcsim.isa import PageInfo
from epcsim.kernel import encls
from epcsim.kernel.encl import (
    PROT_R,
    PROT_W,
    PROT_X,
    VM_FAULT_NOPAGE,
    VM_FAULT_SIGBUS,
    SgxEncl,
)


def sgx_encl_eaug_page(task: Task, encl: SgxEncl, index: int) -> Gen:
    """SGX2: EAUG a page on a fault in an initialized enclave (spec §8 steps 1-10).

    The kzalloc of the ``sgx_encl_page`` cannot fail in the model, so the kernel's
    VM_FAULT_OOM outcome (spec §16.6) never arises."""
    sgx = encl.sgx
    if not encl.initialized:
        return VM_FAULT_SIGBUS
    yield from task.lock(encl.lock)
    try:
        ret = yield from encl.load_secs(task)
        if ret:
            return VM_FAULT_NOPAGE if ret == -EBUSY else VM_FAULT_SIGBUS
        page = yield from sgx.alloc_epc_page(task, encl.id, index, reclaim=False)
        if page < 0:
            if page == -EBUSY:
                sgx.stats.fault_retries += 1
                return VM_FAULT_NOPAGE
            return VM_FAULT_SIGBUS
        va = yield from encl.grow(task, reclaim=False)
        if va < -1:
            yield from encl.free_epc_page(task, page)
            return VM_FAULT_NOPAGE if va == -EBUSY else VM_FAULT_SIGBUS
        encl.add_va_page(va)
        if encl.present[index]:  # xa_insert found an entry inserted concurrently
            yield from encl.shrink(task, va)
            yield from encl.free_epc_page(task, page)
            return VM_FAULT_SIGBUS
        pginfo = PageInfo(linaddr=encl.linaddr(index), secs=encl.secs_epc)
        ret = yield from encls.eaug(sgx, task, pginfo, page)
        if ret:
            yield from encl.shrink(task, va)
            yield from encl.free_epc_page(task, page)
            return VM_FAULT_SIGBUS
        encl.present[index] = True
        encl.type[index] = PageType.REG
        encl.max_prot[index] = PROT_R | PROT_W | PROT_X  # the enclave decides via EACCEPT
        encl.epc[index] = page
        encl.secs_child_cnt += 1
        sgx.mark_page_reclaimable(page)
        # vmf_insert_pfn with the VMA's user protections, which on x86 include
        # _PAGE_ACCESSED: the new PTE starts young. Unlike sgx_vma_fault, this path does not
        # call sgx_encl_test_and_clear_young afterwards (spec §8), so the reclaimer's first
        # look at an EAUG'd page gives it a second chance.
        encl.pte_present[index] = True
        encl.pte_young[index] = True
        return VM_FAULT_NOPAGE
    finally:
        task.unlock(encl.lock)


def sgx_vma_fault(task: Task, encl: SgxEncl, index: int) -> Gen:
    """``sgx_vma_fault``: load the page (ELDU if evicted) and insert the PTE."""
    sgx = encl.sgx
    sgx.stats.page_faults += 1
    if encl.dead:
        return VM_FAULT_SIGBUS
    if sgx.sgx2 and not encl.present[index]:
        return (yield from sgx_encl_eaug_page(task, encl, index))
    yield from task.lock(encl.lock)
    return (yield from sgx_vma_fault_locked(task, encl, index))


def sgx_vma_fault_locked(task: Task, encl: SgxEncl, index: int) -> Gen:
    """``sgx_vma_fault`` from ``mutex_lock(&encl->lock)`` on: the caller holds the lock,
    released here. A function of its own so that the compiled driver, which runs the fault
    path up to the lock and stops before a step it leaves to Python (the SECS to load,
    -ENOMEM, an ELDU that fails), goes on with the reference's own code from that point
    (``epcsim.fast.driver.stream``), not a second copy of it."""
    sgx = encl.sgx
    try:
        if not encl.present[index]:
            return VM_FAULT_SIGBUS  # -EFAULT
        vma_prot = encl.vma_prot[index]
        if (encl.max_prot[index] & vma_prot) != vma_prot:
            return VM_FAULT_SIGBUS  # -EFAULT
        ret = yield from encl.load_page(task, index)
        if ret == -EBUSY:
            sgx.stats.fault_retries += 1
            return VM_FAULT_NOPAGE
        if ret:
            return VM_FAULT_SIGBUS
        encl.pte_present[index] = True  # vmf_insert_pfn
        encl.pte_young[index] = False  # sgx_encl_test_and_clear_young after insert
        return VM_FAULT_NOPAGE
    finally:
        task.unlock(encl.lock)


__all__ = ["sgx_encl_eaug_page", "sgx_vma_fault", "sgx_vma_fault_locked"]
