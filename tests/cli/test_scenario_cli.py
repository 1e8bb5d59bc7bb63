"""``epcsim run``, ``replay`` and ``cliff`` as a user runs them."""

import base64
import io
import json
import re
import tomllib
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from typer.testing import CliRunner

from epcsim.cli import app
from epcsim.workloads.trace import write_oracle_general

# scenario files (sweep files, with a [grid] over a scenario, are epcsim sweep's)
EXAMPLES = [
    p
    for p in sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))
    if "grid" not in tomllib.loads(p.read_text())
]


def _json(args):
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.stdout)


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"sequential_2x_epc", "zipf_fits", "two_enclaves", "edmm_grow_trim", "cliff"} <= names


_RUNS: dict[str, tuple[int, dict]] = {}


def _example(stem: str) -> tuple[int, dict]:
    """Each example runs once per session; several tests read its result."""
    if stem not in _RUNS:
        _RUNS[stem] = _json(["run", f"examples/{stem}.toml", "--json"])
    return _RUNS[stem]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_runs_and_passes_its_checks(example):
    code, data = _example(example.stem)
    assert code == 0 and data["ok"], data["failures"]
    assert all(t["finished"] and t["error"] is None for t in data["threads"])
    assert data["derived"]["accesses"] > 0
    assert data["derived"]["slowdown"] >= 1.0 - 1e-9
    text = example.read_text()
    assert text.lstrip().startswith("#")  # examples explain themselves


def test_examples_show_the_expected_effects():
    fits, over, seq = (
        _example(n)[1] for n in ("zipf_fits", "zipf_oversubscribed", "sequential_2x_epc")
    )
    assert fits["counters"]["eldu"] == 0 and fits["derived"]["slowdown"] == 1.0
    assert 0 < over["derived"]["eldu_per_access"] < 0.5  # the hot set stays resident
    assert seq["derived"]["eldu_per_access"] > 0.95  # a scan over 2x the EPC misses always
    assert seq["derived"]["slowdown"] > over["derived"]["slowdown"] > 1.5
    edmm = _example("edmm_grow_trim")[1]
    kinds = [o["kind"] for o in edmm["ops"]]
    assert kinds == [
        "eaccept",
        "modify_types",
        "eaccept",
        "remove_pages",
        "restrict_permissions",
        "eaccept",
    ]
    assert all(o["ok"] for o in edmm["ops"])
    two = _example("two_enclaves")[1]
    assert set(two["counters"]["enclaves"]) == {"service", "batch"}
    assert two["counters"]["ewb"] > 0  # together they do not fit


def test_report_has_every_plot_and_the_config(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", "examples/edmm_grow_trim.toml", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"report: {out / 'report.html'}" in " ".join(r.stdout.split())
    html = (out / "report.html").read_text()
    imgs = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    alts = " | ".join(a for a, _ in imgs)
    for words in (
        "Free and used EPC",
        "Per-enclave pages",
        "per simulated ms",
        "page-range operation",
        "fault latencies",
    ):
        assert words in alts
    assert all(len(b) > 2000 for _, b in imgs)
    # every plot decodes as a PNG and has ink (what the browser test checks with chromium,
    # checked here without it: make test does not install chromium, see the Makefile)
    for alt, b64 in imgs:
        px = mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")[..., :3]
        assert px.shape[1] > 300 and px.shape[0] > 100, alt
        assert (px < 0.9).any(axis=-1).mean() > 0.01, alt  # not a blank image
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for words in (
        "Counters",
        "Configuration used",
        "dynamic = true",
        "ksgxd_wakeups",
        "assumptions of this model",
    ):
        assert words in html


def test_replay_csv(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["time,enclave,page,op"]
    for i in range(4000):
        name = "web" if i % 4 else "db"
        lines.append(f"{i},{name},{rng.integers(0, 400)},{'w' if i % 7 == 0 else 'r'}")
    p = tmp_path / "t.csv"
    p.write_text("\n".join(lines) + "\n")
    code, data = _json(["replay", str(p), "--epc", "1M", "--json", "--cpus", "2"])
    assert code == 0 and data["ok"]
    assert {t["enclave"]: t["accesses"] for t in data["threads"]} == {"db": 1000, "web": 3000}
    assert data["epc_bytes"] == 1 << 20 and data["derived"]["eldu_in_run"] > 0
    assert data["derived"]["slowdown"] > 1
    _, again = _json(["replay", str(p), "--epc", "1M", "--json", "--cpus", "2"])
    assert again["counters"] == data["counters"]  # deterministic
    _, fifo = _json(["replay", str(p), "--epc", "1M", "--json", "--cpus", "2", "--policy", "fifo"])
    assert fifo["counters"]["reclaim_young"] == 0  # FIFO ignores the accessed bit


def test_replay_oracle_general(tmp_path):
    rng = np.random.default_rng(2)
    ids = rng.zipf(1.2, 5000) % 1000
    p = write_oracle_general(tmp_path / "w.oracleGeneral.bin", ids, rng.integers(1, 12000, 5000))
    out = tmp_path / "rep"
    code, data = _json(["replay", str(p), "--epc", "2M", "--json", "--out", str(out)])
    assert code == 0 and data["ok"] and (out / "report.html").exists()
    (t,) = data["threads"]
    assert t["enclave"] == "trace" and t["accesses"] > 5000  # objects span several pages
    code, h = _json(
        [
            "replay",
            str(p),
            "--epc",
            "2M",
            "--json",
            "--format",
            "oracleGeneral",
            "--map",
            "hash",
            "--enclave-size",
            "1M",
            "--limit",
            "1000",
        ]
    )
    assert code == 0 and h["counters"]["enclaves"]["trace"]["resident_pages"] <= 257


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epc", "2Q"], "--epc: expected a size"),
        (["--epc", "2M", "--policy", "lfu"], "--policy: unknown"),
        (["--epc", "2M", "--map", "hash"], "enclave-size: needed"),
        (["--epc", "2M", "--format", "parquet"], "format: expected one of"),
    ],
)
def test_replay_bad_input_exits_2(tmp_path, args, words):
    p = write_oracle_general(tmp_path / "x.bin", [1, 2, 3], 4096)
    r = CliRunner().invoke(app, ["replay", str(p), *args])
    assert r.exit_code == 2 and r.stdout == ""
    msg = " ".join(r.stderr.split())
    assert str(p) in msg and words in msg


