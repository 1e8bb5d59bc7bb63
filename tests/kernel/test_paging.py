"""The kernel model's paging: ksgxd, the reclaimer, ELDU through faults, VA pages, SECS.

Names follow the kernel selftests where one exists (tools/testing/selftests/sgx/main.c).
Expected counts are worked out by hand from the spec and stated next to each assertion.
"""

import numpy as np
import pytest

import epcsim
from epcsim.arch import PAGE_SIZE, SGX_NR_HIGH_PAGES, SGX_NR_LOW_PAGES

EPC = "2M"  # 512 pages: small enough to be fast, large enough for the watermarks


def build(system, size, pages, perm="rw", data=None, name=""):
    encl = system.create_enclave(size, name=name)
    r = encl.add_pages(0, pages * PAGE_SIZE, perm, data=data)
    assert r.ok and r.count == pages * PAGE_SIZE, r
    assert encl.init().ok
    return encl


def settle(system):
    """Let ksgxd finish (it sleeps once free >= SGX_NR_HIGH_PAGES)."""
    system.run(until="50ms")


def test_unclobbered_vdso_oversubscribed():
    """Selftest: an enclave 2x the EPC is built, every page written and read back exactly."""
    system = epcsim.System(epc=EPC, cpus=2, content_mode="full", seed=3)
    n = 1024
    encl = build(system, "4M", n)
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(64) for _ in range(n)]
    for i in range(n):
        assert encl.write(i * PAGE_SIZE + 100, blobs[i]).ok
    for i in range(n):
        assert encl.read(i * PAGE_SIZE + 100, 64) == blobs[i]
    st = system.stats()
    assert st["eldu"] > 0 and st["ewb"] > n // 2  # it really paged
    assert st["eldu_failed"] == 0 and st["sigbus"] == 0


def test_build_counters_match_hand_computed_values():
    system = epcsim.System(epc=EPC, cpus=2, seed=1)
    n = 1024
    encl = build(system, "4M", n)
    settle(system)
    st = system.stats()
    # page_cnt runs 1 (SECS) .. 1025; a VA page is made when page_cnt % 512 == 0 before the
    # increment: at CREATE (0), 512 and 1024 -> 3 VA pages, never reclaimed.
    assert st["va_pages"] == 3 == len(encl.encl.va_pages)
    # every added page is either resident or in backing
    assert encl.resident_pages + encl.swapped_pages == n
    # ksgxd stops at the first batch that lifts free to >= HIGH; one batch adds <= 16
    free = st["epc_pages_free"]
    assert SGX_NR_HIGH_PAGES <= free < SGX_NR_HIGH_PAGES + 16
    # total = free + resident children + SECS + VA pages
    assert free + encl.resident_pages + 1 + 3 == 512
    # each evicted page was written once, nothing was loaded back
    assert st["ewb"] == encl.swapped_pages and st["eldu"] == 0
    assert len(system.backing[encl.id].records) == encl.swapped_pages


def test_ksgxd_wakes_below_low_watermark_and_stops_at_high():
    system = epcsim.System(epc=EPC, cpus=2, seed=1)
    encl = system.create_enclave("4M")
    free0 = system.stats()["epc_pages_free"]
    # add pages until just above LOW: ksgxd must not have woken
    above = free0 - SGX_NR_LOW_PAGES
    assert encl.add_pages(0, above * PAGE_SIZE).ok
    settle(system)
    st = system.stats()
    assert st["epc_pages_free"] == SGX_NR_LOW_PAGES and st["ksgxd_wakeups"] == 0
    # one more page leaves free < LOW: sgx_alloc_epc_page wakes ksgxd
    assert encl.add_pages(above * PAGE_SIZE, PAGE_SIZE).ok
    settle(system)
    st = system.stats()
    assert st["ksgxd_wakeups"] == 1
    assert SGX_NR_HIGH_PAGES <= st["epc_pages_free"] < SGX_NR_HIGH_PAGES + 16
    assert st["ksgxd_pages_reclaimed"] == st["epc_pages_free"] - (SGX_NR_LOW_PAGES - 1)


def test_young_pages_survive_a_batch():
    system = epcsim.System(epc=EPC, cpus=2, seed=1)
    encl = build(system, "4M", 400)
    # touch the 16 pages at the LRU head: they get PTEs with the Accessed bit set
    head = system.sgx.lru.order()[:16]
    idx = [int(system.sgx.epc.owner_index[p]) for p in head]
    assert encl.access_pages(idx).ok
    for i in idx:  # the fault inserted the PTE with A clear; the retried access set it
        assert encl.encl.pte_young[i]
    before = system.sgx.lru.order()
    from epcsim.engine.machine import Task
    from epcsim.kernel.reclaim import sgx_reclaim_pages

    task = Task(system.machine, "test")
    n = system._call(task, sgx_reclaim_pages(system.sgx, task))
    assert n == 0 and system.stats()["reclaim_young"] == 16
    after = system.sgx.lru.order()
    # second chance: the 16 young pages went back to the tail, bits cleared
    assert after[-16:] == [p for p in before if p in head]
    assert not encl.encl.pte_young[idx].any()
    n = system._call(task, sgx_reclaim_pages(system.sgx, task))
    assert n == 16  # the next batch takes 16 old pages


