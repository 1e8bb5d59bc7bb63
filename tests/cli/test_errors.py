"""The CLI never shows a traceback for a user's mistake (issue 10, item 3).

Exit codes: 0 ok, 1 the run failed its checks, 2 bad input (one line naming the file, key
or option and the reason), 3 internal error (one line naming the traceback file), 130
interrupted. Every case here runs in-process with typer's ``CliRunner`` (stderr is not a
terminal there, so these also check that lines are not wrapped) unless it needs a real
process.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from epcsim.cli import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "zipf_fits.toml"
BASE = EXAMPLE.read_text()


def invoke(args, **kw):
    return CliRunner().invoke(app, [str(a) for a in args], **kw)


def one_line_error(r, code: int = 2) -> str:
    """The result exited ``code`` with exactly one non-empty stderr line and no traceback."""
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert lines[0].startswith("error: ")
    return lines[0]


def scenario(tmp_path, old: str, new: str) -> Path:
    assert old in BASE
    p = tmp_path / "s.toml"
    p.write_text(BASE.replace(old, new, 1))
    return p


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("alpha = 1.1", "alpha = nan", "step[0].alpha", "finite"),
        ("alpha = 1.1", "alpha = inf", "step[0].alpha", "finite"),
        ("eldu = { max = 0 }", "eldu = { max = nan }", "expect.eldu.max", "finite"),
        ("eldu = { max = 0 }", "eldu = { min = -inf }", "expect.eldu.min", "finite"),
        ("seed = 7", "seed = -1", "seed", "greater than or equal to 0"),
        ("seed = 7", "seed = 9223372036854775808", "seed", "less than or equal"),
        ('epc = "16M"', 'epc = "99999999999999999999999999999999999T"', "machine.epc", "at most"),
        ('epc = "16M"', "epc = 99999999999999999999999999999", "machine.epc", "at most"),
        ('epc = "16M"', 'epc = "4K"', "machine.epc", "ECREATE"),
        ("seed = 7", 'seed = 7\nduration = "999999999999999999999999s"', "duration", "at most"),
        ("seed = 7", "seed = 7\nduration = 1e300", "duration", "at most"),
        ("seed = 7", "seed = 7\nduration = nan", "duration", "finite"),
        ("cpus = 2", "cpus = 100000", "machine.cpus", "1024"),
        ('size = "8M"', 'size = "900T"', "enclave[0].region", "host memory"),
    ],
)
def test_bad_numbers_exit_2_naming_file_and_key(tmp_path, old, new, key, words):
    p = scenario(tmp_path, old, new)
    line = one_line_error(invoke(["run", p, "--json"]))
    assert str(p) in line and key in line and words in line


def test_a_nan_expect_bound_never_passes_silently(tmp_path):
    # before: a NaN bound compared false both ways, so the check could never fail
    p = scenario(tmp_path, "eldu = { max = 0 }", "eldu = { max = nan }")
    assert invoke(["run", p]).exit_code == 2


def test_state_too_large_for_this_host_is_refused_before_allocating(tmp_path):
    p = scenario(tmp_path, 'epc = "16M"', 'epc = "64G"')
    # a limit that a 64 GiB EPC (16.7M pages) exceeds and the normal example does not
    env = {"EPCSIM_MEMORY_LIMIT": "256M"}
    line = one_line_error(invoke(["run", p], env=env))
    assert "machine.epc" in line and "iB of host memory" in line and "256.0 MiB" in line
    assert invoke(["run", EXAMPLE, "--json"], env=env).exit_code == 0


def test_replay_refuses_huge_page_index_and_enclave_size(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("time,enclave,page,op\n0,a,60000000,r\n1,a,2,w\n")
    line = one_line_error(invoke(["replay", csv, "--epc", "1M"], env={"EPCSIM_MEMORY_LIMIT": "1G"}))
    assert str(csv) in line and "page index" in line and "host memory" in line
    og = tmp_path / "x.oracleGeneral.bin"
    og.write_bytes(b"\0" * 24)
    line = one_line_error(
        invoke(["replay", og, "--epc", "1M", "--map", "hash", "--enclave-size", "900T"])
    )
    assert "--enclave-size" in line and "host memory" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--epc", "4K"], "--epc: at least 2 pages"),
        (["--epc", "1M", "--cpus", "0"], "--cpus"),
        (["--epc", "1M", "--cpus", "99999"], "--cpus"),
        (["--epc", "1M", "--seed", "-5"], "--seed"),
        (["--epc", "1M", "--limit", "0"], "--limit"),
        (["--epc", "1M,,2M"], "--epc: an empty item"),
        (["--epc", "1M", "--policy", "lru,lfu"], "--policy: unknown 'lfu'"),
        (["--epc", "1M", "--bogus"], "No such option: --bogus"),
    ],
)
def test_replay_bad_options(tmp_path, args, words):
    csv = tmp_path / "t.csv"
    csv.write_text("0,a,1,r\n")
    line = one_line_error(invoke(["replay", csv, *args]))
    assert words in line


def test_non_utf8_files(tmp_path):
    p = tmp_path / "s.toml"
    p.write_bytes(b'name = "\xff\xfe"\n')
    line = one_line_error(invoke(["run", p]))
    assert str(p) in line and "not UTF-8" in line and "0xff" in line
    csv = tmp_path / "t.csv"
    csv.write_bytes(b"0,\xff\xfe,1,r\n")
    line = one_line_error(invoke(["replay", csv, "--epc", "1M"]))
    assert str(csv) in line and "utf-8" in line.lower()
    sw = tmp_path / "sw.toml"
    sw.write_bytes(b"scenario = '\xff'\n")
    line = one_line_error(invoke(["sweep", sw, "--scheduler", "inline"]))
    assert str(sw) in line and "UTF-8" in line


def test_directory_and_missing_file(tmp_path):
    assert "is a directory" in one_line_error(invoke(["run", tmp_path]))
    assert "cannot read" in one_line_error(invoke(["run", tmp_path / "nope.toml"]))


@pytest.mark.parametrize("where", ["epc", "name", "pattern", "key"])
def test_very_long_bad_values_give_a_short_line(tmp_path, where):
    long = "N" * 40_000
    if where == "epc":
        p = scenario(tmp_path, 'epc = "16M"', f'epc = "{long}"')
    elif where == "pattern":
        p = scenario(tmp_path, 'pattern = "zipf"', f'pattern = "{long}"')
    elif where == "key":
        p = scenario(tmp_path, "[machine]", f"[machine]\n{long} = 1")
    else:  # the same long name twice
        p = tmp_path / "s.toml"
        p.write_text(
            BASE.replace('name = "kv"', f'name = "{long}"')
            + f'\n[[enclave]]\nname = "{long}"\n[[enclave.region]]\nname = "h"\nsize = "4K"\n'
        )
    line = one_line_error(invoke(["run", p]))
    assert len(line) <= 420 and str(p) in line


def test_long_messages_are_not_wrapped_when_stderr_is_not_a_terminal(tmp_path):
    p = tmp_path / ("a-rather-long-directory-name-" * 3) / "scenario.toml"
    p.parent.mkdir()
    p.write_text(BASE.replace("alpha = 1.1", "alpha = -1"))
    line = one_line_error(invoke(["run", p]))
    assert len(line) > 120  # longer than any terminal default, still one line


def test_unwritable_or_invalid_outputs_are_refused_before_running(tmp_path, monkeypatch):
    import epcsim.scenario.runner as runner

    def boom(*a, **k):  # the simulation must not start
        raise AssertionError("simulated although an output was invalid")

    monkeypatch.setattr(runner, "run_plan", boom)
    afile = tmp_path / "file"
    afile.write_text("x")
    assert "not a directory" in one_line_error(invoke(["run", EXAMPLE, "--out", afile]))
    line = one_line_error(invoke(["run", EXAMPLE, "--out", afile / "sub"]))
    assert "--out: cannot write" in line
    line = one_line_error(invoke(["run", EXAMPLE, "--timeline-csv", tmp_path]))
    assert "--timeline-csv" in line and "directory" in line
    line = one_line_error(invoke(["run", EXAMPLE, "--timeline-csv", afile / "t.csv"]))
    assert "--timeline-csv: cannot write" in line
    line = one_line_error(invoke(["cliff", EXAMPLE, "--out", afile]))
    assert "--out" in line
    line = one_line_error(invoke(["demo", "--out", afile]))
    assert "--out" in line


def test_sweep_db_and_scheduler_are_checked_before_running(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    sw = tmp_path / "sw.toml"
    sw.write_text('scenario = "base.toml"\n[grid]\n"machine.cpus" = [1, 2]\n')
    notdb = tmp_path / "notdb.sqlite"
    notdb.write_text("this is not a database " * 100)
    line = one_line_error(invoke(["sweep", sw, "--db", notdb, "--scheduler", "inline"]))
    assert "--db" in line and str(notdb) in line
    line = one_line_error(invoke(["sweep", sw, "--db", tmp_path, "--scheduler", "inline"]))
    assert "--db" in line and "directory" in line
    line = one_line_error(invoke(["sweep", sw, "--db", tmp_path / "no" / "such" / "dir.sqlite"]))
    assert "--db" in line
    line = one_line_error(invoke(["sweep", sw, "--scheduler", "not an address"]))
    assert "--scheduler" in line
    line = one_line_error(invoke(["sweep", sw, "--scheduler", "inline", "--workers", "0"]))
    assert "--workers" in line
    assert not (tmp_path / "sw.sqlite").exists()  # nothing ran, nothing was written


def test_sweep_refuses_negative_seeds(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    sw = tmp_path / "sw.toml"
    sw.write_text('scenario = "base.toml"\nseeds = [1, -1]\n[grid]\n"machine.cpus" = [1]\n')
    assert "seeds" in one_line_error(invoke(["sweep", sw, "--scheduler", "inline"]))


def test_internal_error_exits_3_with_the_traceback_in_a_file(monkeypatch):
    import epcsim.scenario.runner as runner

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runner, "run_plan", broken)
    r = invoke(["run", EXAMPLE])
    line = one_line_error(r, 3)
    assert "internal error" in line and "ZeroDivisionError: a bug" in line
    where = re.search(r"traceback in (\S+)$", line).group(1)
    text = Path(where).read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text
    Path(where).unlink()
    r = invoke(["--debug", "run", EXAMPLE])
    assert r.exit_code == 3 and "Traceback" in r.stderr


def test_ctrl_c_exits_130_with_one_line(monkeypatch):
    import epcsim.scenario.runner as runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_plan", interrupted)
    r = invoke(["run", EXAMPLE])
    assert r.exit_code == 130
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == ["interrupted"]


def test_a_run_that_fails_its_checks_exits_1(tmp_path):
    p = scenario(tmp_path, "eldu = { max = 0 }", "eldu = { min = 1 }")
    r = invoke(["run", p])
    assert r.exit_code == 1 and "check failed: expect.eldu" in r.stdout


def test_a_scheduler_that_does_not_answer_is_refused_before_running(tmp_path, monkeypatch):
    import socket

    import epcsim.cli_sweep as cli_sweep

    monkeypatch.setattr(cli_sweep, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "base.toml").write_text(BASE)
    sw = tmp_path / "sw.toml"
    sw.write_text('scenario = "base.toml"\n[grid]\n"machine.cpus" = [1]\n')
    r = invoke(["sweep", sw, "--scheduler", f"tcp://127.0.0.1:{port}", "--db", tmp_path / "d.db"])
    line = one_line_error(r)
    assert "--scheduler: no Dask scheduler answers" in line
    with sqlite3.connect(tmp_path / "d.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
