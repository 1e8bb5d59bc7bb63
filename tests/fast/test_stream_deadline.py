"""The compiled core under ``System.run(until=)`` deadlines (issue 9 row 10, session
``deadline``; ``fast/cosim/deadline.py``, PATHS.md "A deadline inside the call").

A started thread (``Enclave.start``: its own generator, the hook at its loop top) streams
over more pages than the EPC with ksgxd busy, and the run is sliced into many ``run(until=)``
calls. The core holds each until event as a stop row and hands the queue back before it, so
after every slice the state must be the one the reference has at that instant: fast with
the core equal to fast without it in every observable (eids, elided steps and the queue
included), and both to the reference in all but the engine's own ``ENGINE_KEYS``. A run
sliced so must also end where the unsliced run ends (all but ``ENGINE_KEYS``: each until
event takes an eid, and a step that crosses it is a timeout, not elided). Some deadlines
fall exactly on a queued event's instant (a tie: SimPy's until event is URGENT, so it comes
first), the rest at random instants.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ksgxd_cases import snapshot
from stream_core_cases import ENGINE_KEYS, build_enclave

import epcsim

LONG = bool(os.environ.get("EPCSIM_LONG"))


def deadline_snap(system: epcsim.System, thread: object) -> dict[str, object]:
    """``ksgxd_cases.snapshot`` with the started thread's accounting, the lock's owner by
    name, the fault latencies and SimPy's queue as ``(time, priority, eid)``."""
    snap = snapshot(system)
    t: object = thread
    snap["thread"] = tuple(
        getattr(t, f)
        for f in (
            "cpu", "last_cpu", "busy_ns", "step_end", "step_ns", "slice_start", "vruntime",
            "started", "entered", "aexed", "entry_fault",
        )
    )  # fmt: skip
    owner, *rest = snap["lock"]  # type: ignore[misc]
    snap["lock"] = (None if owner is None else owner.name, *rest)
    lat = system.sgx.fault_latency_ns
    snap["latency"] = (lat.count, lat.counts.tobytes(), list(lat._buf))
    snap["queue"] = sorted((t, p, e) for t, p, e, _ in system.machine.env._queue)  # pop order
    snap["context_switches"] = system.machine.context_switches
    return snap


def sliced_run(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, tcs: bool, mult: int, settle: bool,
    size: int, deadlines: list[int] | None, ties: float = 0.0, **kw,
):  # fmt: skip
    """A started thread's stream run in ``run(until=)`` slices to the instants ``deadlines``
    (ns from the stream's start; None: drawn here - a fraction ``ties`` at the queue's next
    event, the rest at random - and returned, so the other engines replay the same
    instants; ``[]`` runs it unsliced), then ``run()`` to its end. Returns the snapshots
    after each slice and at the end, the deadlines, and the core's ``(accesses,
    deadline_stops, resched_passed, resched_kept)``."""
    system, encl, n = build_enclave(engine, seed, epc_pages, cpus, tcs, mult, settle, **kw)
    rng = np.random.default_rng(seed)
    first = 1 if tcs else 0
    pages = rng.integers(first, n, size=size)
    write = rng.random(size) < 0.3
    threads = []
    new_thread = encl.new_thread
    encl.new_thread = lambda name="": threads.append(new_thread(name)) or threads[-1]
    proc = encl.start(pages, write)
    thread = threads[0]
    env = system.machine.env
    t0 = int(env.now)
    snaps = []
    drawn = deadlines is None
    todo = [] if deadlines is None else list(deadlines)
    made: list[int] = []
    while proc.is_alive and (len(made) < 60 if drawn else todo):
        if not drawn:
            at = t0 + todo.pop(0)
        elif ties and rng.random() < ties and env.now < env.peek() < float("inf"):
            at = int(env.peek())  # a tie with the queue's next event
        else:
            at = int(env.now) + int(rng.integers(1, 40_000))
        made.append(at - t0)
        system.run(until=at - int(env.now))
        snaps.append(deadline_snap(system, thread))
    system.run()
    snaps.append(deadline_snap(system, thread))
    assert proc.value.ok
    sc = system.sgx.stream_core
    counts = (
        (0, 0, 0, 0)
        if sc is None
        else (sc.accesses, sc.deadline_stops, sc.resched_passed, sc.resched_kept)
    )
    return snaps, made, counts


