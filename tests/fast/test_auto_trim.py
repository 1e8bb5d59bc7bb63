"""``fast_core="auto"`` and MODIFY_TYPES(TRIM)'s loop on the core: ksgxd's machine is served
through the trim (``ksgxd_serving._worth_serving``), and the trim's thread takes a served
session (``Session.adopt``), with direct reclaim or where the machine makes the runtime's
calls after -EAGAIN itself (``fast/driver/retry.py``, session ``eagain``), not otherwise
(session ``demo5``, BENCHMARKS.md).

Without direct reclaim a call ends at the first page whose ELDU finds no free page, so
while ksgxd is awake the runtime's calls are short, most of them no page at all (the
demo's run: 47,836 calls for 47,872 pages); when each of them came back to Python, taking
the session at each kept ksgxd served for the whole trim, at ~4x its generator's cost per
step, and made that run ~2.5x slower than without the core. With the retry on the core
the calls stay in one session. Nor where the runtime calls only once (``drive_range``'s
``stop_after_first``, the demo's flip cells; session ``demo6``): no short call follows, so
ksgxd is served through that call as with ``True`` - the "idle neighbour" cells' first call
(~1,800 pages, ksgxd freeing the neighbour's pages) ran two thirds of its pages in Python
before. A cost choice only: every observable equals ``fast_core=False``'s either way.
"""

from __future__ import annotations

import dataclasses

import pytest
from core_cases import IMAGE, op_record, selftest_enclave
from stream_core_cases import core_snap, flip_cell, keep_demo_systems

from epcsim import demo
from epcsim.arch import PAGE_SIZE
from epcsim.kernel.ioctl import IoctlResult
from epcsim.user.thread import AccessOutcome
from epcsim.workloads.edmm import Ctx, drive_range

EPC = 64
HEAP = 3 * EPC  # 3x the EPC: the range's front is in backing, ksgxd awake through the trim


def _trim(direct: bool, every_call: bool = False, first: bool = False, **kw):  # type: ignore[no-untyped-def]
    """The selftest's trim of a heap 3x the EPC, called again after -EAGAIN: the snapshot,
    the ``OpRecord`` and the ``StreamCore`` (None without the core). ``every_call``: an
    ``on_call`` hook without ``result_only_after``, so each call returns to Python;
    ``first``: the first call only (``stop_after_first``)."""

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        assert encl.add_pages(IMAGE * PAGE_SIZE, HEAP * PAGE_SIZE, "rw").ok

    system, encl, t = selftest_enclave(
        "fast", 11, EPC, 2, direct, HEAP, False, add_heap, "trim", **kw
    )

    def on_call(r: IoctlResult, done: int) -> None:
        pass

    hook = on_call if every_call else None
    ctx = Ctx(encl, t, [])  # type: ignore[arg-type]
    op = drive_range(ctx, "modify_types", IMAGE, HEAP, on_call=hook, stop_after_first=first)
    rec = system._call(t, op)
    return core_snap(system, encl, AccessOutcome()), op_record(rec), rec, system.sgx.stream_core


@pytest.mark.parametrize(
    ("direct", "every_call", "first"),
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
)
def test_auto_serves_ksgxd_through_a_trim_where_the_calls_stay_on_the_core(
    monkeypatch: pytest.MonkeyPatch, direct: bool, every_call: bool, first: bool
) -> None:
    from epcsim.fast.driver import stream as stream_mod

    monkeypatch.setattr(stream_mod, "machines_warm", lambda: True)
    off_snap, off_rec, _, _ = _trim(direct, every_call, first, fast_core=False)
    snap, rec_t, rec, auto = _trim(direct, every_call, first)
    _, _, _, on = _trim(direct, every_call, first, fast_core=True)
    assert [key for key in off_snap if off_snap[key] != snap[key]] == []
    assert rec_t == off_rec
    assert auto.auto and auto.live == 0 and auto.trim_live == auto.retry_live == 0
    assert auto.final_live == 0
    if first:  # one call, none after it: served through it as with ``True``
        assert rec.calls == 1 and on.served_steps > 0
        assert auto.served_steps == on.served_steps and auto.trims == on.trims
    elif direct:  # one call covers the range, on the core as with ``fast_core=True``
        assert rec.calls == 1 and auto.trims == on.trims > HEAP // 2
    elif not every_call:  # many short calls, made by the machine: served as with ``True``
        assert rec.calls > HEAP // 4 and rec.eagain > 0
        assert auto.ioctl_retries == on.ioctl_retries > rec.calls // 2
        assert auto.served_steps == on.served_steps and auto.entries < rec.calls // 10
    else:  # each call back in Python: ``True`` serves ksgxd through them, "auto" does not
        assert rec.calls > HEAP // 4 and rec.eagain > 0 and on.ioctl_retries == 0
        assert on.served_steps > 0 and auto.served_steps < on.served_steps // 4


def test_the_demos_neighbour_cell_trims_its_one_call_on_the_core_with_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo's "idle neighbour" flip cell on 2 CPUs at EWB = ELDU (``cli.flip_configs``:
    no direct reclaim, the first MODIFY_TYPES call only) with "auto": its one call's pages
    on the core (ksgxd served through it: session ``demo6``; before, 616 of its 1,843 pages),
    the same run as without the core."""
    from epcsim.fast.driver import stream as stream_mod

    monkeypatch.setattr(stream_mod, "machines_warm", lambda: True)
    made = keep_demo_systems(monkeypatch)
    cfg = flip_cell("idle neighbour", 1.0, 2)
    assert cfg.fast_core == "auto" and cfg.stop_after_first_call and not cfg.direct_reclaim
    auto = demo.run_seed(cfg)
    plain = demo.run_seed(dataclasses.replace(cfg, fast_core=False))
    sc = made[0].sgx.stream_core
    assert sc is not None and sc.auto and sc.final_live == 0
    assert auto.modify.calls == 1 and auto.modify.first_call_pages > 1_000
    assert sc.trims == auto.modify.first_call_pages
    assert auto.stats == plain.stats and auto.free_timeline == plain.free_timeline
    assert auto.modify == plain.modify and auto.phases == plain.phases
