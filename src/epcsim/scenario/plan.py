"""A runnable plan: the machine, the enclaves to build and the programs their threads run.

Scenario files (``compile_scenario``) and trace replay (``epcsim.workloads.trace``) both
become a ``Plan``; the runner, the report and the cliff sweep only know plans. A plan holds
no simulation state, so one plan can be run at several EPC sizes (``with_epc``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE
from epcsim.scenario.model import Scenario
from epcsim.scenario.semantics import (
    RegionLayout,
    ScenarioError,
    elrange_size,
    layout,
    step_range,
)
from epcsim.user.args import parse_perm
from epcsim.workloads import patterns as pt
from epcsim.workloads.programs import Access, Grow, Restrict, Sleep, Stream, ThreadPlan, Trim
from epcsim.workloads.trace import TraceStreams


@dataclass
class EnclavePlan:
    """One enclave: ELRANGE ``size``, ``tcs`` TCS pages at ``tcs_first``, regions, threads."""

    name: str
    size: int
    tcs: int
    regions: list[RegionLayout]
    threads: list[ThreadPlan] = field(default_factory=list)
    tcs_first: int = 0
    debug: bool = False

    @property
    def total_pages(self) -> int:
        """Pages the enclave may hold: SECS, TCS, static and dynamic regions."""
        return 1 + self.tcs + sum(r.pages for r in self.regions)


@dataclass
class Plan:
    machine: dict[str, Any]  # keyword arguments of epcsim.System (epc in bytes)
    enclaves: list[EnclavePlan]
    seed: int = 0
    costs: dict[str, Any] = field(default_factory=dict)
    duration_ns: int | None = None
    expect: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    title: str = "epcsim run"
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # what the report shows
    source: str = ""  # the scenario file's text, if any

    @property
    def footprint_pages(self) -> int:
        return sum(e.total_pages for e in self.enclaves)

    @property
    def epc_pages(self) -> int:
        return self.machine["epc"] // PAGE_SIZE

    def planned_accesses(self) -> int:
        return sum(t.planned_accesses() for e in self.enclaves for t in e.threads)

    def with_epc(self, epc_bytes: int) -> Plan:
        """The same plan on a machine with another EPC size (steps are shared, read-only)."""
        p = copy.copy(self)
        p.machine = {**self.machine, "epc": int(epc_bytes)}
        p.config = {**self.config, "epc_bytes": int(epc_bytes)}
        return p


def _pattern(spec: Any, n_pages: int, seed: int) -> pt.Pattern:
    name = spec.pattern
    if name == "sequential":
        return pt.Sequential(n_pages, stride=spec.stride)
    if name == "uniform":
        return pt.Uniform(n_pages)
    if name == "zipf":
        return pt.Zipf(n_pages, alpha=spec.alpha, scatter=spec.scatter, seed=seed)
    if name == "hotcold":
        return pt.HotCold(n_pages, spec.hot_fraction, spec.hot_probability)
    if name == "growing":
        return pt.Growing(n_pages, spec.start_fraction)
    if name == "phases":
        return pt.Phases(
            [(_pattern(ph, n_pages, seed + i + 1), ph.count) for i, ph in enumerate(spec.phases)]
        )
    raise ValueError(f"pattern: unknown {name!r}")  # the schema makes this unreachable


def _sub_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def compile_scenario(sc: Scenario, seed: int | None = None) -> Plan:
    """A checked ``Scenario`` (``load_scenario``) -> a ``Plan``; ``seed`` overrides the file.

    A scenario whose state would not fit in this host's memory raises ``ScenarioError``
    naming the key (``hostmem.check_scenario``) before anything large is built."""
    from epcsim.scenario.hostmem import HostMemoryError, check_scenario

    try:
        check_scenario(sc)
    except HostMemoryError as err:
        raise ScenarioError(err.key, err.reason) from None
    seed = sc.seed if seed is None else seed
    m = sc.machine
    # every [machine] key is a keyword argument of epcsim.System of the same name, so a new
    # knob needs only its field in MachineSpec (model.py)
    machine = m.model_dump()
    enclaves = []
    for ei, e in enumerate(sc.enclave):
        lay = layout(e)
        ep = EnclavePlan(
            e.name, elrange_size(e, lay), lay.tcs, list(lay.regions.values()), debug=e.debug
        )
        for ti, t in enumerate(e.thread):
            steps: list[Any] = []
            for si, s in enumerate(t.step):
                key = f"enclave[{ei}].thread[{ti}].step[{si}]"
                if s.op == "sleep":
                    steps.append(Sleep(s.duration))
                    continue
                first, pages = step_range(lay, s, key)
                if s.op == "access":
                    pat = _pattern(s, pages, _sub_seed(seed, ei, ti, si))
                    count = pat.count if isinstance(pat, pt.Phases) else s.count
                    steps.append(Access(first, pat, pages if count is None else count, s.writes))
                elif s.op == "grow":
                    steps.append(Grow(first, pages))
                elif s.op == "trim":
                    steps.append(Trim(first, pages))
                elif s.op == "restrict":
                    steps.append(Restrict(first, pages, parse_perm(s.perm)))
            ep.threads.append(ThreadPlan(t.name or f"t{ti}", steps, t.repeat))
        enclaves.append(ep)
    config = sc.model_dump(mode="json", exclude_none=True)
    config["seed"] = seed
    return Plan(
        machine=machine,
        enclaves=enclaves,
        seed=seed,
        costs=sc.costs_dict(),
        duration_ns=sc.duration,
        expect={k: (b.min, b.max) for k, b in sc.expect.items()},
        title=sc.name or "epcsim run",
        description=sc.description,
        config=config,
        source=getattr(sc, "_source", "") or "",
    )


def plan_from_streams(
    streams: TraceStreams,
    machine: dict[str, Any],
    *,
    seed: int = 0,
    costs: dict[str, Any] | None = None,
) -> Plan:
    """A replay plan: per enclave of the trace, one unmeasured RW region holding pages
    ``0 .. max page`` (added at build, as a loaded heap would be), then one TCS page, and
    one thread replaying the stream in order."""
    enclaves = []
    for name, (pages, writes) in streams.enclaves.items():
        n = int(pages.max()) + 1
        size = 2 * PAGE_SIZE
        while size < (n + 1) * PAGE_SIZE:
            size <<= 1
        heap = RegionLayout("heap", 0, n, "rw", False, False)
        ep = EnclavePlan(name, size, 1, [heap], tcs_first=n)
        ep.threads.append(ThreadPlan("replay", [Stream(pages, writes)]))
        enclaves.append(ep)
    config = {
        "trace": streams.path,
        "format": streams.format,
        "requests": streams.requests,
        "accesses": streams.accesses,
        **streams.notes,
        "machine": {k: v for k, v in machine.items()},
        "seed": seed,
    }
    return Plan(
        machine=machine,
        enclaves=enclaves,
        seed=seed,
        costs=costs or {},
        title=f"replay of {Path(streams.path).name}",
        config=config,
    )
