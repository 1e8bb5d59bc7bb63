"""``epcsim warm`` (``epcsim/fast/warm.py``): the runs it makes engage the compiled core on
every configuration the demo uses, give the results the runs without the core give (the
core is exact, so warming changes nothing but the host time of later runs), and leave the
machines ``fast_core="auto"`` looks for compiled."""

from __future__ import annotations

import dataclasses

import epcsim.demo as demo
from epcsim.fast import warm as warm_mod
from epcsim.fast.driver import auto
from epcsim.fast.driver.thread import thread_resume
from epcsim.fast.ops.page_list import list_del_many


def test_warm_covers_the_demo_configurations() -> None:
    cfgs = warm_mod.warm_configs()
    seeds = [c for c in cfgs if not c.stop_after_first_call and c.fast_core is True]
    keys = {(c.mutex, c.sched, c.direct_reclaim, c.trim_only) for c in seeds}
    want = {(c.mutex, c.sched, c.direct_reclaim, c.trim_only) for c in demo.demo_configs()}
    assert keys == want
    assert all(c.epc == warm_mod.WARM_EPC for c in cfgs)
    assert any(c.touch_heap for c in seeds)  # an access stream: thread_bridge.drive
    # the flip cells: both layouts on one CPU and on two, with the core
    flips = {(c.neighbour_factor > 0, c.cpus) for c in warm_mod.warm_flip_configs()}
    assert flips == {(False, 1), (False, 2), (True, 1), (True, 2)}
    assert all(c.fast_core is True for c in warm_mod.warm_flip_configs())
    # and one seed run without the core (the fast engine's own compiled helpers)
    assert [c.fast_core for c in cfgs].count(False) == 1


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
    assert [m["fast_core"] for m in made] == [c.fast_core for c in warm_mod.warm_configs()]
    assert sum(m["system"].fast_core_accesses for m in made) > 0  # the stream ran on the core
    # what the first demo after ``epcsim warm`` compiled before the flip cells and the run
    # without the core were added (2026-11-27): the thread's served entry, REMOVE_PAGES'
    # compiled list_del in the fast engine
    assert thread_resume.signatures and list_del_many.signatures
    # the same runs without the core: the same results (the heap-touching seed run and the
    # one-CPU neighbour cell)
    neighbour_1cpu = next(
        c for c in warm_mod.warm_flip_configs() if c.neighbour_factor > 0 and c.cpus == 1
    )
    for cfg in (warm_mod.warm_configs()[len(demo.demo_configs())], neighbour_1cpu):
        with_core = demo.run_seed(cfg).to_dict()
        without = demo.run_seed(dataclasses.replace(cfg, fast_core=False)).to_dict()
        assert with_core == without, cfg.label  # ``fast_core`` is not in the record
