"""Every ``epcsim`` command the README shows parses: its command, options and arguments
exist (issue 10, item 4: a new user can type them after ``make demo``). The commands on the
repository's example files also run, elsewhere (``test_scenario_cli.py``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from epcsim.cli import app

README = Path(__file__).parents[2] / "README.md"


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0]
            for part in line.split(";"):
                words = shlex.split(part.split(">", 1)[0])
                if words and words[0] == "epcsim":
                    out.append(words[1:])
    return out


def test_the_readme_shows_every_command():
    names = {c[0] for c in readme_commands()}
    assert {"run", "cliff", "replay", "compare"} <= names


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_parses(args):
    group = get_command(app)
    ctx = group.make_context("epcsim", list(args))
    cmd = group.get_command(ctx, args[0])
    assert cmd is not None, f"no command {args[0]!r}"
    cmd.make_context(args[0], list(args[1:]), parent=ctx)  # a UsageError on a bad option
