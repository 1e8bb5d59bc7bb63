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

import numpy as np

NIL = -1


class ReclaimPolicy:
    name = "abstract"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0):
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

    def __contains__(self, page: int) -> bool:
        raise NotImplementedError


class KernelLru(ReclaimPolicy):
    """``sgx_active_page_list``: one global doubly linked list in two NumPy arrays."""

    name = "lru"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0):
        super().__init__(nr_pages, seed)
        # 32-bit links (issue 9): 8 bytes per EPC page for the list, 1 for membership
        self.prev = np.full(nr_pages, NIL, dtype=np.int32)
        self.next = np.full(nr_pages, NIL, dtype=np.int32)
        self.on = np.zeros(nr_pages, dtype=np.bool_)
        self.head = NIL
        self.tail = NIL
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, page: int) -> bool:
        return bool(self.on[page])

    def mark(self, page: int) -> None:  # list_add_tail
        if self.on[page]:
            raise RuntimeError(f"EPC page {page} is already on the LRU")
        self.prev[page] = self.tail
        self.next[page] = NIL
        if self.tail != NIL:
            self.next[self.tail] = page
        else:
            self.head = page
        self.tail = page
        self.on[page] = True
        self._len += 1

    def mark_many(self, pages: np.ndarray) -> None:
        """``mark(page)`` for each of ``pages`` in order, at once (the fast engine's batched
        paths): the pages, none on the list yet, are chained and appended at the tail."""
        k = int(pages.size)
        if k == 0:
            return
        if self.on[pages].any():
            raise RuntimeError("mark_many: a page is already on the LRU")
        self.prev[pages[1:]] = pages[:-1]
        self.prev[pages[0]] = self.tail
        self.next[pages[:-1]] = pages[1:]
        self.next[pages[-1]] = NIL
        if self.tail != NIL:
            self.next[self.tail] = pages[0]
        else:
            self.head = int(pages[0])
        self.tail = int(pages[-1])
        self.on[pages] = True
        self._len += k

    def unmark(self, page: int) -> None:  # list_del
        if not self.on[page]:
            raise RuntimeError(f"EPC page {page} is not on the LRU")
        p, n = int(self.prev[page]), int(self.next[page])
        if p != NIL:
            self.next[p] = n
        else:
            self.head = n
        if n != NIL:
            self.prev[n] = p
        else:
            self.tail = p
        self.prev[page] = self.next[page] = NIL
        self.on[page] = False
        self._len -= 1

    def isolate(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n and self.head != NIL:
            page = int(self.head)
            self.unmark(page)
            out.append(page)
        return out

    def order(self) -> list[int]:
        """Pages from head (next victim) to tail, for tests and debugging."""
        out, page = [], self.head
        while page != NIL:
            out.append(int(page))
            page = int(self.next[page])
        return out


class FifoNoAge(KernelLru):
    """Deviation ``fifo``: the kernel list, but the accessed bit is ignored (pure FIFO)."""

    name = "fifo"
    uses_age = False


class RandomVictim(KernelLru):
    """Deviation ``random``: victims are drawn uniformly (seeded) from the candidates."""

    name = "random"
    uses_age = True

    def __init__(self, nr_pages: int, seed: int = 0):
        super().__init__(nr_pages, seed)
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


def make_policy(name: str, nr_pages: int, seed: int = 0) -> ReclaimPolicy:
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"policy: unknown reclaim policy {name!r} (known: {', '.join(sorted(POLICIES))})"
        ) from None
    return cls(nr_pages, seed)
