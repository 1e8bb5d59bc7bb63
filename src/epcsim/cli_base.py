"""What every ``epcsim`` command shares: exit codes, one-line errors, early output checks.

Exit codes (README, "Exit codes"):

* 0 - the run passed its checks;
* 1 - the run completed but failed its checks (a thread stopped, an ``[expect]`` bound);
* 2 - bad input: one line ``error: FILE: key: reason`` (or ``--option: reason``) on stderr,
  nothing simulated;
* 3 - internal error (a bug in epcsim): one line on stderr naming where the traceback was
  written; ``epcsim --debug ...`` (or ``EPCSIM_DEBUG=1``) also prints it;
* 130 - interrupted (Ctrl-C): one line; finished sweep rows are already in the database.

Every error is printed as a single line that is never wrapped (a log or a CI job reads it
whole, and ``grep`` finds it), with overlong values clipped in the middle: a user who
pastes a 40,000-character value gets a short line back, in linear time.

The app's group class (``EpcsimGroup``) turns exceptions into these codes, so the mapping
holds in ``typer.testing.CliRunner`` as well as on the command line.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.text import Text
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

EXIT_OK, EXIT_CHECKS, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: longest error line printed; longer messages are clipped in the middle
MAX_MESSAGE = 400

err = Console(stderr=True)
#: set by ``epcsim --debug`` (or ``EPCSIM_DEBUG=1``): print internal tracebacks too
DEBUG = {"on": False}


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, the middle replaced by ``...`` (linear time)."""
    text = " ".join(str(text).split()) if len(text) <= 4 * limit else _one_line(text, limit)
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head - 5
    return f"{text[:head]} ... {text[-tail:]}"


def _one_line(text: str, limit: int) -> str:
    # a huge message: keep its ends only, then flatten whitespace of what is kept
    head = " ".join(text[: 2 * limit].split())
    tail = " ".join(text[-2 * limit :].split())
    return f"{head} ... {tail}"


def say(message: str, style: str = "") -> None:
    """One line on stderr, never wrapped (also when stderr is a file or a pipe)."""
    err.print(Text(clip(message), style=style), soft_wrap=True, highlight=False)


def error_line(message: str) -> None:
    err.print(
        Text.assemble(("error: ", "bold red"), clip(message)), soft_wrap=True, highlight=False
    )


def fail_input(message: str) -> NoReturn:
    """Bad input: print ``error: message`` and exit 2."""
    error_line(message)
    raise typer.Exit(EXIT_INPUT)


def check_out_dir(out: Path | None, option: str = "--out") -> None:
    """Fail (exit 2) unless ``out`` is a directory this user can create and write in; checked
    before any simulation so that no work is lost to a bad path."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        fail_input(f"{option}: {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".epcsim-check-"):
            pass
    except OSError as e:
        fail_input(f"{option}: cannot write in {p}: {e.strerror or e}")


def check_out_file(path: Path | None, option: str) -> None:
    """Fail (exit 2) unless a file can be written at ``path`` (parent created if needed).
    An existing file is left as it is (it is replaced only when the run has finished)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        fail_input(f"{option}: {p} is a directory, expected a file path")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            if not os.access(p, os.W_OK):
                fail_input(f"{option}: {p} is not writable")
        else:
            with tempfile.NamedTemporaryFile(dir=p.parent, prefix=".epcsim-check-"):
                pass
    except OSError as e:
        fail_input(f"{option}: cannot write {p}: {e.strerror or e}")


