"""VA slots (``sgx/encl.c``): ``sgx_alloc_va_slot`` takes the first free version slot of a VA
page, ``sgx_free_va_slot`` gives one back."""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.ops.page_list import list_add, list_del

_FULL = np.uint64(0xFFFFFFFFFFFFFFFF)  # eight taken bytes, as one word


@njit(cache=True, nogil=True)
def va_take_slot(used):
    """Mark the first free slot of ``used`` used. ``used`` is the kernel's slot map of one
    VA page, one bit per slot, 8 to a byte (slot ``s`` is bit ``s & 7`` of byte ``s >> 3``;
    issue 9). Returns ``(slot, full)``: ``full`` when it was the last free slot (the kernel
    then moves the VA page to the tail of ``encl->va_pages``); ``(-1, True)`` when none is
    free.

    The map is read eight bytes at a time where it can be (session ``row1jit``,
    2026-11-27): the head VA page ksgxd takes slots from is nearly full (ELDU frees a
    random slot, EWB takes the first), so a byte scan read ~64 bytes a take - the first
    free one, then the rest for ``full`` - ~11% of ``reclaim_run``'s samples on row 1. A
    word of eight taken bytes is ``_FULL``; the bytes past the last whole word (a map
    whose size is not a multiple of 8: the tests' short maps) are read one by one."""
    n = used.size
    nw = n >> 3
    words = used[: nw << 3].view(np.uint64)
    b0 = nw << 3  # no word with a free slot: the tail's bytes
    for w in range(nw):
        if words[w] != _FULL:
            b0 = w << 3
            break
    for b in range(b0, n):
        x = used[b]
        if x != 0xFF:
            bit = 0
            while (x >> bit) & 1:
                bit += 1
            used[b] = x | (1 << bit)
            slot = b * 8 + bit
            if used[b] != 0xFF:
                return slot, False
            j = b + 1  # the rest of the map: any free slot left?
            while j < n and (j & 7) != 0:  # the rest of this word, byte by byte
                if used[j] != 0xFF:
                    return slot, False
                j += 1
            while j + 8 <= n:  # whole words
                if words[j >> 3] != _FULL:
                    return slot, False
                j += 8
            while j < n:  # the tail
                if used[j] != 0xFF:
                    return slot, False
                j += 1
            return slot, True
    return -1, True


@njit(cache=True, nogil=True)
def va_free_slot(used, prev, next_, ends, row, vid, slot, to_head):
    """``sgx_free_va_slot`` on VA page number ``vid`` (a row of ``used``, the slot maps of
    ``VaPageList``); with ``to_head`` the page then moves to the head of ``encl->va_pages``
    (list ``row`` over the VA pages' own links: ``list_move`` in ``sgx_encl_eldu``)."""
    used[vid, slot >> 3] &= 0xFF ^ (1 << (slot & 7))
    if to_head:
        list_del(prev, next_, ends, row, vid)
        list_add(prev, next_, ends, row, vid)
