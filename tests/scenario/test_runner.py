"""Running scenarios: deterministic per seed, checks decide the exit code, the duration
cuts a run, the sampler never keeps a simulation alive."""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from epcsim.cli import app
from epcsim.scenario import ScenarioError, load_scenario, run_scenario
from epcsim.scenario.plan import compile_scenario
from epcsim.scenario.runner import execute

EPCSIM = [sys.executable, "-c", "from epcsim.cli import main; main()"]
SMALL = """
seed = 4
[machine]
epc = "1M"
cpus = 2
[[enclave]]
name = "a"
[[enclave.region]]
name = "heap"
size = "2M"
[[enclave.thread]]
name = "u"
[[enclave.thread.step]]
op = "access"
pattern = "uniform"
count = 1500
writes = 0.5
[[enclave]]
name = "b"
[[enclave.region]]
name = "heap"
size = "512K"
[[enclave.thread]]
name = "h"
[[enclave.thread.step]]
op = "access"
pattern = "hotcold"
count = 1500
"""


@pytest.fixture
def small(tmp_path):
    p = tmp_path / "small.toml"
    p.write_text(SMALL)
    return p


def _counters(res):
    s = dict(res.stats)
    return s, res.derived, [t.summary() for t in res.threads]


def test_same_seed_same_counters_other_seed_differs(small):
    sc = load_scenario(small)
    a, b = run_scenario(sc, baseline=False), run_scenario(sc, baseline=False)
    assert _counters(a) == _counters(b)
    assert a.samples["t"].tolist() == b.samples["t"].tolist()
    c = run_scenario(sc, seed=99, baseline=False)
    assert c.stats["enclave_accesses"] == a.stats["enclave_accesses"] == 3000
    assert (c.stats["eldu"], c.run_ns) != (a.stats["eldu"], a.run_ns)


def test_the_sampler_does_not_change_the_run(small):
    plan = compile_scenario(load_scenario(small))
    with_s, without = execute(plan, sample=True), execute(plan, sample=False)
    assert with_s.stats == without.stats and with_s.run_ns == without.run_ns
    assert without.samples is None


def test_sampler_series_cover_the_run_and_end_with_it(small):
    res = run_scenario(load_scenario(small), baseline=False)
    s = res.samples
    assert s["t"][0] == res.build_ns and s["t"][-1] == res.build_ns + res.run_ns
    assert set(s["resident"]) == {"a", "b"}
    acc = s["counters"]["enclave_accesses"]
    assert acc[-1] - acc[0] == 3000 and (acc[1:] >= acc[:-1]).all()
    # nothing left to run: the simulation ends with the threads, the sampler with it
    env_time = res.build_ns + res.run_ns
    assert res.stats["simulated_ns"] == env_time


def test_derived_figures_and_slowdown(small):
    res = run_scenario(load_scenario(small))
    d = res.derived
    assert res.ok and d["accesses"] == 3000
    assert d["footprint_pages"] == (1 + 1 + 512) + (1 + 1 + 128)
    assert d["fault_rate"] == d["faults_in_run"] / 3000
    assert d["eldu_in_run"] > 0 and d["slowdown"] > 1.5  # 2 MiB of data on a 1 MiB EPC
    assert d["baseline_run_ns"] < res.run_ns
    assert d["fault_latency_p99_ns"] >= d["fault_latency_p50_ns"] > 0


def test_duration_cuts_the_run(small):
    sc = load_scenario(small)
    full = run_scenario(sc, baseline=False)
    sc.duration = full.run_ns // 3
    cut = run_scenario(sc, baseline=False)
    assert cut.truncated and cut.run_ns == full.run_ns // 3
    assert cut.stats["enclave_accesses"] < 3000
    assert any(not t.finished for t in cut.threads)


def test_expect_bounds_fail_the_run_with_exit_1(small, tmp_path):
    p = tmp_path / "e.toml"
    p.write_text(SMALL + "\n[expect]\neldu = { max = 0 }\nfault_rate = { max = 10 }\n")
    r = CliRunner().invoke(app, ["run", str(p), "--json", "--no-baseline"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert not data["ok"] and len(data["failures"]) == 1
    assert data["failures"][0].startswith("expect.eldu:")


def test_a_thread_stopped_by_an_sgx_pf_fails_the_checks(tmp_path):
    p = tmp_path / "pf.toml"
    p.write_text(
        textwrap.dedent(
            """
            [machine]
            epc = "2M"
            [[enclave]]
            name = "a"
            [[enclave.region]]
            name = "ro"
            size = "64K"
            perm = "r"
            [[enclave.thread]]
            [[enclave.thread.step]]
            op = "access"
            pattern = "sequential"
            writes = 1.0
            """
        )
    )
    r = CliRunner().invoke(app, ["run", str(p)])
    assert r.exit_code == 1
    assert "SGX #PF" in " ".join(r.stdout.split())


def test_json_is_one_object_on_stdout_and_report_on_request(small, tmp_path):
    out = tmp_path / "rep"
    p = subprocess.run(
        [*EPCSIM, "run", str(small), "--json", "--seed", "5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["seed"] == 5 and data["ok"] and data["report"] == str(out / "report.html")
    for key in ("ewb", "eldu", "page_faults", "epc_pages_total", "ksgxd_wakeups"):
        assert key in data["counters"]
    assert data["counters"]["enclaves"]["a"]["resident_pages"] >= 0
    assert {"slowdown", "fault_rate", "eldu_per_access", "run_ns"} <= set(data["derived"])
    assert (out / "report.html").exists()
    assert p.stderr == ""  # no progress bar when not on a terminal


def test_an_enclave_without_threads_just_holds_its_pages(tmp_path):
    p = tmp_path / "idle.toml"
    p.write_text(
        '[machine]\nepc = "2M"\n[[enclave]]\nname = "idle"\n'
        '[[enclave.region]]\nname = "h"\nsize = "1M"\n'
    )
    res = run_scenario(load_scenario(p))
    assert res.ok and not res.truncated and res.run_ns == 0 and res.threads == []
    assert res.stats["enclaves"]["idle"]["resident_pages"] == 256 + 1  # heap + TCS


def test_repeat_until_the_duration_ends(tmp_path):
    text = SMALL.replace('name = "u"', 'name = "u"\nrepeat = 0')
    p = tmp_path / "forever.toml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert e.value.key == "enclave[0].thread[0].repeat" and "duration" in e.value.reason
    p.write_text('duration = "80ms"\n' + text)
    seen = []
    res = run_scenario(load_scenario(p), on_progress=lambda d, t: seen.append((d, t)))
    assert res.truncated and res.run_ns == 80_000_000 and res.ok
    u = next(t for t in res.threads if t.name == "u")
    assert not u.finished and u.accesses > 1500 and u.steps_done > 1
    # the slowdown of a run cut by its duration compares throughputs
    assert res.derived["slowdown"] > 1.5 and res.derived["baseline_run_ns"] == 80_000_000
    assert seen[-1] == (80_000_000, 80_000_000)  # progress in simulated time
