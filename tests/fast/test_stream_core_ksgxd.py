"""``System(fast_core=True)`` with ksgxd between its generator and its machine: a call that ends
with ksgxd mid-batch, asleep, or entered at K0's check; a second enclave between calls; an
LRU reclaimed empty; the SECS's eviction; one CPU (on the core since session ``onecpu2``).
Each against the fast engine without the hook and the reference, every observable equal
(``test_stream_core.py``'s docstring).

Split from ``test_stream_core.py`` by session ``split`` (the file had passed 600 lines): that
file keeps the generated streams and the "auto" decision, this one the hand-overs of ksgxd.
"""

from __future__ import annotations

import numpy as np
import pytest
from stream_core_cases import ENGINE_KEYS, build_enclave, core_snap

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.user.thread import AccessOutcome


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
        system, encl, n = build_enclave(engine, 3, 128, 2, True, 3, **kw)
        rng = np.random.default_rng(3)
        out = []
        mid = 0  # calls that ended with ksgxd's machine mid-batch (served)
        for _ in range(3):
            res = encl.access_pages(rng.integers(1, n, size=1500), rng.random(1500) < 0.3)
            out.append(core_snap(system, encl, res))
            sc = system.sgx.stream_core
            mid += bool(kw.get("fast_core")) and sc.session is not None
            system.run(until=50_000_000)  # 50 ms: ksgxd writes back to its high watermark
            out.append(core_snap(system, encl, res))
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
        system, encl, n = build_enclave(engine, 1, 128, 2, False, 3, **kw)
        rng = np.random.default_rng(1)  # (a seed whose first call ends mid-batch)
        out = []
        mid = False
        for step in range(3):
            res = encl.access_pages(rng.integers(0, n, size=1500), rng.random(1500) < 0.3)
            out.append(core_snap(system, encl, res))
            sc = system.sgx.stream_core
            if step == 0:
                mid = bool(kw.get("fast_core")) and sc.session is not None
                other = system.create_enclave(1 << 20)
                assert other.add_pages(0, 64 * PAGE_SIZE).ok
                assert other.init().ok
                out.append(core_snap(system, encl, res))
                assert other.access_pages(np.arange(64)).ok
                out.append(core_snap(system, encl, res))
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
            out.append(core_snap(system, encl, res))
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
            out.append(core_snap(system, encl, res))
            if step == 0:
                system.run(until=system.now + 200_000)
                out.append(core_snap(system, encl, res))
        return out

    core, out = _three(lambda e, kw: build_enclave(e, 7, 64, 2, False, 6, False, **kw), calls)
    sc = core.sgx.stream_core
    done = sum(out[k]["outcome"][0] for k in (0, 2, 3))  # each call's AccessOutcome.done
    assert sc.k0_entries > 0 and sc.ksgxd_pages > 0
    assert core.fast_core_accesses > 0.9 * done, "the hook stopped engaging"


def test_a_second_enclave_while_ksgxd_is_a_machine_entered_at_k0() -> None:
    """ksgxd awake from ``init`` on (a 64-page EPC: its high watermark is never reached
    while the LRU holds pages) hands itself to its machine at K0's check; a call ends with
    that machine mid-batch (a session with no parked wait, served); a second enclave is
    then created and filled while it is served (out of its regime - a session's enclave set
    is fixed -: it finishes its batch and its generator goes on, ``top_stops``; since
    session ``twoencl3`` the second enclave's build may then take a session of two slots);
    both enclaves stream, then the first alone again after the second is closed. Equal to
    the fast engine without the hook and to the reference."""

    def build(engine, kw):  # type: ignore[no-untyped-def]
        return build_enclave(engine, 3, 64, 2, False, 6, False, **kw)

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        sc = system.sgx.stream_core
        rng = np.random.default_rng(3)
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out = [core_snap(system, encl, res)]
        if kw.get("fast_core"):
            assert sc.k0_entries > 0 and sc.session is not None, "not served after the call"
            assert sc.session.parked == [], "a session entered from ksgxd asleep"
        other = system.create_enclave(1 << 20)
        assert other.add_pages(0, 64 * PAGE_SIZE).ok
        assert other.init().ok
        out.append(core_snap(system, encl, AccessOutcome()))
        if kw.get("fast_core"):  # the one-slot session ended; a later one has both slots
            assert sc.top_stops > 0
            assert sc.session is None or len(sc.session.encls) == 2
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out.append(core_snap(system, encl, res))
        assert other.access_pages(np.arange(64)).ok
        out.append(core_snap(system, encl, res))
        other.close()
        system.run()
        res = encl.access_pages(rng.integers(0, n, size=1500))
        out.append(core_snap(system, encl, res))
        return out

    core, _ = _three(build, calls)
    assert core.fast_core_accesses > 0


