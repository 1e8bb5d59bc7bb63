"""VA slots (``sgx/encl.c``): ``sgx_alloc_va_slot`` takes the first free version slot of a VA
page, ``sgx_free_va_slot`` gives one back."""

from __future__ import annotations

from numba import njit

from epcsim.fast.ops.page_list import list_add, list_del


@njit(cache=True, nogil=True)
def va_take_slot(used):
    """Mark the first free slot of ``used`` used. ``used`` is the kernel's slot map of one
    VA page, one bit per slot, 8 to a byte (slot ``s`` is bit ``s & 7`` of byte ``s >> 3``;
    issue 9). Returns ``(slot, full)``: ``full`` when it was the last free slot (the kernel
    then moves the VA page to the tail of ``encl->va_pages``); ``(-1, True)`` when none is
    free."""
    n = used.size
    for b in range(n):
        x = used[b]
        if x != 0xFF:
            bit = 0
            while (x >> bit) & 1:
                bit += 1
            used[b] = x | (1 << bit)
            if used[b] != 0xFF:
                return b * 8 + bit, False
            for j in range(b + 1, n):
                if used[j] != 0xFF:
                    return b * 8 + bit, False
            return b * 8 + bit, True
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
