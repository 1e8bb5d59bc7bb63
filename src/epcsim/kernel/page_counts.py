"""An enclave's resident and swapped page counts, kept as running counts (issue 9, session
``runscale``).

What they count (``SgxEncl.resident_pages`` / ``swapped_pages``, the design's per-enclave
counters, ``System.stats()``, the scenario runner's samples): a page is *resident* while its
entry holds an EPC page (``desc >= 0``), *swapped* while its xarray entry exists without
one (PRESENT set, ``desc < 0``: written back, its version in a VA slot - or, for an instant
inside EWB's phase D or a release, with neither). The kernel keeps no such counts; they are
the model's observation. Why running counts: counting them over the page arrays costs
O(ELRANGE) - 1.6 ms at 1M pages, ~6 ms at 4M (a 16 GiB enclave) - and ``epcsim run``'s
sampler reads them at every sample, thousands of times a run (BENCHMARKS.md ``runscale``).

Who keeps them: every write of an entry's EPC page, its VA reference or its PRESENT bit
from Python goes through ``SgxEncl.epc``, ``SgxEncl.set_va`` or ``SgxEncl.present``, which
classify the pages written before and after the write (``classes``) and move the counts;
the compiled machines (``fast/driver``: ADD_PAGES' EADD, the fault's ELDU, the reclaimer's
EWB, REMOVE_PAGES' EREMOVE) move the enclave's ``KState.ke`` columns ``K_RESIDENT`` /
``K_SWAPPED`` the same way (``fast/driver/page_counts.py``), folded into these counts with
the call's other deltas (``bridge.fold_kernel``) and read unfolded by an observer meanwhile
(``driver/observe.CoreView``). ``scan`` is the O(pages) count the running counts must
equal: the invariant checker (``kernel/check.py``) compares them after every public call,
and ``tests/kernel/test_page_counts.py`` after every step of generated scenarios.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epcsim.kernel.encl_page import ENCL_PAGE_PRESENT, EpcField
from epcsim.packed import FlagField


class PageCounts:
    """The running counts of one ELRANGE's packed arrays (``EnclPages``)."""

    __slots__ = ("_desc", "_flags", "resident", "swapped")

    def __init__(self, desc: np.ndarray, flags: np.ndarray):
        self._desc = desc
        self._flags = flags
        self.resident, self.swapped = self.scan()

    def scan(self) -> tuple[int, int]:
        """(resident, swapped) counted over the whole arrays: what the counts must equal."""
        d = self._desc
        return (
            int(np.count_nonzero(d >= 0)),
            int(np.count_nonzero(((self._flags & ENCL_PAGE_PRESENT) != 0) & (d < 0))),
        )

    def classes(self, index: Any) -> tuple[int, int]:
        """(resident, swapped) among the pages ``index`` selects (one, a slice or a mask)."""
        if type(index) is int:  # one page: the hot case
            d = self._desc.item(index)
            if d >= 0:
                return 1, 0
            return 0, self._flags.item(index) & ENCL_PAGE_PRESENT
        d = self._desc[index]
        f = self._flags[index]
        return (
            int(np.count_nonzero(d >= 0)),
            int(np.count_nonzero(((f & ENCL_PAGE_PRESENT) != 0) & (d < 0))),
        )

    def moved(self, before: tuple[int, int], index: Any) -> None:
        """Pages ``index`` were ``before`` and are now what they are: move the counts."""
        r, s = self.classes(index)
        self.resident += r - before[0]
        self.swapped += s - before[1]


class _MovesCounts:
    """A field view whose writes move the enclave's counts: the pages written are
    classified before and after the base class's write (``PageCounts.classes``/``moved``).
    Mixed in before the view's class (``EpcField``, ``FlagField``)."""

    __slots__ = ()
    _counts: PageCounts

    def __setitem__(self, index: Any, value: Any) -> None:
        c = self._counts
        before = c.classes(index)
        super().__setitem__(index, value)  # type: ignore[misc]
        c.moved(before, index)


class CountedEpc(_MovesCounts, EpcField):
    """``SgxEncl.epc``: ``EpcField`` whose writes move the enclave's counts."""

    __slots__ = ("_counts",)

    def __init__(self, desc: np.ndarray, counts: PageCounts):
        super().__init__(desc)
        self._counts = counts


class CountedPresent(_MovesCounts, FlagField):
    """``SgxEncl.present`` (bit 0 of the flags): ``FlagField`` whose writes move the counts."""

    __slots__ = ("_counts",)

    def __init__(self, flags: np.ndarray, counts: PageCounts):
        super().__init__(flags, 0, 1)
        self._counts = counts
