"""Paging counts derived by hand: what the reclaimer writes, skips and reloads.

Two kinds of test. The batch tests drive ``sgx_reclaim_pages`` from one kernel task on an EPC
with plenty of free pages (ksgxd stays asleep: it only wakes below SGX_NR_LOW_PAGES), so every
count follows from the LRU order alone. The scan tests run the whole system - an enclave
thread scanning, ksgxd reclaiming on the other CPU - and assert the counts that do not depend
on how the two interleave; each docstring says why.

EWB counters: ``ewb`` counts pages written back, ``ewb_attempts`` EWB executions including the
SGX_NOT_TRACKED retries.
"""

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.engine.machine import Task
from epcsim.kernel.reclaim import sgx_reclaim_pages


def _ewb(st):
    """(pages written back, EWB executions)."""
    return st["ewb"], st["ewb_attempts"]


def _serial_options():
    """``mutex="fifo", sched="fifo"`` where the System has them (issue 8 items 1-2)."""
    params = inspect.signature(epcsim.System).parameters
    return {k: "fifo" for k in ("mutex", "sched") if k in params}


def _heap_enclave(system, pages, size="256K"):
    """An enclave of ``pages`` RW pages and no TCS page (threads use the implicit TCS), so
    the LRU holds exactly these pages, in the order they were added."""
    encl = system.create_enclave(size)
    assert encl.add_pages(0, pages * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    return encl


def _batch(system, task):
    return system._call(task, sgx_reclaim_pages(system.sgx, task))


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_second_chance_batches_by_hand(policy):
    """48 pages added in order 0..47 (LRU order), the odd ones then read (Accessed set).

    Kernel LRU (``sgx_reclaimer_age``: a young page goes back to the tail, bit cleared):
      batch 1 isolates 0..15: the 8 odd pages are young -> put back; the 8 even are written.
      batch 2 isolates 16..31 and batch 3 32..47 the same way: 24 written, 24 young in all.
      The list is now 1,3,..,47 with the bits cleared; batch 4 isolates 1..31 (odd): all 16
      are written. Total: 40 written, 24 young skips, 64 isolated; 33,35,..,47 stay.
    ``fifo`` ignores the bit: batches 1-3 write 0..47; the SECS goes with its last child.
    Every batch that writes starts with one EWB that finds no ETRACK since the EBLOCKs
    (SGX_NOT_TRACKED), then ETRACK; nothing runs inside the enclave, so the retry succeeds
    and no IPI is sent: EWB executions = written + one per writing batch (the SECS EWB needs
    no tracking).
    Reading all 48 pages back then takes one ELDU per evicted page (plus the SECS first).
    """
    system = epcsim.System(epc="1M", cpus=2, seed=1, policy=policy, **_serial_options())
    encl = _heap_enclave(system, 48)
    assert encl.access_pages(np.arange(1, 48, 2)).ok
    kthread = Task(system.machine, "reclaimer", kernel=True)
    written = [_batch(system, kthread) for _ in range(4)]
    st = system.stats()
    pages, attempts = _ewb(st)
    e = encl.encl
    if policy == "lru":
        assert written == [8, 8, 8, 16]
        assert (pages, st["reclaim_young"], st["reclaim_scanned"]) == (40, 24, 64)
        assert np.flatnonzero(e.epc >= 0).tolist() == list(range(33, 48, 2))
        assert system.sgx.lru.order() == [int(e.epc[i]) for i in range(33, 48, 2)]
        secs = 0
    else:
        assert written == [16, 16, 16, 0]
        assert (st["reclaim_young"], st["reclaim_scanned"]) == (0, 48)
        assert encl.resident_pages == 0 and st["secs_evictions"] == 1
        secs = 1
        assert pages == 48 + secs
    assert st["etrack"] == 4 - written.count(0) and st["ipi"] == 0
    assert attempts == pages + st["etrack"]
    assert st["eldu"] == 0
    assert encl.access_pages(np.arange(48)).ok
    assert system.stats()["eldu"] == pages  # every written page (and the SECS) comes back


def test_all_young_batch_writes_nothing():
    """Spec §18.3: a batch is 16 pages *scanned*. All 16 young: nothing written, all put
    back in order with the bit cleared, so the next batch writes the same 16."""
    system = epcsim.System(epc="1M", cpus=2, seed=1, **_serial_options())
    encl = _heap_enclave(system, 16)
    assert encl.access_pages(np.arange(16)).ok
    kthread = Task(system.machine, "reclaimer", kernel=True)
    order = system.sgx.lru.order()
    assert _batch(system, kthread) == 0
    st = system.stats()
    assert (_ewb(st)[0], st["reclaim_young"], st["etrack"]) == (0, 16, 0)
    assert system.sgx.lru.order() == order
    assert _batch(system, kthread) == 16
    assert _ewb(system.stats())[0] == 16 + 1  # and the SECS with the last child


@pytest.mark.parametrize("policy", ["fifo", "lru"])
def test_sequential_scan_misses_every_access(policy):
    """A thread scans pages 0..N-1 of an enclave R times on an EPC of M pages; ksgxd
    reclaims on the other CPU. N = 512, M = 128, R = 2, no TCS page (implicit TCS).

    At most C = M - 1 (SECS) - 2 (VA pages) = 125 enclave pages are ever resident.
    ``fifo``: pages leave in the order they were marked (added, then loaded). For page p to
    still be resident when the scan comes back to it, every page marked after p would have
    to be resident too - the N - 1 = 511 pages the scan touched since - more than C. The
    same holds in the first round for the pages the build left resident (a suffix of the
    add order). So every access misses: ELDU = R * N = 1024 exactly, whatever the
    interleaving, and no page is young-skipped.
    Kernel LRU: a loaded page is read at once (Accessed set), so its first trip to the list
    head puts it back and its second writes it. Each trip passes at most C - 1 pages ahead
    of it, so at most 2 * (C - 1) pages leave meanwhile, and a load needs a free page: with
    at most 79 free (ksgxd stops at the batch that reaches SGX_NR_HIGH_PAGES) at most
    2 * 124 + 79 = 327 pages are loaded before it is written - fewer than the 511 the scan
    loads before it returns: again ELDU = 1024. Each page loaded and then
    reclaimed was young exactly once, so young skips = loads whose page has gone round once
    = 1024 minus the resident pages still carrying their Accessed bit at the end.
    Both: every page isolated is either written or skipped; written - loaded = what is
    swapped at the end (the SECS never leaves: children stay resident).
    """
    n, rounds = 512, 2
    system = epcsim.System(epc="512K", cpus=2, seed=2, policy=policy, **_serial_options())
    encl = _heap_enclave(system, n, size="4M")
    assert system.stats()["va_pages"] == 2
    before = system.stats()
    out = encl.access_pages(np.tile(np.arange(n), rounds))
    assert out.ok and out.done == rounds * n
    system.run(until="50ms")  # let ksgxd finish its last batch
    st = system.stats()
    e = encl.encl
    assert st["eldu"] == rounds * n
    assert st["secs_evictions"] == 0 and st["eldu_failed"] == 0
    pages, _ = _ewb(st)
    assert st["reclaim_scanned"] == pages + st["reclaim_young"]
    assert pages - st["eldu"] == encl.swapped_pages
    assert encl.resident_pages <= 125
    if policy == "fifo":
        assert st["reclaim_young"] == 0
    else:
        young_now = int(np.count_nonzero((e.epc >= 0) & e.pte_young))
        assert st["reclaim_young"] - before["reclaim_young"] == rounds * n - young_now
        assert before["reclaim_young"] == 0  # the build accessed nothing


def _second_chance(n, young, batches):
    """The spec's description of the kernel LRU (§6.3, §18.2), as a queue: isolate up to 16
    from the head; a young page loses its bit and goes to the tail, any other is written.
    Returns the pages written per batch, the young skips and the final queue."""
    queue = [(page, page in young) for page in range(n)]
    written, skips = [], 0
    for _ in range(batches):
        batch, queue = queue[:16], queue[16:]
        written.append(sum(1 for _, y in batch if not y))
        skips += sum(1 for _, y in batch if y)
        queue += [(page, False) for page, y in batch if y]
    return written, skips, [page for page, _ in queue]


@settings(max_examples=20, deadline=None)
@given(young=st.sets(st.integers(0, 39), max_size=40), batches=st.integers(1, 5))
def test_kernel_lru_batches_match_the_second_chance_queue(young, batches):
    """For any set of pages read before reclaim, each batch writes what the spec's
    second-chance queue says, skips what it says, and leaves the LRU in its order."""
    n = 40
    system = epcsim.System(epc="1M", cpus=2, seed=1, **_serial_options())
    encl = _heap_enclave(system, n)
    if young:
        assert encl.access_pages(np.array(sorted(young))).ok
    kthread = Task(system.machine, "reclaimer", kernel=True)
    written = [_batch(system, kthread) for _ in range(batches)]
    expect, skips, order = _second_chance(n, young, batches)
    assert written == expect
    assert system.stats()["reclaim_young"] == skips
    e = encl.encl
    assert system.sgx.lru.order() == [int(e.epc[p]) for p in order]


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_add_pages_on_one_cpu_reclaims_by_hand(policy):
    """ADD_PAGES is a sequential scan by one task. One CPU and a scheduler slice longer than
    the whole build (and ``sched="fifo"`` where the System has it: no wake-up preemption)
    keep ksgxd, woken below SGX_NR_LOW_PAGES, waiting for the CPU until the ioctl returns, so
    every reclaim during the build is the allocator's own (``sgx_alloc_epc_page(reclaim)``:
    one batch each time the free list is empty). M = 128 EPC pages, N = 300 pages added.

      CREATE takes a VA page and the SECS: 126 free. Pages 0..125 take them.
      Pages 126..299 (174) each find the list empty every 16th time: 11 batches write the
      16 oldest pages each (nothing was accessed, so nothing is young under either policy):
      176 written, 2 pages left free.
      Then ksgxd runs: free 2 -> 18 -> 34 -> 50 -> 66 >= SGX_NR_HIGH_PAGES: 4 batches.
    Total 240 written, 60 resident (128 = 66 free + 60 + SECS + 1 VA page), no ELDU; each
    of the 15 batches spends one EWB on SGX_NOT_TRACKED before its ETRACK.
    """
    opts = _serial_options()
    system = epcsim.System(epc="512K", cpus=1, seed=1, policy=policy, sched_slice="10s", **opts)
    encl = system.create_enclave("2M")
    assert encl.add_pages(0, 300 * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    system.run(until="50ms")
    st = system.stats()
    pages, attempts = _ewb(st)
    assert (st["alloc_reclaim_batches"], st["ksgxd_batches"]) == (11, 4)
    assert (pages, st["epc_pages_free"], encl.resident_pages) == (240, 66, 60)
    assert np.flatnonzero(encl.encl.epc >= 0).tolist() == list(range(240, 300))
    assert (st["etrack"], attempts, st["reclaim_young"], st["eldu"]) == (15, 255, 0, 0)
