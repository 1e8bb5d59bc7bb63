"""Packed fields: bit fields of small integer arrays, indexed like the arrays they replace.

Issue 9 asks for a few bytes of state per page, so the EPCM (``epcsim.isa.epcm``) and the
enclave's page entries (``epcsim.kernel.encl_page``) pack several booleans and small fields
into one integer per page. A ``FlagField`` is one such field: ``e.valid[epc]`` reads a
``bool``, ``e.valid[pages]`` a NumPy array, ``e.valid[pages] = True`` writes, and whole-array
expressions (``e.valid & x``, ``e.pt == 4``, ``np.flatnonzero(e.valid)``,
``e.valid.tobytes()``) work on the decoded array. Compiled code reads the packed integers
directly with the layout's masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``isinstance`` operands as tuples: ``int | np.integer`` written in a call builds a union
#: object on every call (~0.2 us), and these checks run on every page
_INT = (int, np.integer)


class ArrayView(np.lib.mixins.NDArrayOperatorsMixin):
    """What a packed field shares with the array it replaces, for whole-array use: NumPy
    operators and ufuncs, ``np.asarray``, and read-only attributes (``tobytes``, ``any``,
    ``size``...) of the decoded array, ``self[:]``."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self[:])
        return out if dtype is None else out.astype(dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            return NotImplemented  # no in-place whole-array ufuncs: assign through [...]
        args = tuple(np.asarray(x) if isinstance(x, ArrayView) else x for x in inputs)
        return getattr(ufunc, method)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self[:]), name)

    def copy(self) -> np.ndarray:
        """The whole field as a new array."""
        return np.asarray(self[:])


class FlagField(ArrayView):
    """``width`` bits from bit ``shift`` of each integer of ``words``.

    A scalar index reads a Python ``bool`` (one-bit fields) or ``int``; an array, slice or
    mask reads a NumPy array (``bool``, or ``uint8`` for wider fields). Assignment takes a
    scalar or an array, as NumPy does; the other bits of each word are left as they were."""

    __slots__ = ("_is_bool", "_keep", "_mask", "_shift", "_type", "_words")

    def __init__(self, words: np.ndarray, shift: int, width: int):
        self._words = words
        self._type = words.dtype.type
        self._shift = shift
        self._mask = (1 << width) - 1
        self._is_bool = width == 1
        bits = self._mask << shift
        signed = words.dtype.kind == "i"  # a signed word: the other bits as ~bits
        self._keep = self._type(~bits if signed else ((1 << (8 * words.itemsize)) - 1) ^ bits)

    def __len__(self) -> int:
        return int(self._words.size)

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int:  # one page by a Python int: the hot case, no NumPy scalar
            v = (self._words.item(index) >> self._shift) & self._mask
            return bool(v) if self._is_bool else v
        v = self._words[index]
        if isinstance(v, np.ndarray):
            v = (v >> self._shift) & self._mask
            return v.astype(np.bool_) if self._is_bool else v.astype(np.uint8)
        v = (int(v) >> self._shift) & self._mask
        return bool(v) if self._is_bool else v

    def __setitem__(self, index: Any, value: Any) -> None:
        w = self._words
        if type(index) is int and type(value) in (bool, int):  # the hot case, as below
            shift = self._shift
            w[index] = (w.item(index) & ~(self._mask << shift)) | ((value & self._mask) << shift)
            return
        if isinstance(value, np.ndarray) or not isinstance(index, _INT):
            t = self._type
            val = (np.asarray(value).astype(t) & t(self._mask)) << t(self._shift)
            w[index] = (w[index] & self._keep) | val.astype(t)
        else:
            bits = self._mask << self._shift
            w[index] = (int(w[index]) & ~bits) | ((int(value) & self._mask) << self._shift)


class BitArray(ArrayView):
    """A boolean array kept 8 to a byte (one bit per page of a file, issue 9)."""

    __slots__ = ("_bits", "_n")

    def __init__(self, n: int):
        self._n = n
        self._bits = np.zeros((n + 7) // 8, dtype=np.uint8)

    def __len__(self) -> int:
        return self._n

    @property
    def size(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._bits.nbytes)

    @property
    def bits(self) -> np.ndarray:
        """The bytes themselves (bit ``i`` is bit ``i & 7`` of byte ``i >> 3``): what a
        compiled op takes (``epcsim.fast.ops.backing``)."""
        return self._bits

    def _bit(self, index: Any) -> int:
        i = int(index)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"index {index} is out of bounds for size {self._n}")
        return i

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int and 0 <= index < self._n:  # the hot case: no checks to redo
            return bool((self._bits.item(index >> 3) >> (index & 7)) & 1)
        if isinstance(index, _INT):
            i = self._bit(index)
            return bool((int(self._bits[i >> 3]) >> (i & 7)) & 1)
        bits = np.unpackbits(self._bits, count=self._n, bitorder="little")
        return bits.astype(np.bool_)[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        if type(index) is int and type(value) is bool and 0 <= index < self._n:  # hot case
            bits, j, bit = self._bits, index >> 3, 1 << (index & 7)
            bits[j] = (bits.item(j) | bit) if value else (bits.item(j) & (0xFF ^ bit))
            return
        if isinstance(index, _INT) and not isinstance(value, np.ndarray):
            i = self._bit(index)
            if value:
                self._bits[i >> 3] |= np.uint8(1 << (i & 7))
            else:
                self._bits[i >> 3] &= np.uint8(0xFF ^ (1 << (i & 7)))
            return
        full = self[:]
        full[index] = value
        self._bits[:] = np.packbits(full, bitorder="little")


class ShiftedField(ArrayView):
    """A signed integer kept in the bits of each word of ``words`` above bit ``shift``
    (``value = word >> shift``, arithmetic, so negative codes survive), the low bits left
    to another field (``epcsim.kernel.epc``: the owner page index above the page flags).

    Indexed like the signed array it replaces: a scalar index reads a Python ``int``, an
    array, slice or mask an ``int64`` array; assignment keeps the low ``shift`` bits."""

    __slots__ = ("_low", "_shift", "_type", "_words")

    def __init__(self, words: np.ndarray, shift: int):
        self._words = words
        self._type = words.dtype.type
        self._shift = shift
        self._low = (1 << shift) - 1

    def __len__(self) -> int:
        return int(self._words.size)

    @property
    def nbytes(self) -> int:
        return 0  # the words are counted by their owner

    def item(self, index: Any) -> int:
        return self._words.item(index) >> self._shift

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int:  # the hot case: one page by a Python int
            return self._words.item(index) >> self._shift
        v = self._words[index]
        if isinstance(v, np.ndarray):
            return v.astype(np.int64) >> self._shift
        return int(v) >> self._shift

    def __setitem__(self, index: Any, value: Any) -> None:
        w = self._words
        if isinstance(index, _INT) and not isinstance(value, np.ndarray):
            i = int(index)
            w[i] = (int(value) << self._shift) | (w.item(i) & self._low)
            return
        t = self._type
        val = np.asarray(value).astype(np.int64) << self._shift
        w[index] = (val | (w[index].astype(np.int64) & self._low)).astype(t)
