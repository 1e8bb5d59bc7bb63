"""The PCMD truncation race that ``reclaimer_writing_to_pcmd`` closes (spec §7, §16.3).

The May 2022 bug: the reclaimer pins a page's backing (contents and PCMD shmem pages) under
``encl->lock`` and drops the lock before EWB. If, in that window, ELDU loads the last evicted
neighbour sharing the PCMD page, the PCMD page is all zero and gets truncated; the reclaimer
then writes its PCMD into the orphaned page, and the page's next ELDU reads a zero PCMD: #GP,
the page is lost. ``reclaimer_writing_to_pcmd`` keeps the PCMD page while a page sharing it
is BEING_RECLAIMED.

The race is built by hand, so it does not depend on the mutex or scheduler model: page A
(index 32) and page B (index 33) are the only pages of PCMD page 1. B is evicted and A is
resident. A reclaim batch takes A; the moment A is BEING_RECLAIMED (its backing pinned,
``encl->lock`` dropped), a fault on B takes the lock - free then, the reclaimer is zapping
PTEs - and ELDUs B, so B's load runs entirely before A's EWB whichever task the lock is
handed to afterwards.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from selftest_encl import IMAGE, addr, encl_call, expect_eexit, test_encl

import epcsim
from epcsim.arch import PAGE_SIZE, PCMDS_PER_PAGE, PF_USER
from epcsim.engine.machine import Task
from epcsim.isa.sealing import pack_pcmd
from epcsim.kernel.backing import BackingRecord, EnclaveBacking
from epcsim.kernel.encl import VM_FAULT_NOPAGE, SgxEncl
from epcsim.kernel.fault import sgx_vma_fault
from epcsim.kernel.reclaim import sgx_reclaim_pages
from epcsim.user.encl_ops import GetFromAddress, PutToAddress
from epcsim.user.insn import X86_TRAP_PF

A, B = PCMDS_PER_PAGE, PCMDS_PER_PAGE + 1  # the only two pages of PCMD page 1
VALUE_A, VALUE_B = 0xA5A5A5A5A5A5A5A5, 0xB6B6B6B6B6B6B6B6


def _race(monkeypatch, check: bool):
    system = epcsim.System(epc="2M", cpus=2, seed=3, content_mode="full")
    encl = test_encl(system, heap_pages=B + 1 - IMAGE)  # heap ends at B
    sgx, e = system.sgx, encl.encl
    run = encl.new_run()
    for page, value in ((A, VALUE_A), (B, VALUE_B)):
        assert encl_call(encl, PutToAddress(value, addr(encl, page)), run) == 0
        expect_eexit(run)
    calls = []
    original = SgxEncl._reclaimer_writing_to_pcmd

    def spy(self, index):
        busy = original(self, index) if check else False
        calls.append((index, busy))
        return busy

    monkeypatch.setattr(SgxEncl, "_reclaimer_writing_to_pcmd", spy)
    kthread = Task(system.machine, "reclaimer", kernel=True)

    # 1. evict everything but A: A stays young, so each batch gives it a second chance
    while len(sgx.lru) > 1:
        e.pte_young[A] = True
        system._call(kthread, sgx_reclaim_pages(sgx, kthread))
    assert e.epc[A] >= 0 and e.epc[B] < 0 and len(sgx.lru) == 1
    assert sorted(system.backing[encl.id].records)[-1] == B  # B alone in PCMD page 1

    # 2. the race: reclaim A; fault B in while A is BEING_RECLAIMED, before A's EWB
    faulter = Task(system.machine, "faulter")
    outcome = {}

    def reclaimer():
        try:
            outcome["reclaimed"] = yield from sgx_reclaim_pages(sgx, kthread)
        finally:
            kthread.release_cpu()

    def fault_b():
        try:
            while not e.reclaiming[A]:
                yield system.machine.env.timeout(10)
            assert e.epc[A] >= 0 and not e.lock.locked  # pinned, lock dropped, no EWB yet
            outcome["fault"] = yield from sgx_vma_fault(faulter, e, B)
            outcome["a_resident_after_eldu"] = bool(e.epc[A] >= 0)
        finally:
            faulter.release_cpu()

    procs = [system.machine.spawn(reclaimer()), system.machine.spawn(fault_b())]
    system.machine.env.run(until=system.machine.env.all_of(procs))
    assert outcome == {"reclaimed": 1, "fault": VM_FAULT_NOPAGE, "a_resident_after_eldu": True}
    assert e.epc[A] < 0 and e.epc[B] >= 0

    # 3. read both values back through the vDSO (A comes back with ELDU)
    values = {}
    for page, tcs in ((A, 0), (B, PAGE_SIZE)):
        run = encl.new_run(tcs)
        get = GetFromAddress(addr(encl, page))
        assert encl_call(encl, get, run) == 0
        values[page] = (run.function, run.exception_vector, run.exception_error_code, get.value)
    return system, encl, values, calls


def test_reclaimer_writing_to_pcmd_keeps_the_pcmd_page(monkeypatch):
    system, encl, values, calls = _race(monkeypatch, check=True)
    assert values[A] == (4, 0, 0, VALUE_A)  # EEXIT, the data intact
    assert values[B] == (4, 0, 0, VALUE_B)
    st = system.stats()
    assert st["eldu_failed"] == 0 and st["sigbus"] == 0
    assert system.backing[encl.id].pcmd_lost == 0
    assert calls[0] == (B, True)  # B's ELDU saw A being reclaimed and kept the PCMD page


def test_without_reclaimer_writing_to_pcmd_the_page_is_lost(monkeypatch):
    """The same interleaving with the check disabled: the PCMD page is truncated under the
    reclaimer, A's PCMD is lost, and A's ELDU #GPs - the fault is SIGBUS, reported by the
    vDSO as a #PF the kernel could not fix, and the data is gone."""
    system, encl, values, calls = _race(monkeypatch, check=False)
    assert calls[0] == (B, False)
    assert system.backing[encl.id].pcmd_lost == 1
    assert values[A][:3] == (3, X86_TRAP_PF, PF_USER)  # ERESUME; read, not present
    assert values[A][3] is None
    assert values[B] == (4, 0, 0, VALUE_B)  # B itself was loaded before the truncation
    st = system.stats()
    assert st["eldu_failed"] == 1 and st["sigbus"] >= 1


