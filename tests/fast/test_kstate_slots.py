"""The machines' enclave slots (PATHS.md "Two enclaves in the regime", decision item 1):
``cosim.borrow.member_at`` picks a slot's tuple at run time, in place, and every enclave
column of ``kstate`` (``ENCLAVE_COLUMNS``) is read from ``ke``, never from ``kc`` - a
column read from the wrong array would be the other enclave's value (or a global one)
once two slots hold two enclaves."""

from __future__ import annotations

import pathlib
import re
from collections import namedtuple

import numpy as np
from numba import njit

import epcsim.fast
from epcsim.fast.cosim.borrow import borrow, member, member_at, unborrow
from epcsim.fast.driver import kstate as K

Slot = namedtuple("Slot", "shared own")


@njit(cache=False)
def _bump(kt, i):  # type: ignore[no-untyped-def]
    s = unborrow(member_at(member(borrow((kt,)), 0), i))
    s.shared[0] += 1
    s.own[0] += 10
    return s.own[0]


def test_member_at_picks_the_slot_in_place() -> None:
    shared = np.zeros(1, np.int64)
    a, b = np.zeros(1, np.int64), np.full(1, 5, np.int64)
    kt = (Slot(shared, a), Slot(shared, b))
    assert _bump(kt, np.int64(1)) == 15 and _bump(kt, np.int64(0)) == 10
    assert _bump(kt, np.int64(1)) == 25
    assert shared[0] == 3 and a[0] == 10 and b[0] == 25  # the caller's arrays, no copy


def test_slots_repeat_the_one_enclave() -> None:
    ks = object()
    assert K.slots(ks) == (ks, ks) and len(K.slots(ks)) == K.N_SLOTS  # type: ignore[arg-type]


def test_no_enclave_column_read_from_kc() -> None:
    names = "|".join(n for n in dir(K) if n.startswith("K_") and getattr(K, n) in K.ENCLAVE_COLUMNS)
    assert len(names.split("|")) == len(K.ENCLAVE_COLUMNS)
    wrong = re.compile(rf"\bkc\[(K\.)?({names})\]")
    root = pathlib.Path(epcsim.fast.__file__).parent
    bad = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if wrong.search(line)
    ]
    assert bad == []