def test_entering_through_a_tcs_makes_it_young():
    """EENTER and ERESUME walk the TCS's linear address: its PTE's Accessed bit is set, as
    every translation sets it (SDM Vol.3A 4.8), so the reclaimer gives the TCS of a thread
    that keeps entering a second chance."""
    system = epcsim.System(epc=EPC, cpus=2, seed=1)
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, 4 * PAGE_SIZE).ok and encl.init().ok
    e = encl.encl
    assert not e.pte_present[0]  # not mapped yet: the first entry takes the TCS fault
    assert encl.access_pages([1]).ok
    # sgx_vma_fault inserted the TCS's PTE with A clear; the EENTER that followed set it
    assert e.pte_present[0] and e.pte_young[0]
    assert e.test_and_clear_young(0) and not e.pte_young[0]
    assert encl.access_pages([1, 2]).ok  # a new entry (and an ERESUME after page 2's fault)
    assert e.pte_young[0]


def test_secs_is_reclaimed_last_and_reloaded_first():
    system = epcsim.System(epc=EPC, cpus=2, seed=1)
    small = build(system, "64K", 4, name="small")
    build(system, "4M", 1000, name="big")  # pushes every page of `small` out
    settle(system)
    st = system.stats()
    assert small.resident_pages == 0
    assert not small.encl.secs_epc >= 0 and st["secs_evictions"] >= 1
    assert small.access(0).ok  # reload: SECS first (ELDU with secs=0), then the page
    assert small.encl.secs_epc >= 0 and system.stats()["secs_reloads"] >= 1
    assert small.resident_pages == 1


def test_etrack_and_ipi_only_when_ewb_reports_not_tracked():
    system = epcsim.System(epc=EPC, cpus=4, seed=1)
    a = build(system, "4M", 300, name="a")
    st0 = system.stats()
    # nobody inside any enclave: a batch's first EWB is NOT_TRACKED, one ETRACK completes at
    # once (no LP to wait for) and the batch's other pages, blocked before it, pass: no IPI
    build(system, "4M", 600, name="b")
    settle(system)
    st = system.stats()
    batches = st["reclaim_batches"] - st0["reclaim_batches"]
    retries = (st["ewb_attempts"] - st["ewb"]) - (st0["ewb_attempts"] - st0["ewb"])
    assert st["ipi"] == 0 and batches > 0
    assert st["etrack"] - st0["etrack"] == retries <= batches
    # a thread loops inside `a` on 8 hot pages; building `c` reclaims a's cold pages meanwhile:
    # ETRACK must wait for that LP, the second EWB fails too, and the kernel IPIs it out
    assert a.access_pages(np.arange(0, 300)).ok  # bring a back in
    hot = a.start(np.tile(np.arange(8), 200_000), name="hot")
    build(system, "4M", 500, name="c")
    system.run()
    assert hot.value.ok
    st2 = system.stats()
    assert st2["ipi"] > 0
    # every IPI follows an ETRACK after which EWB still reported NOT_TRACKED
    assert st2["ipi"] <= st2["etrack"] - st["etrack"]


def test_two_runs_are_identical():
    def one():
        system = epcsim.System(epc=EPC, cpus=3, seed=7)
        a = build(system, "4M", 700, name="a")
        b = build(system, "4M", 700, name="b")
        rng = np.random.default_rng(1)
        a.start(rng.integers(0, 700, 5000), write=True)
        b.start(rng.integers(0, 700, 5000))
        system.run()
        return system.stats(), list(system.sgx.free_timeline.v)

    assert one() == one()


@pytest.mark.parametrize("mode", ["full", "mac", "tag"])
def test_tampered_backing_gives_sigbus_to_that_enclave_only(mode):
    system = epcsim.System(epc=EPC, cpus=2, content_mode=mode, seed=2)
    victim = build(system, "1M", 200, name="victim")
    other = build(system, "4M", 600, name="other")
    settle(system)
    bad = next(iter(system.backing[victim.id].records))
    rec = system.backing.record(victim.id, bad)
    flipped = bytearray(rec.contents)
    flipped[0] ^= 1
    system.backing.tamper(victim.id, bad, contents=bytes(flipped))
    out = victim.access(bad * PAGE_SIZE)
    assert out.sigbus and system.stats()["eldu_failed"] == 1
    # the other enclave keeps working and nothing else is disturbed
    assert other.access_pages(np.arange(600)).ok
    good = [i for i in system.backing[victim.id].records][:3]
    assert victim.access_pages(good).ok


