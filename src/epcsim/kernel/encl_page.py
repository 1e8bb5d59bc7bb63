"""``struct sgx_encl_page`` for every page of an ELRANGE, packed into 6 bytes (issue 9).

The kernel keeps an xarray of ``sgx_encl_page``; the model keeps three NumPy arrays indexed
by page index ``(addr - base) >> 12``, and ``SgxEncl`` reads and writes them through views
named after the fields they replace (``encl.epc``, ``encl.present``, ``encl.pte_young``...):

=========  =====  ==============================================================
array      bytes  contents
=========  =====  ==============================================================
``desc``   4      like the kernel's ``encl_page->desc``: the EPC page index while
                  resident (>= 0); while evicted ``-2 - (va_id * 512 + slot)``,
                  the VA slot holding the page's version (``va_id``: the enclave's
                  number for the VA page, see ``VaIds``); ``-1`` otherwise
``flags``  1      PRESENT (the xarray entry exists) bit 0, BEING_RECLAIMED bit 1,
                  the PTE's Present bit 2 and Accessed bit 3, ``entry->type`` bits 4-6
``prot``   1      ``vm_max_prot_bits`` bits 0-2, the VMA's protection bits 3-5
=========  =====  ==============================================================

The PTE bits stand for the one mm that maps the enclave. A page is resident or evicted,
never both, so one 32-bit word holds either reference - as ``desc`` does in the kernel,
where the VA offset overlays the address bits. ``encl.epc[i] = -1`` clears the EPC page and
leaves a VA reference alone; the VA slot is set and cleared with ``SgxEncl.set_va`` and
``clear_va``, and read through ``encl.va_page`` / ``encl.va_slot``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT
from epcsim.packed import ArrayView, FlagField

#: ``isinstance`` operands as tuples: ``int | np.integer`` written in a call builds a union
#: object on every call (~0.2 us), and these checks run on every page
_INT = (int, np.integer)

ENCL_PAGE_PRESENT = 1 << 0
ENCL_PAGE_BEING_RECLAIMED = 1 << 1
ENCL_PAGE_PTE_PRESENT = 1 << 2
ENCL_PAGE_PTE_YOUNG = 1 << 3
ENCL_PAGE_TYPE_SHIFT = 4
PROT_VMA_SHIFT = 3

NO_PAGE = -1
#: the largest VA reference ``desc`` holds: 2**31 - 2 slots, 4M VA pages per enclave
MAX_VA_REF = (1 << 31) - 3


class EpcField(ArrayView):
    """``entry->epc_page`` as an ``int32`` array: the EPC page, or -1 when not resident."""

    __slots__ = ("_desc",)

    def __init__(self, desc: np.ndarray):
        self._desc = desc

    def __len__(self) -> int:
        return int(self._desc.size)

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int:  # one page by a Python int: the hot case, no NumPy scalar
            d = self._desc.item(index)
            return d if d >= 0 else NO_PAGE
        d = self._desc[index]
        if isinstance(d, np.ndarray):
            return np.maximum(d, NO_PAGE)
        return int(d) if d >= 0 else NO_PAGE

    def __setitem__(self, index: Any, value: Any) -> None:
        desc = self._desc
        if isinstance(value, np.ndarray) or not isinstance(index, _INT):
            cur = desc[index]
            val = np.broadcast_to(np.asarray(value, dtype=np.int64), np.shape(cur))
            desc[index] = np.where(val >= 0, val, np.where(cur >= 0, NO_PAGE, cur))
        elif value >= 0:
            desc[index] = value
        elif desc[index] >= 0:
            desc[index] = NO_PAGE


class VaField(ArrayView):
    """The VA page (``slot=False``) or slot (``slot=True``) of each evicted page, -1 for
    the others. Read-only: ``SgxEncl.set_va`` / ``clear_va`` write."""

    __slots__ = ("_desc", "_ids", "_slot")

    def __init__(self, desc: np.ndarray, ids: VaIds, slot: bool):
        self._desc, self._ids, self._slot = desc, ids, slot

    def __len__(self) -> int:
        return int(self._desc.size)

    def __getitem__(self, index: Any) -> Any:
        d = self._desc.item(index) if type(index) is int else self._desc[index]
        if isinstance(d, np.ndarray):
            ref = -2 - d.astype(np.int64)
            out = np.full(d.shape, -1, dtype=np.int64)
            has = d < NO_PAGE
            if self._slot:
                out[has] = ref[has] % SGX_VA_SLOT_COUNT
            elif has.any():
                out[has] = self._ids.epc_of(ref[has] // SGX_VA_SLOT_COUNT)
            return out
        if d >= NO_PAGE:
            return -1
        r = -2 - int(d)
        return r % SGX_VA_SLOT_COUNT if self._slot else self._ids.epc.item(r // SGX_VA_SLOT_COUNT)


#: VA page numbers (and the VA pages' arrays, ``epcsim.kernel.va_page``) grow this many at a time
VA_CHUNK = 16


class VaIds:
    """The enclave's numbers for its VA pages (``va_id``): stable while the VA page lives,
    reused after it is freed (the last freed first), so ``desc`` can name a VA slot in 31
    bits. ``epc`` (number -> EPC page, -1 for a free number) is an array grown ``VA_CHUNK``
    numbers at a time, so a compiled driver can follow ``desc`` to the VA page (issue 9)."""

    def __init__(self) -> None:
        self.epc = np.empty(0, dtype=np.int32)  # va_id -> EPC index of the VA page (-1: free)
        self.nr = 0  # numbers handed out so far
        self.id_of: dict[int, int] = {}  # EPC index -> va_id
        self._free: list[int] = []

    def add(self, va: int) -> None:
        if self._free:
            i = self._free.pop()
        else:
            i = self.nr
            self.nr += 1
            if i == self.epc.size:
                grown = np.full(i + VA_CHUNK, -1, dtype=np.int32)
                grown[:i] = self.epc
                self.epc = grown
        self.epc[i] = va
        self.id_of[va] = i

    def remove(self, va: int) -> None:
        i = self.id_of.pop(va)
        self.epc[i] = -1
        self._free.append(i)

    def clear(self) -> None:
        self.epc = np.empty(0, dtype=np.int32)
        self.nr = 0
        self.id_of.clear()
        self._free.clear()

    def epc_of(self, ids: np.ndarray) -> np.ndarray:
        return self.epc[ids].astype(np.int64)

    def ref(self, va: int, slot: int) -> int:
        """``desc`` of a page whose version is in ``slot`` of VA page ``va``."""
        r = self.id_of[va] * SGX_VA_SLOT_COUNT + slot
        if r > MAX_VA_REF:
            raise RuntimeError("more VA pages than desc can name (2**31 slots per enclave)")
        return -2 - r


class EnclPages:
    """The packed arrays of one ELRANGE and the views over them (see the module docstring)."""

    def __init__(self, n: int, va_ids: VaIds):
        self.desc = np.full(n, NO_PAGE, dtype=np.int32)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.prot = np.full(n, 7 << PROT_VMA_SHIFT, dtype=np.uint8)  # VMA: RWX
        self.va_ids = va_ids  # the enclave's: its first VA page comes before the ELRANGE

    @property
    def nbytes(self) -> int:
        return int(self.desc.nbytes + self.flags.nbytes + self.prot.nbytes)

    def views(self) -> dict[str, ArrayView]:
        f, p = self.flags, self.prot
        return {
            "present": FlagField(f, 0, 1),
            "reclaiming": FlagField(f, 1, 1),
            "pte_present": FlagField(f, 2, 1),
            "pte_young": FlagField(f, 3, 1),
            "type": FlagField(f, ENCL_PAGE_TYPE_SHIFT, 3),
            "max_prot": FlagField(p, 0, 3),
            "vma_prot": FlagField(p, PROT_VMA_SHIFT, 3),
            "epc": EpcField(self.desc),
            "va_page": VaField(self.desc, self.va_ids, slot=False),
            "va_slot": VaField(self.desc, self.va_ids, slot=True),
        }
