"""Running a plan: build the enclaves, run every program thread at once, check the outcome.

Order of a run, as a loader and its application would do it: each enclave is built in turn
(CREATE, ADD_PAGES of the TCS pages and of each static region, INIT), then all program
threads start together and run concurrently with ksgxd until they finish (or until the
scenario's ``duration`` cuts the run). ``build_ns`` and ``run_ns`` are the two phases.

Checks (a failed one makes ``epcsim run`` exit 1): every enclave builds; no thread stops at
an SGX #PF or SIGBUS; every EDMM operation completes without an error other than the
-EAGAIN/-EBUSY a runtime retries and without a failing EACCEPT; the kernel model raised no
warning; every ``[expect]`` bound holds.

``slowdown`` compares the time per access with the same plan on an EPC that holds the
whole footprint (for a program that runs to its end: the ratio of run times; for one cut by
``duration``: of throughputs). A run that wrote nothing back (no EWB) *is* all-resident, so
its slowdown is 1 without a second run; otherwise the reference run is made.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE
from epcsim.engine.observer import ObserverTimeout
from epcsim.kernel.progress import observe_only
from epcsim.scenario.hostmem import HostMemoryError, check_plan
from epcsim.scenario.model import Scenario
from epcsim.scenario.plan import Plan, compile_scenario
from epcsim.scenario.sampler import Sampler
from epcsim.scenario.semantics import ScenarioError, check_epc_pages
from epcsim.system import System
from epcsim.workloads.edmm import OpRecord
from epcsim.workloads.programs import ThreadRecord, start_thread

#: EPC pages above the footprint for the all-resident reference run (watermarks, slack)
BASELINE_HEADROOM = 256


@dataclass
class RunResult:
    """What a run produced: counters, derived figures, per-thread and per-op records, the
    sampled series for the report, and the checks that failed (empty = ok)."""

    plan: Plan
    stats: dict[str, Any]
    run_stats: dict[str, int]  # counter deltas over the run phase
    build_ns: int
    run_ns: int
    threads: list[ThreadRecord]
    ops: list[OpRecord]
    samples: dict[str, Any] | None
    free_timeline: tuple[list[int], list[int]]
    fault_latency_ns: np.ndarray  # every fault of the run phase
    truncated: bool
    failures: list[str] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    machine_config: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: counters, derived figures, threads, operations, checks."""
        return {
            "title": self.plan.title,
            "ok": self.ok,
            "failures": self.failures,
            "truncated": self.truncated,
            "seed": self.plan.seed,
            "epc_bytes": self.plan.machine["epc"],
            "derived": self.derived,
            "counters": self.stats,
            "run_counters": self.run_stats,
            "threads": [t.summary() for t in self.threads],
            "ops": [o.summary() for o in self.ops],
            "config": self.plan.config,
        }


def pages_written_back(stats: dict[str, Any]) -> int:
    """Pages EWB wrote back successfully (the ``ewb`` counter)."""
    return int(stats["ewb"])


def ewb_attempts(stats: dict[str, Any]) -> int:
    """EWB leaf executions, including SGX_NOT_TRACKED retries (``ewb_attempts``)."""
    return int(stats["ewb_attempts"])


def make_system(plan: Plan) -> System:
    """The plan's ``System``; a plan whose arrays would not fit in this host's memory is
    refused first (``hostmem.check_plan``), so nothing large is allocated for it."""
    check_epc_pages(plan.epc_pages, "machine.epc")
    try:
        check_plan(plan)
    except HostMemoryError as e:
        raise ScenarioError(e.key, e.reason) from None
    try:
        return System(seed=plan.seed, costs=plan.costs or None, **plan.machine)
    except ValueError as e:
        key, _, reason = str(e).partition(": ")
        raise ScenarioError(f"machine.{key}" if reason else "machine", reason or str(e)) from None


