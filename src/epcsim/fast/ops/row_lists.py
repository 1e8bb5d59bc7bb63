"""The typed lists of rows that compiled code reads (the backing store's rows, the VA
versions' blocks: ``ops.typed_rows``), made and grown from Python through compiled
functions of our own, cached on disk, instead of numba's ``typed.List`` methods.

Why (issue 9 row 5, session ``cacheload``, 2026-11-26; BENCHMARKS.md "cacheload"): a
``typed.List`` made or grown from Python calls numba's own jitted helpers
(``typedlist._make_list``, ``_append``, ``_length``), which numba does not cache on disk:
every process compiled them afresh, once per item type - ~0.8 s of CPU, more than half of
what a warm process paid before its first result on the core (the machines themselves load
from the cache in ~0.1 s). The functions here do the same operations (``List.empty_list``,
``append``, ``len``: numba's own list code, compiled into them) with ``cache=True``, so a
warm process only loads them (~2 ms each). The lists are the same numba type
(``ListType[array(...)]``) as before: the machines' signatures do not change.

One function per item type and operation, not one generic ``append``: a function compiled
for three argument types would be three compiles (tests/README.md, "One compiled
signature per machine"). Not ``core_jit``: a typed list needs numba's runtime (``_nrt``).
Python code that makes such a list calls ``new_*``, grows it with ``add_*`` and asks its
length with ``rows_len_*``; a Python ``len(lst)`` or ``lst.append`` still works, and pays
numba's compile once in the process.
"""

from __future__ import annotations

from typing import Any

from numba import njit, types
from numba.typed import List

#: a backing row of contents, MACs or MACs' last halves: ``(CHUNK, width)`` bytes
U8_2D = types.uint8[:, ::1]
#: a backing row of packed PCMD flags: ``(CHUNK,)`` bytes
U8_1D = types.uint8[::1]
#: a block of VA slots (the versions): ``(BLOCK_ROWS, SGX_VA_SLOT_COUNT)`` u64
U64_2D = types.uint64[:, ::1]


@njit(cache=True)  # type: ignore[misc]
def new_u8_2d() -> Any:
    """An empty typed list of ``uint8[:, ::1]`` rows."""
    return List.empty_list(U8_2D)


@njit(cache=True)  # type: ignore[misc]
def new_u8_1d() -> Any:
    """An empty typed list of ``uint8[::1]`` rows."""
    return List.empty_list(U8_1D)


@njit(cache=True)  # type: ignore[misc]
def new_u64_2d() -> Any:
    """An empty typed list of ``uint64[:, ::1]`` blocks."""
    return List.empty_list(U64_2D)


@njit(cache=True)  # type: ignore[misc]
def add_u8_2d(lst: Any, a: Any) -> None:
    """``lst.append(a)``: the list holds ``a`` itself (no copy)."""
    lst.append(a)


@njit(cache=True)  # type: ignore[misc]
def add_u8_1d(lst: Any, a: Any) -> None:
    """``lst.append(a)``: the list holds ``a`` itself (no copy)."""
    lst.append(a)


@njit(cache=True)  # type: ignore[misc]
def add_u64_2d(lst: Any, a: Any) -> None:
    """``lst.append(a)``: the list holds ``a`` itself (no copy)."""
    lst.append(a)


@njit(cache=True)  # type: ignore[misc]
def rows_len_u64_2d(lst: Any) -> int:
    """``len(lst)``."""
    return len(lst)


__all__ = [
    "add_u8_1d",
    "add_u8_2d",
    "add_u64_2d",
    "new_u8_1d",
    "new_u8_2d",
    "new_u64_2d",
    "rows_len_u64_2d",
]
