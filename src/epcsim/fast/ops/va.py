"""``sgx_alloc_va_slot``: the first free version slot of a VA page (``sgx/encl.c``)."""

from __future__ import annotations

from numba import njit


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
