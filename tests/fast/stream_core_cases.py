"""What the stream-core tests share (``test_stream_core.py``, ``test_stream_core_ksgxd.py``,
``test_stream_stops.py``, ``test_unsealed.py``, ``test_fifo_core.py`` and through
``core_cases`` the EDMM loops' tests): ``build_enclave`` (a system and an enclave over more
pages than the EPC, on either engine, with or without the hook), ``core_snap`` (every
observable after a call), ``ENGINE_KEYS`` (what differs between the engines by design) and
``stream_scenario`` (``test_stream_core.py``'s scenario: streams over more pages than the
EPC, a started thread, a tampered record, EAUG faults).

A helper module, not a test file (moved from ``test_stream_core.py`` by session ``split``
when that file passed 600 lines, no code changed; session ``tidy`` gave ``_build``/``_snap``
public names and moved ``stream_scenario`` here for ``test_fifo_core.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ksgxd_cases import snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.engine.sched import CfsRunQueue

#: observables in which the fast engine differs from the reference by design (elided steps
#: take no event: fewer eids, so other eids in the queue)
ENGINE_KEYS = frozenset(("eid", "elided", "queue"))


def core_snap(system: epcsim.System, encl, out) -> dict[str, object]:  # type: ignore[no-untyped-def]
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
    rq = system.machine.rq
    # CFS's idle CPUs (sorted), or the FIFO run queue's free-CPU deque (its order matters)
    free = rq._idle if isinstance(rq, CfsRunQueue) else rq._free_cpus
    snap["rq"] = (list(free), system.machine.context_switches)
    lock = encl.encl.lock
    snap["mutex"] = (lock.wait_ns, lock.steals, lock.handoffs, lock.spin_acquired)
    snap["outcome"] = dataclasses.astuple(out)
    snap["latency"] = (lat.count, lat.counts.tobytes(), list(lat._buf))
    snap["queue"] = sorted((t, p, e) for t, p, e, _ in system.machine.env._queue)  # pop order
    owner, free_since, freed_from, handed_at, contended, trace = snap["lock"]  # type: ignore[misc]
    snap["lock"] = (None if owner is None else owner.name, contended, trace)
    snap["lock_times"] = (free_since, freed_from, handed_at)
    return snap


def build_enclave(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, tcs: bool, mult: int = 4,
    settle: bool = True, **kw,
):  # fmt: skip
    system = epcsim.System(
        engine=engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=seed, content_mode="tag", **kw
    )
    n = mult * epc_pages
    encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
    # the build in Python, ksgxd in its generator: where these tests start from (ADD_PAGES'
    # loop on the core, session ``addcore``, is ``test_add_core.py``'s)
    sc = system.sgx.stream_core
    system.sgx.stream_core = None
    if tcs:
        assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
        assert encl.add_pages(PAGE_SIZE, (n - 1) * PAGE_SIZE).ok
    else:
        assert encl.add_pages(0, n * PAGE_SIZE).ok
    system.sgx.stream_core = sc
    if sc is not None:
        # ksgxd met K0 during the EADDs (the enclave not initialized): its generator kept it.
        # (On one CPU it may not have run yet: woken by the EADDs, it waits for the CPU)
        assert cpus == 1 or system.stats()["ksgxd_batches"] > 0
        assert sc.k0_entries == 0
    assert encl.init().ok
    if settle:
        # ksgxd to its sleep after the EADDs' pressure (SimPy's queue emptied;
        # ``System.run()`` runs started threads only); else ksgxd is awake at the first
        # access, and with small EPCs at every loop top: the pair then comes from ksgxd's
        # machine entered at K0's check (``StreamCore.ksgxd_at_check``)
        system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl, n


def stream_scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, tcs: bool, eaug: bool, mult: int,
    settle: bool = True, **kw,
):  # fmt: skip
    """Yields a snapshot after each step of one scenario (the module docstring), then the
    hook's counts (``StreamCore``: accesses, ksgxd's pages written back on the core, the
    TCS faults it ran)."""
    system, encl, n = build_enclave(engine, seed, epc_pages, cpus, tcs, mult, settle, **kw)
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
        yield core_snap(system, encl, out)
        if step == 1:
            system.run(until=int(rng.integers(1, 3_000_000)))
            yield core_snap(system, encl, out)
        if step == 2:
            e = encl.encl
            idx = np.arange(e.nr_pages)
            evicted = idx[(e.epc < 0) & e.present & (idx >= first)]
            if evicted.size:
                e.backing.tamper(int(evicted[0]), contents=b"\x00" * 8)
    sc = system.sgx.stream_core
    yield (0, 0, 0) if sc is None else (sc.accesses, sc.ksgxd_pages, sc.tcs_faults)


def three_ways(*args, **kw) -> list:  # type: ignore[no-untyped-def]
    """``stream_scenario`` on the reference, the fast engine without the core and with it:
    after every step the core equals the fast engine in every observable and the fast
    engine the reference in all but ``ENGINE_KEYS``. Returns the core's other outputs (the
    scenario's counts, in order)."""
    ref = stream_scenario("reference", *args, **kw)
    fast = stream_scenario("fast", *args, **kw, fast_core=False)
    core = stream_scenario("fast", *args, **kw, fast_core=True)
    outs = []
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        if isinstance(a, dict):
            assert isinstance(b, dict) and isinstance(f, dict)
            assert [key for key in f if f[key] != b[key]] == [], f"step {k}"
            assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []
        else:
            outs.append(b)
    return outs


def keep_demo_systems(monkeypatch) -> list:
    """Every ``System`` ``epcsim.demo`` makes from now on in this test, in order, so a test
    can read each run's core counts (``sgx.stream_core``) after ``demo.run_seed``."""
    from epcsim import demo
    from epcsim.system import System

    made: list[System] = []

    class Kept(System):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(demo, "System", Kept)
    return made


def flip_cell(layout: str, ratio: float, cpus: int):
    """The ``SeedConfig`` of one cell of the demo's flip sweep (``cli.flip_configs`` at an
    8 MiB EPC, heap 2x, seed 0)."""
    from epcsim.cli import flip_configs

    return next(
        c for lay, r, n, c in flip_configs("8M", 2.0, 0)
        if lay == layout and r == ratio and n == cpus
    )  # fmt: skip