@settings(
    max_examples=30 if LONG else 4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 64, 96]),
    cpus=st.integers(2, 4),
    tcs=st.booleans(),
    mult=st.sampled_from([2, 4, 6]),
    settle=st.booleans(),
    fifo=st.booleans(),
    ties=st.sampled_from([0.0, 0.5]),
)
def test_sliced_runs_on_the_core_match_the_reference_after_every_slice(
    seed: int, epc_pages: int, cpus: int, tcs: bool, mult: int, settle: bool, fifo: bool,
    ties: float,
) -> None:  # fmt: skip
    """After every ``run(until=)`` slice: fast with the core == fast without it (every
    observable), == the reference (all but ``ENGINE_KEYS``); the sliced run ends where the
    unsliced one does; and the core ran the stream under the deadlines (most accesses, a
    deadline stop per slice it was inside)."""
    kw = {"mutex": "fifo", "sched": "fifo"} if fifo else {}
    args = (seed, epc_pages, cpus, tcs, mult, settle, 1500)
    fast, deadlines, _ = sliced_run("fast", *args, None, ties, fast_core=False, **kw)
    ref, _, _ = sliced_run("reference", *args, deadlines, **kw)
    core, _, (on_core, stops, _, _) = sliced_run("fast", *args, deadlines, fast_core=True, **kw)
    whole, _, _ = sliced_run("fast", *args, [], fast_core=True, **kw)
    assert len(ref) == len(fast) == len(core) == len(deadlines) + 1
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        assert _differ(f, b) == [], f"slice {k}: fast with the core"
        assert _differ(a, f, ENGINE_KEYS) == [], f"slice {k}: the reference"
    assert _differ(whole[-1], core[-1], ENGINE_KEYS) == []
    assert stops > 0, "no deadline met on the core"
    assert on_core > 0.8 * 1500, "the stream ran in Python under the slices"


def test_a_started_thread_runs_on_the_core_under_slices() -> None:
    """Row 10's one thread (``benchmarks/rows.threads``' shape, small): a thread started by
    ``Enclave.start`` and driven by ``run(until=)`` slices - the core used to decline every
    iteration (SimPy's queue held the until event) and ran 0 of its accesses; now nearly
    all (checked: 3,933 of 4,000, 65 deadline stops), and the same state as without it.
    Served past their ``cond_resched()`` points inside one served step (session
    ``callcost``: ``Session._resched_passes``), the guard that it happened."""
    args = (5, 256, 2, False, 4, True, 4000)
    deadlines = list(range(30_000, 3_000_000, 30_000))
    fast, _, _ = sliced_run("fast", *args, deadlines, fast_core=False)
    core, _, (on_core, stops, passed, _) = sliced_run("fast", *args, deadlines, fast_core=True)
    for k, (f, b) in enumerate(zip(fast, core, strict=True)):
        assert _differ(f, b) == [], f"slice {k}"
    assert on_core > 0.95 * 4000 and stops > 0 and passed > 0


def test_served_cond_resched_points_on_one_cpu_under_slices() -> None:
    """One CPU, sliced: ksgxd served after a deadline while the thread waits for the CPU
    meets ``cond_resched()`` points that give the CPU up (``Task.resched_due``) as well as
    points that do nothing, which its served step goes on past (session ``callcost``:
    ``Session._resched_passes``). After every slice fast with the core == fast without it
    (every observable) == the reference (all but ``ENGINE_KEYS``); the guard: both kinds
    of point met (seed 0: 38 passed, 2 kept). A pass taken where the point gives the CPU
    up fails it."""
    args = (0, 64, 1, True, 4, True, 1500)
    fast, deadlines, _ = sliced_run("fast", *args, None, 0.5, fast_core=False)
    ref, _, _ = sliced_run("reference", *args, deadlines)
    core, _, (_, stops, passed, kept) = sliced_run("fast", *args, deadlines, fast_core=True)
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        assert _differ(f, b) == [], f"slice {k}: fast with the core"
        assert _differ(a, f, ENGINE_KEYS) == [], f"slice {k}: the reference"
    assert stops > 0 and passed > 0 and kept > 0


def _differ(a: dict[str, object], b: dict[str, object], skip: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    return [k for k in a if a[k] != b[k] and k not in skip]