_OPS = st.lists(
    st.tuples(st.sampled_from(["pin", "store", "eldu"]), st.integers(0, 5), st.booleans()),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_a_pinned_pcmd_is_lost_exactly_when_its_page_was_truncated_meanwhile(ops):
    """Any interleaving of the reclaimer pinning a page's backing (``get_backing``), writing
    its EWB output (``store``) and ELDUs truncating (``busy`` = what
    ``reclaimer_writing_to_pcmd`` answered) on six pages of one PCMD page: a stored PCMD
    reads back as written unless the PCMD page was truncated (all entries zero, not busy)
    between the pin and the store, and then it reads back as zeros."""
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    pcmd = pack_pcmd(0x203, 7, bytes(range(16)))
    present, pinned, lost = set(), {}, 0
    gen = 0  # truncations of PCMD page 0 so far
    for op, i, busy in ops:
        if op == "pin" and i not in present:
            f.get_backing(i)
            pinned[i] = gen
        elif op == "store" and i in pinned:
            f.store(i, BackingRecord(b"contents", pcmd))
            present.add(i)
            gone = pinned.pop(i) != gen
            lost += gone
            assert f.lookup(i).pcmd == (bytes(128) if gone else pcmd)
        elif op == "eldu" and i in present:
            present.discard(i)
            f.truncate(i, pcmd_busy=busy)
            if not present and not busy:
                gen += 1
    assert f.pcmd_lost == lost
    assert int(f.pcmd_gen[0]) == gen