def _build(
    system: System, plan: Plan, on_build: Callable[[int, int], None] | None = None
) -> tuple[list[Any], list[str]]:
    """Build every enclave; ``on_build(pages added, pages to add)`` reports progress."""
    handles, failures = [], []
    total = sum(ep.tcs + sum(r.pages for r in ep.regions if not r.dynamic) for ep in plan.enclaves)
    added = 0

    @observe_only(count_only=True)  # a progress bar's count: the build may run batched
    def progress(_encl, done_bytes: int) -> None:
        if on_build is not None and (done_bytes // PAGE_SIZE) % 256 == 0:
            on_build(added + done_bytes // PAGE_SIZE, total)

    for ep in plan.enclaves:
        try:
            h = system.create_enclave(ep.size, debug=ep.debug, name=ep.name)
        except RuntimeError as e:  # ECREATE's errno (ENOMEM: the EPC is full of VA pages)
            failures.append(f"enclave {ep.name}: {e}")
            break
        handles.append(h)
        r = h.add_pages(ep.tcs_first * PAGE_SIZE, ep.tcs * PAGE_SIZE, page_type="tcs", measure=True)
        if not r.ok:
            failures.append(f"enclave {ep.name}: ADD_PAGES of the TCS failed with {r.errno}")
            continue
        added += r.pages
        for reg in ep.regions:
            if reg.dynamic:
                continue
            r = h.add_pages(
                reg.first_page * PAGE_SIZE,
                reg.pages * PAGE_SIZE,
                reg.perm,
                measure=reg.measure,
                progress=progress,
            )
            added += r.pages
            if not r.ok:
                failures.append(
                    f"enclave {ep.name}: ADD_PAGES of region {reg.name} failed with {r.errno}"
                    f" after {r.pages} pages"
                )
                break
        else:
            r = h.init()
            if not r.ok:
                failures.append(f"enclave {ep.name}: EINIT failed with {r.errno}")
    return handles, failures


def execute(
    plan: Plan,
    *,
    sample: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    on_build: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run ``plan`` once. ``on_progress(done, total)`` is called as the simulation advances
    (for a progress bar): accesses, or simulated ns when threads repeat until ``duration``;
    ``on_build(pages, total)`` while the enclaves are built."""
    # a previous run's ``System`` lives on in reference cycles (SimPy's processes and the
    # model's objects point at each other) until the cyclic collector runs: collected
    # first, so its arrays are not held beside this run's - ``run_plan``'s all-resident
    # run at 16 GiB was built beside the first run's ~250 MB (BENCHMARKS.md ``runscale``)
    gc.collect()
    system = make_system(plan)
    handles, failures = _build(system, plan, on_build)
    env = system.machine.env
    build_ns = system.now
    before = system.sgx.stats.as_dict()
    lat0 = system.sgx.fault_latency_ns.mark()
    procs, records = [], []
    if not failures:
        for ei, (ep, h) in enumerate(zip(plan.enclaves, handles, strict=True)):
            for ti, tp in enumerate(ep.threads):
                rng = np.random.default_rng([plan.seed, ei, ti])
                proc, rec = start_thread(h, tp, rng)
                procs.append(proc)
                records.append(rec)
    done = env.event()  # a plain event: SimPy strips the checks of nested conditions

    def watcher():
        yield env.all_of(procs)
        done.succeed()

    env.process(watcher())
    sampler = None
    planned = plan.planned_accesses()
    # a program repeated until the end has no access count to reach: show simulated time
    by_time = plan.duration_ns is not None and any(
        t.repeat == 0 for e in plan.enclaves for t in e.threads
    )
    if sample or on_progress is not None:

        def tick(s: Sampler) -> None:
            # reads the row just recorded (the same values as ``system.now`` and ``stats``
            # then): while the compiled core runs the model, the Python objects are not
            # current, the row is (fast/driver/observe.py)
            if on_progress is None:
                return
            if by_time:
                assert plan.duration_ns is not None
                on_progress(min(s.t[-1] - build_ns, plan.duration_ns), plan.duration_ns)
            else:
                done_acc = s.counters["enclave_accesses"][-1] - before["enclave_accesses"]
                on_progress(done_acc, planned)

        sampler = Sampler(system, on_sample=tick)
        sampler.start(done)
    # an observer's timeout: the compiled core stops before it (engine/observer.py)
    end = None if plan.duration_ns is None else ObserverTimeout(env, plan.duration_ns)
    until = done if end is None else env.any_of([done, end])
    if procs:
        env.run(until=until)
    truncated = bool(procs) and not done.triggered
    if sampler is not None:  # the run stops as ``done`` fires, before the sampler wakes
        sampler.sample()
    ends = [r.end_ns for r in records if r.end_ns is not None]
    run_ns = (system.now if truncated else max(ends, default=build_ns)) - build_ns
    after = system.sgx.stats.as_dict()
    run_stats = {k: after[k] - before[k] for k in after}
    lat = system.sgx.fault_latency_ns.since(lat0)
    tl = system.sgx.free_timeline
    res = RunResult(
        plan=plan,
        stats=system.stats(),
        run_stats=run_stats,
        build_ns=build_ns,
        run_ns=run_ns,
        threads=records,
        ops=[o for r in records for o in r.ops],
        samples=sampler.arrays() if sampler is not None and sample else None,
        free_timeline=(list(tl.t), list(tl.v)),
        fault_latency_ns=lat,
        truncated=truncated,
        failures=failures,
        machine_config=dict(system.config),
    )
    res.derived = derive(res)
    res.failures += checks(res, system)
    return res


def derive(res: RunResult) -> dict[str, Any]:
    rs = res.run_stats
    acc = rs["enclave_accesses"]
    lat = res.fault_latency_ns
    return {
        "build_ns": res.build_ns,
        "run_ns": res.run_ns,
        "accesses": acc,
        "faults_in_run": rs["page_faults"],
        "eldu_in_run": rs["eldu"],
        "ewb_in_run": pages_written_back(rs),
        "fault_rate": rs["page_faults"] / acc if acc else 0.0,
        "eldu_per_access": rs["eldu"] / acc if acc else 0.0,
        "accesses_per_ms": acc / (res.run_ns / 1e6) if res.run_ns else 0.0,
        "fault_latency_p50_ns": float(np.percentile(lat, 50)) if lat.size else None,
        "fault_latency_p99_ns": float(np.percentile(lat, 99)) if lat.size else None,
        "footprint_pages": res.plan.footprint_pages,
        "slowdown": 1.0 if res.stats["ewb"] == 0 else None,
    }


def checks(res: RunResult, system: System) -> list[str]:
    out = []
    for t in res.threads:
        if t.error:
            out.append(f"thread {t.enclave}/{t.name}: {t.error}")
    warnings = getattr(system.sgx, "warnings", [])
    if warnings:
        out.append(f"the kernel model warned {len(warnings)} time(s): {warnings[0]}")
    figures = {**res.stats, **res.derived}
    for key, (lo, hi) in res.plan.expect.items():
        v = figures.get(key)
        if v is None:
            out.append(f"expect.{key}: no value in this run")
        elif (lo is not None and v < lo) or (hi is not None and v > hi):
            out.append(f"expect.{key}: {v:g} is outside [{lo}, {hi}]")
    return out


def baseline_epc(plan: Plan) -> int:
    """An EPC that holds the whole footprint with room above the watermarks."""
    pages = max(plan.footprint_pages + BASELINE_HEADROOM, plan.machine.get("sections", 1))
    return pages * PAGE_SIZE


def slowdown(res: RunResult, ref: RunResult) -> float | None:
    """Time per access of ``res`` over that of the all-resident ``ref`` (run times when
    neither made an access)."""
    a, b = res.derived["accesses"], ref.derived["accesses"]
    if a and b and ref.run_ns:
        return (res.run_ns / a) / (ref.run_ns / b)
    return res.run_ns / ref.run_ns if ref.run_ns else None


def add_slowdown(res: RunResult, ref: RunResult | None) -> None:
    if res.derived.get("slowdown") is None and ref is not None:
        res.derived["slowdown"] = slowdown(res, ref)
        res.derived["baseline_run_ns"] = ref.run_ns
    if "slowdown" in res.plan.expect:  # re-check with the figure now known
        res.failures = [f for f in res.failures if not f.startswith("expect.slowdown")]
        lo, hi = res.plan.expect["slowdown"]
        v = res.derived.get("slowdown")
        if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
            res.failures.append(f"expect.slowdown: {v} is outside [{lo}, {hi}]")


def run_plan(
    plan: Plan,
    *,
    baseline: bool = True,
    sample: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    on_build: Callable[[int, int], None] | None = None,
) -> RunResult:
    """``execute`` plus, when the run paged and ``baseline``, the all-resident reference."""
    res = execute(plan, sample=sample, on_progress=on_progress, on_build=on_build)
    ref = None
    if baseline and res.derived["slowdown"] is None:
        ref = execute(plan.with_epc(max(baseline_epc(plan), plan.machine["epc"])), sample=False)
    add_slowdown(res, ref)
    return res


def run_scenario(
    scenario: Scenario,
    seed: int | None = None,
    *,
    baseline: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run a loaded scenario (``load_scenario``); ``seed`` overrides the file's seed."""
    return run_plan(compile_scenario(scenario, seed), baseline=baseline, on_progress=on_progress)
