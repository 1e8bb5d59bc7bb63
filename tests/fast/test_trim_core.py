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

Each scenario runs twice: MODIFY_TYPES called by the enclave thread after an EEXIT
(``workloads.edmm.drive_range``, the thread's task on the core), and through
``Enclave.modify_types`` - the process's ioctl task, a plain ``Task`` that never enters
the enclave (session ``ioctlcore``; row 3's call) - called again from ``offset + count``
after -EAGAIN as the selftest does: every call's result and that task's scheduler
fields must then be equal too.
"""

from __future__ import annotations

from core_cases import agree, trim_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _three(*args, **kw) -> int:  # type: ignore[no-untyped-def]
    """The scenario on the three systems, equal call by call; the core's trimmed pages."""
    b = agree(trim_scenario, args, kw)
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
    via=st.sampled_from(["thread", "ioctl"]),
)
def test_the_trim_loop_on_the_core_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool, settle: bool,
    tcs: int, hole: bool, via: str,
) -> None:  # fmt: skip
    """Equal in every observable and in the ``OpRecord``s (or, from the ioctl task, every
    call's result); with a heap of at least the EPC the loop pages and the core must have
    trimmed pages."""
    trims = _three(seed, epc_pages, cpus, heap_x, direct, settle, tcs, hole, False, via)
    if heap_x >= 1:
        assert trims > 0, "the core trimmed no page"


def test_the_ioctl_tasks_trim_runs_on_the_core() -> None:
    """Row 3's call (``Enclave.modify_types``, the process's ioctl task) over a heap of
    twice the EPC, direct reclaim on and off, ksgxd settled and awake: equal on the three
    systems, and the core trimmed pages (the task is not an enclave thread: no TCS, never
    inside, its CPU whichever the scheduler gave it)."""
    for direct, settle in ((True, True), (False, False)):
        trims = _three(11, 96, 2, 2.0, direct, settle, 0, False, False, "ioctl")
        assert trims > 0, "the core trimmed no page"


def test_on_pages_sees_each_256_page_mark_of_the_trim_as_the_reference_does() -> None:
    """``drive_range``'s ``on_pages`` with the trim on the core: the hook's calls (pages,
    clock, ``stats.emodt``) equal on the three systems at 256, 512 and 768, the core
    engaged (a 768-page heap over 128 EPC pages, direct reclaim)."""
    trims = _three(5, 128, 2, 6.0, True, True, 0, False, True)
    assert trims > 500
