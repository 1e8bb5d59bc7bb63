"""ksgxd's compiled batch over two enclaves against the reference (PATHS.md "Two enclaves
in the regime", items 1, 2 and 6, session ``twoencl2``): each page isolated from the one
LRU is its own enclave's - its slot's ``KState``, its ``encl->lock`` (the core's mutex row
= the slot), ETRACK on its SECS, its backing file, its refcount - as the kernel takes
``encl_page->encl`` per page.

Entered through ``bridge.run_ksgxd`` (ksgxd alone, the tests' direct entry), the one
entry open to two enclaves so far; the user path's entries (the stream, the ioctl loops)
keep one enclave (PATHS.md, "What is built"). Everything ksgxd may change is compared,
both enclaves' parts: pages, VA lists, records byte for byte, SECS states, both locks'
fields and traces, the counters, the clock.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ksgxd_cases import differ
from two_enclave_cases import build_two, laid_out, resident, snapshot_two

import epcsim
from epcsim.fast.driver.bridge import run_ksgxd

LONG = bool(os.environ.get("EPCSIM_LONG"))


def run_both(seed: int, engine: str, n0: int, n1: int, keep_free: int):  # type: ignore[no-untyped-def]
    ref = build_two(seed, engine, n0, n1, keep_free)
    drv = build_two(seed, engine, n0, n1, keep_free)
    assert differ(snapshot_two(ref), snapshot_two(drv)) == []  # the same entry state
    ref.sgx.wake_ksgxd()
    ref.machine.env.run()
    return ref, drv, run_ksgxd(drv)


@settings(max_examples=100 if LONG else 15, deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    seed=st.integers(0, 2**16),
    engine=st.sampled_from(["fast", "reference"]),
    n0=st.integers(140, 260),
    n1=st.integers(100, 240),
    keep_free=st.integers(0, 40),
)
def test_ksgxd_over_two_enclaves_matches_the_reference(
    seed: int, engine: str, n0: int, n1: int, keep_free: int
) -> None:
    assume(laid_out(build_two(seed, engine, n0, n1, keep_free)))
    ref, drv, result = run_both(seed, engine, n0, n1, keep_free)
    if result.handed_back is not None:  # an enclave's last resident child: its SECS's
        assert result.handed_back == "SECS eviction", result  # eviction is Python's
        return
    assert result.pc == "wait"
    assert differ(snapshot_two(ref), snapshot_two(drv)) == []


def test_the_core_reclaims_both_enclaves_pages() -> None:
    """The guard: in this scenario the core's batches take pages of both enclaves (B's
    under B's lock: row 1's trace, as the reference's), and it ends clean."""
    before = resident(build_two(1, "fast", 140, 100, 0))
    ref, drv, result = run_both(1, "fast", 140, 100, 0)
    assert result.handed_back is None and result.pc == "wait"
    after = resident(drv)
    assert after[0] < before[0] and after[1] < before[1], (before, after)
    a_lock, b_lock = (e.lock for e in drv.sgx.enclaves.values())
    assert a_lock.trace and b_lock.trace  # each enclave's pages under its own lock
    assert differ(snapshot_two(ref), snapshot_two(drv)) == []


def test_three_enclaves_are_refused() -> None:
    system = epcsim.System(epc="1M", cpus=2, seed=1, content_mode="tag")
    for _ in range(3):
        system.create_enclave("64K")
    with pytest.raises(ValueError, match="system: .*3 enclaves, the driver models 2"):
        run_ksgxd(system)
