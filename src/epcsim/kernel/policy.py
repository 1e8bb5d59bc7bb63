"""Reclaim victim policies: one small interface, the kernel's LRU as the default.

The interface mirrors how ``sgx/main.c`` touches ``sgx_active_page_list`` and nothing more
(libCacheSim plugs its eviction policies the same way):

* ``mark(page)``     - ``sgx_mark_page_reclaimable``: the page becomes a candidate.
* ``unmark(page)``   - ``sgx_unmark_page_reclaimable`` on a page still on the list.
* ``isolate(n)``     - Phase A of ``sgx_reclaim_pages``: take up to ``n`` candidates off.
* ``putback(page)``  - a skipped page (young, backing failure) goes back on.
* ``__len__``        - ``list_empty(&sgx_active_page_list)`` is ``len(policy) == 0``.
* ``uses_age``       - whether ``sgx_reclaimer_age`` (the accessed-bit check) runs.

``KernelLru`` is bit-for-bit the kernel: append at the tail, isolate from the head, put
back at the tail; together with the young check this is second-chance (spec §6.3, §18.2).
Other policies are deviations, named and off by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.fast.ops.page_list import pop_head_many
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.page_list import NIL, PageLinks, PageList

if TYPE_CHECKING:
    from epcsim.kernel.epc import EpcPages


class ReclaimPolicy:
    name = "abstract"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0, epc: EpcPages | None = None):
        self.nr_pages = nr_pages

    def mark(self, page: int) -> None:
        raise NotImplementedError

    def unmark(self, page: int) -> None:
        raise NotImplementedError

    def isolate(self, n: int) -> list[int]:
        raise NotImplementedError

    def putback(self, page: int) -> None:
        self.mark(page)

    def mark_many(self, pages: np.ndarray) -> None:
        """``mark`` each page in order (a policy may do it at once, as ``KernelLru``)."""
        for page in pages.tolist():
            self.mark(page)

    def __len__(self) -> int:
        raise NotImplementedError

    def contains_many(self, pages: np.ndarray) -> np.ndarray:
        """``page in self`` for each page (the fast engine's batched paths)."""
        return np.fromiter((p in self for p in pages.tolist()), np.bool_, pages.size)

    def __contains__(self, page: int) -> bool:
        raise NotImplementedError


class KernelLru(ReclaimPolicy):
    """``sgx_active_page_list``: one global doubly linked list.

    With ``epc`` it links pages through ``sgx_epc_page.list`` (``epc.links``), the pair the
    free lists use too, and keeps membership in the page's flags (``SGX_EPC_PAGE_ON_LRU``):
    no bytes of its own per page (issue 9). Without, it has links and flags of its own.
    """

    name = "lru"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0, epc: EpcPages | None = None):
        super().__init__(nr_pages, seed, epc)
        if epc is not None:
            if epc.nr_pages != nr_pages:
                raise ValueError(f"epc: {epc.nr_pages} pages, the policy has {nr_pages}")
            # the page flags' word (``EpcPages.owner_flags``: they share it with the owner
            # index, so a bit is cleared with ``&= ~bit``), which compiled ops take as it is
            links, self._flags = epc.links, epc.owner_flags
        else:
            links, self._flags = PageLinks(nr_pages), np.zeros(nr_pages, dtype=np.int32)
        self.list = PageList(links)
        self.prev = links.prev
        self.next = links.next

    @property
    def head(self) -> int:
        return self.list.head

    @property
    def tail(self) -> int:
        return self.list.tail

    @property
    def on(self) -> np.ndarray:
        """Which pages are on the list (built on demand, for the invariant checker)."""
        return (self._flags & SGX_EPC_PAGE_ON_LRU) != 0

    def __len__(self) -> int:
        return len(self.list)

    def __contains__(self, page: int) -> bool:
        return bool(self._flags[page] & SGX_EPC_PAGE_ON_LRU)

    def contains_many(self, pages: np.ndarray) -> np.ndarray:
        return (self._flags[pages] & SGX_EPC_PAGE_ON_LRU) != 0

    def mark(self, page: int) -> None:  # list_add_tail
        if self._flags[page] & SGX_EPC_PAGE_ON_LRU:
            raise RuntimeError(f"EPC page {page} is already on the LRU")
        self.list.add_tail(page)
        self._flags[page] |= SGX_EPC_PAGE_ON_LRU

    def mark_many(self, pages: np.ndarray) -> None:
        """``mark(page)`` for each of ``pages`` in order, at once (the fast engine's batched
        paths): the pages, none on the list yet, are chained and appended at the tail."""
        if not pages.size:
            return
        if (self._flags[pages] & SGX_EPC_PAGE_ON_LRU).any():
            raise RuntimeError("mark_many: a page is already on the LRU")
        self.list.extend(pages)
        self._flags[pages] |= SGX_EPC_PAGE_ON_LRU

    def unmark_many(self, pages: np.ndarray) -> None:
        """``unmark(page)`` for each of ``pages`` (all on the list) in order, at once."""
        if not pages.size:
            return
        if (~self._flags[pages] & SGX_EPC_PAGE_ON_LRU).any():
            raise RuntimeError("unmark_many: a page is not on the LRU")
        self.list.remove_many(pages)
        self._flags[pages] &= ~SGX_EPC_PAGE_ON_LRU

    def unmark(self, page: int) -> None:  # list_del
        if not self._flags[page] & SGX_EPC_PAGE_ON_LRU:
            raise RuntimeError(f"EPC page {page} is not on the LRU")
        self.list.remove(page)
        self._flags[page] &= ~SGX_EPC_PAGE_ON_LRU

    def isolate(self, n: int) -> list[int]:
        """Phase A: ``unmark`` the head page up to ``n`` times (``epcsim.fast.ops.page_list``
        ``pop_head_many``, the one statement of it, over the list's row of ``ends``)."""
        lst = self.list
        if n <= 0 or lst.head == NIL:
            return []
        out = np.empty(n, dtype=np.int64)
        count = pop_head_many(
            self.prev, self.next, self._flags, SGX_EPC_PAGE_ON_LRU, lst.links.ends, lst.row, n, out
        )
        if count < 0:
            raise RuntimeError(f"EPC page {lst.head} is not on the LRU")
        return out[:count].tolist()

    def order(self) -> list[int]:
        """Pages from head (next victim) to tail, for tests and debugging."""
        return self.list.pages()


