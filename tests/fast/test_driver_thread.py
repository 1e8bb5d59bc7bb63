"""The enclave thread's compiled state machine (``fast/driver/thread.py``) against the
reference, the thread alone (ksgxd asleep).

The scenario of PATHS.md ("What is built"), built twice with the same seed: ``high_pages``
set large before the first run, a thread sweeps more pages than the EPC holds, ksgxd
writes back to the high watermark and sleeps. Then a second stream - evicted pages (each a
fault: AEX, ``sgx_vma_fault``, ELDU) mixed with resident ones (runs of user time), with
writes - runs as ``Enclave.access_pages`` in one copy and ``run_thread`` in the other,
short enough that free pages stay at or above ``low_pages`` (ksgxd is never woken). Every
array, record, counter and clock must be equal, and what the thread adds: its CPU
accounting, ``entered``, the SECS's ``inside``/``busy_tcs``, the LPs' state, the outcome,
the fault latencies.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ksgxd_cases import differ
from thread_cases import thread_snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.thread_bridge import run_thread

LONG = bool(os.environ.get("EPCSIM_LONG"))


def build(seed: int, engine: str, epc: str, n: int, high: int) -> tuple[epcsim.System, object]:
    """An enclave of a TCS page (index 0) and ``n`` REG pages swept once, ksgxd asleep at
    the high watermark, the TCS mapped, the SimPy queue empty."""
    system = epcsim.System(epc=epc, cpus=2, seed=seed, content_mode="tag", engine=engine)
    system.sgx.high_pages = high  # before ksgxd's first run: its loop reads it then
    encl = system.create_enclave(1 << (n.bit_length() + 12))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(seed)
    encl.access_pages((1 + rng.permutation(n)).tolist(), write=True)
    system.run()
    system.machine.env.run()  # ksgxd to the high watermark
    # one access through the Python path: ERESUME (the TCS reloaded if ksgxd took it)
    encl.access_pages([1])
    system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl


def stream(system: epcsim.System, encl, seed: int, resident: int, wmode: str):  # type: ignore[no-untyped-def]
    """Evicted pages up to the free pages above ``low_pages`` (each one fault; the TCS's
    reload counted, if it is evicted), mixed with ``resident`` accesses to mapped pages
    (repeats allowed), and a write mask."""
    e = encl.encl
    rng = np.random.default_rng(seed + 1)
    idx = np.arange(e.nr_pages)
    evicted = idx[(e.epc < 0) & e.present & (idx > 0)]
    mapped = idx[(e.epc >= 0) & e.pte_present & (idx > 0)]
    budget = system.sgx.epc.nr_free_pages - system.sgx.low_pages
    # the entry's ERESUME reloads the TCS first if ksgxd took it after ``build``'s access
    # (one ELDU more: with the whole budget ksgxd would wake; drawn by Hypothesis in
    # session trim3's landing, seed 57939, epc 1M, extra 271, high 173)
    budget -= int(e.epc[0] < 0)
    ev = rng.choice(evicted, size=min(budget, evicted.size), replace=False)
    res = rng.choice(mapped, size=resident) if mapped.size else np.zeros(0, np.int64)
    pages = np.concatenate([ev, res]).astype(np.int64)
    rng.shuffle(pages)
    if wmode == "all":
        w: bool | np.ndarray = True
    elif wmode == "none":
        w = False
    else:
        w = rng.random(pages.size) < 0.5
    return pages, w


def run_both(seed: int, engine: str, epc: str, n: int, high: int, resident: int, wmode: str):  # type: ignore[no-untyped-def]
    ref, rencl = build(seed, engine, epc, n, high)
    drv, dencl = build(seed, engine, epc, n, high)
    assert ref.sgx.ksgxd_sleeping
    pages, w = stream(drv, dencl, seed, resident, wmode)
    before = dataclasses.replace(drv.sgx.stats)
    out = rencl.access_pages(pages, write=w)
    result = run_thread(drv, dencl._main_thread(), pages, w)
    return (ref, rencl, out), (drv, dencl, result), before


@settings(max_examples=24 if LONG else 6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**16),
    engine=st.sampled_from(["fast", "reference"]),
    epc=st.sampled_from(["1M", "2M"]),
    extra=st.integers(40, 300),
    high=st.integers(100, 180),
    resident=st.integers(0, 120),
    wmode=st.sampled_from(["all", "none", "mask"]),
)
@example(seed=57939, engine="fast", epc="1M", extra=271, high=173, resident=0, wmode="all")
def test_the_thread_alone_matches_the_reference(
    seed: int, engine: str, epc: str, extra: int, high: int, resident: int, wmode: str
) -> None:
    """A stream of faults and resident runs, the thread alone: the driver leaves every
    array, record, counter, clock and the thread's own state exactly as the reference."""
    n = {"1M": 256, "2M": 512}[epc] + extra
    scale = {"1M": 1, "2M": 2}[epc]
    (ref, rencl, out), (drv, dencl, result), before = run_both(
        seed, engine, epc, n, high * scale, resident, wmode
    )
    assert result.handed_back is None, result
    assert result.outcome == out
    a = thread_snapshot(ref, rencl, out)
    b = thread_snapshot(drv, dencl, result.outcome)
    assert differ(a, b) == []
    # each fault of the stream is an ELDU; the stream is empty when ksgxd left no free page
    # above the low watermark (seed 1115, 1M, extra 224, high 110: 32 free, low 32)
    faulted = drv.sgx.stats.page_faults > before.page_faults
    assert (drv.sgx.stats.eldu > before.eldu) == faulted


