"""Sweeps survive being killed (issue 10, item 2): SIGKILL or Ctrl-C in the middle, then a
rerun: no lost, duplicated or half-written rows, and only the missing points run. A changed
scenario file is detected, duplicate grid points run once, tables sort sizes by value."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from epcsim.cli import app
from epcsim.sweep import ResultsDb, load_sweep, run_sweep

SCENARIO = """
name = "scan"
seed = 1
[machine]
epc = "512K"
cpus = 1
[[enclave]]
name = "scanner"
[[enclave.region]]
name = "heap"
size = "1M"
[[enclave.thread]]
name = "scan"
repeat = 2
[[enclave.thread.step]]
op = "access"
pattern = "sequential"
"""
EIGHT = '[grid]\n"machine.epc" = ["256K", "512K", "768K", "2M"]\n"costs.eldu" = [20000, 30000]\n'


def write_sweep(tmp_path: Path, grid: str = EIGHT, scenario: str = SCENARIO) -> Path:
    (tmp_path / "base.toml").write_text(scenario)
    p = tmp_path / "s.toml"
    p.write_text('scenario = "base.toml"\n' + grid)
    return p


def rows_in(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT key, stats, derived, finished_at FROM runs").fetchall()


def _interactive_sigint() -> None:
    """In the child, before exec: SIGINT at its default, as in a terminal where a user can
    press Ctrl-C. A test run started in the background by a non-interactive shell
    (``make test &``) has SIGINT ignored, every child inherits that, and Python then keeps
    it ignored: the sweep never sees the Ctrl-C this test sends and exits 0.

    The child also runs at the lowest priority (nice 19): on a loaded machine the test's
    poller, waiting for a CPU, once saw the whole sweep finish before its Ctrl-C (session
    ``ioctlcore``, load 5+, 2026-11-26). Niced, the sweep yields the CPU to the poller
    whenever both are runnable, so the signal lands within the sweep's long last point."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.nice(19)


def _start(sweep: Path, db: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "epcsim", "sweep", str(sweep), "--scheduler", "inline"]
    return subprocess.Popen(
        [*cmd, "--db", str(db), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interactive_sigint,
    )


def _wait_for_rows(proc: subprocess.Popen, db: Path, n: int, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT count(*) FROM runs").fetchone()[0] >= n:
                        return
            except sqlite3.OperationalError:  # the table is being created
                pass
        time.sleep(0.05)
    raise AssertionError("no rows appeared")


def _rerun_and_check(tmp_path: Path, sweep: Path, db: Path, before: list[tuple]) -> None:
    total = len(load_sweep(sweep).points)
    keys = {r[0] for r in before}
    assert len(keys) == len(before)  # no duplicates
    for _, stats, derived, _ in before:  # whole rows only
        assert json.loads(stats)["simulated_ns"] > 0 and "run_ns" in json.loads(derived)
    r = CliRunner().invoke(
        app, ["sweep", str(sweep), "--scheduler", "inline", "--db", str(db), "--json"]
    )
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["skipped"] == len(before) and out["ran"] == total - len(before)
    after = rows_in(db)
    assert len(after) == total == len({r[0] for r in after})
    kept = {r[0]: r for r in after}
    for row in before:  # the finished rows were not run again
        assert kept[row[0]] == row


def test_sigkill_in_the_middle_then_rerun_runs_only_the_missing_points(tmp_path):
    sweep, db = write_sweep(tmp_path), tmp_path / "r.sqlite"
    proc = _start(sweep, db)
    try:
        _wait_for_rows(proc, db, 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = rows_in(db)
    assert 2 <= len(before) < 8
    _rerun_and_check(tmp_path, sweep, db, before)


#: Three short points, then one ~40x longer, so Ctrl-C sent after the first row lands before
#: the sweep ends even when the test process waits for a CPU on a loaded machine.
LAST_ONE_LONG = '[grid]\n"enclave.0.thread.0.repeat" = [1, 2, 3, 80]\n'


def test_ctrl_c_exits_130_with_one_line_and_keeps_finished_rows(tmp_path):
    sweep, db = write_sweep(tmp_path, LAST_ONE_LONG), tmp_path / "r.sqlite"
    proc = _start(sweep, db)
    try:
        _wait_for_rows(proc, db, 1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert [ln for ln in stderr.splitlines() if ln.strip()] == ["interrupted"], stderr
    before = rows_in(db)
    assert 1 <= len(before) < 4, (len(before), stderr)
    _rerun_and_check(tmp_path, sweep, db, before)


def test_a_changed_scenario_file_is_detected_not_mixed(tmp_path):
    sweep = write_sweep(tmp_path, '[grid]\n"machine.epc" = ["256K", "2M"]\n')
    db = tmp_path / "r.sqlite"
    args = ["sweep", str(sweep), "--scheduler", "inline", "--db", str(db), "--json"]
    first = json.loads(CliRunner().invoke(app, args).stdout)
    assert first["ran"] == 2 and first["stale"] == 0
    # the same scenario with another cost: every point is a new run
    (tmp_path / "base.toml").write_text(SCENARIO + "[costs]\newb = 40000\n")
    second = json.loads(CliRunner().invoke(app, args).stdout)
    assert second["ran"] == 2 and second["skipped"] == 0 and second["stale"] == 2
    assert {r["key"] for r in second["runs"]}.isdisjoint(r["key"] for r in first["runs"])
    # a comment changes the text, not the runs: still a different file version
    (tmp_path / "base.toml").write_text(SCENARIO + "# a comment\n")
    third = json.loads(CliRunner().invoke(app, args).stdout)
    assert third["ran"] == 2 and third["stale"] == 4
    r = CliRunner().invoke(app, args[:-1])
    assert r.exit_code == 0 and "earlier version" in " ".join(r.stderr.split())


def test_duplicate_points_run_once_and_tables_sort_sizes_by_value(tmp_path):
    grid = 'seeds = [3, 3]\n[grid]\n"machine.epc" = ["16M", "4M", 4194304, "2M", "16M"]\n'
    sweep = write_sweep(tmp_path, grid)
    sw = load_sweep(sweep)
    assert len(sw.points) == 3  # 16M, 4M (= 4194304), 2M; seed 3 once
    db = ResultsDb(tmp_path / "r.sqlite")
    assert run_sweep(sw, db, scheduler="inline") == {"ran": 3, "skipped": 0, "total": 3}
    db.close()
    args = ["sweep", str(sweep), "--scheduler", "inline", "--db", str(tmp_path / "r.sqlite")]
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert [r["params"]["machine.epc"] for r in data["runs"]] == ["2M", "4M", "16M"]
    table = CliRunner().invoke(app, args).stdout
    assert table.index(" 2M ") < table.index(" 4M ") < table.index(" 16M ")