def _write_traceback() -> str | None:
    """The current exception's traceback in a file of the temp directory; its path."""
    try:
        fd, name = tempfile.mkstemp(prefix="epcsim-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"epcsim {_version()} {' '.join(sys.argv)}\n")
            traceback.print_exc(file=f)
        return name
    except OSError:
        return None


def _version() -> str:
    from epcsim import __version__

    return __version__


def internal_error(exc: BaseException) -> NoReturn:
    """An exception that is not the user's mistake: exit 3 with one line."""
    where = _write_traceback()
    kind = type(exc).__name__
    if isinstance(exc, MemoryError):
        msg = "out of memory on this host (the input's estimated size was not enough)"
    else:
        msg = f"{kind}: {exc}"
    tail = f"traceback in {where}" if where else "no traceback file could be written"
    error_line(f"internal error (a bug in epcsim): {clip(msg, 200)}; {tail}")
    if DEBUG["on"] or os.environ.get("EPCSIM_DEBUG"):
        traceback.print_exc()
    raise typer.Exit(EXIT_INTERNAL)


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class EpcsimGroup(TyperGroup):
    """The ``epcsim`` command group: usage errors as one line (exit 2), Ctrl-C as exit 130,
    any other exception as an internal error (exit 3)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_exc.ClickException):
            raise
        except KeyboardInterrupt:
            say("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # the reader went away (``epcsim run -h | head``): nothing more to say to it
            _drop_stdout()
            raise typer.Exit(EXIT_OK) from None
        except Exception as e:  # MemoryError is an Exception too
            internal_error(e)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kw: Any,
    ) -> Any:
        try:
            rv = super().main(
                args, prog_name or "epcsim", complete_var, False, windows_expand_args, **kw
            )
        except click_exc.ClickException as e:
            # usage errors (unknown option, missing argument ...): one line, exit 2; bare
            # ``epcsim`` printed the help already (NoArgsIsHelpError): nothing to add
            if type(e).__name__ == "NoArgsIsHelpError":
                rv = EXIT_OK
                return rv if not standalone_mode else sys.exit(rv)
            ctx = getattr(e, "ctx", None)  # UsageError carries the command's context
            cmd = ctx.command_path if isinstance(ctx, click.Context) else "epcsim"
            error_line(f"{cmd}: {e.format_message()} (see {cmd} --help)")
            rv = e.exit_code if e.exit_code else EXIT_INPUT
        except typer.Abort:
            say("interrupted")
            rv = EXIT_INTERRUPTED
        code = rv if isinstance(rv, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


# -- the engine options (run, replay, cliff, demo) -----------------------------------------------
ENGINES = ("fast", "reference")
NOPAGE_FLOODS = ("simulate", "bulk")

EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="fast (the default: exact, epcsim.fast) or reference (the SimPy model it is "
        "checked against); overrides [machine] engine.",
    ),
]
NopageFloodOpt = Annotated[
    str | None,
    typer.Option(
        "--nopage-flood",
        help="simulate (the default: every VM_FAULT_NOPAGE retry) or bulk (charged in bulk: "
        "fast engine only, a named deviation); overrides [machine] nopage_flood.",
    ),
]


def engine_choice(
    engine: str | None,
    nopage_flood: str | None,
    defaults: tuple[str, str] = ("fast", "simulate"),
    source: str = "",
) -> tuple[str, str]:
    """``(engine, nopage_flood)`` for a run: the options where given, else ``defaults`` (a
    scenario's ``[machine]`` values). Bad input exits 2 naming the option: an unknown value,
    or ``bulk`` with the reference engine (``System`` refuses that pair: the reference
    simulates every retry). ``source`` (a scenario file) prefixes a message about its keys."""
    if engine is not None and engine not in ENGINES:
        fail_input(f"--engine: one of {', '.join(ENGINES)}, got {clip(repr(engine), 60)}")
    if nopage_flood is not None and nopage_flood not in NOPAGE_FLOODS:
        fail_input(
            f"--nopage-flood: one of {', '.join(NOPAGE_FLOODS)}, got {clip(repr(nopage_flood), 60)}"
        )
    e = engine if engine is not None else defaults[0]
    f = nopage_flood if nopage_flood is not None else defaults[1]
    if f == "bulk" and e != "fast":
        if nopage_flood is not None:
            where = "--engine reference" if engine is not None else f"{source}: engine = {e!r}"
            fail_input(f"--nopage-flood: bulk needs the fast engine ({where.lstrip(': ')})")
        fail_input(
            f"--engine: {e} cannot take {source + ': ' if source else ''}nopage_flood = "
            f"'bulk' (fast engine only); add --nopage-flood simulate"
        )
    return e, f
