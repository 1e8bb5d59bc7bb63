"""The runtime's -EAGAIN retry of MODIFY_TYPES(TRIM) on the compiled core
(``fast/driver/retry.py``, session ``eagain``; PATHS.md "The runtime's retry on the core").

Without direct reclaim, while ksgxd is awake, a call ends with -EAGAIN at the first page
whose ELDU finds no free EPC page and ``drive_range`` calls again from ``offset + count``;
most such calls do no page at all (ksgxd is writing a batch back). The machine ends each
call and makes the next itself (the return to user space, the syscall), and Python records
the calls when the core next stops. Here, over heaps 2-3x the EPC with ksgxd awake: the
``OpRecord`` (calls, -EAGAIN count and instants, the first call's pages, progress points,
``pages_done`` and errno), what an ``on_call`` hook saw (each result and ``done`` before
it), ``on_pages``' marks with their instants, the thread's scheduler fields and every
observable of the stream tests' snapshot (counters, the free timeline, the mutex trace)
must be equal on the reference, the fast engine and the fast engine with the core; and the
core must have made calls itself (``StreamCore.ioctl_retries``). ``max_stalled`` small
enough that the runtime gives up is one of the cases (the machine leaves that call to
Python), and so is an ``on_call`` that must see the first call's return at its instant.
The calls the core made reach the runtime in one batch (session ``seed5``): a hook with
``result_only_after``'s ``eagain_many`` (``many``, and the demo's own ``demo``) must log
what the reference's call-by-call hook logs, in order, the demo's ``CallLog`` with it.
"""

from __future__ import annotations

import os

from core_cases import agree, retry_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = bool(os.environ.get("EPCSIM_LONG"))


@settings(max_examples=40 if LONG else 10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    cpus=st.integers(2, 4),
    heap_x=st.sampled_from([2.0, 3.0]),
    settle=st.booleans(),
    hook=st.sampled_from(["none", "plain", "after1", "many", "demo"]),
    marks=st.booleans(),
    max_stalled=st.sampled_from([None, None, 10_000, 4]),
)
def test_the_runtimes_retry_on_the_core_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, settle: bool, hook: str,
    marks: bool, max_stalled: int | None,
) -> None:  # fmt: skip
    """Equal on the three systems; the core made calls itself unless the hook must see
    every call's return (``plain``), or ``max_stalled`` stopped the runtime before it
    could (a few stalled calls)."""
    retries, _trims = agree(
        retry_scenario, (seed, epc_pages, cpus, heap_x, settle, hook, marks, max_stalled), {}
    )
    if hook == "plain":
        assert retries == 0, "a hook that reads the instant keeps every call in Python"
    elif max_stalled != 4:
        assert retries > 0, "the core made no call itself"


def test_the_demos_trim_makes_its_calls_on_the_core() -> None:
    """The demo's hooks (``demo._call_logger``: the first call's end read at its instant,
    the others result-only; ``max_stalled`` 10,000) over a heap 3x the EPC, ksgxd awake:
    equal, and nearly every call is the core's (all but the first and those before ksgxd
    first went to its machine)."""
    retries, trims = agree(retry_scenario, (7, 96, 4, 3.0, False, "after1", False, 10_000), {})
    assert retries > 100 and trims > 0


def test_the_calls_the_core_made_reach_a_bulk_hook_as_one_by_one() -> None:
    """``result_only_after(1, eagain_many=...)`` (session ``seed5``): the core's calls
    handed over in batches give the hook the results and ``done`` the reference's
    call-by-call hook sees, and the demo's ``CallLog`` (-EAGAIN causes in their order, the
    first call's stop and snapshot) is the reference's; most calls are the core's."""
    for hook in ("many", "demo"):
        retries, trims = agree(retry_scenario, (7, 96, 4, 3.0, False, hook, False, 10_000), {})
        assert retries > 100 and trims > 0, hook
