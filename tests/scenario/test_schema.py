"""Scenario files: a bad file is an error naming the file, the key and the reason (exit 2);
unknown keys are errors, never ignored."""

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from epcsim.cli import app
from epcsim.scenario import ScenarioError, load_scenario
from epcsim.scenario.load import key_path, validate
from epcsim.scenario.model import Scenario

GOOD = """
seed = 1
[machine]
epc = "4M"
cpus = 2
[[enclave]]
name = "a"
[[enclave.region]]
name = "heap"
size = "1M"
[[enclave.thread]]
[[enclave.thread.step]]
op = "access"
pattern = "zipf"
alpha = 1.2
count = 100
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_loads_with_sizes_in_bytes(tmp_path):
    sc = load_scenario(_write(tmp_path, GOOD))
    assert isinstance(sc, Scenario)
    assert sc.machine.epc == 4 << 20 and sc.enclave[0].region[0].size == 1 << 20
    assert sc.machine.timeslice == 1_000_000  # defaults are validated (and converted) too


BAD = [
    # (replace this, with that, expected key, words of the reason)
    ("seed = 1", "seed = 1\nsed = 2", "sed", "unknown key"),
    ("cpus = 2", "cpus = 2\ncpu = 2", "machine.cpu", "unknown key"),
    ("cpus = 2", 'cpus = "two"', "machine.cpus", "valid integer"),
    ("cpus = 2", "cpus = 0", "machine.cpus", "greater than or equal to 1"),
    ('epc = "4M"', 'epc = "4Q"', "machine.epc", "expected a size"),
    ('epc = "4M"', "epc = true", "machine.epc", "expected a size"),
    ("cpus = 2", 'direct_reclaim = "yes"', "machine.direct_reclaim", "valid boolean"),
    ("cpus = 2", 'policy = "lfu"', "machine.policy", "unknown reclaim policy"),
    ("cpus = 2", "nodes = 2", "machine.nodes", "at most machine.sections"),
    ('size = "1M"', 'size = "1.5K"', "enclave[0].region[0].size", "multiple of 4K"),
    ('size = "1M"', 'size = "1M"\nperm = "wx"', "enclave[0].region[0].perm", "write without read"),
    ("alpha = 1.2", 'alpha = "high"', "enclave[0].thread[0].step[0].alpha", "valid number"),
    ("alpha = 1.2", "alpha = 1.2\nstride = 2", "enclave[0].thread[0].step[0].stride", "unknown"),
    (
        'pattern = "zipf"',
        'pattern = "zipfian"',
        "enclave[0].thread[0].step[0].pattern",
        "expected one of",
    ),
    ('op = "access"', 'op = "touch"', "enclave[0].thread[0].step[0].op", "expected one of"),
    (
        "count = 100",
        'count = 100\nregion = "hep"',
        "enclave[0].thread[0].step[0].region",
        "no region 'hep'",
    ),
    (
        "count = 100",
        'count = 100\nlength = "2M"',
        "enclave[0].thread[0].step[0].length",
        "past the end",
    ),
    ("seed = 1", "seed = 1\n[[cgroup]]\nname = 'pod'\nmax = '8M'", "cgroup", "not supported yet"),
    ("seed = 1", "seed = 1\n[expect]\neldux = { max = 0 }", "expect.eldux", "unknown counter"),
    ("seed = 1", "seed = 1\n[costs]\newbb = 3", "costs.ewbb", "unknown key"),
    ("seed = 1", "seed = 1\n[costs]\newb = -3", "costs.ewb", "negative"),
    ('name = "a"', 'name = "a"\nsize = "1M"', "enclave[0].size", "smaller than the TCS"),
]


@pytest.mark.parametrize("old, new, key, reason", BAD)
def test_bad_scenario_names_file_key_and_reason(tmp_path, old, new, key, reason):
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert e.value.key == key
    assert reason in e.value.reason
    assert str(e.value).startswith(f"{p}: {key}: ")


@pytest.mark.parametrize("old, new, key, reason", BAD[:6] + BAD[14:18])
def test_cli_exits_2_with_file_key_and_reason(tmp_path, old, new, key, reason):
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    for cmd in (["run", str(p)], ["run", str(p), "--json"], ["cliff", str(p)]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert r.stdout == ""  # nothing on stdout, not even with --json
        msg = " ".join(r.stderr.split())
        assert f"{p}: {key}: " in msg and reason in msg


def test_toml_syntax_error_and_missing_file(tmp_path):
    p = _write(tmp_path, "seed = = 1\n")
    r = CliRunner().invoke(app, ["run", str(p)])
    msg = " ".join(r.stderr.split())
    assert r.exit_code == 2 and f"{p}: not valid TOML" in msg and "line 1" in msg
    r = CliRunner().invoke(app, ["run", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "cannot read the file" in " ".join(r.stderr.split())


@settings(max_examples=25, deadline=None)
@given(
    where=st.sampled_from(
        [
            "",
            "machine",
            "enclave.0",
            "enclave.0.region.0",
            "enclave.0.thread.0",
            "enclave.0.thread.0.step.0",
        ]
    ),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
)
def test_any_unknown_key_anywhere_is_an_error(where, key):
    import tomllib

    data = tomllib.loads(GOOD)
    node = data
    for part in filter(None, where.split(".")):
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if key in node or (where == "" and key in Scenario.model_fields):
        return  # an existing key: not an unknown one
    if where.endswith("step.0") and key in ("region", "offset", "length", "writes", "scatter"):
        return
    if where == "enclave.0" and key in ("size", "tcs", "debug", "thread"):
        return
    if where == "enclave.0.region.0" and key in ("perm", "measure", "dynamic"):
        return
    if where == "enclave.0.thread.0" and key in ("name", "repeat"):
        return
    if where == "machine" and key in (
        "sections",
        "nodes",
        "policy",
        "direct_reclaim",
        "content_mode",
        "sgx2",
        "timeslice",
    ):
        return
    node[key] = 1
    with pytest.raises(ScenarioError) as e:
        validate(data, "x.toml")
    assert e.value.key.endswith(key) and "unknown key" in e.value.reason


def test_key_path_drops_union_tags():
    loc = ("enclave", 0, "thread", 1, "step", 2, "access:zipf", "alpha")
    assert key_path(loc) == "enclave[0].thread[1].step[2].alpha"
    assert key_path(("enclave", 0, "region", 0, "size")) == "enclave[0].region[0].size"
    # a key spelled like a tag where no union is (Hypothesis drew ``enclave.0`` + ``sleep``)
    assert key_path(("enclave", 0, "sleep")) == "enclave[0].sleep"
    assert key_path(("enclave", 0, "thread", 0, "step", 1, "sleep", "sleep")).endswith("].sleep")
