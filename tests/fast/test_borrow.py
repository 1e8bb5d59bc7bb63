"""``cosim.borrow``: a machine called through a borrowed pointer reads and writes the
caller's own arrays and typed lists (no copy), however many times the loop calls it, and
only tuples of arrays, typed lists and scalars can be borrowed."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit, typed, types
from numba.core.errors import TypingError

from epcsim.fast.cosim.borrow import borrow, unborrow

Pair = namedtuple("Pair", "a b rows")


@njit(cache=False)
def _step(p, i):  # type: ignore[no-untyped-def]
    """One resumption: adds row ``i % len(rows)``'s sum and ``c[0]`` to ``a[i]``, counts
    the call in ``b``; a slice of a borrowed array is a view of the caller's array."""
    pair, c = unborrow(p)
    row = pair.rows[i % len(pair.rows)]
    pair.a[i] += row.sum() + c[0]
    head = pair.b[:1]
    head[0] += 1
    return pair.a[i]


@njit(cache=False)
def _loop(pair, c, n):  # type: ignore[no-untyped-def]
    p = borrow((pair, c))
    s = 0
    for i in range(n):
        s += _step(p, i % len(pair.a))
    return s


@settings(max_examples=25, deadline=None)
@given(
    a=st.lists(st.integers(-1000, 1000), min_size=1, max_size=20),
    rows=st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=4), min_size=1, max_size=4),
    c=st.integers(-5, 5),
    n=st.integers(0, 60),
)
def test_a_borrowed_call_changes_the_callers_arrays(a, rows, c, n):  # type: ignore[no-untyped-def]
    arr = np.array(a, np.int64)
    lst = typed.List.empty_list(types.int64[::1])
    for r in rows:
        lst.append(np.array(r, np.int64))
    pair = Pair(arr, np.zeros(1, np.int64), lst)
    want_a = arr.copy()
    want_s = 0
    for i in range(n):
        j = i % len(a)
        want_a[j] += sum(rows[j % len(rows)]) + c
        want_s += int(want_a[j])
    got = _loop(pair, np.array([c], np.int64), n)
    assert got == want_s
    assert pair.a.tolist() == want_a.tolist()  # the caller's array, written in place
    assert pair.b[0] == n
    assert [r.tolist() for r in pair.rows] == rows  # the list and its items untouched


@njit(cache=False)
def _borrow_non_tuple(a):  # type: ignore[no-untyped-def]
    return borrow(a)


@njit(cache=False)
def _borrow_dict(d):  # type: ignore[no-untyped-def]
    return borrow((d,))


def test_only_tuples_of_arrays_lists_and_scalars_are_borrowed() -> None:
    with pytest.raises(TypingError, match="tuple is required"):
        _borrow_non_tuple(np.zeros(2))
    d = typed.Dict.empty(types.int64, types.int64)
    with pytest.raises(TypingError, match="cannot borrow"):
        _borrow_dict(d)
