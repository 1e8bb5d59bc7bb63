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

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import ENGINE_KEYS, build_enclave, core_snap, three_ways

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver.auto import AUTO_MIN_ACCESSES, auto_engages, machines_warm


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
    for b in three_ways(seed, epc_pages, cpus, tcs, eaug, mult, settle):
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
        system, encl, n = build_enclave(engine, 1, 256, 2, False, **kw)
        stream = np.random.default_rng(1).integers(0, n, size=4000)
        encl.access_pages(stream[:1000])
        system.run(until=20_000)  # 20 us more: ksgxd's machine served, no thread
        out = encl.access_pages(stream[1000:])
        assert out.ok
        snaps[name] = core_snap(system, encl, out)
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            assert system.fast_core_accesses > 0.9 * stream.size
            assert sc.ksgxd_pages > 0 and sc.served_steps > 0
    a, f, b = snaps["reference"], snaps["fast"], snaps["core"]
    assert [key for key in f if f[key] != b[key]] == []
    assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def test_a_calls_first_iteration_runs_on_the_core() -> None:
    """A call starts with its thread off the CPU (``System._call`` released it at the last
    call's end), and the core takes a thread only on its CPU: ``access_stream`` enters in
    Python, then tries the loop top again if ksgxd sleeps (session ``row1``; with a batch
    in flight the first iteration stays Python's, as before). So a call begun with ksgxd
    asleep runs every access on the core - the first page resident or not (before, the
    first iteration ran in Python: a resident run, or the whole Python fault path) - and
    every observable is the fast engine's without the core, and the reference's."""
    snaps = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = build_enclave(engine, 3, 128, 2, False, **kw)
        rng = np.random.default_rng(3)
        encl.access_pages(rng.integers(0, n, size=600))
        kinds = []
        for k in range(6):
            stream = rng.integers(0, n, size=300)
            # the call's first page resident in even calls, not resident in odd ones
            want = k % 2 == 0
            first = next(i for i in range(n) if bool(encl.encl.pte_present[i]) == want)
            stream[0] = first
            kinds.append(bool(encl.encl.pte_present[first]))
            system.machine.env.run()  # ksgxd to its sleep: no batch in flight at the call
            assert system.sgx.ksgxd_sleeping
            before = system.fast_core_accesses
            out = encl.access_pages(stream)
            assert out.ok
            if kw.get("fast_core"):
                assert system.fast_core_accesses - before == stream.size, k
        assert kinds == [True, False] * 3
        # one access to a mapped page: Python's resident run ends the stream, no core entry
        system.machine.env.run()
        first = next(i for i in range(n) if encl.encl.pte_present[i])
        before = system.fast_core_accesses
        out = encl.access(first * PAGE_SIZE)
        assert out.ok and system.fast_core_accesses == before
        snaps[name] = core_snap(system, encl, out)
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
        system, encl, n = build_enclave("fast", 1, 256, 2, False, **kw)
        out = encl.access_pages(np.random.default_rng(1).integers(0, n, size=3000))
        return system, core_snap(system, encl, out)

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
    system, encl, n = build_enclave("fast", 1, 256, 2, False, fast_core=True)
    encl.access_pages(np.random.default_rng(2).integers(0, n, size=2000))
    assert system.fast_core_accesses > 0
    assert machines_warm()
    assert auto_engages(1, machines_warm())


def test_one_compiled_machine_for_every_mask_and_stream_layout() -> None:
    """A read-only stream or write mask (``np.broadcast_to``'s, a frozen array) must not give
    the thread's machine a second numba type: each type is another ~25 s compile of the
    whole machine, paid by every fresh clone and every first run."""
    from epcsim.fast.driver.thread_bridge import drive

    system, encl, n = build_enclave("fast", 1, 256, 2, False, fast_core=True)
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
