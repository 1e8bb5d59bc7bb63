"""The seed scenario's build alone: host CPU of ``run_seed``'s build phase (issue 9 session
``addcore``; BENCHMARKS.md, "ADD_PAGES' page loop on the core").

    PYTHONPATH=src python benchmarks/seed_build.py [--run 0] [--core auto] [--profile]

Builds the enclave of ``demo_configs()[run]`` (the image's measured pages, then the heap,
2x the EPC, unmeasured) twice in one process and times the second (the first loads numba's
cache, or compiles); prints its CPU, the build's counters and, with "auto"/True, the pages
the compiled core added. ``--profile``: cProfile of the second build (its own CPU ~4x).
Timing only: alternate trees in one sitting, each tree's numba cache warm.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from epcsim import demo
from epcsim.arch import PAGE_SIZE
from epcsim.demo import demo_configs
from epcsim.system import System

COUNTERS = (
    "eadd", "ewb", "ksgxd_batches", "ksgxd_pages_reclaimed", "alloc_reclaim_batches",
    "direct_reclaim_pages", "epa", "etrack", "ipi",
)  # fmt: skip


def build(cfg: Any, core: Any) -> System:
    """``run_seed``'s build phase, without EINIT."""
    system = System(
        epc=cfg.epc, cpus=cfg.cpus, direct_reclaim=cfg.direct_reclaim, seed=cfg.seed,
        costs=cfg.costs, content_mode=cfg.content_mode, engine=cfg.engine,
        nopage_flood=cfg.nopage_flood, mutex=cfg.mutex, sched=cfg.sched, fast_core=core,
    )  # fmt: skip
    heap = max(1, int(demo.parse_pages(cfg.epc, "epc") * cfg.heap_factor))
    size = PAGE_SIZE
    while size < (demo.IMAGE_PAGES + heap) * PAGE_SIZE:
        size <<= 1
    encl = system.create_enclave(size, name="seed")
    image = (
        (0, demo.IMAGE_TCS_PAGES, "r", "tcs"),
        (demo.IMAGE_TCS_PAGES, demo.IMAGE_CODE_PAGES, "rx", "reg"),
        (demo.BUFFER_PAGE, demo.IMAGE_DATA_PAGES, "rw", "reg"),
    )
    for first, n, perm, ptype in image:
        r = encl.add_pages(first * PAGE_SIZE, n * PAGE_SIZE, perm, page_type=ptype, measure=True)
        assert r.ok, r.errno
    r = encl.add_pages(demo.IMAGE_PAGES * PAGE_SIZE, heap * PAGE_SIZE, "rw")
    assert r.ok, r.errno
    return system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, default=0, help="index of demo_configs()")
    ap.add_argument("--core", default="auto", choices=["auto", "True", "False"])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    core: Any = {"True": True, "False": False}.get(args.core, args.core)
    cfg = demo_configs()[args.run]
    build(cfg, core)
    prof = cProfile.Profile() if args.profile else None
    t0 = time.process_time()
    if prof is not None:
        prof.enable()
    system = build(cfg, core)
    if prof is not None:
        prof.disable()
    cpu = time.process_time() - t0
    stats = system.stats()
    sc = system.sgx.stream_core
    adds = getattr(sc, "adds", None) if sc is not None else None
    batched = system.sgx.batched_pages
    print(f"{cfg.label}: build {cpu:.3f} s CPU, core adds {adds}, batched {batched}")
    print(" ".join(f"{k} {stats[k]}" for k in COUNTERS))
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumtime").print_stats(30)


if __name__ == "__main__":
    main()
