"""``fast_core="auto"`` on one CPU: ksgxd's machine is not served (``ksgxd_serving.
_worth_serving``, session ``demo6``). Awake, ksgxd is queued for the one CPU or on it
whenever the thread is at a loop top, and the one-thread session's entry declines a queued
task (``CoreStream._ready``), so no stream takes a served machine: the demo's one-CPU flip
cells served ~700-1,250 ksgxd steps a cell during their build and adopted none. A cost
choice only: the run equals ``fast_core=True``'s, which still serves it.
"""

from __future__ import annotations

import dataclasses

import pytest
from stream_core_cases import flip_cell, keep_demo_systems

from epcsim import demo


def test_one_cpu_auto_leaves_ksgxd_in_its_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's "same enclave" flip cell on one CPU (heap 2x an 8 MiB EPC, no direct
    reclaim, the first MODIFY_TYPES call only): "auto" serves (nearly) no ksgxd step where
    ``True`` serves hundreds, both build and trim on the core, and the runs are equal."""
    from epcsim.fast.driver import stream as stream_mod

    monkeypatch.setattr(stream_mod, "machines_warm", lambda: True)
    made = keep_demo_systems(monkeypatch)
    cfg = flip_cell("same enclave", 1.5, 1)
    assert cfg.fast_core == "auto"
    auto = demo.run_seed(cfg)
    on = demo.run_seed(dataclasses.replace(cfg, fast_core=True))
    sa, so = (s.sgx.stream_core for s in made)
    assert sa is not None and so is not None and sa.auto and not so.auto
    assert so.served_steps > 200 and sa.served_steps < so.served_steps // 20
    assert sa.adds > 0 and sa.trims == so.trims > 0
    assert auto.stats == on.stats and auto.free_timeline == on.free_timeline
    assert auto.modify == on.modify and auto.phases == on.phases
