"""``sgx_alloc_va_slot``: the first free version slot of a VA page (``sgx/encl.c``)."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def va_take_slot(used):
    """Mark the first free slot of ``used`` (one bool per slot) used. Returns
    ``(slot, full)``: ``full`` when it was the last free slot (the kernel then moves the
    VA page to the tail of ``encl->va_pages``); ``(-1, True)`` when none is free."""
    n = used.size
    for slot in range(n):
        if not used[slot]:
            used[slot] = True
            for j in range(slot + 1, n):
                if not used[j]:
                    return slot, False
            return slot, True
    return -1, True
