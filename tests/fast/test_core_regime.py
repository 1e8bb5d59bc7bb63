"""``core_regime._static_regime``'s LRU-owner check without its O(EPC) scan (lead,
2026-11-27).

The core's regime wants every page on the reclaimer's LRU owned by one of the (one or two)
enclave slots. The scan over the whole EPC's owners costs ~94 ms a core entry at 64 GiB;
it is skipped while every enclave ever created is live (``sgx._next_encl_id`` equal to the
live count), where no LRU page can have another owner. Checked here: on built and paged
systems with one to three enclaves, some closed, the regime with the shortcut equals the
regime with it disabled (the id counter pushed past the live count, so the scan runs), and
a page left on the LRU by a released enclave takes the system out of the regime.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.core_regime import _static_regime
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU


def _paged(nencl: int, close: int, seed: int) -> epcsim.System:
    """``nencl`` enclaves of 160 pages on a 256-page EPC (above SGX_NR_HIGH_PAGES, so ksgxd
    sleeps at the end), each thread's accesses run to their end (the LRU full of several
    owners), then the first ``close`` enclaves closed and released."""
    system = epcsim.System(epc="1M", cpus=2, seed=seed, fast_core=False)
    encls = []
    for _ in range(nencl):
        e = system.create_enclave(256 * PAGE_SIZE)
        assert e.add_pages(0, PAGE_SIZE, page_type="tcs").ok
        assert e.add_pages(PAGE_SIZE, 160 * PAGE_SIZE).ok and e.init().ok
        encls.append(e)
    rng = np.random.default_rng(seed)
    for e in encls:
        e.start(1 + rng.integers(0, 160, size=300))
    system.run()
    for e in encls[:close]:
        e.close()
    system.run()  # the releases (sgx_encl_release on the last reference's drop)
    return system


def _scanned(system: epcsim.System) -> bool:
    """The regime with the shortcut disabled: the id counter past the live count."""
    sgx = system.sgx
    sgx._next_encl_id += 1000
    try:
        return _static_regime(system)
    finally:
        sgx._next_encl_id -= 1000


@settings(max_examples=12, deadline=None, derandomize=True)
@given(nencl=st.integers(1, 3), close=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_the_shortcut_agrees_with_the_scan(nencl: int, close: int, seed: int) -> None:
    system = _paged(nencl, min(close, nencl), seed)
    assert _static_regime(system) == _scanned(system)


def test_a_released_enclaves_page_on_the_lru_leaves_the_regime() -> None:
    """Two enclaves, the first closed: the second alone is in the regime; an LRU page
    rewritten as the closed enclave's (a leak at release) takes it out - the scan runs,
    since an enclave has gone."""
    system = _paged(2, 1, 3)
    sgx = system.sgx
    assert len(sgx.enclaves) == 1 and sgx._next_encl_id == 2
    assert _static_regime(system)
    gone = next(i for i in (1, 2) if i not in sgx.enclaves)
    page = int(np.flatnonzero((sgx.epc.flags & SGX_EPC_PAGE_ON_LRU) != 0)[0])
    sgx.epc.owner_encl[page] = gone
    assert not _static_regime(system)
