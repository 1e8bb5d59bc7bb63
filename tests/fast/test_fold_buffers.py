"""The compiled core's buffers for Python's folds - the free timeline's new points
(``KState.ft``, ``kstate.FT_ROWS_KEPT`` rows in the ``KState`` a ``StreamCore`` keeps) and
the fault latencies (``TState.lat``, ``tstate.LAT_ROWS``) - change how often a call stops
to come back into Python (``SVC_FT_FULL``, ``SVC_LAT_FULL``: the fold, then a re-entry),
never a result: the points and latencies are folded in the order they were made, and no
Python code reads the timeline or the histogram while the core runs.

Session ``fault5`` enlarged both so that row 1's timed call (6,912 faults, ~13,800 points)
no longer stops for them (PATHS.md "Per fault on the core"); what kept the stops'
path covered before - calls with more than 4,096 points or latencies - is drawn here
instead, with buffers of 1 to 64 rows against the defaults.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import stream_scenario

from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.stream import StreamCore


def _run(ft_rows: int, lat_rows: int, *args: Any) -> tuple[list[Any], int]:
    """``stream_scenario`` on the core with these buffer sizes: its snapshots, and the
    number of ``drive`` calls (each stop for a fold is one more)."""
    calls = [0]
    real = StreamCore.drive

    def counted(self: StreamCore, *a: Any) -> int:
        calls[0] += 1
        return real(self, *a)

    with (
        mock.patch.object(K, "FT_ROWS_KEPT", ft_rows),
        mock.patch.object(T, "LAT_ROWS", lat_rows),
        mock.patch.object(StreamCore, "drive", counted),
    ):
        snaps = list(stream_scenario("fast", *args, fast_core=True))
    return snaps, calls[0]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 64]),
    cpus=st.integers(2, 3),
    ft_rows=st.sampled_from([1, 2, 3, 7, 64]),
    lat_rows=st.sampled_from([1, 2, 5, 64]),
)
def test_buffer_sizes_change_no_result(
    seed: int, epc_pages: int, cpus: int, ft_rows: int, lat_rows: int
) -> None:
    """``test_stream_core.py``'s scenario (calls, a ``run(until=)`` between, a tampered
    record, a started thread) with buffers of a few rows gives every observable after
    every step (the free timeline and the latency histogram included) as with the
    default sizes; and the small buffers did stop the core for their folds."""
    args = (seed, epc_pages, cpus, True, False, 4)
    small, small_calls = _run(ft_rows, lat_rows, *args)
    big, big_calls = _run(K.FT_ROWS_KEPT, T.LAT_ROWS, *args)
    assert big[-1][0] > 0, "the core never ran"
    for k, (a, b) in enumerate(zip(small, big, strict=True)):
        if isinstance(a, dict):
            assert [key for key in a if a[key] != b[key]] == [], f"step {k}"
        else:
            assert a == b
    assert small_calls > big_calls, "no stop for a fold: the buffers' path was not run"