class FifoNoAge(KernelLru):
    """Deviation ``fifo``: the kernel list, but the accessed bit is ignored (pure FIFO)."""

    name = "fifo"
    uses_age = False


class RandomVictim(KernelLru):
    """Deviation ``random``: victims are drawn uniformly (seeded) from the candidates."""

    name = "random"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0, epc: EpcPages | None = None):
        super().__init__(nr_pages, seed, epc)
        self.rng = np.random.default_rng(seed)

    def isolate(self, n: int) -> list[int]:
        candidates = np.flatnonzero(self.on)
        k = min(n, candidates.size)
        picked = self.rng.choice(candidates, size=k, replace=False) if k else candidates[:0]
        out = [int(p) for p in picked]
        for page in out:
            self.unmark(page)
        return out


POLICIES: dict[str, type[ReclaimPolicy]] = {
    cls.name: cls for cls in (KernelLru, FifoNoAge, RandomVictim)
}


def make_policy(
    name: str, nr_pages: int, seed: int = 0, epc: EpcPages | None = None
) -> ReclaimPolicy:
    """The policy ``name``; with ``epc`` it links through the pages' shared ``list``."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"policy: unknown reclaim policy {name!r} (known: {', '.join(sorted(POLICIES))})"
        ) from None
    return cls(nr_pages, seed, epc)
