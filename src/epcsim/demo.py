"""The seed scenario (``shared/seed/``): a large-range EDMM removal on an oversubscribed EPC.

It follows the kernel's page-removal stress test (``unclobbered_vdso_oversubscribed_remove``,
spec §15): build an enclave whose unmeasured heap is larger than the EPC (ADD_PAGES reclaims
directly, so most of the heap ends up in backing), then MODIFY_TYPES(TRIM) over the whole
heap, one enclave entry per page for EACCEPT(TRIM|MODIFIED), and REMOVE_PAGES over the heap.
The caller retries on -EAGAIN from ``offset + count`` as a real runtime would.

Nothing here decides the outcome: whether the first MODIFY_TYPES call stops part-way comes
from the costs, the CPU count and ksgxd's scheduling in the model.

Decision (documented): by default the heap is populated by ADD_PAGES (EADD copies the
loader's data into every page), as in the kernel test; ``touch_heap=True`` additionally
writes every heap page from inside first, which leaves the resident pages *young*, a case
where even direct reclaim's single batch may find nothing to evict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags
from epcsim.system import System
from epcsim.units import parse_pages
from epcsim.workloads.edmm import Ctx, OpRecord, PagesHook, drive_range, eaccept_range

IMAGE_TCS_PAGES = 2  # the selftest enclave's TCS segment
IMAGE_CODE_PAGES = 4  # code and data, measured


@dataclass
class SeedConfig:
    epc: int | str = "sgx1-client"  # ~93.5 MiB usable of a 128 MB PRM client part
    heap_factor: float = 2.0  # heap = factor x EPC
    cpus: int = 4
    direct_reclaim: bool = True
    touch_heap: bool = False
    costs: dict[str, Any] | None = None
    seed: int = 0
    content_mode: str = "tag"
    stop_after_first_call: bool = False  # for sweeps that only ask "does the first call fail?"
    #: an idle neighbour enclave of this many EPCs, built after the heap: it fills the EPC, so
    #: ksgxd's victims belong to another enclave and do not contend for the ioctl's encl->lock
    neighbour_factor: float = 0.0
    engine: str = "reference"  # System(engine=...)

    def __post_init__(self) -> None:
        if not isinstance(self.heap_factor, int | float) or self.heap_factor <= 0:
            raise ValueError(f"heap_factor: must be a positive number, got {self.heap_factor!r}")
        if not isinstance(self.neighbour_factor, int | float) or self.neighbour_factor < 0:
            raise ValueError(
                f"neighbour_factor: must be a number >= 0, got {self.neighbour_factor!r}"
            )


@dataclass
class SeedRun:
    config: SeedConfig
    length_pages: int
    build_ns: int
    modify: OpRecord
    accept_ns: int
    accept_failures: int
    remove: OpRecord | None
    stats: dict[str, Any]
    free_timeline: tuple[list[int], list[int]]

    def summary(self) -> dict[str, Any]:
        """The per-run JSON object of ``epcsim demo --json``."""
        s = self.stats
        return {
            "direct_reclaim": self.config.direct_reclaim,
            "cpus": self.config.cpus,
            "length_pages": self.length_pages,
            "first_call_count_pages": self.modify.first_call_pages,
            "first_call_errno": self.modify.first_call_errno,
            "eagain_returns": self.modify.eagain + (self.remove.eagain if self.remove else 0),
            "calls_to_complete": self.modify.calls + (self.remove.calls if self.remove else 0),
            "modify_calls": self.modify.calls,
            "remove_calls": self.remove.calls if self.remove else 0,
            "simulated_ns": s["simulated_ns"],
            "operation_ns": self.modify.simulated_ns
            + self.accept_ns
            + (self.remove.simulated_ns if self.remove else 0),
            "ewb": s["ewb"],
            "eldu": s["eldu"],
            "ksgxd_wakeups": s["ksgxd_wakeups"],
            "direct_reclaim_calls": s["direct_reclaim_calls"],
            "completed": self.remove is not None
            and self.modify.errno is None
            and self.remove.errno is None
            and self.remove.pages_done == self.length_pages,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def run_seed(
    cfg: SeedConfig,
    on_phase: Callable[[str], None] | None = None,
    on_pages: PagesHook | None = None,
) -> SeedRun:
    """Run the seed scenario once. ``on_phase(name)`` marks each phase, ``on_pages(done,
    total)`` reports pages done within the range operations (for progress bars)."""
    phase = on_phase or (lambda _name: None)
    system = System(
        epc=cfg.epc,
        cpus=cfg.cpus,
        direct_reclaim=cfg.direct_reclaim,
        seed=cfg.seed,
        costs=cfg.costs,
        content_mode=cfg.content_mode,
        engine=cfg.engine,
    )
    epc_pages = parse_pages(cfg.epc, "epc")
    heap_pages = max(1, int(epc_pages * cfg.heap_factor))
    image_pages = IMAGE_TCS_PAGES + IMAGE_CODE_PAGES
    size = PAGE_SIZE
    while size < (image_pages + heap_pages) * PAGE_SIZE:
        size <<= 1
    phase("build")
    encl = system.create_enclave(size, name="seed")
    r = encl.add_pages(0, IMAGE_TCS_PAGES * PAGE_SIZE, page_type="tcs", measure=True)
    assert r.ok, r
    r = encl.add_pages(
        IMAGE_TCS_PAGES * PAGE_SIZE, IMAGE_CODE_PAGES * PAGE_SIZE, "rx", measure=True
    )
    assert r.ok, r
    heap_off = image_pages * PAGE_SIZE
    heap_len = heap_pages * PAGE_SIZE
    r = encl.add_pages(heap_off, heap_len, "rw")
    if not r.ok:
        raise RuntimeError(f"building the heap failed: {r.errno} after {r.pages} pages")
    r = encl.init()
    if not r.ok:
        raise RuntimeError(f"EINIT failed: {r.errno}")
    if cfg.neighbour_factor > 0:
        phase("neighbour")
        n = max(1, int(epc_pages * cfg.neighbour_factor))
        nsize = PAGE_SIZE
        while nsize < n * PAGE_SIZE:
            nsize <<= 1
        nb = system.create_enclave(nsize, name="neighbour")
        if not (nb.add_pages(0, n * PAGE_SIZE).ok and nb.init().ok):
            raise RuntimeError("building the neighbour enclave failed")
    if cfg.touch_heap:
        phase("touch")
        encl.access_pages(np.arange(image_pages, image_pages + heap_pages), write=True)
    build_ns = system.now
    runtime = encl.new_thread("runtime")
    ctx = Ctx(encl, runtime, [])

    phase("modify_types")
    modify = system._call(
        runtime,
        drive_range(
            ctx,
            "modify_types",
            image_pages,
            heap_pages,
            stop_after_first=cfg.stop_after_first_call,
            on_pages=on_pages,
        ),
    )
    accept_ns = 0
    accept_fail = 0
    remove = None
    if not cfg.stop_after_first_call and modify.errno is None:
        phase("eaccept")
        t0 = system.now
        accept_fail = eaccept_each_page(encl, image_pages, heap_pages, on_pages)
        accept_ns = system.now - t0
        phase("remove_pages")
        remove = system._call(
            runtime, drive_range(ctx, "remove_pages", image_pages, heap_pages, on_pages=on_pages)
        )
    tl = system.sgx.free_timeline
    return SeedRun(
        cfg,
        heap_pages,
        build_ns,
        modify,
        accept_ns,
        accept_fail,
        remove,
        system.stats(),
        (list(tl.t), list(tl.v)),
    )


def eaccept_each_page(encl, first: int, n: int, on_pages: PagesHook | None = None) -> int:
    """One enclave entry per page running EACCEPT(TRIM|MODIFIED), as the selftest does.
    Returns how many EACCEPTs failed."""
    t = encl.new_thread("eaccept")
    flags = secinfo_flags(PageType.TRIM, 0, int(SecinfoFlags.MODIFIED))
    gen = eaccept_range(Ctx(encl, t, []), first, n, flags, entry_per_page=True, on_pages=on_pages)
    rec = encl.system._call(t, gen)
    return rec.failures + (n - rec.pages_done)
