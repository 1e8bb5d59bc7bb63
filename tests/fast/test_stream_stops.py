"""``System(fast_core=True)``: the stops in the middle of an iteration (``fast/driver/
stream.py``, "The thread's stops"; PATHS.md "The pair from the user path") go on exactly.

Each test builds a state that reaches one stop - ksgxd's ``KB_SECS`` on the core with the
thread served to its loop top or through a fault whose SECS is gone (``KB_SECS_LOAD``),
``KB_RELEASE`` while ksgxd's machine is served, -ENOMEM and an ELDU that fails on the core
- and compares every observable with the fast engine without the hook and with the
reference, with a guard that the stop was reached (``StreamCore`` counts). The machine's
defect guards (stops proven unreachable) are shown on hand-made machine states.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from stream_core_cases import ENGINE_KEYS, build_enclave, core_snap

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver import kstate as K
from epcsim.kernel.ioctl_sgx2 import erase_page

ENGINES = (
    ("reference", "reference", {}),
    ("fast", "fast", {"fast_core": False}),
    ("core", "fast", {"fast_core": True}),
)


def _equal(snaps: dict[str, list[dict[str, object]]]) -> None:
    for a, f, b in zip(snaps["reference"], snaps["fast"], snaps["core"], strict=True):
        assert [key for key in f if f[key] != b[key]] == []
        assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def _reclaiming(engine: str, seed: int, **kw):  # type: ignore[no-untyped-def]
    """ksgxd's high and low watermarks over the EPC: it is woken by every allocation and
    reclaims until the LRU is empty (the SECS with the last child), as soon as a page is
    old. A thread that stays on one page for many 10 us steps has that page written back
    in the middle of a step (its young bit is set at the step's end), its only child: the
    SECS goes next, while the thread runs or faults on the core."""
    system = epcsim.System(
        engine=engine, epc=64 * PAGE_SIZE, cpus=2, seed=seed, content_mode="tag", **kw
    )
    system.sgx.high_pages = 1 << 20  # read once, when ksgxd's generator starts
    n = 100
    encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
    assert encl.add_pages(0, n * PAGE_SIZE).ok
    assert encl.init().ok
    system.machine.env.run()
    system.sgx.low_pages = 1 << 20
    encl.encl.lock.trace = []
    return system, encl


def test_the_secs_written_back_while_the_thread_runs_on_the_core() -> None:
    """``KB_SECS`` on the core: ksgxd's generator writes the SECS back from that page, the
    thread goes on served in its own process - to its next loop top (in a resident run's
    step), or through a fault whose lock it takes after the SECS went (``KB_SECS_LOAD``:
    ``EnclaveThread.fault_locked`` reloads the SECS in Python)."""
    rng = np.random.default_rng(1)
    parts: list[int] = []
    p = 1
    for _ in range(12):  # runs of 100-400 accesses over pages 1-3, each switch a fault
        p = 1 + p % 3
        parts += [p] * int(rng.integers(100, 400))
    streams = [np.array([1] * 5 + [2] * 3000), np.array(parts)]
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in ENGINES:
        system, encl = _reclaiming(engine, 1, **kw)
        out = []
        for s in streams:
            res = encl.access_pages(s)
            assert res.ok
            out.append(core_snap(system, encl, res))
        system.run(until=5_000_000)
        out.append(core_snap(system, encl, res))
        snaps[name] = out
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            assert sc.secs_stops >= 3 and sc.fault_stops.get(K.KB_SECS_LOAD, 0) >= 1
            assert system.sgx.stats.secs_evictions >= 3
            assert sc.accesses > 0.9 * sum(s.size for s in streams)
    _equal(snaps)


def test_the_cores_accesses_are_counted_at_the_secs_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``KB_SECS`` on the core (the scenario above, one started thread): the accesses the
    core ran are counted at the stop (``StreamCore.accesses``, ``System.fast_core_accesses``),
    not at the served thread's next loop top. A ``run(until=)`` ending between the two
    reads the reference's ``enclave_accesses`` at that instant (the whole stream ran on
    the core; session ``fixes``: 0 before, where the stop was the call's first)."""
    from epcsim.fast.driver.core_served import CoreStreamServed

    stream = np.array([1] * 5 + [2] * 3000)
    stops: list[tuple[int, int]] = []
    served = CoreStreamServed._served_to_top

    def spy(self, sess, ts, kept, done):  # type: ignore[no-untyped-def]
        at = int(self.system.now)
        r = yield from served(self, sess, ts, kept, done)
        stops.append((at, int(self.system.now)))
        return r

    monkeypatch.setattr(CoreStreamServed, "_served_to_top", spy)
    system, encl = _reclaiming("fast", 1, fast_core=True)
    encl.start(stream)
    system.run()
    assert system.sgx.stream_core.secs_stops == len(stops) >= 1
    stop, top = stops[0]
    assert top > stop + 1, stops  # the served thread reached its loop top later
    monkeypatch.setattr(CoreStreamServed, "_served_to_top", served)
    at = {}
    for name, engine, kw in ENGINES:
        system, encl = _reclaiming(engine, 1, **kw)
        encl.start(stream)
        system.run(until=(stop + top) // 2 - int(system.now))
        at[name] = system
    accesses = at["reference"].stats()["enclave_accesses"]
    assert accesses > 0
    assert at["core"].stats() == at["fast"].stats()
    assert at["core"].sgx.stream_core.secs_stops == 1
    assert at["core"].fast_core_accesses == accesses


def _released(system: epcsim.System, encl) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What is left to compare once the enclave is released (``core_snap`` needs one)."""
    sgx, cpu, m = system.sgx, system.cpu, system.machine
    epc, e = sgx.epc, cpu.epcm
    eid = next(m.env._eid)
    m.env._eid = itertools.count(eid)
    task = sgx.ksgxd_task
    assert task is not None
    return {
        "now": m.env.now,
        "eid": eid,
        "elided": m.elided,
        "running": [None if r is None else r.name for r in m.running],
        "task": (task.cpu, task.last_cpu, task.busy_ns, task.step_end, task.vruntime),
        "sleeping": (sgx.ksgxd_sleeping, len(sgx.ksgxd_waitq._waiters)),
        "stats": dataclasses.asdict(sgx.stats),
        "timeline": (list(sgx.free_timeline.t), list(sgx.free_timeline.v)),
        "warnings": (list(sgx.warnings), sgx.leaked_pages, sgx.ewb_failures),
        "epc": [a.tobytes() for a in (epc.flags, epc.owner_encl, epc.owner_index, epc.links.ends)],
        "nr_free": epc.nr_free_pages,
        "epcm": [np.asarray(a).tobytes() for a in (e.flags, e.secs, e.bepoch)],
        "encl": (encl.encl.dead, encl.encl.refcount, len(sgx.enclaves)),
        "queue": sorted((t, p, i) for t, p, i, _ in m.env._queue),  # pop order
    }


def _closing(engine: str, where: str, **kw):  # type: ignore[no-untyped-def]
    """A call that ends with ksgxd mid-batch (seeds picked for it); "age check": batches of
    one page and a hot stream, so that pages are young when ksgxd looks at them."""
    seed = 1 if where == "write-back" else 0
    system, encl, n = build_enclave(engine, seed, 128, 2, False, 3, **kw)
    rng = np.random.default_rng(seed)
    if where == "write-back":
        res = encl.access_pages(rng.integers(0, n, size=1500), rng.random(1500) < 0.3)
    else:
        system.sgx.nr_to_scan = 1
        hot = rng.integers(0, n, size=40)
        res = encl.access_pages(
            np.concatenate([rng.integers(0, n, size=1500), hot[rng.integers(0, 40, size=1500)]])
        )
    return system, encl, res


def _young_age_check_instant(monkeypatch: pytest.MonkeyPatch) -> int:
    """An instant, after the "age check" call, inside ksgxd's served age check of a young
    page that is its batch's last with none kept (found by watching the served machine)."""
    from epcsim.fast.cosim.state import T_PC
    from epcsim.fast.driver import ksgxd as KM
    from epcsim.fast.driver import stream_ksgxd
    from epcsim.kernel.encl_page import ENCL_PAGE_PTE_YOUNG

    seen: list[int] = []
    step = stream_ksgxd.Session.step

    def spy(self, t):  # type: ignore[no-untyped-def]
        r = step(self, t)
        if t == 1 and int(self.co.tasks[1, T_PC]) == KM.P_AGE_RUN:
            rw = self.ks.rc[0]  # ksgxd's batch row (reclaim.py)
            i = int(rw[K.RC_I])
            last = int(rw[K.RC_NK]) == 0 and i == int(rw[K.RC_NB]) - 1
            if last and self.encl.pages.flags[int(self.ks.batch[0, i, 1])] & ENCL_PAGE_PTE_YOUNG:
                seen.append(self.system.machine.now)
        return r

    with monkeypatch.context() as mp:
        mp.setattr(stream_ksgxd.Session, "step", spy)
        system, _, _ = _closing("fast", "age check", fast_core=True)
        system.machine.env.run()
    assert seen, "no young age check in a served batch"
    return seen[0] + system.machine.costs.age_check // 2


@pytest.mark.parametrize("where", ["write-back", "age check"])
def test_the_enclave_released_while_ksgxd_served_holds_a_batch(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call ends with ksgxd's machine mid-batch (served by SimPy); the process closes the
    enclave (the fd's and the mm's references go): the batch's own references are the
    last, and the machine's ``kref_put`` that drops the last one stops (``KB_RELEASE``):
    ksgxd's generator goes on from there and runs ``sgx_encl_release`` - in phase D, after
    the page's ``encl->lock`` (``sgx_reclaim_write_back(written=True)``), or in phase B,
    the batch's last page put back young (``_released_young``: batches of one page, a hot
    stream, the enclave closed in the middle of that age check)."""
    from epcsim.fast.driver import session_stops

    at = _young_age_check_instant(monkeypatch) if where == "age check" else 0
    young = []
    orig = session_stops._released_young

    def spy(encl, task):  # type: ignore[no-untyped-def]
        young.append(encl)
        return orig(encl, task)

    monkeypatch.setattr(session_stops, "_released_young", spy)
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in ENGINES:
        system, encl, res = _closing(engine, where, **kw)
        out = [core_snap(system, encl, res)]
        sc = system.sgx.stream_core
        if kw.get("fast_core"):
            assert sc.session is not None, "the call did not end with ksgxd mid-batch"
        if at:
            system.run(until=at - system.machine.now)  # (relative)
        assert encl.encl.refcount > 2  # the fd's, the mm's and the batch's
        assert encl.close() == 0
        out.append(_released(system, encl))
        system.machine.env.run()
        out.append(_released(system, encl))
        assert encl.encl.dead and not system.sgx.enclaves
        snaps[name] = out
        if kw.get("fast_core"):
            assert sc.release_stops == 1 and sc.session is None
            assert len(young) == (where == "age check")
    _equal(snaps)


def _by_hand(engine: str, seed: int, how: str, **kw):  # type: ignore[no-untyped-def]
    """A call whose fault on the core meets -ENOMEM (every free page taken by a consumer
    outside the model, the reclaimable list isolated by hand with its krefs: the kernel's
    state when a reclaimer has isolated every page and freed none) or a record rewritten
    in the backing store (ELDU fails: the WARN, the page lost, SIGBUS). The stream starts
    with resident pages, so that the hook engages before the fault."""
    system, encl, n = build_enclave(engine, seed, 256, 2, False, 2, **kw)
    rng = np.random.default_rng(seed)
    res = encl.access_pages(rng.integers(0, n, size=600))
    out = [core_snap(system, encl, res)]
    system.machine.env.run()  # ksgxd to its sleep
    e = encl.encl
    idx = np.arange(e.nr_pages)
    mapped = idx[(e.epc >= 0) & e.pte_present]
    evicted = idx[(e.epc < 0) & e.present]
    if how == "enomem":
        sgx = system.sgx
        epc = sgx.epc
        while epc.nr_free_pages:
            epc.alloc(epc.nodes[0])
        e.refcount += len(sgx.lru.isolate(len(sgx.lru)))  # a reclaimer's krefs
    else:
        e.backing.tamper(int(evicted[0]), contents=b"\x00" * 8)
    stream = np.concatenate([np.resize(mapped, 400), [evicted[0]], np.resize(mapped, 50)])
    res = encl.access_pages(stream)
    assert res.sigbus and res.done == 400
    out.append(core_snap(system, encl, res))
    return system, out


def test_enomem_and_a_failing_eldu_on_the_core_go_on_in_python() -> None:
    """The thread's fault stops under ``encl->lock`` before the allocation (``KB_ENOMEM``)
    or before it for a record that would fail ELDU (``KB_ELDU``, the check read early):
    the rest of the fault is the reference's Python (``fault_locked``), SIGBUS as there."""
    for how, code in (("enomem", K.KB_ENOMEM), ("eldu", K.KB_ELDU)):
        snaps = {}
        for name, engine, kw in ENGINES:
            system, snaps[name] = _by_hand(engine, 1, how, **kw)
            if kw.get("fast_core"):
                assert system.sgx.stream_core.fault_stops == {code: 1}
        _equal(snaps)


def test_the_entry_checks_are_decided_at_the_loop_top() -> None:
    """A TCS the EPCM refuses (blocked by hand, its PTE mapped): the thread's machine
    stops at the loop top before EENTER's run (``KB_ENTRY``, where ``enter()`` goes on),
    and the same failure after the run - not reachable: in the regime only the TCS's zap
    (``KB_TCS``) or the SECS's eviction (``KB_SECS`` first) changes the leaf's checks
    during it - is the machine's defect guard, which ``CoreStream.run`` does not resume."""
    from epcsim.fast.cosim.state import R_STOP, T_PC
    from epcsim.fast.driver.bridge import _check_regime, _kernel_state
    from epcsim.fast.driver.stream_stops import resumable
    from epcsim.fast.driver.thread import thread_resume
    from epcsim.fast.driver.thread_bridge import _core_state, _thread_state, run_thread
    from epcsim.fast.driver.thread_pc import P_ENTER_RUN, P_TOP
    from epcsim.isa.epcm import EPCM_BLOCKED

    outs = []
    for engine in ("reference", "fast"):
        system, encl, _ = build_enclave(engine, 2, 256, 2, True, 2)
        assert encl.access_pages(np.arange(1, 9)).ok  # the TCS loaded and mapped
        system.machine.env.run()
        tcs_epc = int(encl.encl.epc[0])
        assert tcs_epc >= 0 and encl.encl.pte_present[0]
        system.cpu.epcm.flags[tcs_epc] |= EPCM_BLOCKED
        pages = np.arange(1, 5)
        if engine == "reference":
            outs.append(encl.access_pages(pages))
            continue
        # the guard: the machine resumed after the entry's run with the TCS refused (a
        # hand-made core state; the leaf's failure changes nothing)
        thread = encl._main_thread()
        e, secs = _check_regime(system)
        co = _core_state(system, thread, False)
        ks = _kernel_state(system, e, secs)
        ts = _thread_state(system, thread, pages, np.zeros(4, np.bool_), alone=False)
        co.tasks[0, T_PC] = P_ENTER_RUN
        assert thread_resume(co, K.slots(ks), ts, 0) == R_STOP
        assert int(ks.kc[K.K_HB]) == K.KB_ENTRY and int(co.tasks[0, T_PC]) == P_ENTER_RUN
        # the same state from the loop top: the stop before the run
        result = run_thread(system, thread, pages)
        assert result.handed_back == K.KB_NAMES[K.KB_ENTRY] and result.pc == "top"
        assert result.outcome.done == 0
        assert resumable(K.KB_ENTRY, P_TOP) and not resumable(K.KB_ENTRY, P_ENTER_RUN)
    assert outs[0].sigbus and outs[0].done == 0


def _last_but_one(engine: str, at: int = -1, **kw):  # type: ignore[no-untyped-def]
    """``_reclaiming`` with batches of three: the batch that takes the last children but
    one leaves a third resident child on the LRU; ksgxd, woken by the build's allocations,
    reclaims them all (served, between the build's Python tasks). ``at`` >= 0: a Python
    task removes a child then (``_remove_a_child``)."""
    system = epcsim.System(
        engine=engine, epc=64 * PAGE_SIZE, cpus=3, seed=1, content_mode="tag", **kw
    )
    system.sgx.high_pages = 1 << 20
    system.sgx.nr_to_scan = 3
    n = 100
    encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
    if at >= 0:
        _remove_a_child(system, encl, at)
    assert encl.add_pages(0, n * PAGE_SIZE).ok
    assert encl.init().ok
    system.machine.env.run()
    system.sgx.low_pages = 1 << 20
    return system, encl


def _stored_instant(monkeypatch: pytest.MonkeyPatch) -> int:
    """An instant just after a served EWB of ksgxd began (``encl->lock`` held) on its
    batch's last page, with two resident children: its D check saw another child."""
    from epcsim.fast.cosim.state import T_PC
    from epcsim.fast.driver import ksgxd as KM
    from epcsim.fast.driver import stream_ksgxd

    seen: list[int] = []
    step = stream_ksgxd.Session.step

    def spy(self, t):  # type: ignore[no-untyped-def]
        r = step(self, t)
        ke = self.ks.ke
        if t == 1 and int(self.co.tasks[1, T_PC]) == KM.P_EWB1_RUN:
            last = int(self.ks.rc[0, K.RC_I]) == int(self.ks.rc[0, K.RC_NK]) - 1
            if last and int(ke[K.K_CHILD_CNT]) == 2:
                seen.append(self.system.machine.now + 1)
        return r

    with monkeypatch.context() as mp:
        mp.setattr(stream_ksgxd.Session, "step", spy)
        _last_but_one("fast", fast_core=True)
    assert seen, "no served EWB on a batch's last page with another child resident"
    return seen[0]


def _remove_a_child(system: epcsim.System, encl, at: int) -> None:  # type: ignore[no-untyped-def]
    """At ``at``, a hand-made child removal by a kernel task of its own: REMOVE_PAGES'
    per-page steps (``sgx_ioc_enclave_remove_pages``: EREMOVE, the child count, the page
    entry, ``page_cnt``) on the first resident child still on the LRU - by hand, without
    ``encl->lock``, so that it lands inside ksgxd's EWB of another page. With the lock the
    same interleaving needs the mutex's HANDOFF (the remover handed the lock between two of
    ksgxd's D steps, after the second one's check), which this test does not build: what
    it checks is the continuation from the stop, the same whatever removed the child."""
    from epcsim.engine.machine import Task

    sgx, e = system.sgx, encl.encl
    task = Task(system.machine, "remover")

    delay = at - system.machine.now

    def remove():  # type: ignore[no-untyped-def]
        yield system.machine.env.timeout(delay)
        try:
            resident = [i for i in np.flatnonzero(e.epc >= 0).tolist() if int(e.epc[i]) in sgx.lru]
            index = resident[0]
            page = int(e.epc[index])
            assert sgx.unmark_page_reclaimable(page) == 0
            e.zap_ptes(index)
            yield from erase_page(task, e, index, page)
        finally:
            task.release_cpu()

    system.machine.spawn(remove())


def test_a_child_removed_during_ksgxd_served_ewb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ksgxd's served machine checks the SECS's eviction before its batch's last page's D
    step (two children: not this page's); during that page's EWB a Python task removes
    the other child, so the EWB is the last child's. The machine stops after the EWB,
    ``encl->lock`` held (``KB_SECS`` at ``P_STORED``, counted in ``stored_stops``), and
    ksgxd's generator goes on from the child count's drop
    (``sgx_reclaim_write_back(ewbed=...)``): the SECS written back as the reference does."""
    at = _stored_instant(monkeypatch)
    snaps: dict[str, list[dict[str, object]]] = {}
    for name, engine, kw in ENGINES:
        system, encl = _last_but_one(engine, at, **kw)
        assert int(encl.encl.present.sum()) == 99 and encl.encl.secs_epc < 0  # the SECS out
        encl.encl.lock.trace = []
        res = encl.access_pages(np.array([1] * 5 + [2] * 3000))
        assert res.ok
        out = [core_snap(system, encl, res)]
        system.run(until=5_000_000)
        out.append(core_snap(system, encl, res))
        snaps[name] = out
        assert system.sgx.stats.secs_evictions >= 1 and not system.sgx.warnings
        if kw.get("fast_core"):
            assert system.sgx.stream_core.stored_stops == 1
    _equal(snaps)
