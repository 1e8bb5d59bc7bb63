"""The fast engine (``System(engine="fast")``): the reference model with execution shortcuts
that give the same counters and the same event order. See ``README.md`` in this package for
what is covered, where a new kernel feature goes first, and the differential tests."""

from __future__ import annotations

from pathlib import Path

from epcsim.fast.numba_cache import drop_stale, sources

__all__: list[str] = []

# numba's cache would keep code compiled against an older version of a function or constant
# from another file (``epcsim.fast.numba_cache`` says why): drop this package's cached code
# when any source it depends on changed.
drop_stale(
    Path(__file__).parent,
    sources(
        "fast",
        "fast/ops",
        "kernel/epc.py",
        "kernel/encl_page.py",
        "kernel/page_list.py",
        "kernel/backing.py",
        "isa/epcm.py",
        "isa/core.py",
        "isa/sealing.py",
        "arch.py",
    ),
)
