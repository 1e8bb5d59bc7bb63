"""The ``epcsim`` command (typer + rich).

Exit codes (``epcsim.cli_base``): 0 success, 1 the simulated run failed its checks, 2 bad
input (one line naming the file, key or option and the reason), 3 internal error (one line
naming the traceback file), 130 interrupted. Long work shows a progress bar on a terminal;
``--json`` prints one JSON object on stdout and nothing else (``docs/json-schema.md``);
``--quiet`` prints nothing but errors.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from epcsim.cli_base import (
    DEBUG,
    EXIT_CHECKS,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EngineOpt,
    EpcsimGroup,
    NopageFloodOpt,
    check_out_dir,
    engine_choice,
    err,
    fail_input,
)
from epcsim.units import fmt_value

__all__ = ["EXIT_CHECKS", "EXIT_INPUT", "EXIT_OK", "app", "err", "fail_input", "main"]

#: version of every ``--json`` object's layout (``docs/json-schema.md``); bump it when a key
#: changes meaning or disappears (adding keys does not bump it)
SCHEMA_VERSION = 1

app = typer.Typer(
    cls=EpcsimGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring lines join into paragraphs in --help
    context_settings={"help_option_names": ["-h", "--help"]},
    help="epcsim: a model of Linux SGX EPC memory management.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, no table: errors only.")
]


def _version(value: bool) -> None:
    if value:
        from epcsim import __version__

        print(f"epcsim {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an internal error.")
    ] = False,
) -> None:
    """epcsim: a model of Linux SGX EPC memory management."""
    DEBUG["on"] = debug


def dump_json(obj: dict[str, Any]) -> None:
    """The one JSON object of ``--json``, with ``schema_version``; keys sorted (a stable
    order: two runs' outputs diff line by line)."""

    def default(o: Any) -> Any:
        if hasattr(o, "item"):  # NumPy scalars
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    print(json.dumps({**obj, "schema_version": SCHEMA_VERSION}, sort_keys=True, default=default))


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        disable=not enabled,
        transient=True,
    )


def _show(json_out: bool, quiet: bool = False) -> bool:
    return not json_out and not quiet and err.is_terminal


