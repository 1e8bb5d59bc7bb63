"""The pair call's drive with observers' events processed on the way (issue 9, session
``sampler``; PATHS.md "The scenario runner's sampler on the core").

``cosim/observe.py`` processes an observer's event (the scenario runner's ``Sampler``
wake-up and its ``any_of``) at the core's clock and eids when the core stops before it.
The ``Sampler`` then reads the model - ``now``, the free count, each enclave's resident and
swapped pages, eight ``sgx.stats`` counters - while the kernel's and the thread's state is
the core's: this module says what that is, and drives on.

What the observer reads (``CoreView``), decided by session ``sampler``:

* the counters: ``sgx.stats``' totals (folded so far) plus the machines' unfolded deltas,
  ``KState.cnt`` (``kstate.COUNTERS``) and ``TState.tcnt`` (``tstate.TCOUNTERS``) - what
  ``bridge.fold_kernel`` and ``thread_fold.fold_thread`` add at the call's end, so the
  sum is what the reference's ``stats`` holds at that instant;
* the free count: ``kc[K_NR_FREE]`` (``fold_kernel`` writes it to
  ``epc.nr_free_pages``);
* resident and swapped pages: ``SgxEncl.counts``' running counts plus the unfolded deltas
  of the enclave's slot, ``KState.ke``'s ``K_RESIDENT``/``K_SWAPPED`` (what ``fold_kernel``
  adds; ``driver/page_counts.py``). Until session ``runscale`` the ``Enclave`` properties
  counted over ``encl.pages``' arrays (which the machines write in place), one
  ``count_nonzero`` pair per sample: O(ELRANGE), ~6 ms a sample at a 16 GiB enclave, and
  a run takes thousands of samples (BENCHMARKS.md ``sampler``, ``runscale``).
"""

from __future__ import annotations

from typing import Any

from epcsim.fast.cosim.observe import observe_head
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_POPS,
    HANDED_BACK,
    HB_DEADLINE,
)
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.slots import drive_slots

_K_INDEX = {name: i for i, name in enumerate(K.COUNTERS)}
_T_INDEX = {name: i for i, name in enumerate(T.TCOUNTERS)}


class CoreStats:
    """``sgx.stats`` as the core holds it: the folded totals plus the unfolded deltas."""

    def __init__(self, stats: Any, ks: Any, ts: Any) -> None:
        self._stats = stats
        self._ks = ks
        self._ts = ts

    def __getattr__(self, name: str) -> int:
        v = int(getattr(self._stats, name))
        k = _K_INDEX.get(name)
        if k is not None:
            v += int(self._ks.cnt[k])
        t = _T_INDEX.get(name)
        if t is not None and self._ts is not None:
            v += int(self._ts.tcnt[t])
        return v


class CoreView:
    """What an observer reads while the core holds the model (module docstring): the
    counters, the free count, and each enclave's resident and swapped pages
    (``resident_pages(encl)``, ``swapped_pages(encl)``)."""

    def __init__(self, system: Any, ks: Any, ts: Any, encls: Any = (), kt: Any = ()) -> None:
        self.nr_free_pages = int(ks.kc[K.K_NR_FREE])
        self.stats = CoreStats(system.sgx.stats, ks, ts)
        self._slots = {id(e): kt[s] for s, e in enumerate(encls)}

    def _delta(self, encl: Any, col: int) -> int:
        ks = self._slots.get(id(encl))
        return 0 if ks is None else int(ks.ke[col])

    def resident_pages(self, encl: Any) -> int:
        return encl.counts.resident + self._delta(encl, K.K_RESIDENT)

    def swapped_pages(self, encl: Any) -> int:
        return encl.counts.swapped + self._delta(encl, K.K_SWAPPED)


def drive_observed(
    owner: Any,
    sv: Any,
    system: Any,
    encls: Any,
    co: Any,
    kt: Any,
    ts: Any,
    tslot: int,
    pending: int,
) -> tuple[int, Any]:
    """``slots.drive_slots`` (the enclave slots ``encls``, ``kt``; the thread's ``tslot``),
    and at each stop before an observer's event (``HB_DEADLINE`` with it at the head) that
    event processed (``observe_head``) with ``owner.observed`` the core's view, then the
    drive goes on; returns as ``drive_slots``. (The counters and the free count are global:
    any slot's ``KState`` holds them.)"""
    while True:
        rc, kt = drive_slots(owner.drive, system, encls, co, kt, ts, tslot, pending, {})
        clk = co.clk
        if rc != HANDED_BACK or int(clk[C_HB]) != HB_DEADLINE:
            return rc, kt
        owner.observed = CoreView(system, kt[tslot], ts, encls, kt)
        try:
            if not observe_head(sv):
                return rc, kt  # an until event: the caller hands back
            owner.observed_events += 1
            # the new head an observer's too (the sampler's condition, scheduled by its
            # timeout, with nothing of the core's between): ``next_resume`` would stop
            # before it at once - its only check before the head's kind is the budget -
            # so it is processed here, without a return from and re-entry into ``drive``
            while not _budget_spent(clk) and observe_head(sv):
                owner.observed_events += 1
        finally:
            owner.observed = None
        clk[C_HB] = clk[C_HB_TASK] = clk[C_HB_NOW] = 0
        pending = -1


def _budget_spent(clk: Any) -> bool:
    """``next_resume``'s budget check (``HB_BUDGET``), which comes before the head's."""
    return bool(clk[C_BUDGET] > 0 and clk[C_POPS] >= clk[C_BUDGET])


__all__ = ["CoreStats", "CoreView", "drive_observed"]
