"""Conventions users expect (issue 10, item 6): --version, -h, python -m epcsim, --quiet,
a versioned --json, timelines as CSV, compare, and replay's miss-ratio curve."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from epcsim import __version__
from epcsim.cli import SCHEMA_VERSION, app

EXAMPLE = Path(__file__).parents[2] / "examples" / "zipf_fits.toml"
DOCS = Path(__file__).parents[2] / "docs" / "json-schema.md"


def invoke(args, **kw):
    return CliRunner().invoke(app, [str(a) for a in args], **kw)


def test_version_help_and_python_m():
    r = invoke(["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"epcsim {__version__}"
    r = invoke(["-h"])
    assert r.exit_code == 0 and "replay" in r.stdout and "compare" in r.stdout
    r = invoke(["run", "-h"])
    assert r.exit_code == 0 and "--timeline-csv" in r.stdout
    p = subprocess.run(
        [sys.executable, "-m", "epcsim", "--version"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and p.stdout.strip() == f"epcsim {__version__}"


def test_bare_command_prints_help_and_succeeds():
    r = invoke([])
    assert r.exit_code == 0 and "Usage" in r.stdout and "error" not in r.stderr


def _csv_trace(path: Path, n: int = 2000, pages: int = 500) -> Path:
    rng = np.random.default_rng(3)
    rows = ["time,enclave,page,op"] + [f"{i},web,{rng.integers(0, pages)},r" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_quiet_prints_nothing_and_keeps_the_exit_code(tmp_path):
    r = invoke(["run", EXAMPLE, "--quiet"])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    t = _csv_trace(tmp_path / "t.csv")
    r = invoke(["replay", t, "--epc", "1M", "-q"])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""


def test_json_has_a_documented_schema_version_and_stable_key_order(tmp_path):
    r = invoke(["run", EXAMPLE, "--json"])
    data = json.loads(r.stdout)
    assert data["schema_version"] == SCHEMA_VERSION
    assert list(data) == sorted(data)  # sorted keys: a stable order, diffable
    again = invoke(["run", EXAMPLE, "--json"]).stdout
    assert again == r.stdout  # byte-identical
    doc = DOCS.read_text()
    assert f"schema_version` is {SCHEMA_VERSION}" in doc
    for key in ("derived", "counters", "run_counters", "threads", "ops", "failures", "report"):
        assert f"`{key}`" in doc, key


def test_without_out_the_run_says_where_a_report_can_go(tmp_path):
    r = invoke(["run", EXAMPLE])
    assert r.exit_code == 0 and "add --out DIR" in r.stdout
    t = _csv_trace(tmp_path / "t.csv")
    r = invoke(["replay", t, "--epc", "1M"])
    assert r.exit_code == 0 and "add --out DIR" in r.stdout


def test_timeline_csv(tmp_path):
    t = _csv_trace(tmp_path / "t.csv")
    out = tmp_path / "deep" / "tl.csv"
    r = invoke(["replay", t, "--epc", "1M", "--timeline-csv", out, "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["timeline_csv"] == str(out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"t_ns", "epc_free", "resident:web", "swapped:web", "eldu", "ewb"} <= set(rows[0])
    t_ns = [int(r["t_ns"]) for r in rows]
    assert t_ns == sorted(t_ns) and len(rows) > 10
    assert all(0 <= int(r["epc_free"]) <= 256 for r in rows)
    eldu = [int(r["eldu"]) for r in rows]
    assert eldu == sorted(eldu) and eldu[-1] > 0  # cumulative counters


def test_compare_two_runs(tmp_path):
    t = _csv_trace(tmp_path / "t.csv")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(invoke(["replay", t, "--epc", "1M", "--json"]).stdout)
    b.write_text(invoke(["replay", t, "--epc", "4M", "--json"]).stdout)
    r = invoke(["compare", a, b, "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    rows = {row["name"]: row for row in data["rows"]}
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert rows["epc_pages_total"]["ratio"] == 4.0
    assert rows["run_ns"]["a"] == ra["derived"]["run_ns"]
    assert rows["run_ns"]["ratio"] == rb["derived"]["run_ns"] / ra["derived"]["run_ns"]
    assert rows["eldu"]["b"] == rb["counters"]["eldu"]
    table = invoke(["compare", a, b]).stdout
    assert "B / A" in table and "4.000" in table
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "x"}')
    r = invoke(["compare", a, bad])
    assert r.exit_code == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    bad.write_text("{not json")
    assert invoke(["compare", bad, a]).exit_code == 2


def test_replay_several_sizes_and_policies_draws_the_miss_ratio_curve(tmp_path):
    t = _csv_trace(tmp_path / "t.csv", n=3000, pages=600)
    out = tmp_path / "mrc"
    r = invoke(
        ["replay", t, "--epc", "2M,512K,1M,1M", "--policy", "lru,fifo", "--json", "--out", out]
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    pts = data["points"]
    assert [(p["policy"], p["epc_bytes"] >> 10) for p in pts] == [
        (pol, k) for pol in ("lru", "fifo") for k in (512, 1024, 2048)
    ]  # sizes ascending, a repeated size once
    for pol in ("lru", "fifo"):
        ratios = [p["miss_ratio"] for p in pts if p["policy"] == pol]
        assert ratios == sorted(ratios, reverse=True) and ratios[0] > 0.5
        assert all(p["miss_ratio"] == p["misses"] / p["accesses"] for p in pts)
    html = (out / "report.html").read_text()
    assert "Miss-ratio curve" in html and html.count("data:image/png;base64,") == 1
    r = invoke(["replay", t, "--epc", "1M,2M", "--timeline-csv", tmp_path / "x.csv"])
    assert r.exit_code == 2 and "--timeline-csv" in r.stderr
