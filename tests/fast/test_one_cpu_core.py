"""The compiled core with one CPU: the enclave thread (or the ioctl's task) and ksgxd sharing
it (issue 9 session ``onecpu2``; PATHS.md "One CPU: the thread and ksgxd sharing it").

With one CPU ksgxd, woken by the thread's allocation, waits in the core's run queue
(``cosim/runqueue.py``: CFS's placement and wake-up preemption, or the FIFO run queue), the
thread gives it the CPU at its ``cond_resched`` points (``driver/resched.py``: an AEX when
it yields inside the enclave), ksgxd gives it back at its loop tail's or when it sleeps,
and a stop with a task in the queue moves the queue to SimPy (``transfer_to_simpy``). Here
the other core tests' scenarios run on one CPU, with Linux's mutex and CFS and with each
FIFO variant: the access streams (``test_stream_core``), the removal stress test's trim,
EACCEPT and REMOVE_PAGES (``test_eaccept_core``), the trim from the thread or the ioctl's
task (``test_trim_core``), the runtime's -EAGAIN retry (``test_trim_retry_core``). Every
observable after every step is equal on the reference, the fast engine without the core
and with it: the kernel's and the CPU's arrays, the counters, the timeline, the latencies,
the mutex trace, the scheduler's fields (the context switches among them), the clock and
the next eid (the event order). The core must have run the loops and switched tasks on its
CPU (``StreamCore.core_switches``), or the test proves nothing.

Each example runs three systems on one CPU (seconds of CPU each): few examples by default,
more with ``EPCSIM_LONG=1``; the demo cell's guard shows what they reach.

Mutations tried by hand (session ``onecpu2``), each making the core's run differ from the
fast engine without it: skipping the wake-up preemption check (``runqueue.wake_queued``)
and leaving need_resched set after the switch (``runqueue.leave_cpu``) on the one-CPU run
of ``test_stream_core``'s row-1 shape (4,000 accesses over 4x a 256-page EPC, a
``run(until=)`` between two calls); skipping the AEX at a switch-out
(``resched.thread_resched``) on ``test_the_thread_yields_inside_the_enclave_on_one_cpu``'s
run (the row-1 shape never yields inside: its thread faults at nearly every access).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from core_cases import agree, eaccept_scenario, retry_scenario, trim_scenario
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import ENGINE_KEYS, build_enclave, core_snap, three_ways

from epcsim.cli import flip_configs
from epcsim.demo import run_seed
from epcsim.system import System

LONG = bool(os.environ.get("EPCSIM_LONG"))
#: (mutex, sched): Linux's and each FIFO combination
VARIANTS = st.sampled_from([("linux", "cfs"), ("fifo", "fifo"), ("fifo", "cfs"), ("linux", "fifo")])
#: ksgxd's batch ~6 ms, an access 5 us (``test_the_thread_yields_inside_the_enclave_on_one_cpu``)
_LONG_EWB = {"ewb": 400_000, "access": 5_000}
SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
}


@settings(max_examples=12 if LONG else 3, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 64, 96]),
    tcs=st.booleans(),
    eaug=st.booleans(),
    mult=st.sampled_from([2, 4, 6]),
    settle=st.booleans(),
    variant=VARIANTS,
)
def test_streams_on_one_cpu_match_the_reference(
    seed: int, epc_pages: int, tcs: bool, eaug: bool, mult: int, settle: bool,
    variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_stream_core``'s access streams on one CPU: equal after every step, accesses
    run on the core."""
    mutex, sched = variant
    args = (seed, epc_pages, 1, tcs, eaug, mult, settle)
    kw = {"mutex": mutex, "sched": sched}
    for b in three_ways(*args, **kw):
        assert b[0] > 0, "the hook never engaged"


