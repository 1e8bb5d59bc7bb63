"""Version Array pages: the 512 eight-byte version slots of every VA page (SDM §34.9).

EPA makes a VA page with every slot zero; EWB writes a fresh version into a slot and ELDU
reads it and zeroes it again. A VA page holds 4 KiB of slots, one VA page per 512 enclave
pages: 8 bytes per enclave page if stored up front. Most slots of most VA pages are zero
(only swapped pages have a version), so a VA page gets its slots - a row of 512 ``uint64``
- on the first non-zero write only (issue 9); until then it reads as zeros, and a row freed
(EREMOVE, EWB of the VA page) is zeroed and reused. Rows live in blocks of ``BLOCK_ROWS``
(``blocks``: row ``r`` is row ``r % BLOCK_ROWS`` of block ``r // BLOCK_ROWS``), added as
needed and never moved or freed. One array grown by copying was tried: each copy of a large
array frees a large block, glibc then raises its mmap threshold to that size, and later
allocations below it stay on the heap - row 8 (1 GiB + 1 GiB, fast engine) went from 39 B
to 46-47 B per page in two runs; with blocks it is 40 B. A block is one row (4 KiB, under
the default threshold): blocks of 4 rows cost +1.4 B per EPC page in row 6 (rows given
but not used yet), one row +0.6 B (the index and the kernel's VA arrays).

Which row a VA page has is kept twice, as one fact: ``va_epc``/``va_row`` - the valid VA pages'
EPC indices in ascending order and each one's row (-1: no row yet) - are the form a compiled
driver reads (a binary search, issue 9 DESIGN.md step 2); ``_row``, a dict of the same pairs,
is the Python path's (a dict look-up costs ~50 ns, ``np.searchsorted`` on a scalar ~1 µs,
and EWB/ELDU look a slot up two or three times per fault). Only ``__setitem__``,
``__delitem__`` and a first write change them, and they change both; ``check`` states it.

Reads through ``va[epc]`` give the live row, or a read-only array of zeros for a page not yet
written: every write goes through ``set_version`` or a whole-page assignment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT

_ZEROS = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
_ZEROS.flags.writeable = False

#: rows of 512 versions per block (4 KiB; see the module docstring)
BLOCK_ROWS = 1


def _inserted(a: np.ndarray, at: int, value: int) -> np.ndarray:
    """``np.insert(a, at, value)`` for a 1-D array, by slices: ``np.insert`` builds several
    tuples per call (``np.moveaxis``), which at one call per VA page filled CPython's tuple
    free lists with ~100 KB that row 6 counted (issue 9) and took ~5x the time."""
    out = np.empty(a.size + 1, dtype=a.dtype)
    out[:at] = a[:at]
    out[at] = value
    out[at + 1 :] = a[at:]
    return out


def _deleted(a: np.ndarray, at: int) -> np.ndarray:
    """``np.delete(a, at)`` for a 1-D array, by slices (see ``_inserted``)."""
    out = np.empty(a.size - 1, dtype=a.dtype)
    out[:at] = a[:at]
    out[at:] = a[at + 1 :]
    return out


class VaPages(Mapping[int, np.ndarray]):
    """``va_epc -> 512 uint64 version slots`` for every valid VA page."""

    def __init__(self) -> None:
        self._row: dict[int, int] = {}  # VA page -> row of ``slots`` (-1: all zero, no row)
        self.va_epc = np.empty(0, dtype=np.int32)  # the VA pages, ascending
        self.va_row = np.empty(0, dtype=np.int32)  # the row of each (-1: no row)
        #: the rows, ``BLOCK_ROWS`` to a block (a compiled driver takes them as a typed list)
        self.blocks: list[np.ndarray] = []
        self._free_rows: list[int] = []  # rows to reuse, the last freed first
        self._nr_rows = 0  # rows handed out so far

    # -- the two forms of the row index, changed together ----------------------------------
    def _set_row(self, epc: int, row: int) -> None:
        at = int(np.searchsorted(self.va_epc, epc))
        if epc not in self._row:
            self.va_epc = _inserted(self.va_epc, at, epc)
            self.va_row = _inserted(self.va_row, at, row)
        else:
            self.va_row[at] = row
        self._row[epc] = row

    def _drop(self, epc: int) -> None:
        row = self._row.pop(epc)
        at = int(np.searchsorted(self.va_epc, epc))
        self.va_epc = _deleted(self.va_epc, at)
        self.va_row = _deleted(self.va_row, at)
        self._free_row(row)

    def _new_row(self) -> int:
        if self._free_rows:
            return self._free_rows.pop()
        row = self._nr_rows
        self._nr_rows += 1
        if row == len(self.blocks) * BLOCK_ROWS:
            self.blocks.append(np.zeros((BLOCK_ROWS, SGX_VA_SLOT_COUNT), dtype=np.uint64))
        return row

    def _slots(self, row: int) -> np.ndarray:
        """The 512 slots of row ``row`` (a view)."""
        return self.blocks[row // BLOCK_ROWS][row % BLOCK_ROWS]

    def _free_row(self, row: int) -> None:
        if row >= 0:
            self._slots(row)[:] = 0
            self._free_rows.append(row)

    def check(self) -> list[str]:
        """The two forms of the row index agree, and rows are owned once (tests)."""
        bad = []
        if sorted(self._row) != self.va_epc.tolist():
            bad.append("VA pages: va_epc differs from the row map")
        elif [self._row[k] for k in self.va_epc.tolist()] != self.va_row.tolist():
            bad.append("VA pages: va_row differs from the row map")
        owned = [r for r in self._row.values() if r >= 0]
        if len(set(owned)) != len(owned) or set(owned) & set(self._free_rows):
            bad.append("VA pages: a row is owned twice")
        if any(self._slots(r).any() for r in self._free_rows):
            bad.append("VA pages: a free row is not zero")
        return bad

    # -- the mapping ----------------------------------------------------------------------
    def __getitem__(self, epc: int) -> np.ndarray:
        row = self._row[int(epc)]
        return _ZEROS if row < 0 else self._slots(row)

    def __setitem__(self, epc: int, slots: np.ndarray) -> None:
        """A whole page: EPA (zeros) or ELDU of an evicted VA page (its slots)."""
        slots = np.asarray(slots, dtype=np.uint64)
        if slots.shape != (SGX_VA_SLOT_COUNT,):
            raise ValueError(f"slots: {SGX_VA_SLOT_COUNT} versions, got shape {slots.shape}")
        epc = int(epc)
        old = self._row.get(epc, -1)
        if slots.any():
            row = old if old >= 0 else self._new_row()
            self._slots(row)[:] = slots
        else:
            self._free_row(old)
            row = -1
        self._set_row(epc, row)

    def __delitem__(self, epc: int) -> None:
        self._drop(int(epc))

    def __iter__(self) -> Iterator[int]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, epc: object) -> bool:
        return epc in self._row

    def pop(self, epc: int, default: object = None) -> object:
        if int(epc) not in self._row:
            return default
        slots = self[int(epc)].copy()
        self._drop(int(epc))
        return slots

    def version(self, epc: int, slot: int) -> int:
        """The version in a slot (0: empty)."""
        row = self._row[int(epc)]
        return 0 if row < 0 else self.blocks[row // BLOCK_ROWS].item(row % BLOCK_ROWS, slot)

    def set_version(self, epc: int, slot: int, version: int) -> None:
        epc = int(epc)
        row = self._row[epc]
        if row < 0:
            if not version:
                return
            row = self._new_row()
            self._set_row(epc, row)
        self.blocks[row // BLOCK_ROWS][row % BLOCK_ROWS, slot] = version

    @property
    def nbytes(self) -> int:
        """Host bytes: every row allocated (in use, free or not yet used) and the index."""
        slots = len(self.blocks) * BLOCK_ROWS * SGX_VA_SLOT_COUNT * 8
        return int(slots + self.va_epc.nbytes + self.va_row.nbytes)
