"""The enclave thread and ksgxd together on the compiled core (``run_pair``, row 1's
regime) against the reference.

The same enclave built twice (same seed): a TCS page and 2-6x the EPC's pages of REG pages
added (the ioctl's direct reclaim and ksgxd evict most of them), the thread entered once,
ksgxd asleep, the queue empty. Then one copy runs ``Enclave.access_pages`` and
``env.run()`` to exhaustion, the other ``run_pair``: the faults wake ksgxd, whose batches
interleave with the thread's faults and resident runs - the lock contended both ways, faults
retried on pages being reclaimed, ETRACK with the thread inside and the IPI that makes it
AEX. Everything the thread-alone test compares must be equal, ``encl->lock``'s trace (the
interleaving, event by event) and the free timeline (in order) included.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ksgxd_cases import differ
from thread_cases import thread_snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.thread_bridge import run_pair

LONG = bool(os.environ.get("EPCSIM_LONG"))
EPC_PAGES = {"256K": 64, "512K": 128, "1M": 256, "2M": 512}


def build(seed: int, engine: str, epc: str, n: int, cpus: int):  # type: ignore[no-untyped-def]
    system = epcsim.System(epc=epc, cpus=cpus, seed=seed, content_mode="tag", engine=engine)
    encl = system.create_enclave(1 << (n.bit_length() + 12))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    system.machine.env.run()
    encl.access_pages([1])  # the thread enters (its TCS loaded) through the Python path
    system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl


def stream(seed: int, n: int, epc_pages: int, length: int, hot: float, wmode: str):  # type: ignore[no-untyped-def]
    """``length`` accesses over pages 1..n: a fraction ``hot`` from a hot set of a quarter
    of the EPC (long resident runs: the thread inside while ksgxd works), the rest
    uniform (faults)."""
    rng = np.random.default_rng(seed)
    hot_set = 1 + rng.integers(0, n, max(1, epc_pages // 4))
    pages = np.where(
        rng.random(length) < hot, rng.choice(hot_set, length), 1 + rng.integers(0, n, length)
    )
    w: bool | np.ndarray = {"all": True, "none": False}.get(wmode, rng.random(length) < 0.5)
    return pages.astype(np.int64), w


def run_both(seed, engine, epc, mult, cpus, length, hot, wmode):  # type: ignore[no-untyped-def]
    n = int(EPC_PAGES[epc] * mult)
    ref, rencl = build(seed, engine, epc, n, cpus)
    drv, dencl = build(seed, engine, epc, n, cpus)
    pages, w = stream(seed, n, EPC_PAGES[epc], length, hot, wmode)
    out = rencl.access_pages(pages, write=w)
    ref.machine.env.run()
    result = run_pair(drv, dencl._main_thread(), pages, w)
    return (ref, rencl, out), (drv, dencl, result)


def paths(system: epcsim.System, encl) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """How often the paths ksgxd alone never takes were taken in a run."""
    s = system.sgx.stats
    trace = encl.encl.lock.trace
    thread = encl._main_thread().name
    return {
        "wakeups": s.ksgxd_wakeups,
        "ipi": s.ipi,
        "retries": s.fault_retries,
        "thread_spins": sum(1 for _, e, t in trace if e == "spin_acquire" and t == thread),
        "ksgxd_spins": sum(1 for _, e, t in trace if e == "spin_acquire" and t == "ksgxd"),
    }


@settings(max_examples=24 if LONG else 6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**16),
    engine=st.sampled_from(["fast", "reference"]),
    # 64 pages: ksgxd often takes the TCS (a hand-back) - kept, with less weight
    epc=st.sampled_from(["256K", "512K", "512K", "1M", "1M", "2M"]),
    mult=st.sampled_from([2, 3, 4, 6]),
    cpus=st.integers(2, 4),
    length=st.integers(200, 2500),
    hot=st.sampled_from([0.0, 0.9, 0.99]),
    wmode=st.sampled_from(["all", "none", "mask"]),
)
def test_the_pair_matches_the_reference(
    seed: int, engine: str, epc: str, mult: int, cpus: int, length: int, hot: float, wmode: str
) -> None:
    """The thread's stream and ksgxd's batches interleaved on the core: every array,
    record, counter, clock, the lock's trace and the free timeline as the reference's
    ``access_pages(); env.run()``. A hand-back is allowed only where the regime ends
    (ksgxd takes the TCS or the SECS); then nothing is compared."""
    (ref, rencl, out), (drv, dencl, result) = run_both(
        seed, engine, epc, mult, cpus, length, hot, wmode
    )
    if result.handed_back is not None:
        assert result.handed_back in ("TCS fault", "SECS eviction"), result
        return
    assert result.outcome == out
    assert (
        differ(thread_snapshot(ref, rencl, out), thread_snapshot(drv, dencl, result.outcome)) == []
    )
    assert drv.sgx.ksgxd_sleeping and not drv.machine.env._queue


def test_the_pair_reaches_the_paths_ksgxd_alone_never_took() -> None:
    """A guard on the cases above, and exactness where it matters most: fixed cases that
    between them wake ksgxd, contend the lock both ways (each side picks it up after the
    other's unlock while spinning), retry faults (-EBUSY), and send the IPI that makes the
    thread AEX after an ETRACK that found it inside - each exactly as the reference."""
    seen = {"wakeups": 0, "ipi": 0, "retries": 0, "thread_spins": 0, "ksgxd_spins": 0}
    for seed, engine, epc, mult, cpus, length, hot in (
        (2, "fast", "1M", 2, 2, 8000, 0.998),  # the IPI
        (2, "reference", "512K", 2, 3, 6000, 0.99),  # -EBUSY retries
        (1, "fast", "1M", 3, 2, 1500, 0.0),
    ):
        (ref, rencl, out), (drv, dencl, result) = run_both(
            seed, engine, epc, mult, cpus, length, hot, "mask"
        )
        assert result.handed_back is None, result
        a = thread_snapshot(ref, rencl, out)
        assert differ(a, thread_snapshot(drv, dencl, result.outcome)) == []
        for k, v in paths(drv, dencl).items():
            seen[k] += v
    assert all(v > 0 for v in seen.values()), seen


def test_a_record_written_loaded_and_written_again_in_one_call() -> None:
    """Deferred sealing (``kstate``): sweeps over twice the EPC, in one call, write pages
    back, load them again and write them back again - the second ELDU of a page reads a
    record the call wrote itself, unsealed, and skips its MAC check; its second EWB lists
    it again. The records left in the backing store stay unsealed after the call (sealed
    when Python first reads one: ``driver/unsealed.py``), and read they are the reference's
    byte for byte, as is everything else."""
    from epcsim.fast.driver import kstate as K
    from epcsim.fast.driver import thread_bridge as tb

    seen: list[object] = []
    real = tb.drive

    def spy(co, kt, ts, pending):  # type: ignore[no-untyped-def]
        seen.append(kt[0])  # the enclave's slot (kstate.slots)
        return real(co, kt, ts, pending)

    n = 2 * EPC_PAGES["512K"]
    sweep = np.arange(1, n + 1, dtype=np.int64)
    pages = np.concatenate([sweep, sweep[::-1], sweep])
    ref, rencl = build(3, "fast", "512K", n, 2)
    drv, dencl = build(3, "fast", "512K", n, 2)
    out = rencl.access_pages(pages, write=True)
    ref.machine.env.run()
    ewb0, eldu0 = drv.sgx.stats.ewb, drv.sgx.stats.eldu
    tb.drive = spy
    try:
        result = run_pair(drv, dencl._main_thread(), pages, True)
    finally:
        tb.drive = real
    assert result.handed_back is None and result.outcome == out
    ks = seen[-1]
    loads = int(ks.kc[K.K_DEFER_LOADS])  # type: ignore[attr-defined]
    assert loads > n // 2, loads  # ELDUs of this call's own records
    assert drv.sgx.stats.eldu - eldu0 > loads  # and of records from before the call
    assert drv.sgx.stats.ewb - ewb0 > n + loads // 2  # written again after their ELDU
    assert int(ks.dn[0]) > 0 and ks.dmark.any()  # type: ignore[attr-defined]
    assert (
        differ(thread_snapshot(ref, rencl, out), thread_snapshot(drv, dencl, result.outcome)) == []
    )
    assert not ks.dmark.any()  # type: ignore[attr-defined]  # read: sealed (the list keeps stale entries)