@app.command()
def demo(
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    out: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path("epcsim-out"),
    epc: Annotated[str, typer.Option(help="EPC size or preset.")] = "sgx1-client",
    heap_factor: Annotated[float, typer.Option(help="Heap size as a multiple of the EPC.")] = 2.0,
    cpus: Annotated[int, typer.Option(help="Logical CPUs.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    flip: Annotated[bool, typer.Option(help="Also sweep CPUs x EWB/ELDU cost ratio.")] = True,
    flip_epc: Annotated[str, typer.Option(help="EPC size for the flip sweep.")] = "8M",
    engine: EngineOpt = None,
    nopage_flood: NopageFloodOpt = None,
) -> None:
    """The seed scenario: EDMM page removal on an EPC oversubscribed 2x, without and with
    direct reclaim. Prints a table and writes an HTML report to OUT/report.html."""
    from epcsim.demo import demo_configs, run_seed
    from epcsim.report.demo import findings, flip_findings, table_rows, write_demo_report

    engine, nopage_flood = engine_choice(engine, nopage_flood)
    try:
        configs = demo_configs(epc, heap_factor, cpus, seed, engine, nopage_flood)
        flip_cfgs = flip_configs(flip_epc, heap_factor, seed, engine, nopage_flood) if flip else []
        # Validate sizes before any long work.
        from epcsim.units import parse_pages

        parse_pages(epc, "epc")
        parse_pages(flip_epc, "flip_epc")
        if not 1 <= cpus <= 1024:
            raise ValueError(f"--cpus: between 1 and 1024, got {cpus}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"--seed: between 0 and 2**63-1, got {seed}")
        if not 0 < heap_factor <= 64:
            raise ValueError(f"--heap-factor: above 0 and at most 64, got {heap_factor}")
        _check_demo_memory(parse_pages(epc, "epc"), heap_factor, "--epc")
        _check_demo_memory(parse_pages(flip_epc, "flip_epc"), 2.0, "--flip-epc")
    except ValueError as e:
        fail_input(str(e))
    check_out_dir(out)
    runs = []
    # Every run is independent of the others: the first seed run stays in this process (the
    # progress bar follows its phases and pages); the other seed runs and the flip sweep's
    # points run in worker processes meanwhile, and all are read back in order, so the
    # output is the same as a serial run's. Workers start before the progress bar's thread.
    pool = _demo_pool(len(configs) - 1 + len(flip_cfgs), engine)
    in_pool = [pool.submit(run_seed, cfg) for cfg in configs[1:]] if pool else []
    pending = [pool.submit(_flip_point, flip_epc, *point) for point in flip_cfgs] if pool else []
    with pool or contextlib.nullcontext(), progress_bar(_show(json_out, quiet)) as prog:
        bar = prog.add_task("seed scenario", total=len(configs) + len(flip_cfgs))
        pages = prog.add_task("", total=None)
        for i, cfg in enumerate(configs):
            label = cfg.label
            if i and pool is not None:
                prog.update(bar, description=f"seed scenario: {label}")
                runs.append(in_pool[i - 1].result())
                prog.advance(bar)
                continue

            def on_phase(name: str, label=label) -> None:
                prog.update(pages, description=f"  {label}: {name}", completed=0, total=None)

            def on_pages(done: int, total: int) -> None:
                prog.update(pages, completed=done, total=total)

            runs.append(run_seed(cfg, on_phase, on_pages))
            prog.advance(bar)
        prog.update(pages, visible=False)
        flips = []
        for (layout, ratio, c, _cfg), fut in zip(flip_cfgs, pending, strict=True):
            prog.update(bar, description=f"flip sweep ({layout}): cpus={c} EWB/ELDU={ratio:g}")
            flips.append(fut.result())
            prog.advance(bar)
    path = write_demo_report(runs, flips, out)
    ok = runs[1].summary()["completed"]
    if json_out:
        dump_json({"runs": [r.summary() for r in runs], "flip": flips, "report": str(path)})
    elif not quiet:
        header, rows = table_rows(runs)
        t = Table(title="EDMM removal of a heap 2x the EPC (the seed scenario)")
        t.add_column("")
        for row in rows:
            t.add_column(str(row[0]), justify="right")
        for i, h in enumerate(header[1:], start=1):
            t.add_row(h, *[fmt_value(row[i]) for row in rows])
        Console().print(t)
        for text in findings(runs) + flip_findings(flips):
            Console().print(text, highlight=False)
        Console().print(f"report: {path}")
    raise typer.Exit(EXIT_OK if ok else EXIT_CHECKS)


def _check_demo_memory(epc_pages: int, heap_factor: float, option: str) -> None:
    """The demo's enclave holds a heap of ``heap_factor`` x the EPC in an ELRANGE of at most
    twice that; refuse (``HostMemoryError``, a ``ValueError``) what this host cannot hold."""
    from epcsim.scenario.hostmem import check_bytes, enclave_bytes, epc_bytes

    heap = int(epc_pages * heap_factor) + 16
    need = epc_bytes(epc_pages) + enclave_bytes(2 * heap, heap)
    check_bytes(option, need, f"the demo on an EPC of {epc_pages:,} pages")


FLIP_RATIOS = (0.5, 0.9, 1.0, 1.1, 1.2, 1.5)
FLIP_CPUS = (1, 2, 4)
#: the two layouts of the flip sweep: where ksgxd's victims come from
FLIP_LAYOUTS = {
    "same enclave": {"heap_factor": 2.0, "neighbour_factor": 0.0},
    "idle neighbour": {"heap_factor": 0.9, "neighbour_factor": 1.0},
}


def _demo_pool(n: int, engine: str) -> concurrent.futures.ProcessPoolExecutor | None:
    """Worker processes for ``n`` demo runs (seed runs after the first, flip points): one
    per CPU. The first seed run shares a CPU with them, and once it ends its CPU goes to
    them: with one worker fewer, a 2-CPU machine (CI) would leave a CPU idle for the rest.
    The workers fork after this process's one-time numba setup (``fast.preload``), and
    inherit it instead of each paying it (session ``cacheload``: ~0.3 s of CPU a worker)."""
    if n == 0:
        return None
    from epcsim.fast.preload import before_fork

    before_fork(engine)
    workers = max(1, min(n, os.cpu_count() or 1))
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork")
    )


def _flip_point(flip_epc: str, layout: str, ratio: float, c: int, cfg: Any) -> dict[str, Any]:
    """One cell of the flip sweep (runs in a worker process): does the first call complete?"""
    from epcsim.demo import run_seed

    r = run_seed(cfg)
    return {
        "layout": layout,
        "cpus": c,
        "ratio": ratio,
        "epc": flip_epc,
        "heap_factor": cfg.heap_factor,
        "neighbour_factor": cfg.neighbour_factor,
        "length_pages": r.length_pages,
        "mutex": r.mutex,
        "sched": r.sched,
        "first_call_pages": r.modify.first_call_pages,
        "complete": r.modify.first_call_errno is None,
    }


def flip_configs(
    epc: str, heap_factor: float, seed: int, engine: str = "fast", nopage_flood: str = "simulate"
):
    """Without direct reclaim, sweep CPUs x EWB/ELDU cost ratio in two layouts: the seed's
    (victims are the heap's own pages) and one where an idle neighbour enclave fills the EPC
    (victims do not contend for the ioctl's encl->lock)."""
    from epcsim.demo import SeedConfig
    from epcsim.engine.costs import Costs

    eldu = Costs().eldu
    out = []
    for layout, shape in FLIP_LAYOUTS.items():
        for c in FLIP_CPUS:
            for ratio in FLIP_RATIOS:
                hf = heap_factor if layout == "same enclave" else shape["heap_factor"]
                cfg = SeedConfig(
                    epc=epc,
                    heap_factor=hf,
                    cpus=c,
                    seed=seed,
                    direct_reclaim=False,
                    stop_after_first_call=True,
                    neighbour_factor=shape["neighbour_factor"],
                    costs={"ewb": int(eldu * ratio)},
                    engine=engine,
                    nopage_flood=nopage_flood,
                )
                out.append((layout, ratio, c, cfg))
    return out


def _register_commands() -> None:
    """Commands that live in their own modules (they import helpers from this one):
    ``run``, ``replay``, ``cliff`` (``epcsim.cli_scenario``), ``sweep``
    (``epcsim.cli_sweep``), ``compare`` (``epcsim.cli_compare``) and ``warm``
    (``epcsim.cli_warm``)."""
    from epcsim.cli_compare import compare
    from epcsim.cli_scenario import cliff, replay, run
    from epcsim.cli_sweep import sweep
    from epcsim.cli_warm import warm

    app.command("run")(run)
    app.command("replay")(replay)
    app.command("cliff")(cliff)
    app.command("sweep")(sweep)
    app.command("compare")(compare)
    app.command("warm")(warm)


_register_commands()


def main() -> None:
    """The console script: ``EpcsimGroup.main`` maps every outcome to an exit code; a Ctrl-C
    that arrives before the command starts (while importing) is caught here."""
    try:
        app(prog_name="epcsim")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
