"""The paging cliff: one workload run across EPC sizes.

The question platform operators ask most is "how much EPC does this workload need, and
how bad is it below that?" (spec/anchors.md). ``run_cliff`` answers it by running the same
plan (same seed, same streams) at ``steps`` EPC sizes between ``low`` and ``high`` and
reporting, per size, the slowdown against the all-resident run and the fault rates. The
footprint (SECS, TCS and every region of every enclave) is where the cliff is expected
when the whole footprint is the working set; a skewed workload's cliff sits lower.

``[expect]`` bounds are not applied: they describe the scenario at its own EPC size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from epcsim.arch import PAGE_SIZE
from epcsim.scenario.plan import Plan
from epcsim.scenario.runner import baseline_epc, execute, pages_written_back, slowdown


@dataclass
class CliffPoint:
    epc_bytes: int
    run_ns: int
    slowdown: float
    fault_rate: float  # page faults per access
    eldu_per_access: float  # loads from backing per access
    page_faults: int
    ewb: int  # pages written back
    eldu: int
    ok: bool
    failures: list[str] = field(default_factory=list)

    @property
    def epc_pages(self) -> int:
        return self.epc_bytes // PAGE_SIZE


@dataclass
class CliffResult:
    plan: Plan
    points: list[CliffPoint]
    footprint_pages: int
    baseline_run_ns: int

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.plan.title,
            "ok": self.ok,
            "seed": self.plan.seed,
            "footprint_pages": self.footprint_pages,
            "footprint_bytes": self.footprint_pages * PAGE_SIZE,
            "baseline_run_ns": self.baseline_run_ns,
            "points": [{**asdict(p), "epc_pages": p.epc_pages} for p in self.points],
        }


def epc_sizes(low: int, high: int, steps: int) -> list[int]:
    """``steps`` sizes evenly spaced from ``low`` to ``high``, whole pages, no repeats."""
    if steps < 2:
        raise ValueError(f"steps: at least 2, got {steps}")
    lo, hi = low // PAGE_SIZE, high // PAGE_SIZE
    pages = [lo + round(i * (hi - lo) / (steps - 1)) for i in range(steps)]
    return [p * PAGE_SIZE for p in dict.fromkeys(pages)]


def run_cliff(
    plan: Plan,
    low: int,
    high: int,
    steps: int = 6,
    on_point: Callable[[int, int], None] | None = None,
) -> CliffResult:
    """Run ``plan`` at each EPC size; ``on_point(done, total)`` after each run."""
    plan = copy.copy(plan)
    plan.expect = {}
    sizes = epc_sizes(low, high, steps)
    total = len(sizes) + 1
    ref = execute(plan.with_epc(max(baseline_epc(plan), high)), sample=False)
    if on_point is not None:
        on_point(1, total)
    points = []
    for i, size in enumerate(sizes):
        r = execute(plan.with_epc(size), sample=False)
        d = r.derived
        points.append(
            CliffPoint(
                epc_bytes=size,
                run_ns=r.run_ns,
                slowdown=slowdown(r, ref) or float("nan"),
                fault_rate=d["fault_rate"],
                eldu_per_access=d["eldu_per_access"],
                page_faults=d["faults_in_run"],
                ewb=pages_written_back(r.stats),
                eldu=d["eldu_in_run"],
                ok=r.ok,
                failures=r.failures,
            )
        )
        if on_point is not None:
            on_point(i + 2, total)
    return CliffResult(plan, points, plan.footprint_pages, ref.run_ns)