def test_the_stream_faults_runs_and_ends_as_the_reference() -> None:
    """One fixed case with the counters spelt out: faults, ELDUs and resident runs all
    happened, the thread ended AEXed off its CPU, the next ``access_pages`` on the Python
    path goes on from the driver's state exactly as from the reference's."""
    (ref, rencl, out), (drv, dencl, result), s0 = run_both(7, "fast", "1M", 400, 160, 80, "mask")
    assert result.handed_back is None and result.pc == "done"
    s = drv.sgx.stats
    faults = s.page_faults - s0.page_faults
    assert faults > 50 and s.eldu - s0.eldu == faults
    assert s.enclave_accesses - s0.enclave_accesses == result.outcome.done == out.done
    assert s.ksgxd_wakeups == ref.sgx.stats.ksgxd_wakeups
    t = dencl._main_thread()
    assert t.cpu is None and t.entered and t.aexed
    assert (
        differ(thread_snapshot(ref, rencl, out), thread_snapshot(drv, dencl, result.outcome)) == []
    )
    # the Python path continues from both: a second stream that wakes ksgxd
    more = np.arange(1, 300)
    a = rencl.access_pages(more, write=True)
    b = dencl.access_pages(more, write=True)
    ref.machine.env.run()
    drv.machine.env.run()
    assert a == b
    assert differ(thread_snapshot(ref, rencl, a), thread_snapshot(drv, dencl, b)) == []


def test_an_allocation_that_would_wake_ksgxd_hands_back() -> None:
    """The stream outruns the free pages: the driver stops before the allocation whose
    result would fall below ``low_pages`` (``wake_ksgxd``), holding ``encl->lock``, with
    the faults before it done as the reference did them."""
    drv, dencl = build(3, "fast", "1M", 400, 160)
    e = dencl.encl
    evicted = np.flatnonzero((e.epc < 0) & e.present)
    free = drv.sgx.epc.nr_free_pages
    low = drv.sgx.low_pages
    pages = evicted[: free - low + 5]
    eldu0 = drv.sgx.stats.eldu
    result = run_thread(drv, dencl._main_thread(), pages, True)
    assert result.handed_back == "ksgxd wake-up"
    assert result.pc == "locked" and result.page == pages[free - low]
    assert drv.sgx.epc.nr_free_pages == low
    assert e.lock.owner is dencl._main_thread()
    assert drv.sgx.stats.eldu - eldu0 == free - low and drv.sgx.ksgxd_sleeping
    # the prefix on the reference: the same state but for the stopped fault
    ref, rencl = build(3, "fast", "1M", 400, 160)
    out = rencl.access_pages(pages[: free - low], write=True)
    assert out.done == result.outcome.done == free - low
    assert drv.sgx.stats.page_faults == ref.sgx.stats.page_faults + 1


def test_a_tcs_page_in_the_stream_is_a_pf_hand_back() -> None:
    """The EPCM refuses an access to the TCS page (not PT_REG): the reference ends the
    stream with an SGX #PF; the driver hands back at that access, the resident ones
    before it done."""
    drv, dencl = build(4, "fast", "1M", 300, 160)
    e = dencl.encl
    mapped = np.flatnonzero((e.epc >= 0) & e.pte_present)
    pages = np.concatenate([mapped[mapped > 0][:5], [0]])
    result = run_thread(drv, dencl._main_thread(), pages)
    assert result.handed_back == "#PF to the runtime" and result.page == 0
    assert result.pc == "access" and result.outcome.done == 5
    _, rencl = build(4, "fast", "1M", 300, 160)
    out = rencl.access_pages(pages)
    assert out.done == 5 and out.pf_error


