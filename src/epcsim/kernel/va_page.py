"""``struct sgx_va_page`` and ``encl->va_pages``: an enclave's Version Array pages as arrays.

Per VA page the kernel keeps its EPC page, a bitmap of its 512 slots in use and its place on
``encl->va_pages`` (spec §3.2): ``sgx_encl_grow``'s caller adds a new VA page at the head,
``sgx_alloc_va_slot`` takes the first free slot of the head page and moves a page it fills
to the tail, and ``sgx_encl_eldu`` frees a slot and moves that page back to the head.

The model numbers the VA pages (``VaIds``, ``epcsim.kernel.encl_page``: ``desc`` names a slot
as ``va_id * 512 + slot``) and keeps all three by that number, in arrays grown ``VA_CHUNK``
numbers at a time (issue 9, DESIGN.md step 2): ``ids.epc`` (the EPC page), ``used`` (one
bit per slot, 8 to a byte, ``epcsim.fast.ops.va``) and the list - a ``PageList`` over links
of the VA pages' own (``links.prev``/``next``/``ends``, ``epcsim.fast.ops.page_list``). A
compiled driver takes those arrays; the methods here are the Python path, and what a driver
does not do (a new VA page: EPA, a hand-back) stays Python.
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT
from epcsim.fast.ops.va import va_take_slot
from epcsim.kernel.encl_page import VA_CHUNK, VaIds
from epcsim.kernel.page_list import NIL, PageLinks, PageList

_SLOT_BYTES = SGX_VA_SLOT_COUNT // 8


class VaPageList:
    """``encl->va_pages`` with each page's slot bitmap, by VA page number."""

    def __init__(self, ids: VaIds):
        self.ids = ids
        self._reset()

    def _reset(self) -> None:
        self.links = PageLinks(0)  # the list's links, by VA page number
        self.list = PageList(self.links)
        self.used = np.zeros((0, _SLOT_BYTES), dtype=np.uint8)  # slot bitmaps, a row each

    def __len__(self) -> int:
        return len(self.list)

    def __contains__(self, va: object) -> bool:
        return va in self.ids.id_of

    def order(self) -> list[int]:
        """The EPC pages of the VA pages, head (where slots are taken) first."""
        epc = self.ids.epc
        return [epc.item(v) for v in self.list.pages()]

    @property
    def nbytes(self) -> int:
        return int(self.used.nbytes + self.links.prev.nbytes + self.links.next.nbytes)

    def add(self, va: int) -> None:
        """A new VA page (after EPA) at the head, every slot free."""
        self.ids.add(va)
        vid = self.ids.id_of[va]
        if vid >= self.used.shape[0]:
            n = self.ids.epc.size  # VaIds grows by VA_CHUNK numbers: follow it
            used = np.zeros((n, _SLOT_BYTES), dtype=np.uint8)
            used[: self.used.shape[0]] = self.used
            self.used = used
            self.links.grow(n)
        self.used[vid] = 0
        self.list.add_head(vid)

    def remove(self, va: int) -> None:
        """``sgx_encl_shrink``: the VA page goes (its slots are all free)."""
        vid = self.ids.id_of[va]
        self.list.remove(vid)
        self.used[vid] = 0
        self.ids.remove(va)

    def clear(self) -> None:
        """``sgx_encl_release``: every VA page is freed; numbers restart from 0."""
        self.ids.clear()
        self._reset()

    def used_slots(self, va: int) -> np.ndarray:
        """The used slots of VA page ``va`` as 512 booleans (for the invariant checker)."""
        row = self.used[self.ids.id_of[va]]
        return np.unpackbits(row, bitorder="little").astype(np.bool_)

    def take_slot(self) -> tuple[int, int]:
        """``sgx_alloc_va_slot`` on the head VA page (``epcsim.fast.ops.va``); a page that
        fills up moves to the tail. Returns ``(va EPC page, slot)``."""
        lst = self.list
        vid = lst.head
        if vid == NIL:
            raise IndexError("va_pages is empty")
        slot, full = va_take_slot(self.used[vid])
        va = self.ids.epc.item(vid)
        if slot < 0:
            raise IndexError(f"VA page {va} at the head of va_pages has no free slot")
        if full:
            lst.remove(vid)
            lst.add_tail(vid)
        return va, int(slot)

    def free_slot(self, va: int, slot: int, to_head: bool) -> None:
        """``sgx_free_va_slot``; with ``to_head`` the page moves to the head (``list_move``
        in ``sgx_encl_eldu``)."""
        vid = self.ids.id_of[va]
        self.used[vid, slot >> 3] &= 0xFF ^ (1 << (slot & 7))
        if to_head:
            lst = self.list
            lst.remove(vid)
            lst.add_head(vid)


__all__ = ["VA_CHUNK", "VaPageList"]
