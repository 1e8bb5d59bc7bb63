"""Enclave programs on the Python API: threads run concurrently, EDMM steps do what a
runtime does (retry -EAGAIN, EACCEPT each page), failures stop the thread with a reason."""

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE, PF_SGX, PF_WRITE
from epcsim.workloads.patterns import Sequential, Uniform
from epcsim.workloads.programs import (
    Access,
    Grow,
    Restrict,
    Sleep,
    Stream,
    ThreadPlan,
    Trim,
    start_thread,
)

TCS = 2  # TCS pages at 0 and 1
HEAP, HEAP_PAGES = 2, 256
DYN, DYN_PAGES = HEAP + HEAP_PAGES, 128


def _enclave(system, name="e"):
    encl = system.create_enclave("2M", name=name)
    assert encl.add_pages(0, TCS * PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(HEAP * PAGE_SIZE, HEAP_PAGES * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    return encl


def test_grow_use_trim_restrict_on_an_oversubscribed_epc():
    system = epcsim.System(epc="1M", cpus=2, seed=3)  # 256 pages for 2 + 256 + 128
    encl = _enclave(system)
    plan = ThreadPlan(
        "main",
        [
            Grow(DYN, DYN_PAGES),
            Access(DYN, Sequential(DYN_PAGES), DYN_PAGES, writes=1.0),
            Trim(DYN, DYN_PAGES),
            Restrict(HEAP, 16, 1),
            Access(HEAP, Uniform(16), 50),
        ],
    )
    proc, rec = start_thread(encl, plan, np.random.default_rng(0))
    system.run()
    assert not proc.is_alive and rec.error is None and rec.steps_done == 5
    s = system.stats()
    assert s["eaug"] == DYN_PAGES and s["eremove"] == DYN_PAGES
    assert s["emodt"] == DYN_PAGES and s["emodpr"] >= 16
    kinds = [o.kind for o in rec.ops]
    assert kinds == [
        "eaccept",
        "modify_types",
        "eaccept",
        "remove_pages",
        "restrict_permissions",
        "eaccept",
    ]
    for op in rec.ops:
        assert op.ok and op.pages_done == op.pages
        assert op.progress[-1][1] == op.pages  # progress ends at the full range
    assert not encl.encl.present[DYN : DYN + DYN_PAGES].any()  # the range is gone


def test_write_after_restrict_stops_the_thread_with_an_sgx_pf():
    system = epcsim.System(epc="4M", cpus=2, seed=1)
    encl = _enclave(system)
    plan = ThreadPlan("t", [Restrict(HEAP, 4, 1), Access(HEAP, Sequential(4), 4, writes=1.0)])
    _, rec = start_thread(encl, plan, np.random.default_rng(0))
    system.run()
    assert rec.finished and rec.steps_done == 1 and rec.accesses == 0
    assert rec.pf_error & PF_SGX and rec.pf_error & PF_WRITE
    assert rec.fault_page == HEAP and "SGX #PF" in rec.error


def test_threads_of_two_enclaves_run_at_the_same_time():
    system = epcsim.System(epc="4M", cpus=2, seed=2)
    a, b = _enclave(system, "a"), _enclave(system, "b")
    start = system.now
    plan = ThreadPlan("t", [Access(HEAP, Uniform(HEAP_PAGES), 3000)])
    _, ra = start_thread(a, plan, np.random.default_rng(1))
    _, rb = start_thread(b, plan, np.random.default_rng(2))
    system.run()
    assert ra.accesses == rb.accesses == 3000
    # both started together and overlapped: neither waited for the other to finish
    assert ra.start_ns == rb.start_ns == start
    assert ra.end_ns > rb.start_ns and rb.end_ns > ra.start_ns
    alone = epcsim.System(epc="4M", cpus=2, seed=2)
    c = _enclave(alone, "a")
    _, rc = start_thread(c, plan, np.random.default_rng(1))
    alone.run()
    assert max(ra.end_ns, rb.end_ns) - start < 1.5 * (rc.end_ns - rc.start_ns)


def test_sleep_and_stream_steps():
    system = epcsim.System(epc="4M", cpus=1, seed=0)
    encl = _enclave(system)
    pages = np.array([HEAP, HEAP + 1, HEAP, HEAP + 2])
    plan = ThreadPlan("t", [Sleep(5_000_000), Stream(pages, np.array([0, 1, 0, 1], bool))])
    _, rec = start_thread(encl, plan, np.random.default_rng(0))
    t0 = system.now
    system.run()
    assert rec.accesses == 4 and rec.end_ns - t0 >= 5_000_000
    assert plan.planned_accesses() == 4


def test_ioctls_of_two_threads_on_one_enclave_are_serialised_not_lost():
    system = epcsim.System(epc="4M", cpus=2, seed=4)
    encl = system.create_enclave("4M", name="e")
    assert encl.add_pages(0, 2 * PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(2 * PAGE_SIZE, 400 * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    p1 = ThreadPlan("t1", [Trim(2, 200)])
    p2 = ThreadPlan("t2", [Trim(202, 200)])
    _, r1 = start_thread(encl, p1, np.random.default_rng(0))
    _, r2 = start_thread(encl, p2, np.random.default_rng(0))
    system.run()
    assert r1.error is None and r2.error is None
    assert system.stats()["eremove"] == 400
    assert sum(o.ebusy for o in r1.ops + r2.ops) >= 1  # one waited for the other's ioctl
