"""MODIFY_TYPES(TRIM)'s page loop on the compiled core (``System(fast_core=True)``: the
enclave thread's machine in its MODIFY_TYPES mode, ``tstate.MODE_TRIM``, PATHS.md "The
MODIFY_TYPES loop", rows M1-M4) against the fast engine without the core and the reference.

``tests/fast/test_eaccept_core.py`` runs the removal stress test's trim (called again after
-EAGAIN) over the whole heap and counts the pages the core trimmed. Here, what that shape
never meets: heap pages added as TCS (TCS -> TRIM on the core), a hole of pages never
added in the range (-EFAULT: the core stops under the lock, ``KB_PAGE``, and Python's
``_page_locked`` returns it), a second call over pages already trimmed (-EINVAL, the
same stop) and ``on_pages``' 256-page marks (the machine leaves the mark's note to the
hook, which Python calls at the page top). After each call every observable and the
``OpRecord`` (progress points, -EAGAIN count and instants, errno) must be equal on the
three systems, and so must what the hook saw and when.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_eaccept_core import IMAGE, _agree, _record, _selftest_enclave
from test_stream_core import _snap

from epcsim.arch import PAGE_SIZE
from epcsim.user.thread import AccessOutcome
from epcsim.workloads.edmm import Ctx, drive_range


def _scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool,
    settle: bool, tcs: int, hole: bool, marks: bool, **kw,
):  # fmt: skip
    """Yields a snapshot after each call (module docstring), then the core's trimmed pages."""
    heap = max(16, int(heap_x * epc_pages))

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        if tcs:  # TCS pages as the heap's first ones: TCS -> TRIM
            assert encl.add_pages(IMAGE * PAGE_SIZE, tcs * PAGE_SIZE, page_type="tcs").ok
        gap = (heap * 3 // 4, heap * 3 // 4 + 2) if hole else (heap, heap)  # never added
        for lo, hi in ((tcs, gap[0]), (gap[1], heap)):
            if hi > lo:
                assert encl.add_pages((IMAGE + lo) * PAGE_SIZE, (hi - lo) * PAGE_SIZE, "rw").ok

    system, encl, t = _selftest_enclave(
        engine, seed, epc_pages, cpus, direct, heap, settle, add_heap, "trim", **kw
    )
    ctx = Ctx(encl, t, [])  # type: ignore[arg-type]
    seen: list[tuple[int, int, int, int]] = []

    def on_pages(done: int, total: int) -> None:  # what a progress bar sees, and when
        seen.append((done, total, system.now, int(system.stats()["emodt"])))

    hook = on_pages if marks else None
    rec = system._call(t, drive_range(ctx, "modify_types", IMAGE, heap, on_pages=hook))
    yield _snap(system, encl, AccessOutcome()), _record(rec), seen
    # again over the range's second half: its first page is TRIM already (-EINVAL)
    rec = system._call(t, drive_range(ctx, "modify_types", IMAGE + heap // 2, heap // 2))
    yield _snap(system, encl, AccessOutcome()), _record(rec)
    sc = system.sgx.stream_core
    yield [0] if sc is None else [sc.trims]


def _three(*args, **kw) -> int:  # type: ignore[no-untyped-def]
    """The scenario on the three systems, equal call by call; the core's trimmed pages."""
    b = _agree(_scenario, args, kw)
    assert len(b) == 1
    return int(b[0])


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    cpus=st.integers(2, 4),
    heap_x=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    direct=st.booleans(),
    settle=st.booleans(),
    tcs=st.sampled_from([0, 2]),
    hole=st.booleans(),
)
def test_the_trim_loop_on_the_core_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool, settle: bool,
    tcs: int, hole: bool,
) -> None:  # fmt: skip
    """Equal in every observable and in the ``OpRecord``s; with a heap of at least the EPC
    the loop pages and the core must have trimmed pages."""
    trims = _three(seed, epc_pages, cpus, heap_x, direct, settle, tcs, hole, False)
    if heap_x >= 1:
        assert trims > 0, "the core trimmed no page"


def test_on_pages_sees_each_256_page_mark_of_the_trim_as_the_reference_does() -> None:
    """``drive_range``'s ``on_pages`` with the trim on the core: the hook's calls (pages,
    clock, ``stats.emodt``) equal on the three systems at 256, 512 and 768, the core
    engaged (a 768-page heap over 128 EPC pages, direct reclaim)."""
    trims = _three(5, 128, 2, 6.0, True, True, 0, False, True)
    assert trims > 500
