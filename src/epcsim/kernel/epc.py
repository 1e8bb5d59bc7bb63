"""Physical EPC pages, sections and NUMA free lists (the allocator half of ``sgx/main.c``).

``struct sgx_epc_page`` becomes one row of NumPy arrays (``EpcPages``), so millions of pages
cost a few bytes each. Free lists are per-node FIFO lists over the pages' shared link pair
(``epcsim.kernel.page_list``): ``__sgx_alloc_epc_page_from_node`` takes the head,
``sgx_free_epc_page`` appends at the tail (spec §5.1, §5.3, §18.1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from epcsim.arch import PAGE_SIZE, SGX_MAX_EPC_SECTIONS
from epcsim.kernel.page_list import PAGE_INDEX, PageLinks, PageList
from epcsim.packed import FlagField, ShiftedField

# sgx_epc_page.flags: the low OWNER_SHIFT bits of ``EpcPages.owner_flags``
SGX_EPC_PAGE_RECLAIMER_TRACKED = 1 << 0
SGX_EPC_PAGE_IS_FREE = 1 << 1
#: on ``sgx_active_page_list`` now (not isolated). The kernel needs no bit for that - the list
#: head says it - but the model's lists share one link pair, so membership is a bit.
SGX_EPC_PAGE_ON_LRU = 1 << 2
#: ``sgx_epc_page.poison`` (a separate field in the kernel), packed with the flags
SGX_EPC_PAGE_POISON = 1 << 3
#: the bits of ``owner_flags`` that hold ``sgx_epc_page.flags``; the owner page index is
#: ``owner_flags >> OWNER_SHIFT`` (arithmetic: the negative ``OWNER_*`` codes survive)
SGX_EPC_PAGE_FLAGS = (1 << 4) - 1
OWNER_SHIFT = 4
#: the largest owner page index ``owner_flags`` holds: 2**27 - 1, so an ELRANGE is at most
#: 2**27 pages (512 GiB; ``System.create_enclave`` refuses a larger ``size``)
MAX_OWNER_INDEX = (1 << (31 - OWNER_SHIFT)) - 1
MAX_ELRANGE_BYTES = (MAX_OWNER_INDEX + 1) * PAGE_SIZE

#: Memory layout (issue 9): per EPC page this module keeps 13 bytes - ``owner_flags`` (4: the
#: owner page index above the 4 flag bits, see below), owner enclave id (1; 2, then 4, once ids
#: pass 127 and 32,767: ``fit_owner_id``) and ``sgx_epc_page.list`` (8:
#: ``epcsim.kernel.page_list``, shared by the free lists and the LRU as in the kernel). The
#: flags word and the page index share one ``int32`` because a page index needs at most 27
#: bits: Python reads and writes them through the views ``flags`` and ``owner_index``, compiled
#: code reads the word (``word & SGX_EPC_PAGE_*`` for a flag, ``word >> OWNER_SHIFT`` for the
#: index; ``word >= 0`` exactly when the index is, as the codes are negative) and writes the
#: flags with ``|=`` and ``&= ~bit``, never ``&= 0xFF ^ bit``, which would clear index bits.
#: The section and the NUMA node are derived from the page index
#: (``section_of``, ``node_of``), addresses from the owner (``sgx_encl.base + index << 12``).
#: The owner is also what the EPCM reads its entries' ENCLAVESECS and ENCLAVEADDRESS from
#: (``isa.epcm``, with ``encl_secs``/``encl_base`` per enclave): the owner changes of a page
#: whose EPCM entry may be valid go through ``free``/``set_owner_index``, which keep the
#: CPU's view first.
# What owns an in-use page, in addition to the owning enclave id (``owner_encl``).
OWNER_NONE = -1  # free
OWNER_SECS = -2  # the enclave's SECS (encl->secs)
OWNER_VA = -3  # a VA page (the kernel keeps owner NULL; we remember the enclave for stats)
OWNER_VEPC = -4  # a virtual EPC page
#: EREMOVE failed and the kernel leaked the page (it WARNs and never frees it). The kernel
#: forgets such a page; the model marks it so the invariant checker can account for it.
OWNER_LEAKED = -5


class FreeList(PageList):
    """A node's ``free_page_list``: FIFO over the shared page links. ``FreeList(n)`` makes
    a list with links of its own for ``n`` pages (tests)."""

    def __init__(self, links: PageLinks | int):
        super().__init__(PageLinks(links) if isinstance(links, int) else links)

    def push_tail(self, page: int) -> None:
        self.add_tail(page)


class EpcPages:
    """All EPC pages (``sgx_epc_sections[i].pages[]``) and the per-node free lists.

    ``sections`` is a list of section sizes in pages; section ``i`` lives on NUMA node
    ``section_node[i]``. Pages are numbered globally in section order.
    """

    def __init__(self, sections: list[int], section_node: list[int] | None = None):
        if not sections or len(sections) > SGX_MAX_EPC_SECTIONS:
            raise ValueError(
                f"sections: between 1 and {SGX_MAX_EPC_SECTIONS} EPC sections, got {len(sections)}"
            )
        if any(s <= 0 for s in sections):
            raise ValueError(f"sections: every section needs at least one page, got {sections}")
        section_node = section_node or [0] * len(sections)
        if len(section_node) != len(sections):
            raise ValueError("section_node: one node per section")
        n = int(sum(sections))
        self.nr_pages = n
        self._section_end = np.cumsum(np.asarray(sections, dtype=np.int64))
        self._section_node = np.asarray(section_node, dtype=np.uint8)
        #: ``owner index << OWNER_SHIFT | flags`` of every page (page index or OWNER_*)
        self.owner_flags = np.full(
            n, OWNER_NONE << OWNER_SHIFT | SGX_EPC_PAGE_IS_FREE, dtype=PAGE_INDEX
        )
        self.flags = FlagField(self.owner_flags, 0, OWNER_SHIFT)  # sgx_epc_page.flags
        self.owner_index = ShiftedField(self.owner_flags, OWNER_SHIFT)
        # enclave id: 8 bits until an id needs more (``fit_owner_id``: 16, then 32)
        self.owner_encl = np.full(n, -1, dtype=np.int8)
        self.links = PageLinks(n)  # sgx_epc_page.list
        #: per enclave id: ``encl->secs.epc_page`` and the ELRANGE base, which the EPCM reads
        #: its entries' SECS and ENCLAVEADDRESS from (``isa.epcm``, ``set_encl``)
        self.encl_secs = np.full(0, -1, dtype=np.int32)
        self.encl_base = np.zeros(0, dtype=np.int64)
        #: ``Epcm.keep``, called before a page's owner changes (``Sgx`` binds it)
        self.keep_epcm: Callable[[int], None] | None = None
        self.nodes = sorted(set(section_node))
        # spec §18.14: a model may start with every page FREE (sanitization already done).
        self.free_lists = {node: FreeList(self.links) for node in self.nodes}
        node_of_page = np.repeat(self._section_node, sections)
        for node, fl in self.free_lists.items():
            fl.extend(np.flatnonzero(node_of_page == node))
        self.nr_free_pages = n  # sgx_nr_free_pages
        self.section_bytes = [s * PAGE_SIZE for s in sections]

    def fit_owner_id(self, encl_id: int) -> None:
        """Before enclave ``encl_id`` owns a page: widen ``owner_encl`` (8 bits while a System
        has created at most 127 enclaves, the common case: 1 byte per EPC page) to 16, then
        32 bits once ids no longer fit, so every id is exact."""
        for wider in (np.int16, np.int32):
            if encl_id <= np.iinfo(self.owner_encl.dtype).max:
                return
            self.owner_encl = self.owner_encl.astype(wider)

    def set_encl(self, encl_id: int, secs_epc: int, base: int) -> None:
        """Record enclave ``encl_id``'s SECS page and ELRANGE base (``SgxEncl`` calls this
        when either changes). A handful of bytes per enclave, not per page."""
        if encl_id >= self.encl_secs.size:
            n = max(16, 2 * self.encl_secs.size, encl_id + 1)
            secs = np.full(n, -1, dtype=np.int32)
            base_ = np.zeros(n, dtype=np.int64)
            secs[: self.encl_secs.size] = self.encl_secs
            base_[: self.encl_base.size] = self.encl_base
            self.encl_secs, self.encl_base = secs, base_
        self.encl_secs[encl_id] = secs_epc
        self.encl_base[encl_id] = base

    def set_owner_index(self, page: int, index: int) -> None:
        """``owner_index[page] = index`` where the page's EPCM entry may still be valid (a
        page leaked after a failed EREMOVE): the EPCM keeps its view first."""
        if self.keep_epcm is not None:
            self.keep_epcm(page)
        self.owner_index[page] = index

    def section_of(self, page: int) -> int:
        """``sgx_epc_page.section``, derived: pages are numbered in section order."""
        return int(np.searchsorted(self._section_end, page, side="right"))

    @property
    def section(self) -> np.ndarray:
        """Section of every page (built on demand, for inspection)."""
        return np.searchsorted(self._section_end, np.arange(self.nr_pages), side="right")

    def node_of(self, page: int) -> int:
        """``sgx_epc_page.node`` (the section's node), derived like the section."""
        if len(self.nodes) == 1:
            return self.nodes[0]
        return int(self._section_node[self.section_of(page)])

    def node_of_many(self, pages: np.ndarray) -> np.ndarray:
        """``node_of`` of each page."""
        sections = np.searchsorted(self._section_end, pages, side="right")
        return self._section_node[sections]

    @property
    def node(self) -> np.ndarray:
        """NUMA node of every page (built on demand, for inspection)."""
        return self._section_node[self.section]

    def is_poisoned(self, page: int) -> bool:
        return bool(self.flags[page] & SGX_EPC_PAGE_POISON)

    def set_poison(self, page: int) -> None:
        """A memory failure marked the page (``sgx_memory_failure``): once freed it is parked
        on the poison list and never handed out again."""
        self.flags[page] |= SGX_EPC_PAGE_POISON

    def nbytes(self) -> int:
        """Host bytes of the per-page arrays (for the memory benchmarks)."""
        return self.owner_flags.nbytes + self.owner_encl.nbytes + self.links.nbytes

    def alloc_from_node(self, node: int) -> int:
        """``__sgx_alloc_epc_page_from_node``: head of the node's free list, or -1."""
        page = self.free_lists[node].pop_head()
        if page < 0:
            return -1
        self.flags[page] = 0
        self.nr_free_pages -= 1
        return page

    def alloc_many(self, node: int, k: int) -> np.ndarray:
        """``k`` calls of ``alloc_from_node(node)`` that all succeed, at once (the fast
        engine's batched paths; the caller has checked the node holds ``k`` free pages)."""
        pages = self.free_lists[node].pop_many(k)
        self.flags[pages] = 0
        self.nr_free_pages -= k
        return pages

    def alloc(self, start_node: int) -> int:
        """``__sgx_alloc_epc_page``: visit nodes round-robin from ``start_node``."""
        nodes = self.nodes
        if start_node not in self.free_lists:
            # next_node_in(current, sgx_numa_mask)
            later = [n for n in nodes if n > start_node]
            start_node = later[0] if later else nodes[0]
        i = nodes.index(start_node)
        for k in range(len(nodes)):
            page = self.alloc_from_node(nodes[(i + k) % len(nodes)])
            if page >= 0:
                return page
        return -1

    def free(self, page: int) -> None:
        """``sgx_free_epc_page``: the caller has made the page invalid (EREMOVE or EWB).

        A poisoned page goes to the node's poison list (at its head) instead of the free
        list, so it is never handed out again - but, exactly as in the kernel (spec §5.3),
        it is still flagged IS_FREE and still counted in ``sgx_nr_free_pages``. The
        watermark checks (``sgx_should_reclaim``) therefore see one more free page than the
        allocator can find for every poisoned page freed; the model keeps that quirk.
        """
        if self.flags[page] & SGX_EPC_PAGE_IS_FREE:
            raise RuntimeError(f"EPC page {page} freed twice")
        if self.flags[page] & SGX_EPC_PAGE_ON_LRU:
            # its one link pair is the LRU's: it cannot go on a free list too (the kernel
            # would corrupt both lists; the driver never does it)
            raise RuntimeError(f"EPC page {page} freed while on the LRU")
        if self.keep_epcm is not None:  # freed without EREMOVE: the CPU's view stays
            self.keep_epcm(page)
        self.owner_encl[page] = -1
        poisoned = self.flags[page] & SGX_EPC_PAGE_POISON
        if not poisoned:
            self.free_lists[self.node_of(page)].push_tail(page)
        self.owner_flags[page] = OWNER_NONE << OWNER_SHIFT | SGX_EPC_PAGE_IS_FREE | poisoned
        self.nr_free_pages += 1
