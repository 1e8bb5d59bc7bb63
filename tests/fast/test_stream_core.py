"""``System(fast_core=True)``: ``access_stream``'s loop on the compiled core from its loop
top (``fast/driver/stream.py``) against the reference.

The same scenario on ``engine="reference"`` and on the fast engine with the hook: several
``access_pages`` calls and a started thread (random streams over more pages than the EPC,
write masks), with ``System.run(until=)`` between, a tampered record, a TCS page that ksgxd
may take (small EPCs), SGX2 EAUG faults (pages never added), 2-4 CPUs. After every call
every observable must be equal (the kernel's and the CPU's arrays, backing records byte for
byte, VA, counters, free timeline, latencies, the lock's trace, clock and next eid, the
thread's accounting, the outcome), and the hook must have run some of the accesses
(``System.fast_core_accesses``), or the test proves nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_driver_ksgxd import snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.auto import AUTO_MIN_ACCESSES, auto_engages, machines_warm
from epcsim.user.thread import AccessOutcome

#: observables in which the fast engine differs from the reference by design (elided steps
#: take no event: fewer eids, so other eids in the queue)
ENGINE_KEYS = frozenset(("eid", "elided", "queue"))


def _snap(system: epcsim.System, encl, out) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """``thread_snapshot`` with the lock's owner by name (a Task of another System is never
    equal) and its timestamps apart from its trace."""
    snap = snapshot(system)
    t = encl._main_thread()
    cpu = system.cpu
    secs = cpu.secs_at.get(encl.encl.secs_epc)  # None while the SECS is evicted
    lat = system.sgx.fault_latency_ns
    snap["thread"] = (
        t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime,
        t.started, t.entered, t.aexed, t.entry_fault,
    )  # fmt: skip
    snap["lp"] = (
        list(cpu.lp_eid),
        list(cpu.lp_tcs),
        None if secs is None else sorted(secs.busy_tcs),
    )
    snap["rq"] = (list(system.machine.rq._idle), system.machine.context_switches)
    lock = encl.encl.lock
    snap["mutex"] = (lock.wait_ns, lock.steals, lock.handoffs, lock.spin_acquired)
    snap["outcome"] = dataclasses.astuple(out)
    snap["latency"] = (lat.count, lat.counts.tobytes(), list(lat._buf))
    snap["queue"] = [(t, p, e) for t, p, e, _ in system.machine.env._queue]
    owner, free_since, freed_from, handed_at, contended, trace = snap["lock"]  # type: ignore[misc]
    snap["lock"] = (None if owner is None else owner.name, contended, trace)
    snap["lock_times"] = (free_since, freed_from, handed_at)
    return snap


def _build(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, tcs: bool, mult: int = 4,
    settle: bool = True, **kw,
):  # fmt: skip
    system = epcsim.System(
        engine=engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=seed, content_mode="tag", **kw
    )
    n = mult * epc_pages
    encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
    if tcs:
        assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
        assert encl.add_pages(PAGE_SIZE, (n - 1) * PAGE_SIZE).ok
    else:
        assert encl.add_pages(0, n * PAGE_SIZE).ok
    sc = system.sgx.stream_core
    if sc is not None:
        # ksgxd met K0 during the EADDs (the enclave not initialized): its generator kept it
        assert system.stats()["ksgxd_batches"] > 0 and sc.k0_entries == 0
    assert encl.init().ok
    if settle:
        # ksgxd to its sleep after the EADDs' pressure (SimPy's queue emptied;
        # ``System.run()`` runs started threads only); else ksgxd is awake at the first
        # access, and with small EPCs at every loop top: the pair then comes from ksgxd's
        # machine entered at K0's check (``StreamCore.ksgxd_at_check``)
        system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl, n


def _scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, tcs: bool, eaug: bool, mult: int,
    settle: bool = True, **kw,
):  # fmt: skip
    """Yields a snapshot after each step of one scenario (the module docstring), then the
    hook's counts (``StreamCore``: accesses, ksgxd's pages written back on the core)."""
    system, encl, n = _build(engine, seed, epc_pages, cpus, tcs, mult, settle, **kw)
    rng = np.random.default_rng(seed)
    first = 1 if tcs else 0
    hi = 2 * n if eaug else n  # pages [n, 2n) were never added: EAUG on SGX2
    for step in range(5):
        size = int(rng.integers(1, 6 * epc_pages))
        pages = rng.integers(first, hi if step == 3 else n, size=size)
        write = rng.random(size) < 0.3
        if step == 4:  # a started thread (its own generator), System.run() to its end
            proc = encl.start(pages, write)
            system.run()
            out = proc.value
        else:
            out = encl.access_pages(pages, write)
        yield _snap(system, encl, out)
        if step == 1:
            system.run(until=int(rng.integers(1, 3_000_000)))
            yield _snap(system, encl, out)
        if step == 2:
            e = encl.encl
            idx = np.arange(e.nr_pages)
            evicted = idx[(e.epc < 0) & e.present & (idx >= first)]
            if evicted.size:
                e.backing.tamper(int(evicted[0]), contents=b"\x00" * 8)
    sc = system.sgx.stream_core
    yield (0, 0) if sc is None else (sc.accesses, sc.ksgxd_pages)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 64, 96]),
    cpus=st.integers(2, 4),
    tcs=st.booleans(),
    eaug=st.booleans(),
    mult=st.sampled_from([2, 4, 6]),
    settle=st.booleans(),
)
def test_streams_on_the_core_match_the_reference(
    seed: int, epc_pages: int, cpus: int, tcs: bool, eaug: bool, mult: int, settle: bool
) -> None:
    """The hook's run equals the fast engine's without it in every observable (the same
    engine: eids and elided steps too), so it equals the reference wherever the fast
    engine does (its named differences, ``elided`` and the eids that elision saves, are
    the engine's, not the hook's). The enclave is 2-6x the EPC, so ksgxd is busy: it runs
    on the core with the thread, goes on served by SimPy when a call ends mid-batch (the
    ``run(until=)`` step, the next call's first iterations), and is moved back. Without
    ``settle`` ksgxd is awake at the first access: its generator hands it to its machine
    at K0's check."""
    ref = _scenario("reference", seed, epc_pages, cpus, tcs, eaug, mult, settle)
    fast = _scenario("fast", seed, epc_pages, cpus, tcs, eaug, mult, settle, fast_core=False)
    core = _scenario("fast", seed, epc_pages, cpus, tcs, eaug, mult, settle, fast_core=True)
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        if isinstance(a, dict):
            assert isinstance(b, dict) and isinstance(f, dict)
            assert [key for key in f if f[key] != b[key]] == [], f"step {k}"
            assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []
        else:
            assert b[0] > 0, "the hook never engaged"  # (ksgxd on the core: row 1's test)


def test_the_hook_engages_in_row_1s_shape() -> None:
    """Row 1 (``benchmarks/rows.fault_rate``, small): uniform accesses over 4x the EPC, ksgxd
    running, the implicit TCS. The pair runs nearly every access on the core (all but the
    first call's first iterations, before ksgxd first sleeps), ksgxd writes back on the
    core, a ``run(until=)`` between the calls serves ksgxd's machine in SimPy, and the
    results are the reference's."""
    snaps = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = _build(engine, 1, 256, 2, False, **kw)
        stream = np.random.default_rng(1).integers(0, n, size=4000)
        encl.access_pages(stream[:1000])
        system.run(until=20_000)  # 20 us more: ksgxd's machine served, no thread
        out = encl.access_pages(stream[1000:])
        assert out.ok
        snaps[name] = _snap(system, encl, out)
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            assert system.fast_core_accesses > 0.9 * stream.size
            assert sc.ksgxd_pages > 0 and sc.served_steps > 0
    a, f, b = snaps["reference"], snaps["fast"], snaps["core"]
    assert [key for key in f if f[key] != b[key]] == []
    assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def test_fast_core_is_auto_by_default_and_checked() -> None:
    """``"auto"`` is the default on the fast engine (a ``StreamCore`` that decides per stream),
    off on the reference engine; ``False`` has no core; anything else names the argument."""
    sc = epcsim.System(epc="256K").sgx.stream_core
    assert sc is not None and sc.auto
    assert epcsim.System(epc="256K", fast_core=True).sgx.stream_core.auto is False
    assert epcsim.System(epc="256K", fast_core=False).sgx.stream_core is None
    assert epcsim.System(epc="256K", engine="reference").sgx.stream_core is None
    assert epcsim.System(epc="256K", fast_core=False).fast_core_accesses == 0
    with pytest.raises(ValueError, match="fast_core"):
        epcsim.System(epc="256K", engine="reference", fast_core=True)
    for bad in (1, "on", None):
        with pytest.raises(ValueError, match="fast_core"):
            epcsim.System(epc="256K", fast_core=bad)  # type: ignore[arg-type]


@given(accesses=st.integers(1, 10 * AUTO_MIN_ACCESSES))
def test_auto_engages_when_warm_or_long_enough(accesses: int) -> None:
    """The decision (``driver/auto.py``): warm machines always; cold, only a stream that
    repays the compile - so a short cold stream stays off."""
    assert auto_engages(accesses, warm=True)
    assert auto_engages(accesses, warm=False) == (accesses >= AUTO_MIN_ACCESSES)


def test_auto_follows_the_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``System()`` stream runs on the core exactly when ``auto_engages`` says so, with
    the machines seen cold or warm (``machines_warm`` patched: the decision, not how long a
    compile takes); once engaged, the ``System`` stays on (its compile is paid). Results
    equal ``fast_core=False``'s either way."""
    from epcsim.fast.driver import stream as stream_mod

    def run(warm: bool, **kw):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(stream_mod, "machines_warm", lambda: warm)
        system, encl, n = _build("fast", 1, 256, 2, False, **kw)
        out = encl.access_pages(np.random.default_rng(1).integers(0, n, size=3000))
        return system, _snap(system, encl, out)

    _, s_off = run(False, fast_core=False)
    cold, s_cold = run(False)
    assert AUTO_MIN_ACCESSES > 3000 and cold.fast_core_accesses == 0
    assert cold.sgx.stream_core.on is False
    warm, s_warm = run(True)
    assert warm.fast_core_accesses > 0.9 * 3000
    # a cold process with a long stream: the threshold lowered below this stream's length
    monkeypatch.setattr(stream_mod, "auto_engages", lambda n, warm: warm or n >= 1000)
    long_, s_long = run(False)
    assert long_.fast_core_accesses > 0.9 * 3000 and long_.sgx.stream_core.on
    for snap in (s_cold, s_warm, s_long):
        assert [key for key in s_off if s_off[key] != snap[key]] == []


def test_machines_warm_once_compiled_here() -> None:
    """After a ``fast_core=True`` stream in this process the machines are compiled, so
    "auto" engages at once (no cold compile left to pay)."""
    system, encl, n = _build("fast", 1, 256, 2, False, fast_core=True)
    encl.access_pages(np.random.default_rng(2).integers(0, n, size=2000))
    assert system.fast_core_accesses > 0
    assert machines_warm()
    assert auto_engages(1, machines_warm())


def test_one_compiled_machine_for_every_mask_and_stream_layout() -> None:
    """A read-only stream or write mask (``np.broadcast_to``'s, a frozen array) must not give
    the thread's machine a second numba type: each type is another ~25 s compile of the
    whole machine, paid by every fresh clone and every first run."""
    from epcsim.fast.driver.thread_bridge import drive

    system, encl, n = _build("fast", 1, 256, 2, False, fast_core=True)
    stream = np.random.default_rng(1).integers(0, n, size=1500)
    encl.access_pages(stream[:1000])  # row 1's warm-up: records in the store, ksgxd active
    stream = stream[1000:]
    stream.flags.writeable = False
    mask = np.random.default_rng(2).random(stream.size) < 0.3
    mask.flags.writeable = False
    for write in (False, True, mask):
        assert encl.access_pages(stream, write=write).ok
    assert system.fast_core_accesses > 0
    # ``run_thread``/``run_pair`` pass writable arrays (thread_bridge): the hook must too.
    # (``drive`` is the entry called from Python, so its overloads are filled even when
    # numba loads it from its cache; the machine inside it is not a separate entry.)
    assert len(drive.overloads) == 1
    assert not any("readonly" in str(sig) for sig in drive.overloads)


def test_ksgxd_served_to_its_sleep_goes_back_to_its_generator() -> None:
    """A call ends with ksgxd mid-batch (its machine served by SimPy); ``System.run(until=)``
    runs it to its sleep, where its own generator's wait goes back on ``ksgxd_waitq`` (no
    session left) and the next call enters the pair from ksgxd asleep again. Every step
    equals the fast engine without the hook and the reference."""
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = _build(engine, 3, 128, 2, True, 3, **kw)
        rng = np.random.default_rng(3)
        out = []
        mid = 0  # calls that ended with ksgxd's machine mid-batch (served)
        for _ in range(3):
            res = encl.access_pages(rng.integers(1, n, size=1500), rng.random(1500) < 0.3)
            out.append(_snap(system, encl, res))
            sc = system.sgx.stream_core
            mid += bool(kw.get("fast_core")) and sc.session is not None
            system.run(until=50_000_000)  # 50 ms: ksgxd writes back to its high watermark
            out.append(_snap(system, encl, res))
            if kw.get("fast_core"):
                assert sc.session is None and system.sgx.ksgxd_sleeping
                assert len(system.sgx.ksgxd_waitq._waiters) == 1
        snaps[name] = out
        if kw.get("fast_core"):
            assert mid > 0, "no call ended with ksgxd mid-batch"
            assert sc.served_steps > 0 and sc.ksgxd_pages > 0
            assert system.fast_core_accesses > 0.9 * 4500
    for a, f, b in zip(snaps["reference"], snaps["fast"], snaps["core"], strict=True):
        assert [key for key in f if f[key] != b[key]] == []
        assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def test_a_second_enclave_between_calls_hands_ksgxd_to_its_generator() -> None:
    """A call ends with ksgxd's machine mid-batch; then a second enclave is created and
    filled (its pages go on the LRU, outside the machine's regime): the served machine
    finishes the batch it holds and ksgxd's generator goes on from K0 (``top_stops``).
    Every step equals the fast engine without the hook and the reference."""
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = _build(engine, 1, 128, 2, False, 3, **kw)
        rng = np.random.default_rng(1)  # (a seed whose first call ends mid-batch)
        out = []
        mid = False
        for step in range(3):
            res = encl.access_pages(rng.integers(0, n, size=1500), rng.random(1500) < 0.3)
            out.append(_snap(system, encl, res))
            sc = system.sgx.stream_core
            if step == 0:
                mid = bool(kw.get("fast_core")) and sc.session is not None
                other = system.create_enclave(1 << 20)
                assert other.add_pages(0, 64 * PAGE_SIZE).ok
                assert other.init().ok
                out.append(_snap(system, encl, res))
                assert other.access_pages(np.arange(64)).ok
                out.append(_snap(system, encl, res))
        snaps[name] = out
        if kw.get("fast_core"):
            assert mid, "the first call did not end with ksgxd mid-batch"
            assert sc.top_stops > 0 and sc.session is None
    for a, f, b in zip(snaps["reference"], snaps["fast"], snaps["core"], strict=True):
        assert [key for key in f if f[key] != b[key]] == []
        assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def test_ksgxd_reclaiming_to_an_empty_lru() -> None:
    """ksgxd's high watermark over the EPC (``Sgx.high_pages`` set before its generator
    reads it): it reclaims until the LRU is empty, the SECS with the last child (in Python,
    after the EADDs), sleeps only with nothing left, and in the pair writes back every page
    the thread leaves old. The SECS's eviction never comes on the core here (the thread
    keeps a child; ``secs_stops`` stays 0), but the rest of the pair does, equal to the
    reference."""
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system = epcsim.System(
            engine=engine, epc=64 * PAGE_SIZE, cpus=2, seed=2, content_mode="tag", **kw
        )
        system.sgx.high_pages = 1 << 20
        system.sgx.low_pages = 40
        n = 400
        encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
        assert encl.add_pages(0, n * PAGE_SIZE).ok
        assert encl.init().ok
        system.machine.env.run()
        encl.encl.lock.trace = []
        rng = np.random.default_rng(2)
        out = []
        for _ in range(3):
            res = encl.access_pages(rng.permutation(n)[: int(rng.integers(100, n))])
            out.append(_snap(system, encl, res))
        snaps[name] = out
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            done = sum(o["outcome"][0] for o in out)  # AccessOutcome.done of each call
            assert sc.accesses > 0.9 * done and sc.ksgxd_pages > 0 and sc.secs_stops == 0
    for a, f, b in zip(snaps["reference"], snaps["fast"], snaps["core"], strict=True):
        assert [key for key in f if f[key] != b[key]] == []
        assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def _three(build, calls):  # type: ignore[no-untyped-def]
    """``calls(system, encl, n, kw)`` on the reference, the fast engine and the fast engine
    with the hook: its snapshots, equal in every observable (the engine's own keys apart)."""
    snaps: dict[str, list[dict[str, object]]] = {}
    systems = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = build(engine, kw)
        snaps[name] = calls(system, encl, n, kw)
        systems[name] = system
    for a, f, b in zip(snaps["reference"], snaps["fast"], snaps["core"], strict=True):
        assert [key for key in f if f[key] != b[key]] == []
        assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []
    return systems["core"], snaps["core"]


def test_ksgxd_awake_at_every_loop_top_is_handed_over_at_k0() -> None:
    """A footprint far over the EPC from the first access (64 pages, 6x, the implicit TCS
    as row 1's, no sleep after the EADDs): ksgxd is never asleep at a loop top, so the
    hook's pair comes only from ksgxd's generator handing itself to its machine at K0's
    check (without that hand-off the hook ran none of these accesses). More than 90% of
    the accesses on the core, three calls with write masks and a ``run(until=)`` between,
    equal to the fast engine without the hook and to the reference."""

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(7)
        out = []
        for step in range(3):
            pages = rng.integers(0, n, size=1000)
            res = encl.access_pages(pages, rng.random(1000) < 0.3)
            out.append(_snap(system, encl, res))
            if step == 0:
                system.run(until=system.now + 200_000)
                out.append(_snap(system, encl, res))
        return out

    core, out = _three(lambda e, kw: _build(e, 7, 64, 2, False, 6, False, **kw), calls)
    sc = core.sgx.stream_core
    done = sum(out[k]["outcome"][0] for k in (0, 2, 3))  # each call's AccessOutcome.done
    assert sc.k0_entries > 0 and sc.ksgxd_pages > 0
    assert core.fast_core_accesses > 0.9 * done, "the hook stopped engaging"


def test_a_second_enclave_while_ksgxd_is_a_machine_entered_at_k0() -> None:
    """ksgxd awake from ``init`` on (a 64-page EPC: its high watermark is never reached
    while the LRU holds pages) hands itself to its machine at K0's check; a call ends with
    that machine mid-batch (a session with no parked wait, served); a second enclave is
    then created and filled while it is served (out of its regime: it finishes its batch
    and its generator goes on, ``top_stops``); both enclaves stream, then the first alone
    again after the second is closed. Equal to the fast engine without the hook and to
    the reference."""

    def build(engine, kw):  # type: ignore[no-untyped-def]
        return _build(engine, 3, 64, 2, False, 6, False, **kw)

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        sc = system.sgx.stream_core
        rng = np.random.default_rng(3)
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out = [_snap(system, encl, res)]
        if kw.get("fast_core"):
            assert sc.k0_entries > 0 and sc.session is not None, "not served after the call"
            assert sc.session.parked == [], "a session entered from ksgxd asleep"
        other = system.create_enclave(1 << 20)
        assert other.add_pages(0, 64 * PAGE_SIZE).ok
        assert other.init().ok
        out.append(_snap(system, encl, AccessOutcome()))
        if kw.get("fast_core"):
            assert sc.top_stops > 0 and sc.session is None
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out.append(_snap(system, encl, res))
        assert other.access_pages(np.arange(64)).ok
        out.append(_snap(system, encl, res))
        other.close()
        system.run()
        res = encl.access_pages(rng.integers(0, n, size=1500))
        out.append(_snap(system, encl, res))
        return out

    core, _ = _three(build, calls)
    assert core.fast_core_accesses > 0


def test_ksgxd_asleep_on_the_core_after_a_k0_entry_sleeps_in_its_generator() -> None:
    """A session entered at K0's check (ksgxd awake after ``init``) ends a call with ksgxd
    asleep on the core: no parked wait to put back, so its generator is rebuilt asleep at
    that point of ``Sgx._ksgxd`` (``Session.asleep_on_core``). Pages never added are then
    touched one a call (SGX2 EAUG: the iteration is the generator's, in Python; the page
    stays PENDING, so the access ends with a #PF), whose allocations wake that generator;
    it reaches K0's check and hands ksgxd to its machine again. Equal to the fast engine
    without the hook and to the reference."""
    from epcsim.fast.cosim.transfer import _frame_locals
    from epcsim.fast.driver.stream_ksgxd import _woken

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        sc = system.sgx.stream_core
        rng = np.random.default_rng(2)
        out = []
        for _ in range(2):
            res = encl.access_pages(rng.integers(0, n, size=1000), rng.random(1000) < 0.3)
            out.append(_snap(system, encl, res))
        if kw.get("fast_core"):
            assert sc.session is None and sc.k0_entries == 1
            (ev,) = system.sgx.ksgxd_waitq._waiters
            gen = ev.callbacks[0].__self__._generator
            assert _frame_locals(gen, _woken.__code__) is not None, "not asleep in _woken"
        for k in range(40):  # EAUG, in Python; the page is then PENDING: a #PF ends it
            res = encl.access_pages(np.array([n + k]), True)
            assert res.pf_error
        out.append(_snap(system, encl, res))
        if kw.get("fast_core"):
            assert sc.k0_entries > 1, "the woken generator did not reach the hook"
        res = encl.access_pages(rng.integers(0, n, size=600))
        out.append(_snap(system, encl, res))
        system.run(until=system.now + 100_000)
        out.append(_snap(system, encl, res))
        return out

    _three(lambda e, kw: _build(e, 2, 256, 2, False, 2, False, **kw), calls)


def test_ksgxd_entered_at_k0_meets_the_secs_eviction_in_its_generator() -> None:
    """ksgxd awake after ``init`` with no thread (a 64-page EPC: its high watermark is never
    reached): handed to its machine at K0's check, it writes back every page, the SECS's
    last child included, so its machine stops before the SECS's eviction (``KB_SECS``)
    while ksgxd's own generator still holds it: the rest of the batch returns into that
    generator's loop. Then a stream reloads the SECS (in Python) and runs on the core.
    Equal to the fast engine without the hook and to the reference."""

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        system.machine.env.run()  # ksgxd to its sleep, every page written back
        out = [_snap(system, encl, AccessOutcome())]
        assert encl.encl.secs_epc < 0, "the SECS was not evicted"
        if kw.get("fast_core"):
            assert system.sgx.stream_core.k0_entries == 1
        res = encl.access_pages(np.random.default_rng(3).integers(0, n, size=600))
        out.append(_snap(system, encl, res))
        return out

    core, _ = _three(lambda e, kw: _build(e, 3, 64, 2, False, 6, False, **kw), calls)
    assert core.fast_core_accesses > 0


def test_auto_enters_ksgxd_at_k0_only_while_a_stream_is_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``fast_core="auto"`` (machines seen warm) hands ksgxd to its machine at K0's check
    only while a stream the core accepted is live (``StreamCore.live``; a served step costs
    more than the generator's unless a stream takes the session): ksgxd reclaiming with no
    thread stays in its generator (``fast_core=True`` enters there:
    ``test_ksgxd_entered_at_k0_meets_the_secs_eviction_in_its_generator``), while ksgxd
    awake at every loop top of a stream is entered and the pair runs on the core. Every
    snapshot equals ``fast_core=False``'s, and no stream is left live."""
    from epcsim.fast.driver import stream as stream_mod

    monkeypatch.setattr(stream_mod, "machines_warm", lambda: True)

    def no_thread(system, encl, n):  # type: ignore[no-untyped-def]
        # ksgxd with no thread writes back every page, the SECS too; then a stream
        system.machine.env.run()
        out = [_snap(system, encl, AccessOutcome())]
        sc = system.sgx.stream_core
        if sc is not None:
            assert sc.k0_entries == 0 and sc.session is None and sc.live == 0
        res = encl.access_pages(np.random.default_rng(3).integers(0, n, size=600))
        return [*out, _snap(system, encl, res)]

    def awake(system, encl, n):  # type: ignore[no-untyped-def]
        # ksgxd awake at every loop top (64 pages, 6x): entered at K0 within the streams
        rng = np.random.default_rng(7)
        out = []
        for _ in range(3):
            res = encl.access_pages(rng.integers(0, n, size=1000), rng.random(1000) < 0.3)
            out.append(_snap(system, encl, res))
        system.run(until=system.now + 200_000)
        return [*out, _snap(system, encl, res)]

    for seed, calls in ((3, no_thread), (7, awake)):
        snaps = {}
        for name, kw in (("off", {"fast_core": False}), ("auto", {})):
            system, encl, n = _build("fast", seed, 64, 2, False, 6, False, **kw)
            snaps[name] = calls(system, encl, n)
        for f, b in zip(snaps["off"], snaps["auto"], strict=True):
            assert [key for key in f if f[key] != b[key]] == []
        sc = system.sgx.stream_core
        assert sc.auto and sc.live == 0 and system.fast_core_accesses > 0
        if calls is awake:
            assert sc.k0_entries > 0 and system.fast_core_accesses > 0.9 * 3000


@pytest.mark.parametrize("settle", [True, False])
def test_one_cpu_keeps_the_pair_off_the_core(settle: bool) -> None:
    """The regime gives the thread and ksgxd a CPU each (PATHS.md "The regime"): with one
    CPU ksgxd woken by the thread finds none idle, which the core cannot model (it stops
    with ``HB_NO_CPU``, a ``RuntimeError`` in ``CoreStream.run`` before the check; found
    by session ``fdefault`` on ``test_isa_epcm_owner``'s cpus=1 build). The hook declines
    there, and the run is the fast engine's and the reference's."""

    def build(engine, kw):  # type: ignore[no-untyped-def]
        # not ``_build``: with one CPU the EADDs' ioctl keeps ksgxd off it (no batch yet)
        system = epcsim.System(
            engine=engine, epc=64 * PAGE_SIZE, cpus=1, seed=5, content_mode="tag", **kw
        )
        n = 4 * 64
        encl = system.create_enclave(2 * n * PAGE_SIZE)
        assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
        if settle:
            system.machine.env.run()
        encl.encl.lock.trace = []
        return system, encl, n

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(5)
        out = []
        for _ in range(2):
            res = encl.access_pages(rng.integers(0, n, size=3 * 64), rng.random(3 * 64) < 0.3)
            out.append(_snap(system, encl, res))
        system.run(until=system.now + 2_000_000)
        out.append(_snap(system, encl, res))
        return out

    core, _ = _three(build, calls)
    assert core.stats()["ewb"] > 0  # ksgxd had work: the second CPU is what was missing
    assert core.fast_core_accesses == 0