def test_a_batch_holding_a_closed_enclaves_last_references_keeps_the_next_call_off_the_core() -> (
    None
):
    """ksgxd's served batch holds pages of a second enclave when its process closes it (the
    fd's and the mm's references gone: the batch's are its last), and the first enclave's
    next call begins at once. Its first loop top must not take the session onto the core:
    the batch's last ``kref_put`` there is ``sgx_encl_release`` (``KB_RELEASE``), which
    only ksgxd's generator runs - the core raised (``core_regime.held_by_a_batch_only``,
    session ``row1b``; before it, session ``row1``'s "ksgxd asleep" limit in
    ``access_stream`` kept a call's first iteration in Python). Equal to the fast engine
    without the hook and to the reference; the decline is counted."""

    def build(engine, kw):  # type: ignore[no-untyped-def]
        return build_enclave(engine, 3, 64, 2, False, 6, False, **kw)

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(0)
        out = []
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out.append(core_snap(system, encl, res))
        other = system.create_enclave(1 << 20)
        assert other.add_pages(0, 64 * PAGE_SIZE).ok
        assert other.init().ok
        res = encl.access_pages(rng.integers(0, n, size=800), rng.random(800) < 0.3)
        out.append(core_snap(system, encl, res))
        assert other.access_pages(rng.integers(0, 64, size=300)).ok
        other.close()
        held = not other.encl.dead  # the batch's references keep it
        res = encl.access_pages(rng.integers(0, n, size=1500))
        out.append(core_snap(system, encl, res))
        out[-1]["other"] = (held, other.encl.dead, other.encl.refcount)
        return out

    core, snaps = _three(build, calls)
    sc = core.sgx.stream_core
    assert snaps[-1]["other"][:2] == (True, True), "the batch held none of its references"
    assert sc.release_declines > 0 and sc.release_stops > 0
    assert core.fast_core_accesses > 0


def test_ksgxd_asleep_on_the_core_after_a_k0_entry_sleeps_in_its_generator() -> None:
    """A session entered at K0's check (ksgxd awake after ``init``) ends a call with ksgxd
    asleep on the core: no parked wait to put back, so its generator is rebuilt asleep at
    that point of ``Sgx._ksgxd`` (``Session.asleep_on_core``). Pages never added are then
    touched one a call (SGX2 EAUG: the iteration is the generator's, in Python; the page
    stays PENDING, so the access ends with a #PF), whose allocations wake that generator;
    it reaches K0's check and hands ksgxd to its machine again. Equal to the fast engine
    without the hook and to the reference."""
    from epcsim.fast.cosim.transfer_to_core import _frame_locals
    from epcsim.fast.driver.session_stops import _woken

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        sc = system.sgx.stream_core
        rng = np.random.default_rng(2)
        out = []
        for _ in range(2):
            res = encl.access_pages(rng.integers(0, n, size=1000), rng.random(1000) < 0.3)
            out.append(core_snap(system, encl, res))
        if kw.get("fast_core"):
            assert sc.session is None and sc.k0_entries == 1
            (ev,) = system.sgx.ksgxd_waitq._waiters
            gen = ev.callbacks[0].__self__._generator
            assert _frame_locals(gen, _woken.__code__) is not None, "not asleep in _woken"
        for k in range(40):  # EAUG, in Python; the page is then PENDING: a #PF ends it
            res = encl.access_pages(np.array([n + k]), True)
            assert res.pf_error
        out.append(core_snap(system, encl, res))
        if kw.get("fast_core"):
            assert sc.k0_entries > 1, "the woken generator did not reach the hook"
        res = encl.access_pages(rng.integers(0, n, size=600))
        out.append(core_snap(system, encl, res))
        system.run(until=system.now + 100_000)
        out.append(core_snap(system, encl, res))
        return out

    _three(lambda e, kw: build_enclave(e, 2, 256, 2, False, 2, False, **kw), calls)


