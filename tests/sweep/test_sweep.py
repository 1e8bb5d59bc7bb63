"""``epcsim sweep``: grid expansion, validation, SQLite results, resume after interruption."""

import json
import sqlite3
import subprocess
import sys

import pytest

from epcsim.scenario.semantics import ScenarioError
from epcsim.sweep import ResultsDb, load_sweep, run_sweep

SCENARIO = """
name = "scan"
seed = 1
[machine]
epc = "4M"
cpus = 2
[[enclave]]
name = "scanner"
[[enclave.region]]
name = "heap"
size = "8M"
perm = "rw"
[[enclave.thread]]
name = "scan"
repeat = 2
[[enclave.thread.step]]
op = "access"
region = "heap"
pattern = "sequential"
"""


def write_sweep(tmp_path, body):
    (tmp_path / "base.toml").write_text(SCENARIO)
    p = tmp_path / "s.toml"
    p.write_text('scenario = "base.toml"\n' + body)
    return p


def test_grid_expands_and_keys_are_stable(tmp_path):
    p = write_sweep(
        tmp_path, 'seeds = [0, 1]\n[grid]\n"machine.epc" = ["8M", "32M"]\n"machine.cpus" = [1, 2]\n'
    )
    sw = load_sweep(p)
    assert len(sw.points) == 2 * 2 * 2
    assert len({pt.key for pt in sw.points}) == 8
    assert [pt.key for pt in load_sweep(p).points] == [pt.key for pt in sw.points]
    assert {pt.params["machine.epc"] for pt in sw.points} == {"8M", "32M"}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[grid]\n"machine.epc" = ["lots"]\n', "machine.epc"),
        ('[grid]\n"machine.cpus" = []\n', "grid.machine.cpus"),
        ('[grid]\n"machine.wheels" = [4]\n', "machine.wheels"),
        ('seeds = ["a"]\n[grid]\n"machine.cpus" = [1]\n', "seeds"),
        ('colour = 1\n[grid]\n"machine.cpus" = [1]\n', "colour"),
    ],
)
def test_bad_sweeps_name_file_and_key(tmp_path, body, key):
    p = write_sweep(tmp_path, body)
    with pytest.raises(ScenarioError) as exc:
        load_sweep(p)
    assert str(p) in str(exc.value) and key in str(exc.value)


def test_results_go_to_sqlite_and_a_rerun_resumes(tmp_path):
    p = write_sweep(tmp_path, '[grid]\n"machine.epc" = ["8M", "32M"]\n"machine.cpus" = [2]\n')
    sw = load_sweep(p)
    db = ResultsDb(tmp_path / "r.sqlite")
    # interrupted after the first run: it is already durable
    sw_first = load_sweep(p)
    sw_first.points = sw_first.points[:1]
    assert run_sweep(sw_first, db, scheduler="inline")["ran"] == 1
    out = run_sweep(sw, db, scheduler="inline")
    assert out == {"ran": 1, "skipped": 1, "total": 2}
    rows = {r["params"]["machine.epc"]: r for r in db.rows()}
    # the 8M heap fits a 32M EPC: no page is loaded back; in 8M (with SECS and VA) it pages
    assert rows["32M"]["stats"]["eldu"] == 0 < rows["8M"]["stats"]["eldu"]
    assert run_sweep(sw, db, scheduler="inline") == {"ran": 0, "skipped": 2, "total": 2}
    db.close()
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_sweep_command_on_a_local_dask_cluster(tmp_path):
    p = write_sweep(tmp_path, '[grid]\n"machine.cpus" = [1, 2]\n"machine.epc" = ["32M"]\n')
    db = tmp_path / "d.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "epcsim.cli",
        "sweep",
        str(p),
        "--db",
        str(db),
        "--json",
        "--workers",
        "2",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ran"] == 2 and len(data["runs"]) == 2
    # the exit code of a bad file, in-process (the process above is the real one)
    from typer.testing import CliRunner

    from epcsim.cli import app

    bad = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 2 and "missing.toml" in bad.stderr
