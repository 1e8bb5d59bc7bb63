"""The miss-ratio curve of a replay: one trace at several EPC sizes and reclaim policies.

libCacheSim draws a cache's miss ratio against its size for several eviction policies;
``epcsim replay --epc 4M,8M,16M --policy lru,fifo`` draws the EPC's. A *miss* is an access
whose page was not in the EPC and had to be loaded back from the backing store (ELDU): the
replay adds every page of the trace at build, so a page's first touch is a miss only if the
build (or the replay) already wrote it back. ``fault_rate`` (every #PF per access, the first
mapping of a resident page included) is reported next to it.

Each point is a full run of the same plan (same seed, same streams) with only the EPC size
and the policy changed, so the points differ by those two settings alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from epcsim.arch import PAGE_SIZE
from epcsim.scenario.plan import Plan
from epcsim.scenario.runner import execute


@dataclass
class MrcPoint:
    policy: str
    epc_bytes: int
    accesses: int
    misses: int  # ELDU during the replay
    miss_ratio: float
    fault_rate: float
    run_ns: int
    ok: bool
    failures: list[str] = field(default_factory=list)

    @property
    def epc_pages(self) -> int:
        return self.epc_bytes // PAGE_SIZE


@dataclass
class MrcResult:
    plan: Plan
    points: list[MrcPoint]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.plan.title,
            "ok": self.ok,
            "seed": self.plan.seed,
            "footprint_pages": self.plan.footprint_pages,
            "points": [{**asdict(p), "epc_pages": p.epc_pages} for p in self.points],
            "config": self.plan.config,
        }


def run_mrc(
    plan: Plan,
    sizes: list[int],
    policies: list[str],
    on_point: Callable[[int, int], None] | None = None,
) -> MrcResult:
    """Run ``plan`` at every size for every policy (sizes ascending, policies as given)."""
    points = []
    total = len(sizes) * len(policies)
    for policy in policies:
        for size in sorted(sizes):
            p = plan.with_epc(size)
            p.machine = {**p.machine, "policy": policy}
            r = execute(p, sample=False)
            d = r.derived
            acc = d["accesses"]
            points.append(
                MrcPoint(
                    policy=policy,
                    epc_bytes=size,
                    accesses=acc,
                    misses=d["eldu_in_run"],
                    miss_ratio=d["eldu_in_run"] / acc if acc else 0.0,
                    fault_rate=d["fault_rate"],
                    run_ns=r.run_ns,
                    ok=r.ok,
                    failures=r.failures,
                )
            )
            if on_point is not None:
                on_point(len(points), total)
    return MrcResult(plan, points)
