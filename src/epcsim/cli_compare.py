"""``epcsim compare A.json B.json``: two runs side by side, with the ratio B / A.

The inputs are ``--json`` outputs of ``epcsim run`` or ``epcsim replay`` (one run each, the
layout of ``docs/json-schema.md``). The table lists the derived figures (run time, faults
per access, slowdown ...) and then every counter that is non-zero in either run; the ratio
column is B divided by A ("-" when A is zero). Typical use: the same scenario with and
without a kernel change, or at two EPC sizes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from epcsim.cli_base import EXIT_OK, fail_input
from epcsim.units import fmt_value


def load_run(path: Path) -> dict[str, Any]:
    """A run's ``--json`` object; exits 2 naming the file when it is not one."""
    from epcsim.cli import SCHEMA_VERSION

    try:
        raw = path.read_bytes()
    except OSError as e:
        fail_input(f"{path}: cannot read the file: {e.strerror or e}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fail_input(f"{path}: not UTF-8 text (expected the output of epcsim run --json)")
    except json.JSONDecodeError as e:
        fail_input(f"{path}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})")
    if not isinstance(data, dict) or not {"counters", "derived"} <= set(data):
        fail_input(
            f"{path}: not the output of epcsim run --json or epcsim replay --json"
            " (no counters and derived figures)"
        )
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        fail_input(
            f"{path}: schema_version {str(version)[:20]} is newer than this epcsim reads"
            f" ({SCHEMA_VERSION})"
        )
    return data


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    return {
        k: v
        for k, v in d.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{name, a, b, ratio}``: derived figures (in the layout's order), then the
    counters that are non-zero in either run (alphabetical)."""
    rows = []
    da, db = _numbers(a["derived"]), _numbers(b["derived"])
    for k in dict.fromkeys([*a["derived"], *b["derived"]]):
        if k in da or k in db:
            rows.append(
                {"name": k, "a": da.get(k), "b": db.get(k), "ratio": ratio(da.get(k), db.get(k))}
            )
    ca, cb = _numbers(a["counters"]), _numbers(b["counters"])
    for k in sorted(set(ca) | set(cb)):
        if ca.get(k) or cb.get(k):
            rows.append(
                {"name": k, "a": ca.get(k), "b": cb.get(k), "ratio": ratio(ca.get(k), cb.get(k))}
            )
    return rows


def compare(
    a: Annotated[Path, typer.Argument(help="The first run's --json output (A).")],
    b: Annotated[Path, typer.Argument(help="The second run's --json output (B).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object and nothing else.")
    ] = False,
) -> None:
    """Two runs side by side (from epcsim run/replay --json), with the ratio B / A."""
    from epcsim.cli import dump_json

    ra, rb = load_run(a), load_run(b)
    rows = compare_rows(ra, rb)
    if json_out:
        dump_json({"a": str(a), "b": str(b), "rows": rows})
        raise typer.Exit(EXIT_OK)
    t = Table(title=f"A = {ra.get('title', a.name)}  vs  B = {rb.get('title', b.name)}")
    t.add_column("")
    t.add_column(f"A ({a.name})", justify="right")
    t.add_column(f"B ({b.name})", justify="right")
    t.add_column("B / A", justify="right")
    for r in rows:
        q = r["ratio"]
        t.add_row(r["name"], fmt_value(r["a"]), fmt_value(r["b"]), "-" if q is None else f"{q:.3f}")
    Console().print(t)
    raise typer.Exit(EXIT_OK)
