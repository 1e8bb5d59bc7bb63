"""What the differential tests share (``test_differential.py``, ``test_batched.py``,
``test_flood.py``, ``benchmarks/fingerprint.py``): ``fingerprint`` (everything a different
event order would change), ``assert_same``, and the generated scenario's run
(``run_generated``, ``GENERATED_RUN_NS``) and comparison (``assert_generated_agree``). The
generator itself (``scenario``, its sizes by ``EPCSIM_LONG``) stays with its one test,
``test_differential.py::test_generated_scenarios_agree``.

A helper module, not a test file (tests/README.md, "Rules for a new test"): moved from
``test_differential.py`` by session ``tidy``, no code changed.
"""

from __future__ import annotations

import numpy as np
from flood_bound import assert_within_flood_bound

import epcsim
from epcsim.arch import PAGE_SIZE


def fingerprint(system: epcsim.System) -> dict:
    """Everything a different event order would change."""
    sgx = system.sgx
    encls = {}
    for e in sgx.enclaves.values():
        arrays = {
            name: getattr(e, name).tobytes()
            for name in ("present", "epc", "type", "reclaiming", "va_page", "va_slot")
        }
        arrays["pte"] = (e.pte_present.tobytes(), e.pte_young.tobytes())
        f = sgx.backing.files.get(e.id)
        recs = {} if f is None else {i: f.lookup(i) for i in f.records}
        encls[e.id] = (arrays, recs, list(e.va_pages), e.secs_epc)
    return {
        "stats": system.stats(),
        "timeline": (list(sgx.free_timeline.t), list(sgx.free_timeline.v)),
        "latency": sgx.fault_latency_ns.since().tolist(),
        "lru": sgx.lru.order() if hasattr(sgx.lru, "order") else None,
        "tags": system.cpu.epcm.tag.tobytes(),
        # the CPU's view of every entry (SECS and ENCLAVEADDRESS are stored once, derived
        # from the kernel's owner: isa.epcm), as plain arrays whatever the layout
        "epcm": tuple(
            np.asarray(getattr(system.cpu.epcm, f), dtype=np.int64).tobytes()
            for f in ("flags", "secs", "linaddr", "bepoch")
        ),
        "enclaves": encls,
        "now": system.now,
    }


def assert_same(ref: dict, fast: dict) -> None:
    for key in ref:
        assert ref[key] == fast[key], f"engines differ in {key}"


#: simulated time a generated scenario's threads get (see ``run_generated``)
GENERATED_RUN_NS = 20_000_000


def run_generated(p: dict, engine: str) -> dict:
    system = epcsim.System(
        epc=p["epc_pages"] * PAGE_SIZE,
        cpus=p["cpus"],
        seed=p["seed"],
        policy=p["policy"],
        content_mode=p["content_mode"],
        direct_reclaim=p["direct_reclaim"],
        engine=engine,
        nopage_flood=p.get("nopage_flood", "simulate") if engine == "fast" else "simulate",
        # drawn, not "auto": whether the compiled core runs the fast engine's streams must
        # not depend on what numba's cache holds when the test runs (lead, 2026-11-27)
        fast_core=p.get("fast_core", "auto") if engine == "fast" else "auto",
    )
    nt = p["threads"]
    n = max(1, int(p["epc_pages"] * p["footprint"]))
    size = 2 * PAGE_SIZE
    while size < (n + nt + 4) * PAGE_SIZE:
        size <<= 1
    encl = system.create_enclave(size)
    assert encl.add_pages(0, nt * PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(nt * PAGE_SIZE, n * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    rng = np.random.default_rng(p["seed"])
    procs = []
    finished: list[int] = []
    for t in range(nt):
        pages = nt + rng.integers(0, n, size=p["accesses"])
        writes = rng.random(p["accesses"]) < p["writes"]
        proc = encl.start(pages, writes, name=f"t{t}")
        proc.callbacks.append(lambda _e: finished.append(system.now))
        procs.append(proc)
    if p["until_us"] is not None:
        system.run(until=f"{p['until_us']}us")
    # Bounded on purpose (the generator's pathological corner, not a model bug): on an EPC
    # below SGX_NR_HIGH_PAGES ksgxd never sleeps (sgx_should_reclaim(SGX_NR_HIGH_PAGES) stays
    # true while anything is on the LRU), and with one page on the LRU it isolates each page
    # a thread has just loaded - the fault cleared its Accessed bit - and writes it back
    # before the thread's EENTER completes: the TCS fault, ELDU, EWB cycle repeats for ever
    # (seen with 24 pages, 1 thread, trim: 24K ELDUs for 3 accesses in 0.7 s simulated).
    # The kernel on such an EPC would do the same; no real EPC is that small. So each phase
    # gets GENERATED_RUN_NS of simulated time, and both engines stop at the same instant.
    system.run(until=GENERATED_RUN_NS)
    if p["trim"] and not any(proc.is_alive for proc in procs):
        half = max(1, n // 2)
        r = encl.modify_types(nt * PAGE_SIZE, half * PAGE_SIZE, "trim")
        if r.ok:
            encl.remove_pages(nt * PAGE_SIZE, half * PAGE_SIZE)
        after = nt + rng.integers(half, n, size=50) if n > half else np.array([nt])
        encl.start(after, name="after-trim")
        system.run(until=system.now + GENERATED_RUN_NS)
    out = fingerprint(system)
    out["threads_done_ns"] = max(finished) if len(finished) == nt else None
    flood = system.sgx.flood
    out["_parks"] = 0 if flood is None else flood.parks
    return out


def assert_generated_agree(ref: dict, fast: dict) -> None:
    """The same fingerprint - unless the fast engine charged a NOPAGE flood in bulk (its one
    named deviation, epcsim/fast/flood.py): then the bound of tests/fast/test_flood.py."""
    ref.pop("_parks")
    if not fast.pop("_parks"):
        assert_same(ref, fast)
        return
    assert_within_flood_bound(
        ref["stats"], fast["stats"], ref["threads_done_ns"], fast["threads_done_ns"]
    )
