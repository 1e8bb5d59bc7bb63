"""The fast engine (``System(engine="fast")``): the reference model with execution shortcuts
that give the same counters and the same event order. See ``README.md`` in this package for
what is covered, where a new kernel feature goes first, and the differential tests."""

from __future__ import annotations

from pathlib import Path

from epcsim.fast.numba_cache import PAGE_STATE, drop_stale, lock_index_saves, sources

__all__: list[str] = []

# processes sharing numba's cache (Dask workers, the demo's) update its index one at a time
# (``fast/numba_cache.py``); ``epcsim.fast`` is imported before anything compiles
lock_index_saves()

# numba's cached code goes when a source it depends on changes (``fast/numba_cache.py``)
drop_stale(
    Path(__file__).parent,
    sources("fast", "fast/ops", *PAGE_STATE),
)
