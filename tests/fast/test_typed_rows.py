"""``ops.typed_rows.row``: a typed list's array item, borrowed (no reference counting), is
the item ``lst[i]`` gives - same values, writes land in the list's array - and an index out
of range raises ``IndexError`` as ``getitem`` does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit, typed, types

from epcsim.fast.ops.typed_rows import row


@njit(cache=False)
def _read_write(lst, i, j, v):  # type: ignore[no-untyped-def]
    """Row ``i`` borrowed: its entry ``j`` before, then ``v`` written there, and the row
    read again through ``getitem`` (the same array)."""
    r = row(lst, i)
    before = r[j, 1]
    r[j, 1] = v
    return before, lst[i][j, 1]


@njit(cache=False)
def _flat(lst, i, j):  # type: ignore[no-untyped-def]
    return row(lst, i)[j]


def _rows(seed: int, n: int, shape: tuple[int, ...], ty):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    lst = typed.List.empty_list(ty)
    arrays = [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(n)]
    for a in arrays:
        lst.append(a)
    return lst, arrays


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.data())
def test_a_borrowed_row_is_the_item(seed: int, n: int, data: st.DataObject) -> None:
    lst, arrays = _rows(seed, n, (5, 3), types.uint8[:, ::1])
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, 4))
    v = data.draw(st.integers(0, 255))
    old = int(arrays[i][j, 1])
    before, after = _read_write(lst, np.int64(i), np.int64(j), np.uint8(v))
    assert before == old
    assert after == v and arrays[i][j, 1] == v  # the list holds the arrays themselves
    flat, farrays = _rows(seed, n, (7,), types.uint8[::1])
    k = data.draw(st.integers(0, 6))
    # an int32 row index, as ``chunk_row`` holds (one signature: always int32 here)
    assert _flat(flat, np.int32(i), np.int64(k)) == farrays[i][k]


@pytest.mark.parametrize("i", [-1, 3, 10])
def test_an_index_out_of_range_raises(i: int) -> None:
    lst, _ = _rows(0, 3, (5, 3), types.uint8[:, ::1])
    with pytest.raises(IndexError):
        _read_write(lst, np.int64(i), np.int64(0), np.uint8(1))