def test_cliff_fault_rate_is_zero_when_the_footprint_fits_and_rises_below(tmp_path):
    src = Path("examples/cliff.toml").read_text().replace("count = 16000", "count = 6000")
    sc = tmp_path / "c.toml"
    sc.write_text(src)
    out = tmp_path / "cliff"
    code, data = _json(
        ["cliff", str(sc), "--epc-range", "3M:9M", "--steps", "3", "--json", "--out", str(out)]
    )
    assert code == 0 and data["ok"]
    pts = data["points"]
    assert [p["epc_bytes"] for p in pts] == [3 << 20, 6 << 20, 9 << 20]
    foot = data["footprint_pages"]
    fits = [p for p in pts if p["epc_pages"] > foot + 64]
    below = [p for p in pts if p["epc_pages"] < foot]
    assert fits and below
    for p in fits:
        assert p["eldu"] == 0 and p["eldu_per_access"] == 0 and p["slowdown"] == 1.0
        assert p["fault_rate"] <= foot / 6000 + 0.01  # only first-touch faults
    rates = [p["eldu_per_access"] for p in pts]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0.3
    assert pts[0]["slowdown"] > pts[1]["slowdown"] > 1.0
    html = (out / "report.html").read_text()
    assert "footprint" in html and html.count("data:image/png;base64,") == 1


def test_cliff_uses_the_scenario_sweep_section_and_rejects_bad_ranges(tmp_path):
    r = CliRunner().invoke(app, ["cliff", "examples/cliff.toml", "--epc-range", "9M:3M"])
    assert r.exit_code == 2 and "epc-range" in r.stderr
    r = CliRunner().invoke(app, ["cliff", "examples/cliff.toml", "--steps", "1"])
    assert r.exit_code == 2 and "--steps" in r.stderr


def test_engine_option_runs_the_reference_with_the_same_result():
    """``--engine reference`` runs the SimPy model; the default fast engine is exact, so the
    two give the same counters; the config shown (report, --json) names the engine used."""
    _code, fast = _example("zipf_fits")
    r = CliRunner().invoke(
        app, ["run", "examples/zipf_fits.toml", "--json", "--engine", "reference"]
    )
    assert r.exit_code == 0, r.output
    ref = json.loads(r.stdout)
    assert ref["config"]["machine"]["engine"] == "reference"
    assert fast["config"]["machine"]["engine"] == "fast"
    assert ref["counters"] == fast["counters"] and ref["derived"] == fast["derived"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "examples/zipf_fits.toml", "--engine", "simpy"],
            "--engine: one of fast, reference",
        ),
        (["run", "examples/zipf_fits.toml", "--nopage-flood", "x"], "--nopage-flood: one of"),
        (
            ["run", "examples/zipf_fits.toml", "--engine", "reference", "--nopage-flood", "bulk"],
            "--nopage-flood: bulk needs the fast engine (--engine reference)",
        ),
        (["cliff", "examples/cliff.toml", "--engine", "ref"], "--engine: one of"),
        (["demo", "--engine", "reference", "--nopage-flood", "bulk"], "bulk needs the fast"),
        (["replay", "t.csv", "--epc", "1M", "--nopage-flood", "Bulk"], "--nopage-flood: one of"),
    ],
)
def test_engine_options_bad_input_exits_2(args, message):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and message in r.stderr, r.output


def test_engine_option_against_the_scenario_file(tmp_path):
    """A scenario that asks for the bulk flood cannot run on the reference engine: the
    message names the option and the file's key; the pair from the file alone runs."""
    src = Path("examples/zipf_fits.toml").read_text()
    text = src.replace("[machine]", '[machine]\nnopage_flood = "bulk"', 1)
    assert text != src
    path = tmp_path / "bulk.toml"
    path.write_text(text)
    r = CliRunner().invoke(app, ["run", str(path), "--engine", "reference", "-q"])
    assert r.exit_code == 2, r.output
    assert f"--engine: reference cannot take {path}: nopage_flood = 'bulk'" in r.stderr
    r = CliRunner().invoke(app, ["run", str(path), "--json", "--no-baseline"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"]["machine"]["nopage_flood"] == "bulk"