def test_replayed_backing_record_is_rejected():
    system = epcsim.System(epc=EPC, cpus=2, seed=2)
    victim = build(system, "1M", 200, name="victim")
    pusher = build(system, "4M", 600, name="pusher")
    settle(system)
    page = next(iter(system.backing[victim.id].records))
    old = system.backing.record(victim.id, page)
    old_contents, old_pcmd = old.contents, old.pcmd
    assert victim.access(page * PAGE_SIZE, write=True).ok  # ELDU consumes the version
    # sweep the pusher until the page is evicted again, under a new version
    for _ in range(3):
        if page in system.backing[victim.id].records:
            break
        assert pusher.access_pages(np.arange(600)).ok
    new = system.backing.record(victim.id, page)
    assert new is not None and new.contents != old_contents
    system.backing.tamper(victim.id, page, contents=old_contents, pcmd=old_pcmd)
    out = victim.access(page * PAGE_SIZE)
    assert out.sigbus and system.stats()["eldu_failed"] == 1


def test_numa_allocation_starts_at_the_local_node():
    # two sections on two nodes; CPUs 0-1 on node 0, CPUs 2-3 on node 1 (spec §5.1)
    system = epcsim.System(epc="2M", cpus=4, sections=2, nodes=2, seed=1)
    epc, sgx, env = system.sgx.epc, system.sgx, system.machine.env
    assert sorted(set(epc.node.tolist())) == [0, 1]
    from epcsim.engine.machine import Task

    def alloc_on(cpu: int) -> int:
        task = Task(system.machine, f"on{cpu}")
        task.cpu = cpu  # as if scheduled there (the CPU is not taken from the machine)
        proc = env.process(sgx.alloc_epc_page(task, 0, 0, reclaim=False))
        env.run(until=proc)
        return proc.value

    assert epc.node[alloc_on(3)] == 1
    assert epc.node[alloc_on(0)] == 0
    while len(epc.free_lists[1]):  # node 1 runs dry: the next node, round-robin
        epc.alloc_from_node(1)
    assert epc.node[alloc_on(3)] == 0


def _tcs_enclave_with_tampered_tcs(**kw):
    """A small enclave with a TCS at page 0, pushed out by a big one, its TCS record
    tampered: the next entry takes the TCS fault and ELDU refuses the record."""
    system = epcsim.System(epc=EPC, cpus=2, seed=1, **kw)
    small = system.create_enclave("64K", name="small")
    assert small.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert small.add_pages(PAGE_SIZE, 4 * PAGE_SIZE).ok and small.init().ok
    assert small.access_pages([1, 2]).ok
    build(system, "4M", 1000, name="big")
    settle(system)
    rec = system.backing.record(small.id, 0)
    assert rec is not None  # the TCS was written out
    system.backing.tamper(small.id, 0, contents=bytes(len(rec.contents)))
    return system, small


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_an_entry_whose_tcs_cannot_be_loaded_reports_the_tcs_address(engine):
    """EENTER/ERESUME #PF on the TCS, and the kernel cannot map it (ELDU refuses the record):
    the thread gets SIGBUS at the TCS's address (si_addr), not at the page it meant to
    touch, and the stream stops before touching it."""
    system, small = _tcs_enclave_with_tampered_tcs(engine=engine)
    out = small.access_pages([3])
    assert out.sigbus and out.done == 0
    assert out.fault_address == small.base  # the TCS, page 0
    t = small._main_thread()
    assert (t.entry_fault.vector, t.entry_fault.addr) == (14, small.base)
    assert system.stats()["sigbus"] == 1 and system.stats()["eldu_failed"] == 1


def test_a_parked_retry_that_faults_on_the_tcs_reports_it_as_the_entry_does(monkeypatch):
    """The bulk NOPAGE flood (fast engine): when the ERESUME of a skipped retry found the
    TCS zapped, the retry's fault is the TCS's (``NopageFlood.park`` returns True). If the
    kernel cannot map the TCS, the outcome is the one ``enter()`` reports for that fault:
    SIGBUS at the TCS's address and the entry fault recorded - not the address of the
    page the stream was retrying."""
    from epcsim.fast.flood import NopageFlood
    from epcsim.user.thread import EnclaveThread

    system = epcsim.System(epc=EPC, cpus=2, seed=1, engine="fast", nopage_flood="bulk")
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, 4 * PAGE_SIZE).ok and encl.init().ok
    assert encl.access_pages([1]).ok
    encl.encl.pte_present[2] = False  # page 2 faults; its retry is forced to park once
    parked = []

    def parkable(self, thread, index, eresume):
        return not parked

    def park(self, thread, index, eresume=True):
        parked.append(index)
        return True
        yield  # a generator, as the real one

    real_fault = EnclaveThread._fault

    def fault(self, index, charged=False):
        if index == self.tcs_index and charged:
            self.sgx.stats.sigbus += 1
            return False  # what sgx_vma_fault's SIGBUS gives _fault
        return (yield from real_fault(self, index, charged))

    monkeypatch.setattr(NopageFlood, "parkable", parkable)
    monkeypatch.setattr(NopageFlood, "park", park)
    monkeypatch.setattr(EnclaveThread, "_fault", fault)
    out = encl.access_pages([2, 3])
    assert parked == [2]
    assert out.sigbus and out.done == 0
    assert out.fault_address == encl.base  # the TCS, not page 2
    t = encl._main_thread()
    assert (t.entry_fault.vector, t.entry_fault.addr) == (14, encl.base)
