"""``epcsim sweep SWEEP.toml [--scheduler ADDRESS] [--db PATH]`` (see :mod:`epcsim.sweep`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="The sweep file (TOML).")],
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler ADDRESS; 'local' (default) starts a local cluster, "
            "'inline' runs in this process."
        ),
    ] = None,
    db: Annotated[Path | None, typer.Option(help="SQLite results (default: SWEEP.sqlite).")] = None,
    workers: Annotated[int | None, typer.Option(help="Workers of the local cluster.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a scenario over a grid of settings on Dask; results go to SQLite, and a sweep run
    again with the same database resumes where it stopped."""
    from epcsim.cli import EXIT_INPUT, err, progress_bar  # here: cli imports this module
    from epcsim.scenario.semantics import ScenarioError
    from epcsim.sweep import ResultsDb, load_sweep, run_sweep

    try:
        sw = load_sweep(sweep_file)
    except ScenarioError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(EXIT_INPUT) from None
    if workers is not None and workers < 1:
        err.print("[bold red]error:[/] --workers: must be at least 1")
        raise typer.Exit(EXIT_INPUT)
    db_path = db or sweep_file.with_suffix(".sqlite")
    results = ResultsDb(db_path)
    show = not json_out and err.is_terminal
    with progress_bar(show) as prog:
        bar = prog.add_task("sweep", total=len(sw.points))
        prog.advance(
            bar, len(sw.points) - len([p for p in sw.points if p.key not in results.done_keys()])
        )
        out = run_sweep(
            sw, results, scheduler=scheduler, workers=workers, on_done=lambda *_: prog.advance(bar)
        )
    rows = results.rows([p.key for p in sw.points])
    results.close()
    if json_out:
        print(json.dumps({**out, "db": str(db_path), "runs": rows}, sort_keys=True))
        return
    t = Table(title=f"sweep {sweep_file.name}: ran {out['ran']}, resumed past {out['skipped']}")
    keys = list(rows[0]["params"]) if rows else []
    for k in [*keys, "seed", "simulated ms", "ELDU", "EWB", "wall s"]:
        t.add_column(k, justify="right")
    for r in sorted(rows, key=lambda r: json.dumps(r["params"], sort_keys=True)):
        s = r["stats"]
        t.add_row(
            *[str(r["params"][k]) for k in keys],
            str(r["seed"]),
            f"{s.get('simulated_ns', 0) / 1e6:,.2f}",
            f"{s.get('eldu', 0):,}",
            f"{s.get('ewb', 0):,}",
            f"{r['wall_s']:.2f}",
        )
    Console().print(t)
    Console().print(f"results: {db_path}")
