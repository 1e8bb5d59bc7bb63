"""The retry livelock the Linux mutex produces in the seed scenario without direct reclaim.

The -EAGAIN retry loop releases encl->lock and takes it again one round trip later (return to
user space, a new ioctl: ``Costs.user_return + Costs.syscall``; the tests put it all in
``syscall``). ksgxd, on another CPU, spins on the lock (its owner is running) and
can take it only if it stays free for ``Costs.mutex_pickup``. A round trip shorter than that
re-takes the lock every time: ksgxd never frees a page and every call returns -EAGAIN at
once, until the runtime gives up (the demo's ``MAX_STALLED_CALLS``). A longer round trip lets
ksgxd in and the loop completes.
"""

import pytest

from epcsim import demo
from epcsim.demo import SeedConfig, run_seed

STALLED = 2_000  # the demo's bound, shortened for the test


@pytest.fixture(autouse=True)
def _short_bound(monkeypatch):
    monkeypatch.setattr(demo, "MAX_STALLED_CALLS", STALLED)


def _modify(mutex, sched, round_trip):
    cfg = SeedConfig(
        epc="2M",
        cpus=4,
        direct_reclaim=False,
        mutex=mutex,
        sched=sched,
        # round trip = user_return + syscall (every cost is at least 1 ns)
        costs={"syscall": round_trip - 1, "user_return": 1, "mutex_pickup": 150},
    )
    return run_seed(cfg)


@pytest.mark.parametrize("round_trip", [50, 149])
def test_a_round_trip_shorter_than_the_pickup_starves_the_spinning_ksgxd(round_trip):
    run = _modify("linux", "cfs", round_trip)
    m = run.modify
    assert run.summary()["gave_up"] and m.pages_done < m.pages
    # the first call ended on an empty pool and no later call did a page
    assert m.pages_done == m.first_call_pages and m.calls == m.eagain == STALLED + 1


def test_a_round_trip_longer_than_the_pickup_lets_ksgxd_in():
    run = _modify("linux", "cfs", 151)
    m = run.modify
    assert not run.summary()["gave_up"] and m.pages_done == m.pages and m.eagain > 0


def test_the_fifo_mutex_hands_ksgxd_the_lock_at_any_round_trip():
    run = _modify("fifo", "fifo", 50)
    m = run.modify
    assert not run.summary()["gave_up"] and m.pages_done == m.pages and m.eagain > 0
