"""Physical EPC pages, sections and NUMA free lists (the allocator half of ``sgx/main.c``).

``struct sgx_epc_page`` becomes one row of NumPy arrays (``EpcPages``), so millions of pages
cost a few bytes each. Free lists are per-node FIFO rings: ``__sgx_alloc_epc_page_from_node``
takes the head, ``sgx_free_epc_page`` appends at the tail (spec §5.1, §5.3, §18.1).
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import PAGE_SIZE, SGX_MAX_EPC_SECTIONS

# sgx_epc_page.flags
SGX_EPC_PAGE_RECLAIMER_TRACKED = 1 << 0
SGX_EPC_PAGE_IS_FREE = 1 << 1
#: ``sgx_epc_page.poison`` (a separate field in the kernel), packed into the flags byte
SGX_EPC_PAGE_POISON = 1 << 7

#: Memory layout (issue 9): per EPC page this module keeps 14 bytes - flags (1), NUMA node
#: (1), owner enclave id (4), owner page index (4) and the page's free-list slot (4, int32 page
#: indices). The section is derived from the page index (``section_of``), addresses from the
#: owner (``sgx_encl.base + index << 12``).
PAGE_INDEX = np.int32
# What owns an in-use page, in addition to the owning enclave id (``owner_encl``).
OWNER_NONE = -1  # free
OWNER_SECS = -2  # the enclave's SECS (encl->secs)
OWNER_VA = -3  # a VA page (the kernel keeps owner NULL; we remember the enclave for stats)
OWNER_VEPC = -4  # a virtual EPC page
#: EREMOVE failed and the kernel leaked the page (it WARNs and never frees it). The kernel
#: forgets such a page; the model marks it so the invariant checker can account for it.
OWNER_LEAKED = -5


class FreeList:
    """A node's ``free_page_list``: FIFO ring of EPC page indices."""

    def __init__(self, capacity: int):
        self._ring = np.zeros(max(capacity, 1), dtype=PAGE_INDEX)
        self._head = 0
        self._len = 0

    @classmethod
    def full(cls, pages: np.ndarray) -> FreeList:
        """A list holding ``pages`` in order (boot: every page of the node is free)."""
        fl = cls(int(pages.size))
        fl._ring[: pages.size] = pages
        fl._len = int(pages.size)
        return fl

    def __len__(self) -> int:
        return self._len

    def pop_head(self) -> int:
        if self._len == 0:
            return -1
        page = int(self._ring[self._head])
        self._head = (self._head + 1) % self._ring.size
        self._len -= 1
        return page

    def pop_many(self, k: int) -> np.ndarray:
        """``k`` calls of ``pop_head`` at once (the fast engine's batched paths): the first
        ``k`` pages in list order. The caller has checked ``k <= len(self)``."""
        idx = (self._head + np.arange(k)) % self._ring.size
        pages = self._ring[idx].copy()
        self._head = (self._head + k) % self._ring.size
        self._len -= k
        return pages

    def push_tail(self, page: int) -> None:
        if self._len == self._ring.size:
            raise RuntimeError("free list overflow: a page was freed twice")
        self._ring[(self._head + self._len) % self._ring.size] = page
        self._len += 1

    def pages(self) -> np.ndarray:
        idx = (self._head + np.arange(self._len)) % self._ring.size
        return self._ring[idx].copy()


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
        self.node = np.repeat(np.asarray(section_node, dtype=np.uint8), sections)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.owner_encl = np.full(n, -1, dtype=np.int32)  # enclave id
        self.owner_index = np.full(n, OWNER_NONE, dtype=PAGE_INDEX)  # page index or OWNER_*
        self.nodes = sorted(set(section_node))
        # spec §18.14: a model may start with every page FREE (sanitization already done).
        self.free_lists = {
            node: FreeList.full(np.flatnonzero(self.node == node)) for node in self.nodes
        }
        self.flags[:] = SGX_EPC_PAGE_IS_FREE
        self.nr_free_pages = n  # sgx_nr_free_pages
        self.section_bytes = [s * PAGE_SIZE for s in sections]

    def section_of(self, page: int) -> int:
        """``sgx_epc_page.section``, derived: pages are numbered in section order."""
        return int(np.searchsorted(self._section_end, page, side="right"))

    @property
    def section(self) -> np.ndarray:
        """Section of every page (built on demand, for inspection)."""
        return np.searchsorted(self._section_end, np.arange(self.nr_pages), side="right")

    def is_poisoned(self, page: int) -> bool:
        return bool(self.flags[page] & SGX_EPC_PAGE_POISON)

    def set_poison(self, page: int) -> None:
        """A memory failure marked the page (``sgx_memory_failure``): once freed it is parked
        on the poison list and never handed out again."""
        self.flags[page] |= SGX_EPC_PAGE_POISON

    def nbytes(self) -> int:
        """Host bytes of the per-page arrays (for the memory benchmarks)."""
        rings = sum(fl._ring.nbytes for fl in self.free_lists.values())
        return (
            self.node.nbytes
            + self.flags.nbytes
            + self.owner_encl.nbytes
            + (self.owner_index.nbytes + rings)
        )

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
        self.owner_encl[page] = -1
        self.owner_index[page] = OWNER_NONE
        poisoned = self.flags[page] & SGX_EPC_PAGE_POISON
        if not poisoned:
            self.free_lists[int(self.node[page])].push_tail(page)
        self.flags[page] = SGX_EPC_PAGE_IS_FREE | poisoned
        self.nr_free_pages += 1
