"""One function per row of issue 9's table. Each returns a dict of measured figures.

Speed rows measure host CPU time (``time.process_time``), not wall time: the machine is
shared, and CPU time is what the simulator costs. Rows that the issue states at a size too
large to run in a benchmark (an 8 GiB heap, a 1 TiB EPC) are measured at a smaller size and
extrapolated per page; the row says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE

GIB_PAGES = (1 << 30) // PAGE_SIZE

ORACLE_DTYPE = np.dtype([("ts", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("next", "<i8")])


def _pow2(nbytes: int) -> int:
    size = 2 * PAGE_SIZE
    while size < nbytes:
        size <<= 1
    return size


def _system(engine: str, **kw) -> epcsim.System:
    """``engine`` "fast" is ``System()``'s default, ``fast_core="auto"`` (the compiled core
    where it pays: its machines compiled or in numba's on-disk cache, or a long stream,
    epcsim.fast.driver.auto); "fast+core" forces it (``fast_core=True``), "fast-core"
    leaves it out (``fast_core=False``, the fast engine in Python alone)."""
    if engine == "fast+core":
        return epcsim.System(engine="fast", fast_core=True, **kw)
    if engine == "fast-core":
        return epcsim.System(engine="fast", fast_core=False, **kw)
    return epcsim.System(engine=engine, **kw)


# -- row 1: host CPU per simulated fault --------------------------------------------------------
def fault_rate(engine: str, epc_pages: int = 1024, accesses: int = 12_000) -> dict[str, Any]:
    """Uniform accesses over 4x the EPC, ``tag`` mode, ksgxd running (2 CPUs)."""
    system = _system(engine, epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, content_mode="tag")
    n = 4 * epc_pages
    encl = system.create_enclave(_pow2(n * PAGE_SIZE))
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    stream = np.random.default_rng(1).integers(0, n, size=accesses)
    encl.access_pages(stream[: accesses // 4])  # warm up: EPC full, ksgxd active
    st0 = system.stats()
    lat0 = _history_bytes(system)
    c0 = time.process_time()
    out = encl.access_pages(stream[accesses // 4 :])
    cpu = time.process_time() - c0
    assert out.ok
    st = system.stats()
    faults = st["page_faults"] - st0["page_faults"]
    return {
        "core_accesses": system.fast_core_accesses,
        "faults": faults,
        "cpu_s": cpu,
        "us_per_fault": cpu / faults * 1e6,
        "faults_per_s": faults / cpu,
        "history_bytes_per_fault": (_history_bytes(system) - lat0) / faults,
        "counters": {k: st[k] - st0[k] for k in ("eldu", "ewb", "page_faults", "fault_retries")},
    }


def _history_bytes(system: epcsim.System) -> int:
    """Bytes of history the model keeps: the free-page timeline and the fault latencies."""
    sgx = system.sgx
    tl = sgx.free_timeline
    return int(tl.nbytes) + int(sgx.fault_latency_ns.nbytes)


def history_bound(engine: str, epc_pages: int = 256) -> dict[str, Any]:
    """History kept after N and after 4N faults (N above the exact-sample cap of 16,384):
    bounded means it stops growing."""
    system = _system(engine, epc=epc_pages * PAGE_SIZE, cpus=2, seed=2)
    n = 4 * epc_pages
    encl = system.create_enclave(_pow2(n * PAGE_SIZE))
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(2)
    sizes = []
    faults = []
    for _ in range(2):
        encl.access_pages(rng.integers(0, n, size=24_000 if not sizes else 72_000))
        sizes.append(_history_bytes(system))
        faults.append(system.stats()["page_faults"])
    return {"faults": faults, "history_bytes": sizes}


# -- row 2: trace replay against libCacheSim Clock --------------------------------------------
def zipf_stream(n_pages: int, n_req: int, alpha: float, seed: int) -> np.ndarray:
    """Zipf(alpha) page indices over ``n_pages``, ranks shuffled over the address space."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, n_pages + 1, dtype=np.float64) ** (-alpha)
    p /= p.sum()
    perm = rng.permutation(n_pages)
    return perm[rng.choice(n_pages, size=n_req, p=p)]


def write_oracle(stream: np.ndarray, path: str) -> None:
    rec = np.zeros(stream.size, dtype=ORACLE_DTYPE)
    rec["ts"] = np.arange(stream.size, dtype=np.uint32)
    rec["id"] = stream
    rec["sz"] = 1
    rec["next"] = -1
    rec.tofile(path)


