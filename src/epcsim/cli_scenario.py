"""``epcsim run``, ``epcsim replay`` and ``epcsim cliff`` (registered by ``epcsim.cli``).

Helpers of ``epcsim.cli`` are imported inside the commands, not at module level, so this
module can be imported while ``epcsim.cli`` itself is still being imported (also when it
runs as ``python -m epcsim.cli``).

Same conventions as the rest of the command (``epcsim.cli_base``): exit 0 when the run
passed its checks, 1 when it did not, 2 on bad input with ``FILE: key: reason`` (every
input, output path and memory need is checked before the simulation starts); ``--json``
prints exactly one JSON object on stdout; the progress bar appears only on a terminal and
never with ``--json`` or ``--quiet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from epcsim.cli_base import (
    EXIT_CHECKS,
    EXIT_OK,
    EngineOpt,
    NopageFloodOpt,
    check_out_dir,
    check_out_file,
    engine_choice,
    fail_input,
)
from epcsim.scenario.model import MAX_SEED

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write DIR/report.html.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, no table: errors only.")
]
SeedOpt = Annotated[
    int | None, typer.Option(min=0, max=MAX_SEED, help="Override the scenario's seed.")
]
TimelineOpt = Annotated[
    Path | None,
    typer.Option("--timeline-csv", help="Write the sampled timeline (EPC, counters) as CSV."),
]


def _fail(message: str) -> None:
    fail_input(message)


def _load_plan(scenario: Path, seed: int | None):
    from epcsim.scenario.load import load_scenario
    from epcsim.scenario.plan import compile_scenario
    from epcsim.scenario.semantics import ScenarioError

    try:
        return compile_scenario(load_scenario(scenario), seed)
    except ScenarioError as e:
        e.path = e.path or str(scenario)
        _fail(e.format())


def _apply_engine(plan, engine: str | None, nopage_flood: str | None, source: str) -> None:
    """``--engine``/``--nopage-flood`` over the plan's ``[machine]`` values (exit 2 on a
    pair ``System`` refuses)."""
    m = plan.machine
    e, f = engine_choice(
        engine, nopage_flood, (m.get("engine", "fast"), m.get("nopage_flood", "simulate")), source
    )
    plan.machine = {**m, "engine": e, "nopage_flood": f}
    # the report and --json show the machine the run had, options included
    if isinstance(plan.config.get("machine"), dict):
        machine = {**plan.config["machine"], "engine": e, "nopage_flood": f}
        plan.config = {**plan.config, "machine": machine}


def _check_memory(plan, source: str) -> None:
    from epcsim.scenario.hostmem import HostMemoryError, check_plan

    try:
        check_plan(plan)
    except HostMemoryError as e:
        _fail(f"{source}: {e}")


def _execute(plan, source: str, show: bool, baseline: bool):
    from epcsim.cli import progress_bar
    from epcsim.scenario.runner import run_plan
    from epcsim.scenario.semantics import ScenarioError

    with progress_bar(show) as prog:
        bar = prog.add_task("building", total=None)
        try:
            return run_plan(
                plan,
                baseline=baseline,
                on_build=lambda d, t: prog.update(bar, completed=d, total=t),
                on_progress=lambda d, t: prog.update(
                    bar, description="simulating", completed=d, total=t
                ),
            )
        except ScenarioError as e:
            e.path = source
            _fail(e.format())


def _finish(
    res, out: Path | None, json_out: bool, quiet: bool, timeline: Path | None = None
) -> None:
    from epcsim.cli import dump_json
    from epcsim.report.run import write_run_report
    from epcsim.report.timeline import write_timeline_csv
    from epcsim.scenario.runner import ewb_attempts, pages_written_back

    path = write_run_report(res, out) if out is not None else None
    csv_path = write_timeline_csv(res, timeline) if timeline is not None else None
    if json_out:
        dump_json(
            {
                **res.to_json(),
                "report": str(path) if path else None,
                "timeline_csv": str(csv_path) if csv_path else None,
            }
        )
    elif not quiet:
        d, s = res.derived, res.stats
        t = Table(title=res.plan.title)
        t.add_column("")
        t.add_column("value", justify="right")
        rows = [
            ("EPC pages", f"{s['epc_pages_total']:,}"),
            ("footprint pages", f"{d['footprint_pages']:,}"),
            ("build time (ms)", f"{d['build_ns'] / 1e6:,.3f}"),
            ("run time (ms)", f"{d['run_ns'] / 1e6:,.3f}"),
            ("slowdown vs all-resident", "-" if d["slowdown"] is None else f"{d['slowdown']:.2f}"),
            ("accesses", f"{d['accesses']:,}"),
            ("page faults per access", f"{d['fault_rate']:.4f}"),
            ("ELDU per access", f"{d['eldu_per_access']:.4f}"),
            ("pages written back (ewb)", f"{pages_written_back(s):,}"),
            ("EWB executions incl. retries (ewb_attempts)", f"{ewb_attempts(s):,}"),
            ("pages loaded back (eldu)", f"{s['eldu']:,}"),
        ]
        for k, v in rows:
            t.add_row(k, v)
        console = Console()
        console.print(t)
        for f in res.failures:
            console.print(f"[bold red]check failed:[/] {escape(f)}", soft_wrap=True)
        if res.truncated:
            console.print("the run was cut by its duration")
        if path is not None:
            console.print(f"report: {path}", soft_wrap=True)
        else:
            console.print("no report written: add --out DIR to write DIR/report.html")
        if csv_path is not None:
            console.print(f"timeline: {csv_path}", soft_wrap=True)
    raise typer.Exit(EXIT_OK if res.ok else EXIT_CHECKS)


def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), e.g. examples/*.toml.")],
    json_out: JsonOpt = False,
    out: OutOpt = None,
    seed: SeedOpt = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run all-resident, for the slowdown (only if it paged).")
    ] = True,
    timeline_csv: TimelineOpt = None,
    quiet: QuietOpt = False,
    engine: EngineOpt = None,
    nopage_flood: NopageFloodOpt = None,
) -> None:
    """Run a scenario: build its enclaves, run their threads, check, report."""
    from epcsim.cli import _show

    plan = _load_plan(scenario, seed)
    _apply_engine(plan, engine, nopage_flood, str(scenario))
    check_out_dir(out)
    check_out_file(timeline_csv, "--timeline-csv")
    _check_memory(plan, str(scenario))
    res = _execute(plan, str(scenario), _show(json_out, quiet), baseline)
    _finish(res, out, json_out, quiet, timeline_csv)


def _list(text: str, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        _fail(f"{option}: an empty item in {text[:60]!r} (give a comma-separated list)")
    if len(items) > 64:
        _fail(f"{option}: at most 64 values, got {len(items)}")
    return list(dict.fromkeys(items))


def replay(
    trace: Annotated[Path, typer.Argument(help="Trace file: CSV or oracleGeneral.")],
    epc: Annotated[
        str,
        typer.Option(help="EPC size or preset, e.g. 64M, sgx1-client; several: 4M,8M,16M."),
    ],
    policy: Annotated[
        str, typer.Option(help="Reclaim policy (lru = the kernel's); several: lru,fifo.")
    ] = "lru",
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or oracleGeneral (default: by name).")
    ] = None,
    json_out: JsonOpt = False,
    out: OutOpt = None,
    cpus: Annotated[int, typer.Option(min=1, max=1024, help="Logical CPUs.")] = 4,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed.")] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Replay only the first N requests.")
    ] = None,
    mapping: Annotated[
        str, typer.Option("--map", help="oracleGeneral object->page mapping: dense or hash.")
    ] = "dense",
    enclave_size: Annotated[
        str | None, typer.Option(help="Pages the hash mapping spreads objects over.")
    ] = None,
    direct_reclaim: Annotated[bool, typer.Option(help="sgx_reclaim_direct in ioctls.")] = True,
    baseline: Annotated[bool, typer.Option(help="Also run all-resident (slowdown).")] = True,
    timeline_csv: TimelineOpt = None,
    quiet: QuietOpt = False,
    engine: EngineOpt = None,
    nopage_flood: NopageFloodOpt = None,
) -> None:
    """Replay a trace of page accesses against a simulated EPC. With several EPC sizes or
    policies, replay it at each and draw the miss-ratio curve."""
    from epcsim.kernel.policy import POLICIES
    from epcsim.scenario.hostmem import HostMemoryError, check_bytes, enclave_bytes
    from epcsim.scenario.plan import plan_from_streams
    from epcsim.scenario.semantics import check_epc_pages
    from epcsim.units import parse_pages, parse_size
    from epcsim.workloads.trace import TraceError, read_trace

    engine, nopage_flood = engine_choice(engine, nopage_flood)
    sizes_text, policies = _list(epc, "--epc"), _list(policy, "--policy")
    try:
        sizes = list(dict.fromkeys(parse_size(e, "--epc") for e in sizes_text))
        for e in sizes_text:
            check_epc_pages(parse_pages(e, "--epc"), "--epc")
        n_pages = parse_pages(enclave_size, "--enclave-size") if enclave_size else None
        for p in policies:
            if p not in POLICIES:
                raise ValueError(f"--policy: unknown {p[:60]!r} (known: {', '.join(POLICIES)})")
    except ValueError as e:  # ScenarioError too
        _fail(f"{trace}: {e}")
    curve = len(sizes) * len(policies) > 1
    if curve and timeline_csv is not None:
        _fail("--timeline-csv: one EPC size and one policy only (a timeline is of one run)")
    if n_pages is not None:
        try:
            check_bytes(
                "--enclave-size",
                enclave_bytes(n_pages + 1, n_pages),
                f"an enclave of {n_pages:,} pages",
            )
        except HostMemoryError as e:
            _fail(f"{trace}: {e}")
    check_out_dir(out)
    check_out_file(timeline_csv, "--timeline-csv")
    try:
        streams = read_trace(trace, fmt, limit, mapping, n_pages)
    except TraceError as e:
        _fail(str(e))
    except UnicodeDecodeError:
        _fail(f"{trace}: not UTF-8 text (a CSV trace is text; is it an oracleGeneral file?)")
    except ValueError as e:
        _fail(f"{trace}: {e}")
    machine = {"epc": max(sizes), "cpus": cpus, "policy": policies[0]}
    machine.update(engine=engine, nopage_flood=nopage_flood)
    machine["direct_reclaim"] = direct_reclaim
    plan = plan_from_streams(streams, machine, seed=seed)
    for i, ep in enumerate(plan.enclaves):
        try:
            check_bytes(
                f"enclave[{i}]",
                enclave_bytes(ep.size // 4096, ep.total_pages),
                f"enclave {ep.name[:40]!r} (page indexes up to {ep.total_pages - 3:,})",
            )
        except HostMemoryError as e:
            _fail(f"{trace}: page index: {e.reason}")
    _check_memory(plan, str(trace))
    if curve:
        _replay_curve(plan, sizes, policies, str(trace), out, json_out, quiet)
    plan = plan.with_epc(sizes[0])
    from epcsim.cli import _show

    res = _execute(plan, str(trace), _show(json_out, quiet), baseline)
    _finish(res, out, json_out, quiet, timeline_csv)


def _replay_curve(plan, sizes, policies, source, out, json_out, quiet) -> None:
    from epcsim.cli import _show, dump_json, progress_bar
    from epcsim.report.mrc import write_mrc_report
    from epcsim.scenario.mrc import run_mrc
    from epcsim.scenario.semantics import ScenarioError

    with progress_bar(_show(json_out, quiet)) as prog:
        bar = prog.add_task("EPC sizes x policies", total=len(sizes) * len(policies))
        try:
            res = run_mrc(plan, sizes, policies, lambda d, _t: prog.update(bar, completed=d))
        except ScenarioError as e:
            e.path = source
            _fail(e.format())
    path = write_mrc_report(res, out) if out is not None else None
    if json_out:
        dump_json({**res.to_json(), "report": str(path) if path else None})
    elif not quiet:
        t = Table(title=f"miss-ratio curve — {plan.title}")
        for c in ("policy", "EPC (MiB)", "miss ratio", "misses (ELDU)", "faults/access", "checks"):
            t.add_column(c, justify="right")
        for p in res.points:
            t.add_row(
                p.policy,
                f"{p.epc_bytes / 2**20:,.1f}",
                f"{p.miss_ratio:.4f}",
                f"{p.misses:,}",
                f"{p.fault_rate:.4f}",
                "ok" if p.ok else "failed",
            )
        console = Console()
        console.print(t)
        if path is not None:
            console.print(f"report: {path}", soft_wrap=True)
        else:
            console.print("no report written: add --out DIR to draw the curve in DIR/report.html")
    raise typer.Exit(EXIT_OK if res.ok else EXIT_CHECKS)


def cliff(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    epc_range: Annotated[
        str | None, typer.Option(help="LOW:HIGH EPC sizes, e.g. 32M:256M ([cliff] or 32M:256M).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Number of EPC sizes (default 6).")] = None,
    json_out: JsonOpt = False,
    out: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path(
        "epcsim-out/cliff"
    ),
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
    engine: EngineOpt = None,
    nopage_flood: NopageFloodOpt = None,
) -> None:
    """Run a scenario across EPC sizes; plot slowdown and fault rate against EPC size."""
    from epcsim.cli import _show, dump_json, progress_bar
    from epcsim.report.cliff import write_cliff_report
    from epcsim.scenario.cliff import run_cliff
    from epcsim.scenario.load import load_scenario
    from epcsim.scenario.plan import compile_scenario
    from epcsim.scenario.semantics import ScenarioError, parse_epc_range

    try:
        sc = load_scenario(scenario)
    except ScenarioError as e:
        _fail(str(e))
    text = epc_range or (sc.cliff.epc_range if sc.cliff else "32M:256M")
    n = steps if steps is not None else (sc.cliff.steps if sc.cliff else 6)
    try:
        low, high = parse_epc_range(text)
        if not 2 <= n <= 64:
            raise ValueError(f"--steps: between 2 and 64, got {n}")
    except ValueError as e:
        _fail(f"{scenario}: --epc-range/--steps: {e}")
    plan = compile_scenario(sc, seed)
    _apply_engine(plan, engine, nopage_flood, str(scenario))
    check_out_dir(out)
    _check_memory(plan.with_epc(high), f"{scenario}: --epc-range")
    with progress_bar(_show(json_out, quiet)) as prog:
        bar = prog.add_task("EPC sizes", total=n + 1)
        try:
            res = run_cliff(plan, low, high, n, lambda d, _t: prog.update(bar, completed=d))
        except ScenarioError as e:
            e.path = str(scenario)
            _fail(e.format())
    path = write_cliff_report(res, out)
    if json_out:
        dump_json({**res.to_json(), "report": str(path)})
    elif not quiet:
        t = Table(title=f"paging cliff — {plan.title}")
        for c in ("EPC (MiB)", "slowdown", "faults/access", "ELDU/access", "checks"):
            t.add_column(c, justify="right")
        for p in res.points:
            t.add_row(
                f"{p.epc_bytes / 2**20:,.1f}",
                f"{p.slowdown:.2f}",
                f"{p.fault_rate:.4f}",
                f"{p.eldu_per_access:.4f}",
                "ok" if p.ok else "failed",
            )
        console = Console()
        console.print(t)
        console.print(f"footprint: {res.footprint_pages * 4096 / 2**20:,.1f} MiB")
        console.print(f"report: {path}", soft_wrap=True)
    raise typer.Exit(EXIT_OK if res.ok else EXIT_CHECKS)
