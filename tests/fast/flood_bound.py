"""The bound of the fast engine's one named deviation, NOPAGE flood charging
(``epcsim/fast/flood.py``, ``epcsim/fast/README.md``), shared by the differential tests."""

from __future__ import annotations

#: the bound stated in epcsim/fast/README.md: the paging counters (EWB, ELDU, faults that
#: were not retries) and the time the threads took agree within 10% or, for small counts,
#: within FLOOD_SLACK pages and FLOOD_TIME_SLACK_NS
FLOOD_TOL = 0.10
FLOOD_SLACK = 16
FLOOD_TIME_SLACK_NS = 20_000


def close(a: int, b: int, slack: int = FLOOD_SLACK) -> bool:
    return abs(a - b) <= max(slack, FLOOD_TOL * max(abs(a), abs(b)))


def assert_within_flood_bound(
    ref: dict, fast: dict, done_ref: int | None, done_fast: int | None
) -> None:
    """The bound of the named deviation: the build and SIGBUS counts are the same; accesses,
    the paging counters and the threads' completion time are close (``close``); every
    retry is counted (a parked thread's retries are in ``fault_retries``)."""
    for key in ("sigbus", "eadd", "einit", "ecreate"):
        assert ref[key] == fast[key], f"{key}: {ref[key]} vs {fast[key]}"
    ref_loads = ref["page_faults"] - ref["fault_retries"]
    fast_loads = fast["page_faults"] - fast["fault_retries"]
    assert close(ref_loads, fast_loads), ("faults", ref_loads, fast_loads)
    for key in ("ewb", "eldu", "enclave_accesses"):
        assert close(ref[key], fast[key]), (key, ref[key], fast[key])
    assert (done_ref is None) == (done_fast is None), ("threads done", done_ref, done_fast)
    if done_ref is not None and done_fast is not None:
        assert close(done_ref, done_fast, slack=FLOOD_TIME_SLACK_NS), (
            "threads done",
            done_ref,
            done_fast,
        )
