"""``LatencyHistogram.extend``: the batched ``append`` the compiled fault path flushes its
latencies with (issue 9, session ``pcost``) must leave the histogram exactly as appending
each value in order would: bins, exact samples (across the ``exact`` cap) and count."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.kernel.stats import LatencyHistogram

# values near every power of two (where a float log2 may round to the next octave), small
# values (the ``<= 1`` bin), negatives, and values past ``2**56`` (``append`` one by one)
_near_pow2 = st.builds(lambda k, d: (1 << k) + d, st.integers(0, 62), st.integers(-3, 3)).filter(
    lambda v: -(1 << 63) <= v < 1 << 63
)
_values = st.lists(st.one_of(_near_pow2, st.integers(-5, 1 << 40)), max_size=60)


def _state(h: LatencyHistogram) -> tuple[int, list[int], list[int]]:
    return h.count, list(h._buf), h.counts.tolist()


@settings(max_examples=300, deadline=None)
@given(
    before=_values,
    batches=st.lists(_values, max_size=4),
    cap=st.integers(0, 80),
)
def test_extend_is_append_each_in_order(
    before: list[int], batches: list[list[int]], cap: int
) -> None:
    one, many = LatencyHistogram(exact=cap), LatencyHistogram(exact=cap)
    for v in before:
        one.append(v)
        many.append(v)
    for batch in batches:
        for v in batch:
            one.append(v)
        many.extend(np.array(batch, dtype=np.int64))
    assert _state(many) == _state(one)


def test_extend_bins_every_octave_boundary_as_append() -> None:
    """Each ``2**k - 1``, ``2**k``, ``2**k + 1`` below ``2**56`` (the vectorised range): a
    float log2 rounds ``2**k - 1`` up for ``k > 53``: the bin must still be ``append``'s."""
    vals = [(1 << k) + d for k in range(1, 56) for d in (-1, 0, 1)]
    one, many = LatencyHistogram(exact=0), LatencyHistogram(exact=0)
    for v in vals:
        one.append(v)
    many.extend(np.array(vals, dtype=np.int64))
    assert many.counts.tolist() == one.counts.tolist()
    assert many.count == one.count == len(vals)


def test_extend_bins_every_bin_edge_as_append() -> None:
    """Each bin's first value and the one before it, in every octave below ``2**56``
    (``bin_latencies`` finds the octave by halving the width since session ``row1b``: an
    octave off by one at one of its tests lands, for values just past a power of two, in the
    right bin by the fraction's overflow, so only values further into an octave show it)."""
    per = LatencyHistogram.BINS_PER_OCTAVE
    vals = [
        (1 << k) + ((j << k) >> 5) + d
        for k in range(1, 56)
        for j in range(per)
        for d in (-1, 0)
        if (1 << k) + ((j << k) >> 5) + d < 1 << 56
    ]
    one, many = LatencyHistogram(exact=0), LatencyHistogram(exact=0)
    for v in vals:
        one.append(v)
    many.extend(np.array(vals, dtype=np.int64))
    assert many.counts.tolist() == one.counts.tolist()