def test_records_that_fail_eldu_hand_back_before_it() -> None:
    """ELDU of a tampered record fails (the reference WARNs, loses the page, SIGBUS): the
    driver checks each record before the step and hands back there (``KB_ELDU``), the
    faults before it done. A record kept raw (a PCMD of another shape: the backing store's
    ``odd`` side table) is checked by Python (``SVC_UNSEAL``); every raw record fails ELDU
    in the regime (EWB writes compact ones only), so it hands back too. ``odd`` is a bit per
    chunk of 512 records, so the records before it in its chunk are served by Python too
    (their check and their truncation), with the same results."""
    for how in ("mac", "raw"):
        drv, dencl = build(5, "fast", "1M", 300, 160)
        e = dencl.encl
        ev = np.flatnonzero((e.epc < 0) & e.present)[:6]
        b = e.backing
        rec = b.lookup(int(ev[2]))
        if how == "mac":
            b.tamper(int(ev[2]), contents=bytes(8))
        else:
            pcmd = bytearray(rec.pcmd)
            pcmd[80] = 1  # a reserved byte: not EWB's shape
            b.tamper(int(ev[2]), pcmd=bytes(pcmd))
        assert (int(ev[2]) in b._odd) == (how == "raw")
        s0 = dataclasses.replace(drv.sgx.stats)
        result = run_thread(drv, dencl._main_thread(), ev, True)
        assert result.handed_back == "ELDU failure" and result.page == ev[2]
        assert result.pc == "locked" and result.outcome.done == 2
        s = drv.sgx.stats
        assert (s.eldu - s0.eldu, s.page_faults - s0.page_faults) == (2, 3)
        # raw: the two ELDUs before it (same chunk) checked and truncated by Python, then its
        # own check; SVC_UNSEAL is 6, SVC_TRUNCATE 7
        assert result.services == ({"6": 3, "7": 2} if how == "raw" else {})
        ref, rencl = build(5, "fast", "1M", 300, 160)
        rencl.encl.backing.tamper(int(ev[2]), contents=bytes(8))
        out = rencl.access_pages(ev, write=True)
        assert out.sigbus and out.done == 2 and ref.sgx.stats.eldu_failed == 1
        assert ref.sgx.stats.page_faults == s.page_faults


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_an_empty_stream_starts_and_ends_the_process_only(engine: str) -> None:
    """No access: the process starts and ends, the thread never takes a CPU (``enter`` is
    not reached), as in the reference."""
    ref, rencl = build(2, engine, "1M", 300, 160)
    drv, dencl = build(2, engine, "1M", 300, 160)
    out = rencl.access_pages(np.zeros(0, np.int64))
    result = run_thread(drv, dencl._main_thread(), np.zeros(0, np.int64))
    assert result.handed_back is None and result.outcome == out
    assert differ(thread_snapshot(ref, rencl, out), thread_snapshot(drv, dencl, out)) == []


def test_outside_the_regime_is_refused() -> None:
    system, encl = build(1, "fast", "1M", 300, 160)
    t = encl._main_thread()
    with pytest.raises(ValueError, match="pages: index outside"):
        run_thread(system, t, [10**6])
    implicit = epcsim.System(epc="1M", cpus=2, seed=1, content_mode="tag")
    en = implicit.create_enclave("1M")
    assert en.add_pages(0, 16 * PAGE_SIZE).ok and en.init().ok
    en.access_pages(list(range(16)))
    implicit.machine.env.run()
    with pytest.raises(ValueError, match="system: .*"):
        run_thread(implicit, en._main_thread(), [1])


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_the_thread_machine_served_by_simpy_matches_the_reference(engine: str) -> None:
    """The same compiled machine, served by SimPy one request at a time (``cosim/served``:
    every engine action of ``thread.py`` is a request, so it runs on either engine): the
    thread alone, as the first test, equal to the reference's ``access_pages`` (the SimPy
    side keeps the clock, the tasks and the lock; the machine's arrays are folded at the
    end as after a core call)."""
    import itertools

    from epcsim.fast.cosim.served import Served
    from epcsim.fast.driver import kstate as K
    from epcsim.fast.driver import tstate as T
    from epcsim.fast.driver.bridge import _check_regime, _kernel_state
    from epcsim.fast.driver.thread import thread_resume
    from epcsim.fast.driver.thread_bridge import _core_state, _thread_state
    from epcsim.fast.driver.thread_fold import fold_thread

    ref, rencl = build(11, engine, "1M", 400, 160)
    drv, dencl = build(11, engine, "1M", 400, 160)
    pages, w = stream(drv, dencl, 11, 60, "mask")
    out = rencl.access_pages(pages, write=w)
    ref.machine.env.run()
    thread = dencl._main_thread()
    encl, secs = _check_regime(drv)
    co = _core_state(drv, thread, False)
    ks = _kernel_state(drv, encl, secs)
    ks.kc[K.K_THREAD_T] = 0
    ts = _thread_state(drv, thread, pages, w, alone=True)
    kt = drv.sgx.ksgxd_task
    served = Served(
        co, drv.machine, [thread, kt], [encl.lock], [drv.sgx.ksgxd_waitq],
        lambda t: thread_resume(co, K.slots(ks), ts, t),
    )  # fmt: skip
    served.spawn(0)
    served.run()
    fold_thread(drv, thread, encl, secs, ks, ts)
    # access_pages's env.run(until=proc) queued the process's event again (an eid)
    env = drv.machine.env
    env._eid = itertools.count(next(env._eid) + 1)
    assert ts.tc[T.TC_FINISHED] == 1 and ts.tc[T.TC_DONE] == out.done
    assert differ(thread_snapshot(ref, rencl, out), thread_snapshot(drv, dencl, out)) == []
