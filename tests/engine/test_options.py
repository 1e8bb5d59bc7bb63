"""``System(mutex=, sched=)`` and the scenario ``[machine]`` keys that set them."""

import pytest

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.scenario import ScenarioError
from epcsim.scenario.load import validate
from epcsim.scenario.plan import compile_scenario
from epcsim.system import System


def test_defaults_are_linux_mutex_and_cfs():
    s = System(epc="1M", cpus=2)
    assert isinstance(s.machine.rq, CfsRunQueue)
    e = s.create_enclave("64K")
    assert isinstance(e.encl.lock, LinuxMutex)
    assert s.config["mutex"] == "linux" and s.config["sched"] == "cfs"


def test_fifo_variants():
    s = System(epc="1M", cpus=2, mutex="fifo", sched="fifo", sched_slice="1ms")
    assert isinstance(s.machine.rq, FifoRunQueue) and s.machine.rq.sched_slice_ns == 1_000_000
    assert isinstance(s.create_enclave("64K").encl.lock, FifoMutex)


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"mutex": "spin"}, "mutex"),
        ({"sched": "eevdf"}, "sched"),
        ({"sched_slice": "1ms"}, "sched_slice"),  # CFS computes its own slices
    ],
)
def test_bad_options_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        System(epc="1M", **kw)


SCENARIO = {
    "machine": {"epc": "1M", "cpus": 1},
    "enclave": [
        {
            "name": "a",
            "region": [{"name": "heap", "size": "64K"}],
            "thread": [{"name": "t", "step": [{"op": "access", "pattern": "sequential"}]}],
        }
    ],
}


def test_scenario_machine_keys_reach_the_system():
    data = {**SCENARIO, "machine": {**SCENARIO["machine"], "mutex": "fifo", "sched": "fifo"}}
    plan = compile_scenario(validate(data, "x.toml"))
    assert plan.machine["mutex"] == "fifo" and plan.machine["sched"] == "fifo"
    plan = compile_scenario(validate(SCENARIO, "x.toml"))
    assert plan.machine["mutex"] == "linux" and plan.machine["sched"] == "cfs"


@pytest.mark.parametrize("key, value", [("mutex", "spin"), ("sched", "eevdf"), ("sched", 1)])
def test_scenario_rejects_unknown_mutex_and_sched(key, value):
    data = {**SCENARIO, "machine": {**SCENARIO["machine"], key: value}}
    with pytest.raises(ScenarioError) as e:
        validate(data, "x.toml")
    assert e.value.key == f"machine.{key}"
