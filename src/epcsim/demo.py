"""The seed scenario (``shared/seed/``): a large-range EDMM removal on an oversubscribed EPC.

It follows the kernel's page-removal stress test step by step (``unclobbered_vdso_
oversubscribed_remove`` in tools/testing/selftests/sgx/main.c, spec §15):

1. build the test enclave - two TCS pages, two code pages, ``encl_buffer`` (two data pages),
   then an unmeasured heap of ``heap_factor`` x the EPC - and EINIT it. ADD_PAGES reclaims
   directly, so most of the heap ends up in backing;
2. the SGX2 probe: MODIFY_TYPES with a zeroed argument struct. A kernel with SGX2 answers
   -EINVAL (length 0); -ENOTTY or -ENODEV would make the selftest skip;
3. two enclave calls through the first TCS, PUT_TO_BUFFER and GET_FROM_BUFFER on
   ``encl_buffer`` (each EENTER ... EEXIT; both fault the evicted TCS/buffer pages back);
4. MODIFY_TYPES(TRIM) over the whole heap, one enclave entry per page running
   EACCEPT(TRIM|MODIFIED), and REMOVE_PAGES over the heap. The runtime retries on -EAGAIN from
   ``offset + count`` as the Sep 2022 selftest patch ("selftests/sgx: Retry the ioctl()'s
   returned with EAGAIN") proposed.

Steps 2 and 3 matter: they give ksgxd time to finish the batches ADD_PAGES woke it for, so the
trim starts from whatever free pool the model's ksgxd left, which the run records
(``free_pages_at_first_call``). Nothing here decides the outcome: whether the first
MODIFY_TYPES call stops part-way, and why, comes from the costs, the CPU count, the mutex and
the scheduler of the model. Each -EAGAIN is classified at the instant it returns by what the
kernel found at the page that stopped the call: no free EPC page for ELDU
(``sgx_alloc_epc_page(reclaim=false)`` gave -EBUSY) or the page resident but held
BEING_RECLAIMED by a reclaimer (``__sgx_encl_load_page`` gave -EBUSY).

Decision (documented): by default the heap is populated by ADD_PAGES only (EADD copies the
loader's data into every page), as in the kernel test; ``touch_heap=True`` additionally
writes every heap page from inside first, which leaves the resident pages *young*, a case
where even direct reclaim's single batch may find nothing to evict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags
from epcsim.kernel.uapi import IoctlResult
from epcsim.kernel.uapi_sgx2 import ModifyTypesArgs
from epcsim.seed_run import BEING_RECLAIMED, NO_FREE_PAGE, OTHER, CallLog, SeedRun, Snapshot
from epcsim.system import System
from epcsim.units import parse_pages
from epcsim.workloads.edmm import (
    Ctx,
    PagesHook,
    drive_range,
    eaccept_range,
    result_only_after,
)

IMAGE_TCS_PAGES = 2  # the selftest enclave's TCS segment
IMAGE_CODE_PAGES = 2  # text, measured
IMAGE_DATA_PAGES = 2  # encl_buffer[8192]: PUT_TO_BUFFER / GET_FROM_BUFFER go here
IMAGE_PAGES = IMAGE_TCS_PAGES + IMAGE_CODE_PAGES + IMAGE_DATA_PAGES
BUFFER_PAGE = IMAGE_TCS_PAGES + IMAGE_CODE_PAGES

#: the runtime gives up after this many -EAGAIN calls in a row without progress: a livelock
#: (reported as ``gave_up``) must not keep ``make demo`` busy for minutes
MAX_STALLED_CALLS = 10_000

MUTEXES = ("linux", "fifo")
SCHEDULERS = ("cfs", "fifo")


@dataclass
class SeedConfig:
    epc: int | str = "sgx1-client"  # ~93.5 MiB usable of a 128 MB PRM client part
    heap_factor: float = 2.0  # heap = factor x EPC (the seed's setting)
    cpus: int = 4
    direct_reclaim: bool = True
    touch_heap: bool = False
    costs: dict[str, Any] | None = None
    seed: int = 0
    content_mode: str = "tag"
    stop_after_first_call: bool = False  # for sweeps that only ask "does the first call fail?"
    #: stop once MODIFY_TYPES has covered the range (no EACCEPT, no REMOVE_PAGES): what the
    #: demo's comparison runs need, at half the cost
    trim_only: bool = False
    #: an idle neighbour enclave of this many EPCs, built after the heap: it fills the EPC, so
    #: ksgxd's victims belong to another enclave and do not contend for the ioctl's encl->lock
    neighbour_factor: float = 0.0
    #: ``encl->lock`` as Linux's mutex (optimistic spinning, stealing, HANDOFF) or FIFO
    #: hand-over; the CPUs shared as CFS does or FIFO (the engine's ``System`` options)
    mutex: str = "linux"
    sched: str = "cfs"
    engine: str = "fast"  # System(engine=...): the fast path (exact) or the reference
    #: System(nopage_flood=...): "bulk" charges NOPAGE floods in bulk (fast engine only, a
    #: named deviation: epcsim/fast/flood.py)
    nopage_flood: str = "simulate"
    #: System(fast_core=...): "auto" (the default), or True to engage the compiled core
    #: wherever its regime holds (``epcsim warm`` uses it to compile the machines)
    fast_core: bool | str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.heap_factor, int | float) or self.heap_factor <= 0:
            raise ValueError(f"heap_factor: must be a positive number, got {self.heap_factor!r}")
        if not isinstance(self.neighbour_factor, int | float) or self.neighbour_factor < 0:
            raise ValueError(
                f"neighbour_factor: must be a number >= 0, got {self.neighbour_factor!r}"
            )
        if self.mutex not in MUTEXES:
            raise ValueError(f"mutex: one of {', '.join(MUTEXES)}, got {self.mutex!r}")
        if self.sched not in SCHEDULERS:
            raise ValueError(f"sched: one of {', '.join(SCHEDULERS)}, got {self.sched!r}")

    @property
    def label(self) -> str:
        """How tables and plots name the run."""
        dr = "direct reclaim" if self.direct_reclaim else "no direct reclaim"
        return f"{dr}, {self.mutex}/{self.sched}" + (", trim only" if self.trim_only else "")


def demo_configs(
    epc: int | str = "sgx1-client",
    heap_factor: float = 2.0,
    cpus: int = 4,
    seed: int = 0,
    engine: str = "fast",
    nopage_flood: str = "simulate",
) -> list[SeedConfig]:
    """The runs ``epcsim demo`` makes: without and with direct reclaim on the faithful
    default (Linux mutex, CFS) first, then the same pair on the FIFO mutex and FIFO CPUs as
    the comparison. The comparison runs stop after the trim (``trim_only``): the question is
    the MODIFY_TYPES race, and ``make demo`` stays quick."""
    return [
        SeedConfig(
            epc=epc,
            heap_factor=heap_factor,
            cpus=cpus,
            seed=seed,
            direct_reclaim=dr,
            mutex=mutex,
            sched=sched,
            trim_only=mutex == "fifo",
            engine=engine,
            nopage_flood=nopage_flood,
        )
        for mutex, sched in (("linux", "cfs"), ("fifo", "fifo"))
        for dr in (False, True)
    ]


def eagain_cause(system: System, encl, index: int, result: IoctlResult | None = None) -> str:
    """Why a page-range ioctl stopped at page ``index`` of ``encl`` (a ``SgxEncl``) with
    -EAGAIN: the page resident and BEING_RECLAIMED (the reclaimer isolated it and holds it
    until its EWB), or no free EPC page for its ELDU. The kernel model notes the cause at the
    instant it decides (``result.extra["eagain_cause"]``) - by the time the call is back in
    user space ksgxd may have finished with the page; without a result the state is read
    now."""
    if result is not None and result.extra.get("eagain_cause") in (BEING_RECLAIMED, NO_FREE_PAGE):
        return str(result.extra["eagain_cause"])
    if 0 <= index < encl.nr_pages and encl.epc[index] >= 0 and encl.reclaiming[index]:
        return BEING_RECLAIMED
    if system.sgx.epc.nr_free_pages == 0:
        return NO_FREE_PAGE
    return OTHER


def _call_logger(system: System, encl, first_page: int, log: CallLog) -> Callable:
    calls = [0]

    def many(counts: np.ndarray, causes: np.ndarray, names: dict[int, str], _done: int) -> None:
        """``on_call`` of each of the calls the core made (never the first), at once: each
        -EAGAIN with the cause the kernel noted (``eagain_cause``'s first answer), counted
        by cause, each cause added where its first call is, as one by one."""
        calls[0] += len(counts)
        codes, first, n = np.unique(causes, return_index=True, return_counts=True)
        for j in np.argsort(first, kind="stable"):
            cause = names[int(codes[j])]
            log.eagain_causes[cause] = log.eagain_causes.get(cause, 0) + int(n[j])

    # the first call's end is a snapshot of the kernel's state; every later call reads only
    # its result (an -EAGAIN's cause is the kernel's, noted when it decided), so the
    # compiled core may make those calls itself (``workloads.edmm.result_only_after``),
    # and hand them over in one batch (``many``)
    @result_only_after(1, eagain_many=many)
    def on_call(r: IoctlResult, done_before: int) -> None:
        calls[0] += 1
        cause = None
        if r.errno == "EAGAIN":
            stop = first_page + (done_before + r.count) // PAGE_SIZE
            cause = eagain_cause(system, encl, stop, r)
            log.eagain_causes[cause] = log.eagain_causes.get(cause, 0) + 1
        if calls[0] == 1:
            log.first_stop_cause = cause
            log.first_end = Snapshot.take(system)

    return on_call


def _enclave_call(thread, page: int, write: bool):
    """One ENCL_CALL through the vDSO: EENTER, the operation on ``page``, EEXIT."""
    out = yield from thread.access_stream(np.array([page]), write)
    yield from thread.leave()
    return out


def run_seed(
    cfg: SeedConfig,
    on_phase: Callable[[str], None] | None = None,
    on_pages: PagesHook | None = None,
) -> SeedRun:
    """Run the seed scenario once. ``on_phase(name)`` marks each phase, ``on_pages(done,
    total)`` reports pages done within the range operations (for progress bars)."""
    phases: dict[str, int] = {}
    system = System(
        epc=cfg.epc,
        cpus=cfg.cpus,
        direct_reclaim=cfg.direct_reclaim,
        seed=cfg.seed,
        costs=cfg.costs,
        content_mode=cfg.content_mode,
        engine=cfg.engine,
        nopage_flood=cfg.nopage_flood,
        fast_core=cfg.fast_core,
        mutex=cfg.mutex,
        sched=cfg.sched,
    )

    def phase(name: str) -> None:
        phases[name] = system.now
        if on_phase is not None:
            on_phase(name)

    epc_pages = parse_pages(cfg.epc, "epc")
    heap_pages = max(1, int(epc_pages * cfg.heap_factor))
    size = PAGE_SIZE
    while size < (IMAGE_PAGES + heap_pages) * PAGE_SIZE:
        size <<= 1
    phase("build")
    encl = system.create_enclave(size, name="seed")
    steps = (  # (first page, pages, permissions, page type), all measured
        (0, IMAGE_TCS_PAGES, "", "tcs"),
        (IMAGE_TCS_PAGES, IMAGE_CODE_PAGES, "rx", "reg"),
        (BUFFER_PAGE, IMAGE_DATA_PAGES, "rw", "reg"),
    )
    for first, n, perm, ptype in steps:
        r = encl.add_pages(
            first * PAGE_SIZE, n * PAGE_SIZE, perm or "r", page_type=ptype, measure=True
        )
        if not r.ok:
            raise RuntimeError(f"building the image failed: {r.errno}")
    heap_off = IMAGE_PAGES * PAGE_SIZE
    r = encl.add_pages(heap_off, heap_pages * PAGE_SIZE, "rw")
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
        encl.access_pages(np.arange(IMAGE_PAGES, IMAGE_PAGES + heap_pages), write=True)
    build_ns = system.now

    # The selftest's SGX2 probe: a zeroed struct; -EINVAL means the ioctl exists and SGX2 is on.
    phase("probe")
    probe = encl.modify_types_raw(ModifyTypesArgs(0, 0, 0))
    if probe.errno in ("ENOTTY", "ENODEV"):
        raise RuntimeError(f"SGX2 probe: {probe.errno} (the selftest would skip)")
    # PUT_TO_BUFFER then GET_FROM_BUFFER, each one enclave call through TCS #0.
    phase("buffer_calls")
    runtime = encl.new_thread("runtime")
    put = system._call(runtime, _enclave_call(runtime, BUFFER_PAGE, True))
    get = system._call(runtime, _enclave_call(runtime, BUFFER_PAGE, False))
    ctx = Ctx(encl, runtime, [])

    phase("modify_types")
    at_first = Snapshot.take(system)
    resident = encl.encl.epc[IMAGE_PAGES : IMAGE_PAGES + heap_pages] >= 0
    # how far ahead of the ioctl the reclaimers' victims (the LRU head) start
    evicted_ahead = int(np.argmax(resident)) if resident.any() else heap_pages
    modify_log = CallLog()
    modify = system._call(
        runtime,
        drive_range(
            ctx,
            "modify_types",
            IMAGE_PAGES,
            heap_pages,
            stop_after_first=cfg.stop_after_first_call,
            on_pages=on_pages,
            max_stalled=MAX_STALLED_CALLS,
            on_call=_call_logger(system, encl.encl, IMAGE_PAGES, modify_log),
        ),
    )
    accept_ns = 0
    accept_fail = 0
    remove = None
    remove_log = CallLog()
    more = not (cfg.stop_after_first_call or cfg.trim_only)
    if more and modify.errno is None and modify.pages_done == heap_pages:
        phase("eaccept")
        t0 = system.now
        accept_fail = eaccept_each_page(encl, IMAGE_PAGES, heap_pages, on_pages)
        accept_ns = system.now - t0
        phase("remove_pages")
        remove = system._call(
            runtime,
            drive_range(
                ctx,
                "remove_pages",
                IMAGE_PAGES,
                heap_pages,
                on_pages=on_pages,
                on_call=_call_logger(system, encl.encl, IMAGE_PAGES, remove_log),
                max_stalled=MAX_STALLED_CALLS,
            ),
        )
    phases["end"] = system.now
    tl = system.sgx.free_timeline
    return SeedRun(
        cfg,
        heap_pages,
        build_ns,
        probe.errno,
        put.ok and get.ok,
        at_first,
        modify,
        modify_log,
        accept_ns,
        accept_fail,
        remove,
        remove_log,
        system.stats(),
        (list(tl.t), list(tl.v)),
        dict(system.config),
        phases,
        evicted_ahead,
    )


def eaccept_each_page(encl, first: int, n: int, on_pages: PagesHook | None = None) -> int:
    """One enclave entry per page running EACCEPT(TRIM|MODIFIED), as the selftest does.
    Returns how many EACCEPTs failed."""
    t = encl.new_thread("eaccept")
    flags = secinfo_flags(PageType.TRIM, 0, int(SecinfoFlags.MODIFIED))
    gen = eaccept_range(Ctx(encl, t, []), first, n, flags, entry_per_page=True, on_pages=on_pages)
    rec = encl.system._call(t, gen)
    return rec.failures + (n - rec.pages_done)
