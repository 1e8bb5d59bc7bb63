"""``epcsim run``, ``epcsim replay`` and ``epcsim cliff`` (registered by ``epcsim.cli``).

Helpers of ``epcsim.cli`` are imported inside the commands, not at module level, so this
module can be imported while ``epcsim.cli`` itself is still being imported (also when it
runs as ``python -m epcsim.cli``).

Same conventions as the rest of the command: exit 0 when the run passed its checks, 1 when
it did not, 2 on bad input with ``FILE: key: reason``; ``--json`` prints exactly one JSON
object on stdout; the progress bar appears only on a terminal and never with ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write DIR/report.html.")]


EXIT_OK, EXIT_CHECKS, EXIT_INPUT = 0, 1, 2  # as in epcsim.cli


def _fail(message: str) -> None:
    from epcsim.cli import err

    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(EXIT_INPUT)


def _json(obj: Any) -> None:
    def default(o: Any) -> Any:
        if hasattr(o, "item"):  # NumPy scalars
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    print(json.dumps(obj, sort_keys=True, default=default))


def _load_plan(scenario: Path, seed: int | None):
    from epcsim.scenario.load import load_scenario
    from epcsim.scenario.plan import compile_scenario
    from epcsim.scenario.semantics import ScenarioError

    try:
        return compile_scenario(load_scenario(scenario), seed)
    except ScenarioError as e:
        _fail(str(e))


def _execute(plan, source: str, json_out: bool, baseline: bool):
    from epcsim.cli import _show, progress_bar
    from epcsim.scenario.runner import run_plan
    from epcsim.scenario.semantics import ScenarioError

    with progress_bar(_show(json_out)) as prog:
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


def _finish(res, out: Path | None, json_out: bool) -> None:
    from epcsim.report.run import write_run_report

    path = write_run_report(res, out) if out is not None else None
    if json_out:
        _json({**res.to_json(), "report": str(path) if path else None})
    else:
        d = res.derived
        t = Table(title=res.plan.title)
        t.add_column("")
        t.add_column("value", justify="right")
        rows = [
            ("EPC pages", f"{res.stats['epc_pages_total']:,}"),
            ("footprint pages", f"{d['footprint_pages']:,}"),
            ("build time (ms)", f"{d['build_ns'] / 1e6:,.3f}"),
            ("run time (ms)", f"{d['run_ns'] / 1e6:,.3f}"),
            ("slowdown vs all-resident", "-" if d["slowdown"] is None else f"{d['slowdown']:.2f}"),
            ("accesses", f"{d['accesses']:,}"),
            ("page faults per access", f"{d['fault_rate']:.4f}"),
            ("ELDU per access", f"{d['eldu_per_access']:.4f}"),
            ("EWB / ELDU", f"{res.stats['ewb']:,} / {res.stats['eldu']:,}"),
        ]
        for k, v in rows:
            t.add_row(k, v)
        console = Console()
        console.print(t)
        for f in res.failures:
            console.print(f"[bold red]check failed:[/] {escape(f)}")
        if res.truncated:
            console.print("the run was cut by its duration")
        if path is not None:
            console.print(f"report: {path}")
    raise typer.Exit(EXIT_OK if res.ok else EXIT_CHECKS)


def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), e.g. examples/*.toml.")],
    json_out: JsonOpt = False,
    out: OutOpt = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run all-resident, for the slowdown (only if it paged).")
    ] = True,
) -> None:
    """Run a scenario: build its enclaves, run their threads, check, report."""
    plan = _load_plan(scenario, seed)
    _finish(_execute(plan, str(scenario), json_out, baseline), out, json_out)


def replay(
    trace: Annotated[Path, typer.Argument(help="Trace file: CSV or oracleGeneral.")],
    epc: Annotated[str, typer.Option(help="EPC size or preset, e.g. 64M, sgx1-client.")],
    policy: Annotated[str, typer.Option(help="Reclaim policy (lru = the kernel's).")] = "lru",
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or oracleGeneral (default: by name).")
    ] = None,
    json_out: JsonOpt = False,
    out: OutOpt = None,
    cpus: Annotated[int, typer.Option(help="Logical CPUs.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Replay only the first N requests.")] = None,
    mapping: Annotated[
        str, typer.Option("--map", help="oracleGeneral object->page mapping: dense or hash.")
    ] = "dense",
    enclave_size: Annotated[
        str | None, typer.Option(help="Pages the hash mapping spreads objects over.")
    ] = None,
    direct_reclaim: Annotated[bool, typer.Option(help="sgx_reclaim_direct in ioctls.")] = True,
    baseline: Annotated[bool, typer.Option(help="Also run all-resident (slowdown).")] = True,
) -> None:
    """Replay a trace of page accesses against a simulated EPC."""
    from epcsim.kernel.policy import POLICIES
    from epcsim.scenario.plan import plan_from_streams
    from epcsim.units import parse_pages, parse_size
    from epcsim.workloads.trace import TraceError, read_trace

    try:
        epc_bytes = parse_size(epc, "--epc")
        parse_pages(epc, "--epc")
        n_pages = parse_pages(enclave_size, "--enclave-size") if enclave_size else None
        if policy not in POLICIES:
            raise ValueError(f"--policy: unknown {policy!r} (known: {', '.join(POLICIES)})")
        if cpus < 1:
            raise ValueError(f"--cpus: must be at least 1, got {cpus}")
        if limit is not None and limit < 1:
            raise ValueError(f"--limit: must be at least 1, got {limit}")
        streams = read_trace(trace, fmt, limit, mapping, n_pages)
    except TraceError as e:
        _fail(str(e))
    except ValueError as e:
        _fail(f"{trace}: {e}")
    machine = {"epc": epc_bytes, "cpus": cpus, "policy": policy, "direct_reclaim": direct_reclaim}
    plan = plan_from_streams(streams, machine, seed=seed)
    _finish(_execute(plan, str(trace), json_out, baseline), out, json_out)


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
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
) -> None:
    """Run a scenario across EPC sizes; plot slowdown and fault rate against EPC size."""
    from epcsim.cli import _show, progress_bar
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
    with progress_bar(_show(json_out)) as prog:
        bar = prog.add_task("EPC sizes", total=n + 1)
        try:
            res = run_cliff(plan, low, high, n, lambda d, _t: prog.update(bar, completed=d))
        except ScenarioError as e:
            e.path = str(scenario)
            _fail(e.format())
    path = write_cliff_report(res, out)
    if json_out:
        _json({**res.to_json(), "report": str(path)})
    else:
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
        console.print(f"report: {path}")
    raise typer.Exit(EXIT_OK if res.ok else EXIT_CHECKS)
