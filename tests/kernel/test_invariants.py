"""Conservation laws of the paging model, checked on random workloads (hypothesis)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE


def check_books(system):
    """Every EWB made one backing record, every ELDU consumed one; EPC pages add up."""
    s = system.stats()
    encls = list(system.sgx.enclaves.values())
    records = sum(len(system.backing[e.id].records) for e in encls)
    assert s["ewb"] - s["eldu"] == records
    swapped = sum(e.swapped_pages for e in encls)
    secs_out = sum(1 for e in encls if e.secs_epc < 0)
    assert records == swapped + secs_out
    used = sum(e.resident_pages + (e.secs_epc >= 0) + len(e.va_pages) for e in encls)
    assert used + s["epc_pages_free"] == s["epc_pages_total"]
    assert s["warnings"] == 0 and s["leaked_pages"] == 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(50, 700), min_size=1, max_size=3),
    cpus=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    accesses=st.integers(0, 3000),
)
def test_books_balance_on_random_workloads(sizes, cpus, seed, accesses):
    system = epcsim.System(epc="2M", cpus=cpus, seed=seed)
    rng = np.random.default_rng(seed)
    encls = []
    for i, n in enumerate(sizes):
        e = system.create_enclave("4M", name=f"e{i}")
        assert e.add_pages(0, n * PAGE_SIZE).ok and e.init().ok
        encls.append((e, n))
    for e, n in encls:
        e.start(rng.integers(0, n, accesses), write=rng.random(accesses) < 0.3)
    system.run()
    check_books(system)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="open (2026-11-27): one EPC page and one backing record unaccounted after the run, "
    "on the reference engine too, since at least 0fa036e - see the issue 9 note",
)
def test_books_balance_three_enclaves_two_cpus_seed_1():
    """The example ``test_books_balance_on_random_workloads`` met by chance (2026-11-27):
    three enclaves of 56, 216 and 656 pages on a 512-page EPC, 2 CPUs, seed 1, 690
    accesses each. Every thread ends with ``done=690``, no warning, no leaked page; yet
    resident + SECS + VA pages + free = 511 of 512 EPC pages, and EWB - ELDU is one more
    than the backing records (the first enclave: SECS and its 56 pages resident, no
    record; the second: nothing resident, its SECS resident, 216 records; the third: 388
    resident, 268 records). Kept here, strict, so it is not lost to the random test's
    draw; when it passes, find what was fixed and drop the mark."""
    test_books_balance_on_random_workloads.hypothesis.inner_test(
        sizes=[56, 216, 656], cpus=2, seed=1, accesses=690
    )


def test_several_enclaves_larger_than_the_epc_run_together():
    system = epcsim.System(epc="2M", cpus=4, seed=11)
    encls = []
    for i in range(3):
        e = system.create_enclave("4M", name=f"big{i}")
        assert e.add_pages(0, 700 * PAGE_SIZE).ok and e.init().ok
        encls.append(e)
    procs = [e.start(np.arange(700)) for e in encls]  # each touches all of its 700 pages
    system.run()
    assert all(p.value.ok and p.value.done == 700 for p in procs)
    s = system.stats()
    # 3 x 700 pages through a 512-page EPC: every page not resident at the start was loaded
    assert s["eldu"] >= 3 * 700 - 512
    # VA pages: page_cnt 1..701 crosses 512 once after CREATE's -> 2 per enclave
    assert s["va_pages"] == 6
    check_books(system)


def test_release_frees_every_page_and_the_backing():
    system = epcsim.System(epc="2M", cpus=2, seed=3)
    a = system.create_enclave("4M", name="a")
    assert a.add_pages(0, 700 * PAGE_SIZE).ok and a.init().ok
    b = system.create_enclave("64K", name="b")
    assert b.add_pages(0, 4 * PAGE_SIZE).ok and b.init().ok
    assert system.backing[a.id].records
    a.close()
    # ksgxd may hold a kref from a batch in flight: release runs at the last put
    system.run(until="20ms")
    s = system.stats()
    assert a.id not in system.backing.files and "a" not in s["enclaves"]
    # only b's pages (4 + SECS + 1 VA page) remain in use
    assert s["epc_pages_free"] == s["epc_pages_total"] - (b.resident_pages + 1 + 1)
    assert b.access_pages(np.arange(4)).ok  # the other enclave is untouched
    assert s["warnings"] == 0 and s["leaked_pages"] == 0 and s["va_pages"] == 1