def replay_epcsim(engine: str, stream: np.ndarray, n_pages: int, epc_pages: int, policy: str):
    system = _system(engine, epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, policy=policy)
    encl = system.create_enclave(_pow2(n_pages * PAGE_SIZE))
    assert encl.add_pages(0, n_pages * PAGE_SIZE).ok
    assert encl.init().ok
    system.run(until="100ms")  # let ksgxd settle
    st0 = system.stats()
    capacity = encl.resident_pages + st0["epc_pages_free"] - system.sgx.high_pages
    c0 = time.process_time()
    out = encl.access_pages(stream)
    cpu = time.process_time() - c0
    st = system.stats()
    assert out.ok
    return {
        "cpu_s": cpu,
        "misses": st["eldu"] - st0["eldu"],
        "capacity": int(capacity),
        "core_accesses": system.fast_core_accesses,
    }


def replay_libcachesim(stream: np.ndarray, capacity: int, trace_path: str) -> dict[str, Any]:
    import libcachesim as lcs

    out = {}
    for name, cls in (("LRU", lcs.LRU), ("FIFO", lcs.FIFO), ("Clock", lcs.Clock)):
        reader = lcs.TraceReader(trace=trace_path, trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = cls(cache_size=capacity)
        c0 = time.process_time()
        miss_ratio, _ = cache.process_trace(reader)
        out[name] = {"cpu_s": time.process_time() - c0, "misses": round(miss_ratio * len(stream))}
    return out


# -- row 3: the seed's trim + EACCEPT + remove ----------------------------------------------------
IMAGE = 4  # the selftest enclave's TCS + code pages in tests/kernel/test_sgx2_selftests.py


def removal_build(
    engine: str, epc: str | int = "4M", heap: int | None = None
) -> tuple[Any, Any, int]:
    """The selftest's enclave for row 3, built and initialized: TCS, code, then a heap of
    ``heap`` pages (None: as many as the EPC has, so the trim pages); with ``heap`` the EPC
    holds it (room for the VA pages, above the watermarks) and ``epc`` is ignored. Returns
    ``(system, enclave, heap)``; ``removal_stress``, ``trim_phase.py`` and
    ``removal_full.py`` build with it."""
    if heap is not None:
        epc = (heap + heap // 256 + 1024) * PAGE_SIZE
    system = _system(engine, epc=epc, cpus=2, seed=9, direct_reclaim=True)
    if heap is None:
        heap = system.stats()["epc_pages_total"]
    encl = system.create_enclave(_pow2((IMAGE + heap) * PAGE_SIZE))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(PAGE_SIZE, (IMAGE - 1) * PAGE_SIZE, "rx", measure=True).ok
    assert encl.add_pages(IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    return system, encl, heap


def removal_stress(engine: str, epc: str | int = "4M", heap: int | None = None) -> dict[str, Any]:
    """``unclobbered_vdso_oversubscribed_remove`` with heap = EPC: build, MODIFY_TYPES(TRIM),
    one entry per page for EACCEPT, REMOVE_PAGES; CPU per heap page, and the 8 GiB figure
    extrapolated from it (the issue's target: <= 10 s). With ``heap`` (pages) the EPC holds
    the heap instead (``epc`` is then ignored): the same sequence without paging.
    ``phases_s`` splits the CPU time: build (to EINIT), trim, EACCEPT, remove."""
    from epcsim.demo import eaccept_each_page

    c0 = time.process_time()
    system, encl, heap = removal_build(engine, epc, heap)
    c1 = time.process_time()
    off, length = IMAGE * PAGE_SIZE, heap * PAGE_SIZE
    assert encl.modify_types(off, length, "trim").ok
    c2 = time.process_time()
    assert eaccept_each_page(encl, IMAGE, heap) == 0
    c3 = time.process_time()
    r = encl.remove_pages(off, length)
    assert r.ok and r.count == length
    c4 = time.process_time()
    per_page = (c4 - c0) / heap
    return {
        "heap_pages": heap,
        "us_per_page": per_page * 1e6,
        "ops_us_per_page": (c4 - c1) / heap * 1e6,
        "phases_s": [c1 - c0, c2 - c1, c3 - c2, c4 - c3],
        "cpu_s": c4 - c0,
        "extrapolated_8g_s": per_page * 8 * GIB_PAGES,
        "counters": _counters(system),
        "batched_pages": system.sgx.batched_pages,
        "core_eaccepts": 0 if system.sgx.stream_core is None else system.sgx.stream_core.eaccepts,
    }


# -- row 4: EAUG through EACCEPT ---------------------------------------------------------------
def eaug(engine: str, pages: int = 4096) -> dict[str, Any]:
    """``augment_via_eaccept`` over ``pages`` pages, EPC large enough not to page: the
    enclave EACCEPTs (REG|RW|PENDING) each page from inside, the #PF makes the kernel EAUG
    it (``epcsim.workloads.edmm.eaccept_range``, what the ``grow`` step runs)."""
    from epcsim.arch import PageType, SecinfoFlags, secinfo_flags
    from epcsim.workloads.edmm import Ctx, eaccept_range

    system = _system(engine, epc=(pages + pages // 256 + 1024) * PAGE_SIZE, cpus=2, seed=4)
    encl = system.create_enclave(_pow2((pages + 64) * PAGE_SIZE))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(PAGE_SIZE, PAGE_SIZE, "rw").ok
    assert encl.init().ok
    t = encl.new_thread("stress")
    flags = secinfo_flags(PageType.REG, 3, int(SecinfoFlags.PENDING))
    first = 8
    c0 = time.process_time()
    rec = system._call(t, eaccept_range(Ctx(encl, t, []), first, pages, flags))
    cpu = time.process_time() - c0
    assert rec.ok, rec.summary()
    st = system.stats()
    assert st["eaug"] == pages and st["ewb"] == 0
    return {
        "pages": pages,
        "us_per_page": cpu / pages * 1e6,
        "extrapolated_8g_s": cpu / pages * 8 * GIB_PAGES,
        "counters": _counters(system),
        "simulated_ns": system.now,
        "cpu_s": cpu,
        "batched_pages": system.sgx.batched_pages,
    }


# -- row 5: make demo ----------------------------------------------------------------------------
def demo(engine: str, flip: bool = True, fast_core: bool | str = "auto") -> dict[str, Any]:
    """What ``epcsim demo`` simulates: its four seed runs (``demo.demo_configs``: the pair
    without and with direct reclaim on Linux's mutex and CFS, then the FIFO pair's trim),
    then the flip sweep; the report is not drawn. Before 2026-11-26 (session ``demo5``
    found it) the row left the FIFO pair out: 38 runs, not the demo's 40. ``fast_core`` is
    every run's ``SeedConfig.fast_core`` (``epcsim demo``'s is "auto")."""
    from epcsim.cli import flip_configs
    from epcsim.demo import demo_configs, run_seed

    cfgs = demo_configs(engine=engine)
    if flip:
        for _l, _r, _c, cfg in flip_configs("8M", 2.0, 0):
            cfg.engine = engine
            cfgs.append(cfg)
    for cfg in cfgs:
        cfg.fast_core = fast_core
    c0 = time.process_time()
    summaries = [run_seed(cfg).summary() for cfg in cfgs]
    return {"cpu_s": time.process_time() - c0, "runs": len(cfgs), "summaries": summaries}


# -- rows 6 and 7: bytes per EPC page in use, per swapped page -----------------------------------
def _build(engine: str, epc_pages: int, heap_pages: int, elrange_pages: int):
    system = _system(engine, epc=epc_pages * PAGE_SIZE, cpus=2, seed=3)
    encl = system.create_enclave(_pow2(elrange_pages * PAGE_SIZE))
    assert encl.add_pages(0, heap_pages * PAGE_SIZE).ok and encl.init().ok
    system.run(until="10ms")
    return system, encl


def in_use_bytes(engine: str, epc_pages: int) -> dict[str, Any]:
    """Row 6 at one EPC size: the Python heap (tracemalloc: NumPy arrays and Python objects)
    of an EPC filled by one enclave, per EPC page in use. History (row 9) is not counted; a
    small build first imports everything, so module code is not counted. The heap leaves
    room for the VA pages it needs (one per 512 pages) and 64 pages free, so ksgxd swaps
    nothing out: swapped pages are row 7's (before 2026-11-26 it swapped 48 pages at 16,384
    pages, 528 at 262,144)."""
    _build(engine, 64, 32, 128)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    system, encl = _build(engine, epc_pages, epc_pages - 64 - epc_pages // 512, epc_pages)
    full = tracemalloc.get_traced_memory()[0] - base - _history_bytes(system)
    in_use = epc_pages - system.stats()["epc_pages_free"]
    del system, encl
    tracemalloc.stop()
    return {"epc_pages": epc_pages, "bytes": full, "in_use": in_use, "per_page": full / in_use}


def memory_per_page(engine: str, epc_pages: int = 16_384) -> dict[str, Any]:
    """Row 6 at ``epc_pages`` (``in_use_bytes``) and row 7: per swapped page (backing record
    + VA slot + ELRANGE state)."""
    use = in_use_bytes(engine, epc_pages)
    elrange = 4 * epc_pages
    sizes = []
    for heap in (epc_pages - 64, 3 * epc_pages):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        system, encl = _build(engine, epc_pages, heap, elrange)
        sizes.append(tracemalloc.get_traced_memory()[0] - base - _history_bytes(system))
        swapped = encl.swapped_pages
        elrange_bytes = _elrange_bytes(encl.encl)
        del system
        tracemalloc.stop()
    return {
        "epc_pages": epc_pages,
        "bytes_per_epc_page": use["per_page"],
        "in_use": use["in_use"],
        "in_use_bytes": use["bytes"],
        "bytes_per_swapped_page": (sizes[1] - sizes[0]) / swapped + elrange_bytes / elrange,
        "swapped": swapped,
    }


def _elrange_bytes(encl) -> int:
    """Bytes of per-page ELRANGE state (the enclave's page arrays)."""
    nb = getattr(encl, "elrange_nbytes", None)
    if nb is not None:
        return int(nb())
    return sum(
        getattr(encl, name).nbytes
        for name in (
            "present",
            "epc",
            "type",
            "max_prot",
            "reclaiming",
            "va_page",
            "va_slot",
            "pte_present",
            "pte_young",
            "vma_prot",
        )
        if hasattr(encl, name)
    )


# -- row 8: RSS end to end ----------------------------------------------------------------------
RSS_CHILD = r"""
import resource, sys, time
import epcsim, numpy
from epcsim.arch import PAGE_SIZE
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
engine, pages = sys.argv[1], int(sys.argv[2])
size = 2 * PAGE_SIZE
while size < 2 * pages * PAGE_SIZE:
    size <<= 1
warm = epcsim.System(epc="256K", cpus=2, seed=3, engine=engine)  # imports everything
w = warm.create_enclave("1M")
assert w.add_pages(0, 128 * PAGE_SIZE).ok and w.init().ok
w.access_pages(list(range(128)))
warm.run(until="1ms")
del warm, w
r0 = rss()
system = epcsim.System(epc=pages * PAGE_SIZE, cpus=2, seed=3, engine=engine)
encl = system.create_enclave(size)
assert encl.add_pages(0, 2 * pages * PAGE_SIZE).ok and encl.init().ok
system.run(until="10ms")
print(rss() - r0, encl.resident_pages, encl.swapped_pages)
"""


def rss_per_page(engine: str, epc_mib: int = 128) -> dict[str, Any]:
    """A fresh process: RSS growth for an EPC of ``epc_mib`` full plus as much swapped, per
    page (the issue's case is 1 GiB + 1 GiB; ``--rss-mib 1024`` runs it). A small system is
    built first, so the ~160 MB of imported modules and compiled code are not counted."""
    pages = epc_mib * 256
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, engine, str(pages)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout.split()
    rss, resident, swapped = (int(x) for x in out)
    return {"pages": resident + swapped, "bytes_per_page": rss / (resident + swapped)}


# -- row 10: many threads faulting on a full EPC ----------------------------------------------
def threads(
    engine: str,
    nthreads: int,
    cpus: int = 16,
    epc_pages: int = 1024,
    budget_s: float = 15.0,
    nopage_flood: str = "simulate",
) -> dict[str, Any]:
    """``nthreads`` enclave threads on ``cpus`` CPUs, uniform over 4x the EPC. Runs in slices
    of simulated time until ``budget_s`` of host CPU or the threads' end; host CPU per
    simulated access.
    ``nopage_flood="bulk"`` (fast engine) charges the retry flood at once (a deviation)."""
    system = _system(
        engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=5, nopage_flood=nopage_flood
    )
    n = 4 * epc_pages
    encl = system.create_enclave(_pow2((n + nthreads) * PAGE_SIZE))
    assert encl.add_pages(0, nthreads * PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(nthreads * PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(5)
    procs = [
        encl.start(nthreads + rng.integers(0, n, size=200_000), name=f"t{i}")
        for i in range(nthreads)
    ]
    st0 = system.stats()
    c0 = time.process_time()
    slices = 0
    # until the budget is spent or the threads are done: one thread on the compiled core
    # (session ``deadline``) finishes its 200,000 accesses within the budget, and slices
    # after its end would charge host time to no access
    while time.process_time() - c0 < budget_s and any(p.is_alive for p in procs):
        system.run(until="200us")
        slices += 1
    cpu = time.process_time() - c0
    st = system.stats()
    acc = st["enclave_accesses"] - st0["enclave_accesses"]
    return {
        "threads": nthreads,
        "accesses": acc,
        "faults": st["page_faults"] - st0["page_faults"],
        "retries": st["fault_retries"] - st0["fault_retries"],
        "simulated_us": slices * 200,
        "us_per_access": cpu / max(acc, 1) * 1e6,
    }


def _counters(system) -> dict[str, int]:
    st = system.stats()
    return {k: v for k, v in st.items() if isinstance(v, int)}
