"""What the stream-core tests share (``test_stream_core.py``, ``test_stream_core_ksgxd.py``,
``test_eaccept_core.py``, ``test_auto_trim.py``): ``_build`` (a system and an enclave over
more pages than the EPC, on either engine, with or without the hook), ``_snap`` (every
observable after a call) and ``ENGINE_KEYS`` (what differs between the engines by design).

A helper module, not a test file (moved from ``test_stream_core.py`` by session ``split``
when that file passed 600 lines; no code changed).
"""

from __future__ import annotations

import dataclasses

from test_driver_ksgxd import snapshot

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.engine.sched import CfsRunQueue

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
    rq = system.machine.rq
    # CFS's idle CPUs (sorted), or the FIFO run queue's free-CPU deque (its order matters)
    free = rq._idle if isinstance(rq, CfsRunQueue) else rq._free_cpus
    snap["rq"] = (list(free), system.machine.context_switches)
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