@settings(max_examples=8 if LONG else 2, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    heap_x=st.sampled_from([1.0, 2.0, 3.0]),
    direct=st.booleans(),
    epp=st.booleans(),
    settle=st.booleans(),
    via=st.sampled_from(["thread", "ioctl"]),
    variant=VARIANTS,
)
def test_trim_eaccept_remove_on_one_cpu_match_the_reference(
    seed: int, epc_pages: int, heap_x: float, direct: bool, epp: bool, settle: bool,
    via: str, variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_eaccept_core``'s removal stress test (trim, EACCEPT, REMOVE_PAGES) on one CPU:
    equal step by step, and the core trimmed and removed pages."""
    mutex, sched = variant
    args = (seed, epc_pages, 1, heap_x, direct, epp, settle, 0)
    _eaccepts, trims, removes, *_ = agree(
        eaccept_scenario, args, {"via": via, "mutex": mutex, "sched": sched}
    )
    assert trims > 0, "the core trimmed no page"
    assert removes > 0, "the core removed no page"


@settings(max_examples=6 if LONG else 2, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96]),
    direct=st.booleans(),
    settle=st.booleans(),
    tcs=st.sampled_from([0, 2]),
    hole=st.booleans(),
    via=st.sampled_from(["thread", "ioctl"]),
    variant=VARIANTS,
)
def test_the_trim_loop_on_one_cpu_matches_the_reference(
    seed: int, epc_pages: int, direct: bool, settle: bool, tcs: int, hole: bool, via: str,
    variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_trim_core``'s trim (TCS -> TRIM, a hole, a second call over trimmed pages) on
    one CPU, a heap of twice the EPC: equal call by call, pages trimmed on the core."""
    mutex, sched = variant
    args = (seed, epc_pages, 1, 2.0, direct, settle, tcs, hole, False, via)
    (trims,) = agree(trim_scenario, args, {"mutex": mutex, "sched": sched})
    assert trims > 0, "the core trimmed no page"


@settings(max_examples=6 if LONG else 2, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96]),
    heap_x=st.sampled_from([2.0, 3.0]),
    settle=st.booleans(),
    variant=VARIANTS,
)
def test_the_retry_on_one_cpu_matches_the_reference(
    seed: int, epc_pages: int, heap_x: float, settle: bool, variant: tuple[str, str]
) -> None:
    """``test_trim_retry_core``'s runtime retry after -EAGAIN (no direct reclaim) on one
    CPU, the machine making the runtime's calls (``after1``: calls past the first): equal
    call by call."""
    mutex, sched = variant
    args = (seed, epc_pages, 1, heap_x, settle, "after1", False, 10_000)
    agree(retry_scenario, args, {"mutex": mutex, "sched": sched})


def test_the_thread_yields_inside_the_enclave_on_one_cpu() -> None:
    """A directed run where the thread gives its CPU up *inside* the enclave (an AEX at the
    switch-out, ``resched.thread_resched``), which the properties above seldom reach: ksgxd's
    batches made long (EWB 400 us), so it yields at its loop tail by the tick with pages
    still to reclaim, and the thread, back on the CPU, runs a hot set that fits - user
    steps, each access 5 us, longer than a slice in all - until the tick takes the CPU from
    it at a loop top. Equal on the three systems; skipping the AEX (by hand) makes the
    core's run differ (EWB's tracking too: the LP left inside)."""
    snaps = {}
    for name, engine, kw in (
        ("reference", "reference", {}),
        ("fast", "fast", {"fast_core": False}),
        ("core", "fast", {"fast_core": True}),
    ):
        system, encl, n = build_enclave(engine, 2, 256, 1, False, costs=_LONG_EWB, **kw)
        rng = np.random.default_rng(2)
        stream = np.concatenate([rng.integers(0, n, size=300), np.tile(np.arange(32), 400)])
        out = encl.access_pages(stream)
        assert out.ok
        snaps[name] = core_snap(system, encl, out)
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            assert system.fast_core_accesses > 0.9 * stream.size
            assert sc.core_switches > 0, "nothing switched on the core's one CPU"
    a, f, b = snaps["reference"], snaps["fast"], snaps["core"]
    assert [key for key in f if f[key] != b[key]] == []
    assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []


def test_a_one_cpu_demo_cell_runs_on_the_core() -> None:
    """The guard the properties need: a one-CPU "same enclave" flip cell of ``epcsim demo``
    (``cli.flip_configs``: the build, then the first MODIFY_TYPES call without direct
    reclaim) builds and trims on the core, ksgxd and the ioctl's task switching on its one
    CPU there, with the summary of the run without the core."""
    cfgs = [cfg for layout, _r, c, cfg in flip_configs("8M", 2.0, 0) if c == 1]
    cfg = next(cfg for cfg in cfgs if cfg.neighbour_factor == 0)
    made: list[System] = []

    def run(core: bool) -> dict[str, object]:
        import epcsim.demo as demo

        real = demo.System

        def system(*a: object, **kw: object) -> System:
            made.append(real(*a, **kw))  # type: ignore[arg-type]
            return made[-1]

        demo.System = system  # type: ignore[assignment]
        try:
            return run_seed(dataclasses.replace(cfg, fast_core=core)).summary()
        finally:
            demo.System = real  # type: ignore[misc]

    assert run(True) == run(False)
    sc = made[0].sgx.stream_core
    assert sc is not None
    assert sc.adds > 0 and sc.trims > 0, "the cell did not run on the core"
    assert sc.core_switches > 0, "nothing switched on the core's one CPU"
