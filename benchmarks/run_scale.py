"""``epcsim run`` at a cloud operator's scale, phase by phase (issue 9, session ``runscale``).

What ``epcsim run FILE --out DIR --json --timeline-csv CSV`` does, in one process, with the
wall time, host CPU and peak RSS of each phase: the build (``runner._build``: CREATE,
ADD_PAGES, INIT), the run (``env.run`` with the sampler, ``runner.execute``'s rest), of it
the sampler's own ``sample()`` calls, the all-resident baseline run (``run_plan``'s second
``execute``, made only when the first one wrote pages back), the HTML report with its plots,
the JSON and the timeline CSV, and the SQLite row ``epcsim sweep`` stores for the run
(``sweep.ResultsDb.add``). A phase's peak RSS is ``VmHWM`` after the peak was reset at the
phase's start (``/proc/self/clear_refs``), so each phase shows its own. Scenarios:
``benchmarks/run_{1,4,8,16}g.toml`` (a heap twice the EPC, 2M Zipf accesses).

    PYTHONPATH=src:benchmarks python benchmarks/run_scale.py benchmarks/run_1g.toml [...]
    [--no-baseline] [--no-report]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from epcsim.scenario import runner
from epcsim.scenario.load import load_scenario
from epcsim.scenario.plan import compile_scenario
from epcsim.scenario.sampler import Sampler


def _rss_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


class Phases:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float, float]] = []

    @contextmanager
    def phase(self, name: str):
        _reset_peak()
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            w, c = time.perf_counter() - w0, time.process_time() - c0
            self.rows.append((name, w, c, _rss_mib("VmHWM"), _rss_mib("VmRSS")))

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.rows.append((name, wall, cpu, float("nan"), float("nan")))

    def show(self, title: str) -> None:
        print(f"{title}")
        print(f"  {'phase':<22} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'RSS after':>10}")
        for name, w, c, peak, after in self.rows:
            print(f"  {name:<22} {w:8.2f} {c:8.2f} {peak:13.0f} {after:10.0f}")
        # (``ru_maxrss`` is reset with VmHWM: the process's peak is the phases' largest)
        peak = max((r[3] for r in self.rows if r[3] == r[3]), default=float("nan"))
        print(f"  the process's peak RSS {peak:.0f} MiB", flush=True)


def run_one(path: str, baseline: bool, report: bool) -> None:
    from epcsim.report.run import write_run_report
    from epcsim.report.timeline import write_timeline_csv
    from epcsim.sweep import ResultsDb, Sweep, SweepPoint

    ph = Phases()
    with ph.phase("load + plan"):
        plan = compile_scenario(load_scenario(path), None)
    build = runner._build
    sample = Sampler.sample
    spent = [0.0, 0.0, 0]
    made: list[Any] = []
    make = runner.make_system

    def timed_sample(self: Sampler) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        sample(self)
        spent[0] += time.perf_counter() - w0
        spent[1] += time.process_time() - c0
        spent[2] += 1

    def mk(p: Any) -> Any:
        made.append(make(p))
        return made[-1]

    cm = ph.phase("make_system + build")
    bw = [0.0, 0.0]

    def timed_build(*a: Any, **k: Any) -> Any:
        cm.__enter__()
        try:
            return build(*a, **k)
        finally:
            cm.__exit__(None, None, None)
            _reset_peak()
            bw[0], bw[1] = time.perf_counter(), time.process_time()

    runner._build, Sampler.sample, runner.make_system = timed_build, timed_sample, mk
    try:
        res = runner.execute(plan, sample=True)
        w, c = time.perf_counter() - bw[0], time.process_time() - bw[1]
        ph.rows.append(("run (sampled)", w, c, _rss_mib("VmHWM"), _rss_mib("VmRSS")))
        ph.add(f"  of it {spent[2]} samples", spent[0], spent[1])
    finally:
        runner._build, Sampler.sample, runner.make_system = build, sample, make
    sc = made[-1].sgx.stream_core
    on = 0 if sc is None else sc.accesses
    del made[:], sc  # the run's System: nothing here may keep it for the baseline run
    if baseline and res.derived["slowdown"] is None:
        with ph.phase("baseline run"):
            ref = runner.execute(
                plan.with_epc(max(runner.baseline_epc(plan), plan.machine["epc"])), sample=False
            )
        runner.add_slowdown(res, ref)
        del ref
    out = Path(tempfile.mkdtemp(prefix="runscale-out-", dir="/tmp"))
    if report:
        with ph.phase("report.html"):
            write_run_report(res, out)
    with ph.phase("json + timeline csv"):
        text = json.dumps(res.to_json(), sort_keys=True)
        write_timeline_csv(res, out / "timeline.csv")
    with ph.phase("sqlite row"):
        db = ResultsDb(out / "runs.sqlite")
        sw = Sweep(Path(path), Path(path))
        pt = SweepPoint("k", {}, None, {})
        stats = {k: v for k, v in res.stats.items() if isinstance(v, int | float | bool | str)}
        db.add(
            sw, pt, {"stats": stats, "derived": json.loads(json.dumps(res.derived)), "wall_s": 0}
        )
        db.close()
    d = res.derived
    ph.show(
        f"{path}: {d['accesses']:,} accesses ({on:,} on the core), {d['faults_in_run']:,} faults"
        f" in the run, footprint {d['footprint_pages']:,} pages, EPC"
        f" {res.stats['epc_pages_total']:,}, ewb {res.stats['ewb']:,}, slowdown"
        f" {d['slowdown']}, json {len(text):,} B, out {out}"
    )


def main(argv: list[str]) -> None:
    baseline = "--no-baseline" not in argv
    report = "--no-report" not in argv
    files = [a for a in argv if not a.startswith("--")]
    for f in files:
        run_one(f, baseline, report)


if __name__ == "__main__":
    main(sys.argv[1:])
