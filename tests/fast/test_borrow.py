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

from epcsim.fast.cosim.borrow import borrow, member, unborrow
from epcsim.fast.cosim.queue import pop, schedule
from epcsim.fast.cosim.state import C_EID, C_QLEN, EV_RESUME, new_state

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


# -- the core's primitives on a borrowed CoState (session ``pcost``) -------------------------


@njit(cache=False)
def _fields_in_place(pair, c, i, v):  # type: ignore[no-untyped-def]
    """``member(p, 0).a`` is the caller's ``pair.a`` (a write shows there); ``.b`` too."""
    p = borrow((pair, c))
    q = member(p, 0)
    q.a[i] = v
    q.b[0] += 1
    return q.a[i] + q.b.shape[0] + len(q.rows)


@settings(max_examples=20, deadline=None)
@given(a=st.lists(st.integers(-9, 9), min_size=1, max_size=8), i=st.integers(0, 7), v=st.integers())
def test_a_member_reads_and_writes_the_callers_fields(a, i, v):  # type: ignore[no-untyped-def]
    i %= len(a)
    v %= 1 << 40
    lst = typed.List.empty_list(types.int64[::1])
    lst.append(np.zeros(2, np.int64))
    pair = Pair(np.array(a, np.int64), np.zeros(1, np.int64), lst)
    assert _fields_in_place(pair, np.zeros(1, np.int64), i, v) == v + 1 + 1
    want = list(a)
    want[i] = v
    assert pair.a.tolist() == want and pair.b[0] == 1


#: int64, not a literal: as the machines pass them (tests/README.md, "No literal ints"), so
#: ``schedule`` is compiled for the signatures they use, not two more
_ONE = np.int64(1)
_RESUME = np.int64(EV_RESUME)


@njit(cache=False)
def _events(st, ops):  # type: ignore[no-untyped-def]
    """Schedule (op >= 0: a delay) and pop (op < 0) on ``st`` by value: the payloads popped."""
    out = np.full(ops.shape[0], -1, np.int64)
    for k in range(ops.shape[0]):
        if ops[k] >= 0:
            schedule(st, ops[k], _ONE, _RESUME, k % 3, k)
        elif st.clk[C_QLEN] > 0:
            out[k] = pop(st)
    return out


@njit(cache=False)
def _events_borrowed(st, ops):  # type: ignore[no-untyped-def]
    """The same on ``member(borrow((st,)), 0)``: the primitives' borrowed versions."""
    sp = member(borrow((st,)), 0)
    out = np.full(ops.shape[0], -1, np.int64)
    for k in range(ops.shape[0]):
        if ops[k] >= 0:
            schedule(sp, ops[k], _ONE, _RESUME, k % 3, k)
        elif sp.clk[C_QLEN] > 0:
            out[k] = pop(sp)
    return out


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(st.integers(-1, 50), max_size=40))
def test_a_primitive_on_a_borrowed_costate_is_the_same_primitive(ops):  # type: ignore[no-untyped-def]
    arr = np.array(ops, np.int64)
    one, two = new_state(2, 3, heap_capacity=64), new_state(2, 3, heap_capacity=64)
    got_one = _events(one, arr)
    got_two = _events_borrowed(two, arr)
    assert got_two.tolist() == got_one.tolist()
    for x, y in zip(one, two, strict=True):  # every array, written in the caller's place
        assert x.tolist() == y.tolist()
    assert two.clk[C_EID] == sum(1 for o in ops if o >= 0)  # the borrowed run did something


@njit(cache=False)
def _member_of_array(pair, c):  # type: ignore[no-untyped-def]
    return member(borrow((pair, c)), 1)


def test_a_member_must_be_a_tuple() -> None:
    lst = typed.List.empty_list(types.int64[::1])
    lst.append(np.zeros(1, np.int64))
    with pytest.raises(TypingError, match="no tuple at 1"):
        _member_of_array(Pair(np.zeros(1, np.int64), np.zeros(1, np.int64), lst), np.zeros(1))