def test_ksgxd_entered_at_k0_meets_the_secs_eviction_in_its_generator() -> None:
    """ksgxd awake after ``init`` with no thread (a 64-page EPC: its high watermark is never
    reached): handed to its machine at K0's check, it writes back every page, the SECS's
    last child included, so its machine stops before the SECS's eviction (``KB_SECS``)
    while ksgxd's own generator still holds it: the rest of the batch returns into that
    generator's loop. Then a stream reloads the SECS (in Python) and runs on the core.
    Equal to the fast engine without the hook and to the reference."""

    def calls(system, encl, n, kw):  # type: ignore[no-untyped-def]
        system.machine.env.run()  # ksgxd to its sleep, every page written back
        out = [core_snap(system, encl, AccessOutcome())]
        assert encl.encl.secs_epc < 0, "the SECS was not evicted"
        if kw.get("fast_core"):
            assert system.sgx.stream_core.k0_entries == 1
        res = encl.access_pages(np.random.default_rng(3).integers(0, n, size=600))
        out.append(core_snap(system, encl, res))
        return out

    core, _ = _three(lambda e, kw: build_enclave(e, 3, 64, 2, False, 6, False, **kw), calls)
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
        out = [core_snap(system, encl, AccessOutcome())]
        sc = system.sgx.stream_core
        if sc is not None:
            assert sc.k0_entries == 0 and sc.session is None and sc.live == 0
        res = encl.access_pages(np.random.default_rng(3).integers(0, n, size=600))
        return [*out, core_snap(system, encl, res)]

    def awake(system, encl, n):  # type: ignore[no-untyped-def]
        # ksgxd awake at every loop top (64 pages, 6x): entered at K0 within the streams
        rng = np.random.default_rng(7)
        out = []
        for _ in range(3):
            res = encl.access_pages(rng.integers(0, n, size=1000), rng.random(1000) < 0.3)
            out.append(core_snap(system, encl, res))
        system.run(until=system.now + 200_000)
        return [*out, core_snap(system, encl, res)]

    for seed, calls in ((3, no_thread), (7, awake)):
        snaps = {}
        for name, kw in (("off", {"fast_core": False}), ("auto", {})):
            system, encl, n = build_enclave("fast", seed, 64, 2, False, 6, False, **kw)
            snaps[name] = calls(system, encl, n)
        for f, b in zip(snaps["off"], snaps["auto"], strict=True):
            assert [key for key in f if f[key] != b[key]] == []
        sc = system.sgx.stream_core
        assert sc.auto and sc.live == 0 and system.fast_core_accesses > 0
        if calls is awake:
            assert sc.k0_entries > 0 and system.fast_core_accesses > 0.9 * 3000


@pytest.mark.parametrize("settle", [True, False])
def test_one_cpu_runs_the_pair_on_the_core(settle: bool) -> None:
    """With one CPU ksgxd woken by the thread finds none idle: until session ``onecpu2`` the
    core could not model it (it stopped with ``HB_NO_CPU``, a ``RuntimeError`` in
    ``CoreStream.run``; found by session ``fdefault`` on ``test_isa_epcm_owner``'s cpus=1
    build) and the hook declined. Now ksgxd waits in the core's run queue and the two share
    the CPU on the core (PATHS.md "One CPU"; ``test_one_cpu_core.py``): the run is the fast
    engine's and the reference's, and the core ran the accesses."""

    def build(engine, kw):  # type: ignore[no-untyped-def]
        # not ``build_enclave``: with one CPU the EADDs' ioctl keeps ksgxd off it (no batch yet)
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
            out.append(core_snap(system, encl, res))
        system.run(until=system.now + 2_000_000)
        out.append(core_snap(system, encl, res))
        return out

    core, _ = _three(build, calls)
    assert core.stats()["ewb"] > 0  # ksgxd had work
    assert core.fast_core_accesses > 0
