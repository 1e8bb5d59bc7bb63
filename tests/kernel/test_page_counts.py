"""An enclave's resident and swapped pages as running counts (issue 9, session ``runscale``;
``kernel/page_counts.py``, ``fast/driver/page_counts.py``).

The counts must equal the count over the page arrays (``PageCounts.scan``) at every instant
anything can read them: after each public call (the invariant checker compares them, so
every test with ``EPCSIM_CHECK=1`` checks it), and at each of the scenario runner's samples
- also while the compiled core holds the model, where the sampler reads the counts plus
the core's unfolded deltas (``CoreView``) and the page arrays are the core's own, written
in place. Generated scenarios (paging streams, EDMM grow/trim, two enclaves) run on the
reference engine, the fast engine and the fast engine with the core: at every sample the
counts equal the scan, and the three runs' samples are equal.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.scenario import runner
from epcsim.scenario.load import validate
from epcsim.scenario.plan import compile_scenario
from epcsim.scenario.sampler import Sampler

LONG = bool(os.environ.get("EPCSIM_LONG"))


def test_writes_through_the_views_move_the_counts() -> None:
    """One page, a slice, a mask, ``set_va`` and the release: the counts follow the scan."""
    system = epcsim.System(epc="1M", cpus=2, seed=0)
    h = system.create_enclave(size="2M")
    encl = h.encl
    c = encl.counts
    assert (c.resident, c.swapped) == c.scan() == (0, 0)
    encl.present[3] = True  # an entry without an EPC page: counted as in backing
    assert (c.resident, c.swapped) == c.scan() == (0, 1)
    encl.epc[3] = 7
    assert (c.resident, c.swapped) == c.scan() == (1, 0)
    encl.present[10:20] = True
    encl.epc[10:20] = np.arange(100, 110)
    assert (c.resident, c.swapped) == c.scan() == (11, 0)
    encl.epc[12] = -1  # EWB's phase D: the EPC page goes
    assert (c.resident, c.swapped) == c.scan() == (10, 1)
    mask = np.zeros(encl.nr_pages, dtype=bool)
    mask[[14, 15]] = True
    encl.epc[mask] = -1
    assert (c.resident, c.swapped) == c.scan() == (8, 3)
    encl.present[15] = False
    assert (c.resident, c.swapped) == c.scan() == (8, 2)
    encl.epc[np.arange(16, 18)] = -1
    assert (c.resident, c.swapped) == c.scan() == (6, 4)
    encl.set_va(16, encl.va_pages[0], 5)  # the version's VA slot: still in backing
    assert (c.resident, c.swapped) == c.scan() == (6, 4)
    encl.present[:] = False  # resident is ``desc >= 0`` whatever PRESENT says, as the scan
    assert (c.resident, c.swapped) == c.scan() == (6, 0)


def _stream(pattern: str, count: int, region: str = "heap") -> dict[str, Any]:
    step: dict[str, Any] = {
        "op": "access",
        "region": region,
        "pattern": pattern,
        "count": count,
        "writes": 0.3,
    }
    if pattern == "zipf":
        step.update(alpha=1.1, scatter=True)
    return step


def scenario(
    seed: int, epc_kib: int, mult: int, pattern: str, count: int, cpus: int, kind: str
) -> dict[str, Any]:
    """One enclave streaming over ``mult`` x the EPC (``kind`` "stream"), the same with an
    EDMM grow of a dynamic region, a stream over it and a trim of part of it ("edmm"), or
    a second enclave streaming beside the first ("two")."""
    heap = f"{epc_kib * mult}K"
    first: dict[str, Any] = {
        "name": "e",
        "region": [{"name": "heap", "size": heap}],
        "thread": [{"name": "t", "step": [_stream(pattern, count)]}],
    }
    data: dict[str, Any] = {
        "name": "counted",
        "seed": seed,
        "machine": {"epc": f"{epc_kib}K", "cpus": cpus},
        "enclave": [first],
    }
    if kind == "edmm":
        data["machine"].update(sgx2=True, direct_reclaim=True)
        first["region"].append({"name": "dyn", "size": f"{epc_kib // 2}K", "dynamic": True})
        first["thread"][0]["step"] += [
            {"op": "grow", "region": "dyn"},
            _stream("sequential", count // 4, "dyn"),
            {"op": "trim", "region": "dyn", "offset": "0", "length": f"{epc_kib // 4}K"},
            _stream("uniform", count // 2),
        ]
    if kind == "two":
        data["enclave"].append(
            {
                "name": "f",
                "region": [{"name": "heap", "size": f"{epc_kib}K"}],
                "thread": [{"name": "u", "step": [_stream("uniform", count // 2)]}],
            }
        )
    return data


def counted_run(data: dict[str, Any], interval: int, **machine: Any) -> dict[str, Any]:
    """``runner.execute`` with a sampler that also checks, at each sample, the counts it
    records against the scan of the page arrays; returns the samples as lists."""
    mismatches: list[Any] = []
    checked = [0, 0]  # samples checked, of them read from the core's view

    class Checked(Sampler):
        def sample(self) -> None:
            super().sample()
            core = getattr(self.system.sgx, "stream_core", None)
            checked[1] += core is not None and core.observed is not None
            encls = {e.name: e for e in self.system.sgx.enclaves.values()}
            for n in self._names:
                e = encls.get(n)
                if e is None:
                    continue
                want = e.counts.scan()
                got = (self.resident[n][-1], self.swapped[n][-1])
                checked[0] += 1
                if got != want:
                    mismatches.append((self.t[-1], n, got, want))

    plan = compile_scenario(validate(data), None)
    plan.machine = {**plan.machine, **machine}
    saved = runner.Sampler
    runner.Sampler = functools.partial(Checked, interval_ns=interval)  # type: ignore[misc]
    try:
        res = runner.execute(plan, sample=True)
    finally:
        runner.Sampler = saved  # type: ignore[misc]
    assert not mismatches, mismatches[:5]
    assert checked[0] > 0
    s = res.samples
    return {
        "t": s["t"].tolist(),
        "resident": {k: v.tolist() for k, v in s["resident"].items()},
        "swapped": {k: v.tolist() for k, v in s["swapped"].items()},
        "counters": {k: v.tolist() for k, v in s["counters"].items()},
        "stats": res.stats,
        "on_core": checked[1],
    }


@settings(
    max_examples=25 if LONG else 4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(
    seed=st.integers(0, 2**16),
    epc_kib=st.sampled_from([256, 384]),
    mult=st.integers(2, 3),
    pattern=st.sampled_from(["uniform", "zipf", "sequential"]),
    count=st.integers(300, 900),
    cpus=st.integers(2, 4),
    kind=st.sampled_from(["stream", "edmm", "two"]),
    interval=st.sampled_from([2_000, 7_000, 20_000]),
)
def test_the_counts_equal_the_scan_at_every_sample_on_every_engine(  # type: ignore[no-untyped-def]
    seed, epc_kib, mult, pattern, count, cpus, kind, interval
):
    data = scenario(seed, epc_kib, mult, pattern, count, cpus, kind)
    core = counted_run(data, interval, engine="fast", fast_core=True)
    off = counted_run(data, interval, engine="fast", fast_core=False)
    ref = counted_run(data, interval, engine="reference")
    for k in ("t", "resident", "swapped", "counters"):
        assert core[k] == off[k] == ref[k], k
    assert core["stats"] == off["stats"]


def test_the_counts_move_on_the_core_between_samples() -> None:
    """The guard: in a paging stream on the core the samples' counts change while the core
    holds the model (the unfolded deltas are read, not only folded values), and each
    engine reaches the same series."""
    data = scenario(5, 256, 3, "uniform", 900, 2, "stream")
    core = counted_run(data, 2_000, engine="fast", fast_core=True)
    assert core["on_core"] > 10, core["on_core"]
    assert len(set(core["swapped"]["e"])) > 10
    off = counted_run(data, 2_000, engine="fast", fast_core=False)
    assert off["on_core"] == 0
    assert {**core, "on_core": 0} == off
