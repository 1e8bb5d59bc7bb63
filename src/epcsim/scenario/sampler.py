"""Counters sampled over simulated time, for the report's per-interval plots.

A SimPy process reads the counters every ``interval`` ns. It only reads state, so it does
not change the run (SimPy orders same-time events by insertion; the model's own events keep
their relative order). It ends by itself when ``done`` fires (the program threads have
finished), so it never keeps a simulation alive. The run length is not known in advance,
so the sampler starts fine-grained and, whenever it holds more than ``2 * max_points``
samples, keeps every other one and doubles its interval: memory stays bounded and a short
run still gets a detailed picture. Counters are stored cumulatively, so thinning loses
resolution but no events; per-interval rates are differences of neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from epcsim.engine.observer import ObserverTimeout, observer

#: cumulative counters sampled (names of ``System.stats()``)
SAMPLED = (
    "page_faults",
    "ewb",
    "eldu",
    "eaug",
    "eremove",
    "enclave_accesses",
    "ksgxd_pages_reclaimed",
    "direct_reclaim_pages",
)


class Sampler:
    def __init__(
        self,
        system: Any,
        interval_ns: int = 20_000,
        max_points: int = 1_000,
        on_sample: Callable[[Any], None] | None = None,
    ):
        self.system = system
        self.interval = max(1, int(interval_ns))
        self.max_points = max_points
        self.on_sample = on_sample
        self.t: list[int] = []
        self.free: list[int] = []
        self.resident: dict[str, list[int]] = {}
        self.swapped: dict[str, list[int]] = {}
        self.counters: dict[str, list[int]] = {k: [] for k in SAMPLED}
        self._names: list[str] = []

    def start(self, done) -> Any:
        """Sample from now until ``done`` fires. It must be a plain event, not a condition:
        SimPy detaches the checks of a condition nested in another one once the outer
        condition fires, so a nested ``all_of`` would never trigger."""
        encls = list(self.system.sgx.enclaves.values())
        self._names = [e.name for e in encls]
        self.resident = {n: [] for n in self._names}
        self.swapped = {n: [] for n in self._names}
        return observer(self.system.machine.spawn(self._loop(done)))

    def _loop(self, done):
        env = self.system.machine.env
        while True:
            self.sample()
            yield env.any_of([ObserverTimeout(env, self.interval), done])
            if done.triggered:
                self.sample()
                return

    def sample(self) -> None:
        s = self.system
        now = s.now
        if self.t and self.t[-1] == now:
            self._drop_last()
        self.t.append(now)
        # while the compiled core runs the model, the state as it holds it (the Python
        # objects are folded at the call's end: fast/driver/observe.py)
        core = getattr(s.sgx, "stream_core", None)
        view = None if core is None else core.observed
        self.free.append(s.sgx.epc.nr_free_pages if view is None else view.nr_free_pages)
        by_name = {e.name: e for e in s.sgx.enclaves.values()}
        for n in self._names:
            e = by_name.get(n)
            if e is None:
                r = w = 0
            elif view is None:
                r, w = e.resident_pages, e.swapped_pages  # running counts: O(1)
            else:
                r, w = view.resident_pages(e), view.swapped_pages(e)
            self.resident[n].append(r)
            self.swapped[n].append(w)
        c = s.sgx.stats if view is None else view.stats
        for k in SAMPLED:
            self.counters[k].append(getattr(c, k))
        if len(self.t) > 2 * self.max_points:
            self._thin()
        if self.on_sample is not None:
            self.on_sample(self)

    def _series(self) -> list[list[int]]:
        return [
            self.t,
            self.free,
            *self.resident.values(),
            *self.swapped.values(),
            *self.counters.values(),
        ]

    def _drop_last(self) -> None:
        for s in self._series():
            s.pop()

    def _thin(self) -> None:
        last = len(self.t) - 1
        keep = [i for i in range(len(self.t)) if i % 2 == 0 or i == last]
        for s in self._series():
            s[:] = [s[i] for i in keep]
        self.interval *= 2

    def arrays(self) -> dict[str, Any]:
        """Everything as NumPy arrays (``t`` in ns)."""
        return {
            "t": np.asarray(self.t, dtype=np.int64),
            "free": np.asarray(self.free, dtype=np.int64),
            "resident": {n: np.asarray(v) for n, v in self.resident.items()},
            "swapped": {n: np.asarray(v) for n, v in self.swapped.items()},
            "counters": {k: np.asarray(v, dtype=np.int64) for k, v in self.counters.items()},
        }
