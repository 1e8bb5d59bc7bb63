"""Version Array pages: the 512 eight-byte version slots of every VA page (SDM §34.9).

EPA makes a VA page with every slot zero; EWB writes a fresh version into a slot and ELDU
reads it and zeroes it again. A VA page holds 4 KiB of slots, one VA page per 512 enclave
pages: 8 bytes per enclave page if stored up front. Most slots of most VA pages are zero
(only swapped pages have a version), so a VA page's slot array is allocated on the first
non-zero write only (issue 9); until then it reads as zeros. Reads through ``va[epc]``
give the live array, or a read-only array of zeros for a page not yet written: every write
goes through ``set_version`` or a whole-page assignment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT

_ZEROS = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
_ZEROS.flags.writeable = False


class VaPages(Mapping[int, np.ndarray]):
    """``va_epc -> 512 uint64 version slots`` for every valid VA page."""

    def __init__(self) -> None:
        self._slots: dict[int, np.ndarray | None] = {}

    def __getitem__(self, epc: int) -> np.ndarray:
        slots = self._slots[int(epc)]
        return _ZEROS if slots is None else slots

    def __setitem__(self, epc: int, slots: np.ndarray) -> None:
        """A whole page: EPA (zeros) or ELDU of an evicted VA page (its slots)."""
        slots = np.asarray(slots, dtype=np.uint64)
        if slots.shape != (SGX_VA_SLOT_COUNT,):
            raise ValueError(f"slots: {SGX_VA_SLOT_COUNT} versions, got shape {slots.shape}")
        self._slots[int(epc)] = slots.copy() if slots.any() else None

    def __delitem__(self, epc: int) -> None:
        del self._slots[int(epc)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, epc: object) -> bool:
        return epc in self._slots

    def pop(self, epc: int, default: object = None) -> object:
        if int(epc) not in self._slots:
            return default
        slots = self[int(epc)]
        del self._slots[int(epc)]
        return slots

    def version(self, epc: int, slot: int) -> int:
        """The version in a slot (0: empty)."""
        slots = self._slots[int(epc)]
        return 0 if slots is None else int(slots[slot])

    def set_version(self, epc: int, slot: int, version: int) -> None:
        slots = self._slots[int(epc)]
        if slots is None:
            if not version:
                return
            slots = self._slots[int(epc)] = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
        slots[slot] = np.uint64(version)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._slots.values() if s is not None)
