"""The runs ``test_threads_user.py`` compares (``Enclave.start``'s threads under
``run(until=)`` slices on the reference, the fast engine and the fast engine with the
compiled core, snapshot after every slice) and the comparison itself, shared with
``test_group_fold.py`` (session ``many64``: moved here from ``test_threads_user.py``, no
code changed; ``tests/test_suite_rules.py`` wants no import from a test module)."""

from __future__ import annotations

import dataclasses

from ksgxd_cases import snapshot
from stream_core_cases import ENGINE_KEYS
from threads_cases import EPC_PAGES, streams

import epcsim
from epcsim.arch import PAGE_SIZE


def _snap(system: epcsim.System, threads: list, procs: list) -> dict[str, object]:  # type: ignore[type-arg]
    """``ksgxd_cases.snapshot`` and every thread's accounting, entry state and outcome, the
    LPs, the run queue, the mutex's counters, the latencies in order and SimPy's queue."""
    s = snapshot(system)
    owner, *rest = s["lock"]  # type: ignore[misc]
    s["lock"] = (None if owner is None else owner.name, *rest)
    m = system.machine
    s["threads"] = [
        (t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime,
         t.started, t.entered, t.aexed, t.entry_fault, t._resched)
        for t in threads
    ]  # fmt: skip
    cpu = system.cpu
    s["lp"] = (list(cpu.lp_eid), list(cpu.lp_tcs))
    encl = next(iter(system.sgx.enclaves.values()))
    secs = cpu.secs_at.get(encl.secs_epc)
    s["busy_tcs"] = None if secs is None else sorted(secs.busy_tcs)
    rq = m.rq
    s["rq"] = (
        list(getattr(rq, "_idle", [])), list(getattr(rq, "_free_cpus", [])),
        m.context_switches, getattr(rq, "wakeup_preemptions", 0), rq.waiting(),
    )  # fmt: skip
    lock = encl.lock
    s["mutex"] = (lock.wait_ns, lock.steals, lock.handoffs, lock.spin_acquired, len(lock._waiters))
    lat = system.sgx.fault_latency_ns
    s["latency"] = (lat.count, lat.counts.tobytes(), list(lat._buf))
    s["queue"] = sorted((t, p, e) for t, p, e, _ in m.env._queue)  # pop order
    s["outcomes"] = [None if p.is_alive else dataclasses.astuple(p.value) for p in procs]
    flood = system.sgx.flood
    if flood is not None:  # ``nopage_flood="bulk"`` (test_flood_user.py, session ``uflood``)
        flood.settle()  # as ``System.stats`` reads them
        s["flood"] = (
            flood.parks, flood.bulk_retries, sorted(flood._holds.values()),
            [(t.name, vars_of(p)) for t, p in flood.parked.items()],
            sorted((t.name, d) for t, d in flood._deciding.items()),
        )  # fmt: skip
    return s


def vars_of(p: object) -> tuple[object, ...]:
    """A parked retrier's ``_Park`` fields (its event's state, not the event)."""
    names = ("base", "counted", "eresume_ns", "forced", "index", "lock_check", "period")
    ev = p.ev  # type: ignore[attr-defined]
    return (
        *(getattr(p, n) for n in names), p.tcs_first, p.tick_at, p.touched,  # type: ignore[attr-defined]
        None if ev is None else (ev.triggered, ev.processed),
    )  # fmt: skip


def user_run(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc: str, mult: float, cpus: int, nthreads: int, length: int,
    hot: float, fifo: str, direct: bool, deadlines: list[int], at=None, **kw,
):  # fmt: skip
    """The threads started by ``Enclave.start`` and run to the instants ``deadlines`` (ns
    from their start) by ``run(until=)``, then by ``run()`` to their end. Returns the
    snapshots after each slice and at the end, and the ``StreamCore`` (None without).
    ``at(k, system, encl, threads)``, if given, runs after slice ``k``'s snapshot (``encl``
    the ``SgxEncl``): a change made there by hand is made alike on every engine."""
    n = int(EPC_PAGES[epc] * mult)
    system = epcsim.System(
        epc=epc, cpus=cpus, seed=seed, content_mode="tag", engine=engine,
        mutex="fifo" if "mutex" in fifo else "linux", sched="fifo" if "sched" in fifo else "cfs",
        direct_reclaim=direct, **kw,
    )  # fmt: skip
    encl = system.create_enclave(1 << ((n + nthreads).bit_length() + 12))
    assert encl.add_pages(0, nthreads * PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(nthreads * PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    system.run()
    encl.encl.lock.trace = []
    pages, writes = streams(seed, nthreads, n, EPC_PAGES[epc], length, hot)
    threads: list = []  # type: ignore[type-arg]
    new_thread = encl.new_thread
    encl.new_thread = lambda name="": threads.append(new_thread(name)) or threads[-1]
    procs = [encl.start(pages[r], writes[r], name=f"t{r}") for r in range(nthreads)]
    env = system.machine.env
    t0 = int(env.now)
    snaps = []
    for k, d in enumerate(deadlines):
        if t0 + d > env.now:
            system.run(until=t0 + d - int(env.now))
        snaps.append(_snap(system, threads, procs))
        if at is not None:
            at(k, system, encl.encl, threads)
    system.run()
    snaps.append(_snap(system, threads, procs))
    assert not any(p.is_alive for p in procs)
    return snaps, system.sgx.stream_core


def _differ(a: dict[str, object], b: dict[str, object], skip: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    return [k for k in a if a[k] != b[k] and k not in skip]


def agree(*args, **kw):  # type: ignore[no-untyped-def]
    """Reference, fast and fast with the core on the same run: equal after every slice
    (module docstring); returns the core's ``StreamCore``."""
    fast, _ = user_run("fast", *args, fast_core=False, **kw)
    ref, _ = user_run("reference", *args, **kw)
    core, sc = user_run("fast", *args, fast_core=True, **kw)
    assert len(ref) == len(fast) == len(core)
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        assert _differ(f, b) == [], f"slice {k}: fast with the core"
        assert _differ(a, f, ENGINE_KEYS) == [], f"slice {k}: the reference"
    return sc


__all__ = ["agree", "user_run"]
