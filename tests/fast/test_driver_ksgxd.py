"""ksgxd's compiled state machine (``fast/driver``) against the reference, ksgxd alone.

The same scenario is built twice (same seed): an enclave thread sweeps more pages than the
EPC holds, ksgxd sleeps once it is done, and another consumer takes free pages (the same
ones in both copies) so that ksgxd has work. Then one copy runs ``Sgx.wake_ksgxd`` and
SimPy until ksgxd sleeps again, the other ``run_ksgxd`` (the driver on the compiled core),
and everything the reclaimer touches must be equal: the EPC's lists and flags, the EPCM,
the enclave's pages and VA pages, the VA versions, every backing record byte for byte,
the counters, the free timeline, the clock and the next eid, ksgxd's CPU accounting,
``encl->lock``'s state and trace, warnings.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ksgxd_cases import build, differ, snapshot

import epcsim
from epcsim.fast.driver.bridge import run_ksgxd


def run_both(seed: int, engine: str, epc: str, n: int, keep_free: int):  # type: ignore[no-untyped-def]
    ref = build(seed, engine, epc, n, keep_free)
    drv = build(seed, engine, epc, n, keep_free)
    assert differ(snapshot(ref), snapshot(drv)) == []  # the same entry state
    ref.sgx.wake_ksgxd()
    ref.machine.env.run()
    result = run_ksgxd(drv)
    return ref, drv, result


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    engine=st.sampled_from(["fast", "reference"]),
    epc=st.sampled_from(["1M", "2M"]),
    extra=st.integers(16, 400),
    keep_free=st.integers(0, 80),
)
def test_ksgxd_alone_matches_the_reference(
    seed: int, engine: str, epc: str, extra: int, keep_free: int
) -> None:
    """A woken ksgxd's batches until it sleeps again: the driver leaves every array, record,
    counter and clock exactly as the reference (both engines: elided steps or timeouts)."""
    n = {"1M": 256, "2M": 512}[epc] + extra
    ref, drv, result = run_both(seed, engine, epc, n, keep_free)
    assert result.handed_back is None, result
    assert result.pc == "wait"
    a, b = snapshot(ref), snapshot(drv)
    assert differ(a, b) == []
    if keep_free < drv.sgx.high_pages:  # ksgxd had batches to run: the driver ran them
        assert b["stats"]["ksgxd_batches"] > 0  # type: ignore[index]
        assert drv.sgx.epc.nr_free_pages >= drv.sgx.high_pages or len(drv.sgx.lru) == 0


def test_a_woken_ksgxd_with_nothing_to_do_sleeps_again() -> None:
    """Free pages at the high watermark: ``wait_event`` finds its condition false and
    sleeps again at once - no wake-up run, only the wake-up's event and count."""
    ref, drv, result = run_both(3, "fast", "1M", 300, keep_free=64)
    assert result.handed_back is None
    a, b = snapshot(ref), snapshot(drv)
    assert differ(a, b) == []
    assert b["stats"]["ksgxd_batches"] == a["stats"]["ksgxd_batches"]  # type: ignore[index]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_the_secs_eviction_hands_back_before_the_last_child(engine: str) -> None:
    """A small EPC whose every resident child ksgxd must write back: the reference then
    evicts the SECS with its last child (``sgx_reclaimer_write``); the driver stops before
    that page's D step, with the child count at one and the SECS still resident."""
    ref, drv, result = run_both(5, engine, "512K", 140, keep_free=0)
    assert ref.sgx.stats.secs_evictions == 1
    assert result.handed_back == "SECS eviction"
    assert result.pc == "D"
    encl = next(iter(drv.sgx.enclaves.values()))
    assert encl.secs_child_cnt == 1 and encl.secs_epc >= 0
    assert drv.sgx.stats.secs_evictions == 0
    assert drv.sgx.stats.ewb == ref.sgx.stats.ewb - 2  # the last child and the SECS


def test_outside_the_regime_is_refused() -> None:
    """A system whose ksgxd is not asleep, or whose queue is not empty, is refused with a
    ValueError naming ``system`` (the driver never guesses)."""
    system = epcsim.System(epc="1M", cpus=2, seed=1, content_mode="tag")
    with pytest.raises(ValueError, match="system: .*enclaves"):
        run_ksgxd(system)
    full = epcsim.System(epc="1M", cpus=2, seed=1, content_mode="full")
    with pytest.raises(ValueError, match="system: .*content_mode"):
        run_ksgxd(full)
