"""``epcsim sweep SWEEP.toml [--scheduler ADDRESS] [--db PATH]`` (see :mod:`epcsim.sweep`).

Everything the sweep needs is checked before the first run: the sweep file and every point
(exit 2), the database (``--db``: writable, a SQLite file), the scheduler (``--scheduler``:
``local``, ``inline`` or an address that answers). A Ctrl-C stops the sweep with exit 130;
the rows of finished runs are already committed and a rerun resumes after them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from epcsim.cli_base import EXIT_OK, fail_input, say

#: how long to wait for a ``--scheduler ADDRESS`` to answer before refusing it
CONNECT_TIMEOUT = "10s"
_ADDRESS = re.compile(r"^(?:(tcp|tls|inproc|ucx|ws|wss)://)?[\w.\-\[\]:]+:\d{1,5}$")


def check_scheduler(scheduler: str | None) -> str | None:
    """``None``/``local``/``inline`` or ``[PROTO://]HOST:PORT``; exits 2 otherwise."""
    if scheduler in (None, "local", "inline"):
        return scheduler
    assert scheduler is not None
    if not _ADDRESS.match(scheduler):
        fail_input(
            "--scheduler: expected local, inline or an address such as tcp://HOST:8786,"
            f" got {scheduler[:60]!r}"
        )
    return scheduler


def _connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address`` (exit 2 when it does not answer)."""
    from epcsim.sweep import quiet_dask_logs

    quiet_dask_logs()
    from dask.distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        fail_input(f"--scheduler: no Dask scheduler answers at {address}: {e}")


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
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object and nothing else.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no table: errors only.")
    ] = False,
) -> None:
    """Run a scenario over a grid of settings on Dask; results go to SQLite, and a sweep run
    again with the same database resumes where it stopped."""
    from epcsim.cli import _show, dump_json, progress_bar  # here: cli imports this module
    from epcsim.scenario.semantics import ScenarioError
    from epcsim.sweep import ResultsDb, ResultsDbError, load_sweep, run_sweep, sort_key

    try:
        sw = load_sweep(sweep_file)
    except ScenarioError as e:
        fail_input(str(e))
    if workers is not None and not 1 <= workers <= 256:
        fail_input(f"--workers: between 1 and 256, got {workers}")
    scheduler = check_scheduler(scheduler)
    db_path = db or sweep_file.with_suffix(".sqlite")
    try:
        results = ResultsDb(db_path)
    except ResultsDbError as e:
        fail_input(f"--db: {e}")
    client = _connect(scheduler) if scheduler not in (None, "local", "inline") else None
    stale = results.stale(sw)
    if stale and not json_out and not quiet:
        say(
            f"note: {db_path} holds {stale} run(s) of an earlier version of {sw.scenario_path}"
            " (its text changed); they are kept but not reused or shown"
        )
    try:
        with progress_bar(_show(json_out, quiet)) as prog:
            bar = prog.add_task("sweep", total=len(sw.points))
            done = results.done_keys()
            prog.advance(bar, sum(1 for p in sw.points if p.key in done))
            out = run_sweep(
                sw,
                results,
                scheduler=client if client is not None else scheduler,
                workers=workers,
                on_done=lambda *_: prog.advance(bar),
            )
        rows = results.rows([p.key for p in sw.points])
    finally:
        results.close()
        if client is not None:
            client.close()
    rows.sort(key=lambda r: sort_key(r["params"], r["seed"]))
    if json_out:
        dump_json({**out, "db": str(db_path), "stale": stale, "runs": rows})
        raise typer.Exit(EXIT_OK)
    if quiet:
        raise typer.Exit(EXIT_OK)
    t = Table(title=f"sweep {sweep_file.name}: ran {out['ran']}, resumed past {out['skipped']}")
    keys = list(rows[0]["params"]) if rows else []
    for k in [*keys, "seed", "simulated ms", "ELDU", "EWB (pages)", "wall s"]:
        t.add_column(k, justify="right")
    for r in rows:
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
    raise typer.Exit(EXIT_OK)
