"""``StreamCore._writes``: the ioctl loops' all-false write mask is kept between calls only up
to ``WRITES_KEPT`` pages, so a large build's ADD_PAGES leaves no byte per heap page behind
(issue 9 row 6: bytes per EPC page in use)."""

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.fast.driver.stream import WRITES_KEPT, StreamCore


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4 * WRITES_KEPT), min_size=1, max_size=6))
def test_the_mask_is_all_false_of_the_size_asked_and_kept_bounded(sizes):
    core = SimpleNamespace(_no_writes=np.zeros(0, np.bool_))
    for n in sizes:
        w = StreamCore._writes(core, n)
        assert w.dtype == np.bool_ and w.shape == (n,) and not w.any()
        assert core._no_writes.size <= WRITES_KEPT
        if n <= WRITES_KEPT:  # a small one is served from the kept mask from now on
            assert core._no_writes.size >= n
