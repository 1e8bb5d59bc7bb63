"""``sgx_epc_page.list``: the one link pair every EPC page has, and the lists made of it.

In the kernel a page's ``list`` field is on exactly one list at a time: a node's
``free_page_list`` while free, ``sgx_active_page_list`` while reclaimable, the reclaimer's
local batch while isolated, or none while in use and untracked. So one ``prev``/``next``
pair per page serves them all; the model keeps the pair as two ``int32`` arrays (8 bytes per
page, issue 9) shared by the free lists (``epcsim.kernel.epc``) and the LRU
(``epcsim.kernel.policy``). The reclaimer's batch of at most 16 pages is a Python list and
uses no links.

A ``PageList`` is a ``struct list_head``: head, tail and length over the shared links,
with the two operations the driver uses - ``list_add_tail`` and taking the head - plus
``list_del`` for a page in the middle (``sgx_unmark_page_reclaimable``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NIL = -1
PAGE_INDEX = np.int32


class PageLinks:
    """``prev``/``next`` of every EPC page (``NIL``: no neighbour / on no list)."""

    def __init__(self, nr_pages: int):
        self.nr_pages = nr_pages
        self.prev = np.full(nr_pages, NIL, dtype=PAGE_INDEX)
        self.next = np.full(nr_pages, NIL, dtype=PAGE_INDEX)

    @property
    def nbytes(self) -> int:
        return int(self.prev.nbytes + self.next.nbytes)


class PageList:
    """A ``list_head`` over ``PageLinks``: FIFO order, head first."""

    def __init__(self, links: PageLinks):
        self.links = links
        self.head = NIL
        self.tail = NIL
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add_tail(self, page: int) -> None:
        """``list_add_tail``."""
        links = self.links
        links.prev[page] = self.tail
        links.next[page] = NIL
        if self.tail != NIL:
            links.next[self.tail] = page
        else:
            self.head = page
        self.tail = page
        self._len += 1

    def extend(self, pages: np.ndarray) -> None:
        """``list_add_tail`` of each of ``pages`` in order, at once (boot)."""
        if not pages.size:
            return
        links = self.links
        pages = pages.astype(PAGE_INDEX)
        links.prev[pages[1:]] = pages[:-1]
        links.next[pages[:-1]] = pages[1:]
        links.prev[pages[0]] = self.tail
        links.next[pages[-1]] = NIL
        if self.tail != NIL:
            links.next[self.tail] = pages[0]
        else:
            self.head = int(pages[0])
        self.tail = int(pages[-1])
        self._len += int(pages.size)

    def remove(self, page: int) -> None:
        """``list_del``: the caller knows ``page`` is on this list."""
        links = self.links
        p, n = int(links.prev[page]), int(links.next[page])
        if p != NIL:
            links.next[p] = n
        else:
            self.head = n
        if n != NIL:
            links.prev[n] = p
        else:
            self.tail = p
        links.prev[page] = links.next[page] = NIL
        self._len -= 1

    def remove_many(self, pages: np.ndarray) -> None:
        """``list_del`` of each of ``pages`` (all on this list) in order."""
        for page in pages.tolist():
            self.remove(page)

    def first(self, k: int) -> np.ndarray:
        """The first ``k`` pages from the head (fewer if the list is shorter), not taken."""
        n = min(k, self._len)
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        return _walk(self.links.next, int(self.head), n)

    def pop_many(self, k: int) -> np.ndarray:
        """``k`` calls of ``pop_head`` at once: the first ``k`` pages in list order. The
        caller has checked ``k <= len(self)``."""
        pages = self.first(k)
        if pages.size < k:
            raise RuntimeError(f"pop_many: {k} pages asked, the list holds {self._len}")
        if k == 0:
            return pages
        links = self.links
        rest = int(links.next[pages[-1]])
        links.prev[pages] = NIL
        links.next[pages] = NIL
        self.head = rest
        if rest != NIL:
            links.prev[rest] = NIL
        else:
            self.tail = NIL
        self._len -= k
        return pages

    def pop_head(self) -> int:
        """Take the head off (``list_first_entry`` + ``list_del``), or ``NIL`` when empty."""
        page = self.head
        if page == NIL:
            return NIL
        self.remove(page)
        return page

    def pages(self) -> list[int]:
        """Pages from head to tail (for tests, the invariant checker and debugging)."""
        out, page, nxt = [], self.head, self.links.next
        while page != NIL:
            out.append(int(page))
            page = int(nxt[page])
        return out


@njit(cache=True, nogil=True)
def _walk(nxt, head, n):
    """``n`` pages from ``head`` along the ``next`` links (compiled: the fast engine's
    batched allocations walk hundreds of pages at a time)."""
    out = np.empty(n, dtype=np.int64)
    page = head
    for i in range(n):
        out[i] = page
        page = nxt[page]
    return out
