"""The compiled core with the model's FIFO variants (``System(mutex="fifo")``,
``System(sched="fifo")``; issue 9, session ``fifo``) against the fast engine without the
core and the reference.

``epcsim demo`` runs the seed's trim on the FIFO mutex and FIFO CPUs beside Linux's; the
core restates ``FifoMutex`` (a contender sleeps on the wait list at once, the unlock hands
the lock to the first waiter) and ``FifoRunQueue`` (free CPUs handed out in FIFO order, no
vruntime placement) next to the Linux decisions (``fast/cosim``, PATHS.md "The regime").
Here the existing core tests' scenarios run with each FIFO combination - the removal
stress test's trim, EACCEPT and REMOVE_PAGES (``test_eaccept_core``), the trim from the
thread or the ioctl task with TCS pages and holes (``test_trim_core``), the access streams
with ``run(until=)``, a tampered record, EAUG and a started thread
(``test_stream_core``), the runtime's -EAGAIN retry without direct reclaim
(``test_trim_retry_core``) - and every observable after every step must be equal on the three
systems: the kernel's and the CPU's arrays, the backing records, the counters, the
timeline, the latencies, the mutex trace (``sleep``/``handoff``: the event order), the
scheduler's fields and its free-CPU deque, the clock and the eids. The core must have run
them (``StreamCore``'s counts), and ksgxd and the thread must have contended for the FIFO
lock on the core (a guard on the draws).
"""

from __future__ import annotations

from core_cases import agree, eaccept_scenario, retry_scenario, trim_scenario
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import three_ways

#: (mutex, sched): every combination with a FIFO variant (Linux's is the other tests')
VARIANTS = st.sampled_from([("fifo", "fifo"), ("fifo", "cfs"), ("linux", "fifo")])
SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
}


@settings(max_examples=6, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    cpus=st.integers(2, 4),
    heap_x=st.sampled_from([1.0, 2.0, 3.0]),
    direct=st.booleans(),
    epp=st.booleans(),
    settle=st.booleans(),
    via=st.sampled_from(["thread", "ioctl"]),
    variant=VARIANTS,
)
def test_trim_eaccept_remove_with_fifo_variants_match_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool, epp: bool,
    settle: bool, via: str, variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_eaccept_core``'s removal stress test (trim, EACCEPT, REMOVE_PAGES) with a FIFO
    variant: equal step by step, and the core ran each loop."""
    mutex, sched = variant
    args = (seed, epc_pages, cpus, heap_x, direct, epp, settle, 0)
    eaccepts, trims, removes, entries, tcs_stops, _ = agree(
        eaccept_scenario, args, {"via": via, "mutex": mutex, "sched": sched}
    )
    assert eaccepts > 0 or tcs_stops == entries > 0, "the core accepted no page"
    assert trims > 0, "the core trimmed no page"
    assert removes > 0, "the core removed no page"


@settings(max_examples=4, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96]),
    cpus=st.integers(2, 4),
    direct=st.booleans(),
    settle=st.booleans(),
    tcs=st.sampled_from([0, 2]),
    hole=st.booleans(),
    via=st.sampled_from(["thread", "ioctl"]),
    variant=VARIANTS,
)
def test_the_trim_loop_with_fifo_variants_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, direct: bool, settle: bool, tcs: int, hole: bool,
    via: str, variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_trim_core``'s trim (TCS -> TRIM, a hole, a second call over trimmed pages)
    with a FIFO variant, a heap of twice the EPC: equal call by call, pages trimmed on the
    core."""
    mutex, sched = variant
    args = (seed, epc_pages, cpus, 2.0, direct, settle, tcs, hole, False, via)
    (trims,) = agree(trim_scenario, args, {"mutex": mutex, "sched": sched})
    assert trims > 0, "the core trimmed no page"


@settings(max_examples=4, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 64, 96]),
    cpus=st.integers(2, 4),
    tcs=st.booleans(),
    eaug=st.booleans(),
    mult=st.sampled_from([2, 4, 6]),
    settle=st.booleans(),
    variant=VARIANTS,
)
def test_streams_with_fifo_variants_match_the_reference(
    seed: int, epc_pages: int, cpus: int, tcs: bool, eaug: bool, mult: int, settle: bool,
    variant: tuple[str, str],
) -> None:  # fmt: skip
    """``test_stream_core``'s access streams with a FIFO variant: equal after every step,
    accesses run on the core."""
    mutex, sched = variant
    args = (seed, epc_pages, cpus, tcs, eaug, mult, settle)
    kw = {"mutex": mutex, "sched": sched}
    for b in three_ways(*args, **kw):
        assert b[0] > 0, "the hook never engaged"


def test_ksgxd_and_the_trim_contend_for_the_fifo_lock_on_the_core() -> None:
    """A guard on what the properties reach: the demo's FIFO pair in small (a heap of twice
    the EPC trimmed with direct reclaim, ksgxd awake, FIFO mutex and CPUs, 4 CPUs), where
    ksgxd and the ioctl sleep on ``encl->lock``'s wait list on the core
    (``StreamCore.lock_contended``) and the lock is handed over; equal on the three
    systems step by step."""
    for via in ("thread", "ioctl"):
        args = (3, 96, 4, 2.0, True, True, False, 0)
        kw = {"via": via, "mutex": "fifo", "sched": "fifo"}
        eaccepts, trims, removes, _, _, contended = agree(eaccept_scenario, args, kw)
        assert trims > 0 and eaccepts > 0 and removes > 0
        assert contended > 0, "no FIFO sleep on the core"


@settings(max_examples=4, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96]),
    cpus=st.integers(2, 4),
    settle=st.booleans(),
    hook=st.sampled_from(["none", "after1"]),
    variant=VARIANTS,
)
def test_the_runtimes_retry_with_fifo_variants_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, settle: bool, hook: str, variant: tuple[str, str]
) -> None:  # fmt: skip
    """``test_trim_retry_core``'s trim without direct reclaim, called again after -EAGAIN
    (the demo's FIFO run without direct reclaim in small), with a FIFO variant: equal, and
    the core made calls itself (``StreamCore.ioctl_retries``)."""
    mutex, sched = variant
    args = (seed, epc_pages, cpus, 3.0, settle, hook, False, None)
    retries, trims = agree(retry_scenario, args, {"mutex": mutex, "sched": sched})
    assert retries > 0 and trims > 0, "the core made no call itself"
