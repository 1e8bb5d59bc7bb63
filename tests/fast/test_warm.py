"""``epcsim warm`` (``epcsim/fast/warm.py``): the runs it makes engage the compiled core on
every configuration the demo uses, give the results the runs without the core give (the
core is exact, so warming changes nothing but the host time of later runs), and leave the
machines ``fast_core="auto"`` looks for compiled."""

from __future__ import annotations

import dataclasses

import epcsim.demo as demo
from epcsim.fast import warm as warm_mod
from epcsim.fast.driver import auto


def test_warm_covers_the_demo_configurations() -> None:
    cfgs = warm_mod.warm_configs()
    keys = {(c.mutex, c.sched, c.direct_reclaim, c.trim_only) for c in cfgs}
    want = {(c.mutex, c.sched, c.direct_reclaim, c.trim_only) for c in demo.demo_configs()}
    assert keys == want
    assert all(c.fast_core is True and c.epc == warm_mod.WARM_EPC for c in cfgs)
    assert any(c.touch_heap for c in cfgs)  # an access stream: thread_bridge.drive


def test_warm_engages_the_core_and_changes_no_result(monkeypatch) -> None:
    made: list[dict] = []
    real = demo.System

    def recording(**kw):  # type: ignore[no-untyped-def]
        system = real(**kw)
        made.append({"fast_core": kw["fast_core"], "system": system})
        return system

    monkeypatch.setattr(demo, "System", recording)
    res = warm_mod.warm()
    assert res["warm"] is True and auto.machines_warm()
    assert [m["fast_core"] for m in made] == [True] * len(warm_mod.warm_configs())
    assert sum(m["system"].fast_core_accesses for m in made) > 0  # the stream ran on the core
    # the same runs without the core: the same results
    for cfg in warm_mod.warm_configs()[-2:]:
        with_core = demo.run_seed(cfg).to_dict()
        without = demo.run_seed(dataclasses.replace(cfg, fast_core=False)).to_dict()
        assert with_core == without, cfg.label  # ``fast_core`` is not in the record
