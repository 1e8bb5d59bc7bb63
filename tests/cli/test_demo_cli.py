"""``epcsim demo`` as a user runs it: table or JSON, the report, exit codes."""

import json
import subprocess
import sys

EPCSIM = [sys.executable, "-m", "epcsim.cli"]


def test_demo_json_and_report(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [*EPCSIM, "demo", "--json", "--epc", "2M", "--flip-epc", "1M", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)  # stdout is one JSON object and nothing else
    runs = {r["direct_reclaim"]: r for r in data["runs"]}
    keys = {
        "direct_reclaim",
        "length_pages",
        "first_call_count_pages",
        "first_call_errno",
        "eagain_returns",
        "calls_to_complete",
        "simulated_ns",
        "ewb",
        "eldu",
        "ksgxd_wakeups",
        "direct_reclaim_calls",
    }
    assert keys <= set(runs[True]) and keys <= set(runs[False])
    assert runs[False]["first_call_errno"] == "EAGAIN"
    assert runs[True]["first_call_count_pages"] == runs[True]["length_pages"]
    assert {f["cpus"] for f in data["flip"]} == {1, 2, 4}
    assert {f["layout"] for f in data["flip"]} == {"same enclave", "idle neighbour"}
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 3 and "Where does the race flip?" in html
    assert "http://" not in html and "https://" not in html  # opens offline
    # all but the first seed run ran in worker processes: the same as running them here
    from epcsim.demo import demo_configs, run_seed

    here = [run_seed(c).summary() for c in demo_configs("2M", 2.0, 4, 0)]
    assert data["runs"] == json.loads(json.dumps(here, default=str))


def test_demo_bad_input_exits_2_naming_the_option(tmp_path):
    # in-process: the exit code and the message are the CLI's; the real process is
    # test_demo_json_and_report's (one per command, tests/README.md)
    from typer.testing import CliRunner

    from epcsim.cli import app

    r = CliRunner().invoke(app, ["demo", "--epc", "lots", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "epc:" in r.stderr
