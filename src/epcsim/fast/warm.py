"""Compile the compiled core's machines once, into numba's on-disk cache (``epcsim warm``,
``make warm``).

Why: ``System(fast_core="auto")``, the default, engages the core only where it costs no
cold compile - machines already compiled in the process or loadable from numba's on-disk
cache (``fast/driver/auto.py``) - because the compile (~1.5 min of CPU on a 2-core
machine) is worth paying only for long runs. So a machine where nothing has compiled them
(a fresh install that ran only ``make demo``) runs every short scenario on the fast engine
without the core, and keeps doing so: measured 2026-11-26 on main 3813879, ``make demo``
with an empty ``NUMBA_CACHE_DIR`` took 34.9 s wall and 66.2 s user CPU, against 7.2 s and
11.7 s with the cache warm. ``make test`` warms it as a side effect; this is the direct way.

How: the demo's own runs (``demo.demo_configs``: both mutexes and schedulers, with and
without direct reclaim) at a small EPC, plus one with the heap touched (an enclave
thread's access stream, ``thread_bridge.drive``) and four of the demo's flip cells
(``warm_flip_configs``), each with ``fast_core=True`` so every machine the demo's runs
reach is compiled with the argument types they pass, and numba writes it to its cache
(``cache=True``); then the first seed run once without the core (``warm_configs``). The
runs' results are discarded: the core is exact, so they equal the runs without it
(``tests/fast/test_warm.py`` checks it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from epcsim.demo import SeedConfig

#: small enough to run in seconds once compiled, big enough to oversubscribe the EPC and
#: reach every machine the demo's runs use (ksgxd's batches, direct reclaim, the ioctl
#: loops, EACCEPT, REMOVE_PAGES)
WARM_EPC = "2M"


def warm_configs() -> list[SeedConfig]:
    """The runs ``warm`` makes: the demo's configurations at ``WARM_EPC`` with
    ``fast_core=True``, and the first of them with the heap touched."""
    from epcsim.demo import demo_configs

    cfgs = [dataclasses.replace(c, fast_core=True) for c in demo_configs(epc=WARM_EPC, cpus=2)]
    # the first seed run once more without the core: the fast engine's own compiled helpers
    # for what the core hands to Python (REMOVE_PAGES' ``list_del_many``, see below)
    return [
        *cfgs,
        dataclasses.replace(cfgs[0], touch_heap=True),
        *warm_flip_configs(),
        dataclasses.replace(cfgs[0], fast_core=False),
    ]


def warm_flip_configs() -> list[SeedConfig]:
    """The demo's flip cells ``warm`` runs besides the seed runs: each layout (the heap's
    own pages, an idle neighbour) on one CPU and on two, at one cost ratio, with
    ``fast_core=True``. Why: the flip cells reach code the seed runs do not - the thread's
    served entry ``thread.thread_resume`` (one CPU, a neighbour's build), and the
    kernel's compiled list helpers on the paths the core hands to Python - and without
    them the first ``epcsim demo`` after ``epcsim warm`` compiled them: found 2026-11-27
    with ``NUMBA_DEBUG_CACHE=1`` (``thread_resume`` and ``page_list.list_del_many``
    written to the cache by the demo, 17.0 s wall against 7.8 s for the next one)."""
    from epcsim.cli import FLIP_RATIOS, flip_configs

    ratio = FLIP_RATIOS[0]
    return [
        dataclasses.replace(cfg, fast_core=True)
        for _layout, r, cpus, cfg in flip_configs(WARM_EPC, 2.0, 0)
        if r == ratio and cpus <= 2
    ]


def warm(on_run: Callable[[int, int], None] | None = None) -> dict[str, float | bool]:
    """Run ``warm_configs`` (``on_run(i, n)`` before each) and say whether the machines
    ``fast_core="auto"`` looks for are now compiled (``auto.machines_warm``) and how much
    host CPU it took."""
    from epcsim.demo import run_seed
    from epcsim.fast.driver import auto

    cfgs = warm_configs()
    c0 = time.process_time()
    for i, cfg in enumerate(cfgs):
        if on_run is not None:
            on_run(i, len(cfgs))
        run_seed(cfg)
    return {"cpu_s": time.process_time() - c0, "warm": auto.machines_warm()}
