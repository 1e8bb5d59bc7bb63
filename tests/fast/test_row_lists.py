"""``ops.row_lists``: the typed lists of rows made and grown by our cached compiled functions
are numba typed lists of the machines' item types, holding the arrays themselves, and no
source outside it makes or grows a typed list through numba's own ``typed.List`` methods
(which compile in every process: BENCHMARKS.md, "cacheload")."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit, typeof, types

from epcsim.fast.numba_cache import ROOT
from epcsim.fast.ops import row_lists as rl
from epcsim.fast.ops.typed_rows import row


@njit(cache=False)
def _bump(lst, i):  # type: ignore[no-untyped-def]
    """Add 1 to entry 0 of row ``i`` (borrowed, as the machines read it) and return it."""
    r = row(lst, i)
    r.flat[0] += 1
    return r.flat[0]


KINDS = [
    (rl.new_u8_2d, rl.add_u8_2d, rl.U8_2D, lambda: np.zeros((4, 3), np.uint8)),
    (rl.new_u8_1d, rl.add_u8_1d, rl.U8_1D, lambda: np.zeros(5, np.uint8)),
    (rl.new_u64_2d, rl.add_u64_2d, rl.U64_2D, lambda: np.zeros((2, 8), np.uint64)),
]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(range(len(KINDS))), st.integers(0, 6), st.data())
def test_the_lists_hold_the_arrays_themselves(kind: int, n: int, data: st.DataObject) -> None:
    new, add, item, make = KINDS[kind]
    lst = new()
    assert typeof(lst) == types.ListType(item)  # the machines' signatures are unchanged
    arrays = [make() for _ in range(n)]
    for a in arrays:
        add(lst, a)
    if item is rl.U64_2D:
        assert rl.rows_len_u64_2d(lst) == n
    if n:
        i = data.draw(st.integers(0, n - 1))
        assert _bump(lst, np.int64(i)) == 1
        assert arrays[i].flat[0] == 1  # a write through the list is the array's
        assert all(a.flat[0] == 0 for j, a in enumerate(arrays) if j != i)


def test_no_typed_list_is_made_or_grown_through_numbas_own_methods() -> None:
    """``typed.List(...)``/``empty_list`` or a ``typed`` import from Python compile numba's
    uncached helpers in every process; ``ops.row_lists`` is the one place that makes them."""
    code = r"typed\.List(\.empty_list)?\("
    imports = r"^\s*from numba import .*\btyped\b|^\s*from numba\.typed import"
    pattern = re.compile(f"{code}|{imports}", re.M)
    found = [
        str(p.relative_to(ROOT))
        for p in sorted(ROOT.rglob("*.py"))
        if p.name != "row_lists.py" and pattern.search(p.read_text())
    ]
    assert found == []
