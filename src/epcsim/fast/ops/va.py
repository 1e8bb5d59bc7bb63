"""VA slots (``sgx/encl.c``): ``sgx_alloc_va_slot`` takes the first free version slot of a VA
page, ``sgx_free_va_slot`` gives one back."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.core.errors import TypingError
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from epcsim.fast.ops.page_list import list_add, list_del

_FULL = np.uint64(0xFFFFFFFFFFFFFFFF)  # eight taken bytes, as one word
assert sys.byteorder == "little"  # ``va_take_slot``'s slot of a word's bit


@intrinsic  # type: ignore[misc]
def _word_at(typingctx: Any, used: Any, b: Any) -> Any:
    """Bytes ``b`` to ``b + 7`` of the slot map ``used`` as one ``uint64`` (one unaligned
    load; the caller keeps ``b + 8 <= used.size``). Not ``used.view(np.uint64)``: numba's
    view calls a helper and counts references at each take (measured: the take, no longer
    inlined by LLVM, cost more than the byte scan it replaced)."""
    if not (
        isinstance(used, types.Array)
        and used.dtype == types.uint8
        and used.ndim == 1
        and used.layout == "C"
    ):
        raise TypingError("_word_at: a contiguous 1-D uint8 array is required")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        p = builder.bitcast(builder.gep(arr.data, [i]), ir.IntType(64).as_pointer())
        return builder.load(p, align=1)

    return types.uint64(used, b), codegen


@njit(cache=True, nogil=True)
def _taken_from(used, j):
    """Every slot of ``used`` from byte ``j`` on is taken (``j`` at a word's start or in
    the bytes past the last whole word)."""
    n = used.size
    while j + 8 <= n:
        if _word_at(used, j) != _FULL:
            return False
        j += 8
    while j < n:
        if used[j] != 0xFF:
            return False
        j += 1
    return True


@njit(cache=True, nogil=True)
def va_take_slot(used):
    """Mark the first free slot of ``used`` used. ``used`` is the kernel's slot map of one
    VA page, one bit per slot, 8 to a byte (slot ``s`` is bit ``s & 7`` of byte ``s >> 3``;
    issue 9). Returns ``(slot, full)``: ``full`` when it was the last free slot (the kernel
    then moves the VA page to the tail of ``encl->va_pages``); ``(-1, True)`` when none is
    free.

    Eight bytes at a time (session ``row1jit``, 2026-11-27): the head VA page ksgxd takes
    slots from is nearly full (ELDU frees a random slot, EWB takes the first), so the byte
    scan read ~64 bytes a take - the first free one, then the rest for ``full`` - with a
    mispredicted exit from each loop: ~11% of ``reclaim_run``'s samples on row 1. Now
    the first word with a free slot (``_word_at``), the slot its lowest clear bit
    (``trailing_zeros``: on a little-endian host, where the map's slot ``64 w + k`` is
    bit ``k`` of word ``w``), and ``full`` without a scan unless that was the word's last
    free slot. The bytes past the last whole word (a map whose size is not a multiple of
    8: the tests' short maps) are read one by one."""
    n = used.size
    nw = n >> 3
    for w in range(nw):
        free = ~_word_at(used, w << 3)  # the word's free slots, as set bits
        if free != 0:
            slot = (w << 6) + np.int64(trailing_zeros(free))
            used[slot >> 3] |= np.uint8(1 << (slot & 7))
            if free & (free - np.uint64(1)) != 0:
                return slot, False
            return slot, _taken_from(used, (w + 1) << 3)
    for b in range(nw << 3, n):
        x = used[b]
        if x != 0xFF:
            bit = 0
            while (x >> bit) & 1:
                bit += 1
            used[b] = x | (1 << bit)
            if used[b] != 0xFF:
                return b * 8 + bit, False
            return b * 8 + bit, _taken_from(used, b + 1)
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
