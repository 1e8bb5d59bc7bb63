"""Enclaves: ``struct sgx_encl`` and what ``sgx/encl.c`` does with their pages.

The ``sgx_encl_page`` xarray becomes NumPy arrays indexed by page index
``(addr - base) >> 12``: presence, EPC page, type, ``vm_max_prot_bits``, BEING_RECLAIMED, VA
page and slot while evicted, and the PTE (present, Accessed) of the one mm that maps the
enclave - packed into 6 bytes per page (``epcsim.kernel.encl_page``) and read through views
named after those fields. Functions keep their kernel names: ``sgx_encl_grow``,
``__sgx_encl_load_page``, ``sgx_encl_eldu``, ``sgx_vma_fault``, ``sgx_encl_eaug_page``,
``sgx_zap_enclave_ptes``, ``sgx_encl_test_and_clear_young``, ``sgx_encl_release``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import (
    EACCES,
    EBUSY,
    EFAULT,
    PAGE_SHIFT,
    SGX_VA_SLOT_COUNT,
)
from epcsim.engine.machine import Gen, Mutex, Task
from epcsim.fast.ops import encl_page as encl_page_ops
from epcsim.fast.ops.pcmd import reclaimer_writing_to_pcmd
from epcsim.isa import PageInfo
from epcsim.kernel import encls
from epcsim.kernel.encl_page import (
    ENCL_PAGE_TYPE_SHIFT,
    PROT_VMA_SHIFT,
    EnclPages,
    VaField,
    VaIds,
)
from epcsim.kernel.epc import OWNER_LEAKED, OWNER_SECS, OWNER_VA, SGX_EPC_PAGE_RECLAIMER_TRACKED
from epcsim.kernel.page_counts import CountedEpc, CountedPresent, PageCounts
from epcsim.kernel.va_page import VaPageList
from epcsim.packed import FlagField

if TYPE_CHECKING:
    from epcsim.kernel.backing import EnclaveBacking
    from epcsim.kernel.main import Sgx

SECS_INDEX = -1  # "page index" of the SECS in kernel helpers
ZERO_PCMD = bytes(128)  # what a PCMD slot of a truncated (hole) shmem page reads as

# VM_FAULT_* outcomes of sgx_vma_fault
VM_FAULT_NOPAGE = "NOPAGE"
VM_FAULT_SIGBUS = "SIGBUS"

PROT_R, PROT_W, PROT_X = 1, 2, 4


class Mm:
    """``struct mm_struct`` as far as the SGX driver looks at it: one process's address space.

    ``tasks`` are the threads running in it (its ioctl caller and its enclave threads);
    ``cpumask()`` is ``mm_cpumask(mm)``: the CPUs currently running one of them. x86 also
    leaves a CPU in the mask while it runs only kernel threads or idles after the mm (lazy
    TLB), which would add IPI targets that take no AEX; the model does not track that.
    """

    def __init__(self, name: str):
        self.name = name
        self.tasks: list[Task] = []

    def cpumask(self) -> set[int]:
        return {t.cpu for t in self.tasks if t.cpu is not None}


class SgxEncl:
    """``struct sgx_encl`` plus its page array."""

    def __init__(self, sgx: Sgx, encl_id: int, name: str = ""):
        self.sgx = sgx
        self.id = encl_id
        self.name = name or f"enclave{encl_id}"
        self.lock = Mutex(sgx.m, f"{self.name}->lock")
        self.created = False
        self.initialized = False
        self.debug = False
        self.dead = False  # released: refcount reached zero
        self.ioctl_busy = False  # SGX_ENCL_IOCTL
        self.refcount = 1
        self._base = 0
        self._secs_epc = -1
        sgx.epc.set_encl(encl_id, -1, 0)
        self.size = 0
        self.nr_pages = 0
        self.attributes = 0
        self.attributes_mask = 0
        self.secs_va = (-1, -1)  # VA page / slot of the evicted SECS
        self.secs_reclaiming = False
        self.page_cnt = 0
        self.secs_child_cnt = 0
        self._backing: EnclaveBacking | None = None
        #: the user-layer handle (``epcsim.user.enclave.Enclave``); the kernel never uses it
        self.handle: object = None
        #: ``encl->mm_list``: every mm that maps the enclave (``sgx_encl_mm_add``)
        self.mm_list: list[Mm] = []
        self.sigbus = 0
        self.va_ids = VaIds()  # numbers for the VA pages, as desc names them
        #: ``encl->va_pages`` and each VA page's slot bitmap, by number (``kernel/va_page.py``)
        self.va = VaPageList(self.va_ids)
        self._alloc_arrays(0, 0)  # no pages until SGX_IOC_ENCLAVE_CREATE

    # -- what the EPCM reads its children's SECS and ENCLAVEADDRESS from (``isa.epcm``) --------
    @property
    def base(self) -> int:
        """ELRANGE's base (``encl->base``)."""
        return self._base

    @base.setter
    def base(self, base: int) -> None:
        self._moving(base, self._secs_epc)
        self._base = base

    @property
    def secs_epc(self) -> int:
        """``encl->secs.epc_page``: the SECS's EPC page, -1 while it is written back."""
        return self._secs_epc

    @secs_epc.setter
    def secs_epc(self, page: int) -> None:
        self._moving(self._base, page)
        self._secs_epc = page

    def _moving(self, base: int, secs_epc: int) -> None:
        """The enclave's row of ``EpcPages.encl_secs``/``encl_base`` changes. The EPCM entries
        that read their SECS and address from it must have none valid (the CPU writes back
        or removes a SECS only without children, and the base is set before the first
        page); where the old SECS still has children (a kernel bug), they are kept aside."""
        old = self._secs_epc
        if old >= 0 and (old != secs_epc or base != self._base):
            st = self.sgx.cpu.secs_at.get(old)
            if st is not None and st.child_count:
                self.sgx.cpu.epcm.keep_owned(self.id)
        self.sgx.epc.set_encl(self.id, secs_epc, base)

    # -- page arrays --------------------------------------------------------------------------
    def setup(self, base: int, size: int) -> None:
        """At CREATE: the ELRANGE, its page arrays and the shmem backing file."""
        self._alloc_arrays(base, size)
        self._backing = self.sgx.backing.create(self.id, size)
        self._backing.va_of = self._va_of

    def _va_of(self, bidx: int) -> tuple[int, int]:
        """The VA page and slot the kernel holds for backing index ``bidx`` (the SECS's is
        ``size >> 12``), as ``BackingRecord`` shows them."""
        if bidx >= self.nr_pages:
            return self.secs_va
        return int(self.va_page[bidx]), int(self.va_slot[bidx])

    def _alloc_arrays(self, base: int, size: int) -> None:
        n = size >> PAGE_SHIFT
        self.base, self.size, self.nr_pages = base, size, n
        # the packed arrays; the views below name the fields
        p = self.pages = EnclPages(n, self.va_ids)
        # resident and swapped pages as running counts, moved by the writes of ``present``,
        # ``epc`` and ``set_va`` (and the compiled machines' folds: ``kernel/page_counts``)
        self.counts = c = PageCounts(p.desc, p.flags)
        self.present = CountedPresent(p.flags, c)  # xarray entry exists
        self.reclaiming = FlagField(p.flags, 1, 1)  # SGX_ENCL_PAGE_BEING_RECLAIMED
        self.pte_present = FlagField(p.flags, 2, 1)
        self.pte_young = FlagField(p.flags, 3, 1)  # PTE Accessed bit
        self.type = FlagField(p.flags, ENCL_PAGE_TYPE_SHIFT, 3)  # entry->type
        self.max_prot = FlagField(p.prot, 0, 3)  # entry->vm_max_prot_bits
        self.vma_prot = FlagField(p.prot, PROT_VMA_SHIFT, 3)
        self.epc = CountedEpc(p.desc, c)  # entry->epc_page, -1 when not resident
        self.va_page = VaField(p.desc, p.va_ids, slot=False)  # entry->va_page while evicted
        self.va_slot = VaField(p.desc, p.va_ids, slot=True)  # slot (desc VA offset >> 3)

    @property
    def va_pages(self) -> list[int]:
        """``encl->va_pages``: the VA pages' EPC indices, head first (a copy)."""
        return self.va.order()

    def va_used_slots(self, va: int) -> np.ndarray:
        """The used slots of VA page ``va`` as 512 booleans (for the invariant checker)."""
        return self.va.used_slots(va)

    def elrange_nbytes(self) -> int:
        """Host bytes of the per-page state (for the memory benchmarks)."""
        return self.pages.nbytes

    def set_va(self, index: int, va: int, slot: int) -> None:
        """The page was written back: its version is in ``slot`` of VA page ``va``."""
        before = self.counts.classes(index)
        self.pages.desc[index] = self.va_ids.ref(va, slot)
        self.counts.moved(before, index)

    @property
    def backing(self) -> EnclaveBacking:
        """``encl->backing``: the shmem file, which exists from SGX_IOC_ENCLAVE_CREATE on;
        every kernel path that reaches it runs on a created enclave."""
        if self._backing is None:
            raise RuntimeError(f"{self.name}: no backing file before SGX_IOC_ENCLAVE_CREATE")
        return self._backing

    def linaddr(self, index: int) -> int:
        return self.base + (index << PAGE_SHIFT)

    def index_of(self, addr: int) -> int:
        return (addr - self.base) >> PAGE_SHIFT

    # Both counts are running counts (``kernel/page_counts.py``): the scenario runner's
    # sampler reads them at every sample, and a count over the arrays costs O(ELRANGE)
    # (~6 ms at a 16 GiB enclave; sessions ``sampler``, ``runscale``). While the compiled
    # core holds the model they lag by its unfolded deltas (``driver/observe.CoreView``).

    @property
    def resident_pages(self) -> int:
        """Pages whose entry holds an EPC page."""
        return self.counts.resident

    @property
    def swapped_pages(self) -> int:
        """Pages whose entry exists without an EPC page (in backing)."""
        return self.counts.swapped

    def mm_add(self, mm: Mm) -> None:
        """``sgx_encl_mm_add`` (at mmap): list ``mm`` once."""
        if mm not in self.mm_list:
            self.mm_list.append(mm)

    def cpumask(self) -> list[int]:
        """``sgx_encl_cpumask``: the union of ``mm_cpumask`` over every mm in ``mm_list``
        (spec §6.3 D.1.d, §9) - so a thread of the same process running *another* enclave,
        or the process's ioctl caller, is an IPI target too."""
        cpus: set[int] = set()
        for mm in self.mm_list:
            cpus |= mm.cpumask()
        return sorted(cpus)

    # -- VA pages (spec §3.2) --------------------------------------------------------------
    def alloc_va_page(self, task: Task, reclaim: bool) -> Gen:
        """``sgx_alloc_va_page``: an EPC page converted by EPA. Never on the LRU."""
        sgx = self.sgx
        page = yield from sgx.alloc_epc_page(task, self.id, OWNER_VA, reclaim)
        if page < 0:
            return page
        ret = yield from encls.epa(sgx, task, page)
        if ret:
            yield from self.free_epc_page(task, page)
            return -EFAULT
        sgx.stats.va_pages += 1
        return page

    def grow(self, task: Task, reclaim: bool) -> Gen:
        """``sgx_encl_grow``: a new VA page every 512 pages needing a slot.

        Return:
        * a VA page (>= 0): the caller adds it to the head of ``va_pages`` under the lock.
        * -1: no new VA page was needed.
        * -ENOMEM, -EBUSY, -ERESTARTSYS: ``sgx_alloc_epc_page`` failed (per ``reclaim``).
        * -EFAULT: EPA failed.
        """
        va = -1
        if self.page_cnt % SGX_VA_SLOT_COUNT == 0:
            va = yield from self.alloc_va_page(task, reclaim)
            if va < 0:
                return va
        self.page_cnt += 1
        return va

    def add_va_page(self, va: int) -> None:
        if va >= 0:
            self.va.add(va)

    def shrink(self, task: Task, va: int) -> Gen:
        """``sgx_encl_shrink``: undo a grow; frees the VA page (EREMOVE) only if one was just
        made (``va >= 0``)."""
        self.page_cnt -= 1
        if va >= 0:
            if va in self.va:
                self.va.remove(va)
            yield from self.free_epc_page(task, va)
            self.sgx.stats.va_pages -= 1

    def va_alloc_slot(self) -> tuple[int, int]:
        """``sgx_alloc_va_slot`` on the head VA page; a page that fills up moves to the
        tail (``VaPageList.take_slot``)."""
        return self.va.take_slot()

    def va_free_slot(self, va: int, slot: int, to_head: bool) -> None:
        """``sgx_free_va_slot``, and with ``to_head`` the VA page to the head."""
        self.va.free_slot(va, slot, to_head)

    # -- freeing ----------------------------------------------------------------------------
    def free_epc_page(self, task: Task, page: int) -> Gen:
        """``sgx_encl_free_epc_page``: EREMOVE then ``sgx_free_epc_page``; on failure the
        kernel WARNs (:func:`epcsim.kernel.encls.eremove`) and leaks the page. Returns True
        when the page went back to the allocator."""
        sgx = self.sgx
        if sgx.epc.flags[page] & SGX_EPC_PAGE_RECLAIMER_TRACKED:
            sgx.warnings.append(f"EPC page {page} freed while still RECLAIMER_TRACKED")
        ret = yield from encls.eremove(sgx, task, page)
        if ret:
            sgx.leaked_pages += 1
            sgx.epc.set_owner_index(page, OWNER_LEAKED)
            return False
        sgx.free_epc_page(page)
        return True

    def may_map(self, first: int, last: int, prot: int) -> int:
        """``sgx_encl_may_map`` (mmap/mprotect): every existing page must allow ``prot``;
        absent addresses impose no restriction. Returns 0 or -EACCES."""
        sl = slice(first, last)
        present = self.present[sl]
        if np.any(present & ((self.max_prot[sl] & prot) != prot)):
            return -EACCES
        return 0

    def mprotect(self, first: int, last: int, prot: int) -> int:
        ret = self.may_map(first, last, prot)
        if ret == 0:
            self.vma_prot[first:last] = prot
            self.pte_present[first:last] &= (prot & PROT_R) != 0
            if self.sgx.flood is not None and self.sgx.flood.parked:
                self.sgx.flood.wake_all(self)
        return ret

    # -- PTEs and the accessed bit ----------------------------------------------------------
    def zap_ptes(self, index: int) -> None:
        """``sgx_zap_enclave_ptes`` for one page (the model has one mm per enclave); the op
        is ``epcsim.fast.ops.encl_page``."""
        encl_page_ops.zap_ptes(self.pages.flags, index)
        if self.sgx.flood is not None and self.sgx.flood.parked:
            self.sgx.flood.page_changed(self, index)

    def test_and_clear_young(self, index: int) -> bool:
        """``sgx_encl_test_and_clear_young`` (``epcsim.fast.ops.encl_page``)."""
        flood = self.sgx.flood
        if flood is not None and flood.parked:  # skipped retries' ERESUMEs (fast/flood.py)
            flood.tcs_accessed(self, index)
        return bool(encl_page_ops.test_and_clear_young(self.pages.flags, index))

    # -- loading evicted pages (spec §7) -------------------------------------------------------
    def _reclaimer_writing_to_pcmd(self, index: int) -> bool:
        """``reclaimer_writing_to_pcmd``: a page sharing this PCMD page is resident and
        BEING_RECLAIMED (``epc >= 0`` matters: bit 3 doubles as a VA offset bit). The
        decision is the op ``epcsim.fast.ops.pcmd``; this method is the kernel's name for it
        (tests spy on it)."""
        return bool(reclaimer_writing_to_pcmd(self.pages.desc, self.pages.flags, index))

    def eldu(self, task: Task, index: int) -> Gen:
        """``sgx_encl_eldu``: allocate (no reclaim), ELDU, and always truncate the backing.

        ``index == SECS_INDEX`` loads the SECS.

        Return:
        * 0: the page is resident again.
        * -EBUSY: no free EPC page, reclaimable pages exist (the allocation never reclaims).
        * -ENOMEM: no free EPC page and nothing reclaimable.
        * -EFAULT: ELDU failed (MAC mismatch, a zero or missing PCMD, a bad VA slot): the
          backing copy is gone and the page is lost.
        """
        sgx = self.sgx
        is_secs = index == SECS_INDEX
        page = yield from sgx.alloc_epc_page(
            task, self.id, OWNER_SECS if is_secs else index, reclaim=False
        )
        if page < 0:
            return page
        backing = self.backing
        bidx = backing.secs_index if is_secs else index
        rec = backing.lookup(bidx)
        va, slot = self.secs_va if is_secs else (self.va_page[index], self.va_slot[index])
        # A missing record is a shmem hole: reading it gives zero-filled pages, so ELDU runs
        # on an all-zero PCMD and takes #GP (spec §7), exactly as with a truncated PCMD page.
        pginfo = PageInfo(
            linaddr=0 if is_secs else self.linaddr(index),
            secs=-1 if is_secs else self.secs_epc,
            contents=None if rec is None else rec.contents,
            metadata=ZERO_PCMD if rec is None else rec.pcmd,
        )
        ret = yield from encls.eldu(sgx, task, pginfo, page, va, slot)
        # Whether or not ELDU succeeded the backing copy is gone (spec §7, §18.7). The PCMD
        # page is kept while a page sharing it is BEING_RECLAIMED - for the SECS too: its
        # PCMD shares a page with the first pages of a small enclave (size < 128K), and the
        # kernel runs the same check from its page index (size >> 12), stopping at the SECS.
        busy = self._reclaimer_writing_to_pcmd(bidx)
        backing.truncate(bidx, pcmd_busy=busy)
        if ret:
            yield from self.free_epc_page(task, page)
            return -EFAULT
        self.va_free_slot(va, slot, to_head=True)
        if is_secs:
            self.secs_epc = page
            self.secs_va = (-1, -1)
            sgx.stats.secs_reloads += 1
        else:
            self.epc[index] = page  # desc: the EPC page replaces the VA slot
            if sgx.flood is not None and sgx.flood.parked:
                sgx.flood.page_changed(self, index)
        return 0

    def load_secs(self, task: Task) -> Gen:
        """``sgx_encl_load_secs``: reload an evicted SECS before touching a child."""
        if self.secs_epc < 0:
            return (yield from self.eldu(task, SECS_INDEX))
        return 0

    def load_page(self, task: Task, index: int) -> Gen:
        """``__sgx_encl_load_page`` (caller holds ``encl->lock``): reload the SECS if needed,
        then the page.

        Return:
        * 0: the page is resident (and on the reclaimable list if it was reloaded).
        * -EBUSY: the page is resident but BEING_RECLAIMED, or no EPC page to load it into.
        * -ENOMEM, -EFAULT: as ``eldu`` (for the SECS or the page).
        """
        if self.epc[index] >= 0:
            return -EBUSY if self.reclaiming[index] else 0
        ret = yield from self.load_secs(task)
        if ret:
            return ret
        ret = yield from self.eldu(task, index)
        if ret:
            return ret
        self.secs_child_cnt += 1
        self.sgx.mark_page_reclaimable(self.epc[index])
        return 0

    # -- release (spec §11) --------------------------------------------------------------------
    def kref_put(self) -> bool:
        """The decrement of ``kref_put``: True when it dropped the last reference, and the
        caller must then run ``release``. A plain call, so the reclaimer's drop of its
        reference (twice per page) costs no generator when, as almost always, it is not the
        last one."""
        self.refcount -= 1
        return self.refcount == 0

    def put(self, task: Task) -> Gen:
        """``kref_put(&encl->refcount, sgx_encl_release)``: the task that drops the last
        reference runs the release (ksgxd after a batch, or the process closing the fd)."""
        if self.kref_put():
            yield from self.release(task)

    def release(self, task: Task) -> Gen:
        """``sgx_encl_release``: free every EPC page, the SECS, the VA pages and the backing.

        Runs synchronously on the task that dropped the last reference and charges every
        EREMOVE to it. ``dead`` is set first: from then on the reclaimer's
        ``kref_get_unless_zero`` fails for this enclave, so a page it isolates is dropped
        from the LRU (TRACKED cleared) and this loop frees it.
        """
        sgx = self.sgx
        self.dead = True
        if self.nr_pages:
            for index in np.flatnonzero(self.epc >= 0).tolist():
                page = int(self.epc[index])
                if sgx.unmark_page_reclaimable(page) == -EBUSY:
                    continue  # isolated by the reclaimer (not expected: it holds a kref)
                yield from self.free_epc_page(task, page)
                self.secs_child_cnt -= 1
                self.epc[index] = -1
            self.present[:] = False
        if self.secs_child_cnt == 0 and self.secs_epc >= 0:
            yield from self.free_epc_page(task, self.secs_epc)
            self.secs_epc = -1
        for va in self.va_pages:
            yield from self.free_epc_page(task, va)
            sgx.stats.va_pages -= 1
        self.va.clear()
        sgx.backing.drop(self.id)
        if self.secs_child_cnt or self.secs_epc >= 0:
            sgx.warnings.append(f"{self.name}: leaked at release")
        sgx.enclaves.pop(self.id, None)
