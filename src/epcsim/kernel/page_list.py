"""``sgx_epc_page.list``: the one link pair every EPC page has, and the lists made of it.

In the kernel a page's ``list`` field is on exactly one list at a time: a node's
``free_page_list`` while free, ``sgx_active_page_list`` while reclaimable, the reclaimer's
local batch while isolated, or none while in use and untracked. So one ``prev``/``next``
pair per page serves them all; the model keeps the pair as two ``int32`` arrays (8 bytes per
page, issue 9) shared by the free lists (``epcsim.kernel.epc``) and the LRU
(``epcsim.kernel.policy``). The reclaimer's batch of at most 16 pages is a Python list and
uses no links.

The lists' own state - each ``struct list_head``'s head, tail and length - is one small
array too, ``PageLinks.ends``: one row per list over the links, columns ``HEAD``, ``TAIL``,
``LEN`` (issue 9, DESIGN.md step 2). So the whole paging state a compiled driver needs is
NumPy arrays: it takes ``prev``, ``next`` and ``ends`` plus a list's row number and calls the
ops of ``epcsim.fast.ops.page_list``, which state the same operations over the same arrays.

A ``PageList`` is a thin view of one row: the two operations the driver uses -
``list_add_tail`` and taking the head - plus ``list_del`` for a page in the middle
(``sgx_unmark_page_reclaimable``). Its single-page operations stay Python because a numba call
from Python costs ~1 µs of dispatch, more than the five scalar stores it would replace
(measured for issue 9); they read and write the row through a ``memoryview`` (~50 ns an
access, half of a NumPy scalar index). The batched ones call the compiled ops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.ops.page_list import list_del_many

NIL = -1
PAGE_INDEX = np.int32

#: columns of ``PageLinks.ends``
HEAD, TAIL, LEN = 0, 1, 2


class PageLinks:
    """``prev``/``next`` of every EPC page (``NIL``: no neighbour / on no list), and
    ``ends``: head, tail and length of every list made of them, one row per list."""

    def __init__(self, nr_pages: int):
        self.nr_pages = nr_pages
        self.prev = np.full(nr_pages, NIL, dtype=PAGE_INDEX)
        self.next = np.full(nr_pages, NIL, dtype=PAGE_INDEX)
        # a page index fits int32 (PAGE_INDEX), so a length does too
        self.ends = np.empty((0, 3), dtype=PAGE_INDEX)
        self._lists: list[PageList] = []
        self._views()

    def _views(self) -> None:
        # memoryviews of the links for ``PageList``'s single-page steps: an element access
        # gives a Python int in ~40 ns, a NumPy scalar index takes ~100 ns plus ``int()``
        self.prev_v = self.prev.data
        self.next_v = self.next.data

    @property
    def nbytes(self) -> int:
        """Bytes per page times pages (``ends``, a few rows for the whole machine, is not
        per-page state and is left out, as the layout budget counts per page)."""
        return int(self.prev.nbytes + self.next.nbytes)

    def add_list(self, lst: PageList) -> int:
        """A row of ``ends`` for a new, empty list; the array grows in place of a copy when
        full, and every list's view is rebound to the new array."""
        row = len(self._lists)
        if row == self.ends.shape[0]:
            grown = np.empty((max(4, 2 * row), 3), dtype=PAGE_INDEX)
            grown[:row] = self.ends
            grown[row:] = (NIL, NIL, 0)
            self.ends = grown
            for other in self._lists:
                other._bind()
        self._lists.append(lst)
        return row

    def grow(self, nr_pages: int) -> None:
        """More pages (the VA pages' list grows with the enclave's VA pages): new arrays
        with the old links copied; the lists keep their rows."""
        old = self.nr_pages
        if nr_pages <= old:
            return
        for name in ("prev", "next"):
            arr = np.full(nr_pages, NIL, dtype=PAGE_INDEX)
            arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        self.nr_pages = nr_pages
        self._views()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["prev_v"], state["next_v"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._views()
        for lst in self._lists:
            if hasattr(lst, "row"):  # restored already (see ``PageList.__setstate__``)
                lst._bind()


class PageList:
    """A ``list_head`` over ``PageLinks``: FIFO order, head first. Its head, tail and length
    are row ``row`` of ``links.ends``."""

    def __init__(self, links: PageLinks):
        self.links = links
        self.row = links.add_list(self)
        self._bind()

    def _bind(self) -> None:
        # a memoryview of the row: reads give Python ints (the row is never reshaped; when
        # ``ends`` grows, ``PageLinks.add_list`` calls this again)
        self._e = self.links.ends[self.row].data

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_e"]  # a memoryview does not copy or pickle; it is rebuilt from the row
        return state

    def __setstate__(self, state: dict) -> None:
        # copies are rebuilt in either order (the links hold their lists): whichever of the
        # two is restored second binds the view
        self.__dict__.update(state)
        if hasattr(self.links, "ends"):
            self._bind()

    @property
    def head(self) -> int:
        return self._e[HEAD]

    @property
    def tail(self) -> int:
        return self._e[TAIL]

    def __len__(self) -> int:
        return self._e[LEN]

    def add_tail(self, page: int) -> None:
        """``list_add_tail`` (``epcsim.fast.ops.page_list.list_add_tail``)."""
        links, e = self.links, self._e
        nxt = links.next_v
        tail = e[TAIL]
        links.prev_v[page] = tail
        nxt[page] = NIL
        if tail != NIL:
            nxt[tail] = page
        else:
            e[HEAD] = page
        e[TAIL] = page
        e[LEN] += 1

    def add_head(self, page: int) -> None:
        """``list_add``: at the head (``epcsim.fast.ops.page_list.list_add``)."""
        links, e = self.links, self._e
        prv = links.prev_v
        head = e[HEAD]
        prv[page] = NIL
        links.next_v[page] = head
        if head != NIL:
            prv[head] = page
        else:
            e[TAIL] = page
        e[HEAD] = page
        e[LEN] += 1

    def extend(self, pages: np.ndarray) -> None:
        """``list_add_tail`` of each of ``pages`` in order, at once (boot)."""
        if not pages.size:
            return
        links, e = self.links, self._e
        pages = pages.astype(PAGE_INDEX)
        tail = e[TAIL]
        links.prev[pages[1:]] = pages[:-1]
        links.next[pages[:-1]] = pages[1:]
        links.prev[pages[0]] = tail
        links.next[pages[-1]] = NIL
        if tail != NIL:
            links.next[tail] = pages[0]
        else:
            e[HEAD] = int(pages[0])
        e[TAIL] = int(pages[-1])
        e[LEN] += int(pages.size)

    def remove(self, page: int) -> None:
        """``list_del``: the caller knows ``page`` is on this list
        (``epcsim.fast.ops.page_list.list_del``)."""
        links, e = self.links, self._e
        prv, nxt = links.prev_v, links.next_v
        p, n = prv[page], nxt[page]
        if p != NIL:
            nxt[p] = n
        else:
            e[HEAD] = n
        if n != NIL:
            prv[n] = p
        else:
            e[TAIL] = p
        prv[page] = nxt[page] = NIL
        e[LEN] -= 1

    def remove_many(self, pages: np.ndarray) -> None:
        """``list_del`` of each of ``pages`` (all on this list) in order, compiled."""
        if pages.size:
            links = self.links
            list_del_many(links.prev, links.next, links.ends, self.row, pages)

    def first(self, k: int) -> np.ndarray:
        """The first ``k`` pages from the head (fewer if the list is shorter), not taken."""
        n = min(k, self._e[LEN])
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        return _walk(self.links.next, self._e[HEAD], n)

    def pop_many(self, k: int) -> np.ndarray:
        """``k`` calls of ``pop_head`` at once: the first ``k`` pages in list order. The
        caller has checked ``k <= len(self)``."""
        pages = self.first(k)
        e = self._e
        if pages.size < k:
            raise RuntimeError(f"pop_many: {k} pages asked, the list holds {e[LEN]}")
        if k == 0:
            return pages
        links = self.links
        rest = int(links.next[pages[-1]])
        links.prev[pages] = NIL
        links.next[pages] = NIL
        e[HEAD] = rest
        if rest != NIL:
            links.prev[rest] = NIL
        else:
            e[TAIL] = NIL
        e[LEN] -= k
        return pages

    def pop_head(self) -> int:
        """Take the head off (``list_first_entry`` + ``list_del``), or ``NIL`` when empty
        (``epcsim.fast.ops.page_list.list_pop_head``)."""
        page = self._e[HEAD]
        if page == NIL:
            return NIL
        self.remove(page)
        return page

    def pages(self) -> list[int]:
        """Pages from head to tail (for tests, the invariant checker and debugging)."""
        out, page, nxt = [], self._e[HEAD], self.links.next
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
