"""Row 10's shape with several threads on the compiled core, from its direct entry (issue 9,
PATHS.md "Several threads on the core", step 1; session ``nthreads``).

``rows.threads``' shape - 1,024 EPC pages, 16 CPUs, each thread uniform over 4x the EPC,
seed 5 - with ``nthreads`` threads (each its own TCS, entered once through Python) run
by ``threads_bridge.run_threads`` (every stream to its end, unsliced: the user path under
``run(until=)`` slices, N6, is not built), or by the fast engine in Python
(``start_streams`` and ``env.run()``). Prints host CPU per simulated access
(``time.process_time``), the accesses, faults and VM_FAULT_NOPAGE retries; with more
threads than CPUs (step 2, session ``runq64``: the core's run queue) a run the core hands
back at the regime's end (ksgxd takes a waiting thread's TCS) is measured up to it:

    PYTHONPATH=src:benchmarks python benchmarks/threads_core.py MODE N ACCESSES [UNTIL_US] [bulk]

``MODE`` is ``core`` or ``python``, ``N`` threads, ``ACCESSES`` per thread; ``UNTIL_US`` (``python``
only): stop at that simulated instant (a core run's hand-back instant, for the same
work). ``bulk``: ``System(nopage_flood="bulk")`` (the NOPAGE flood charged in bulk, a
named deviation: ``fast/flood.py``; on the core since session ``flood6`` with threads +
ksgxd <= CPUs, ``cosim/flood_park.py``, and with more threads than CPUs since session
``floodq``), the parks and the retries charged in bulk printed too (and the core's
``flood_*`` counts: parked rows preempted, parks ended with need_resched due, TCS-fault
parks). The core's machines must be compiled (a warm numba cache) for a figure of the run,
not of the compile: the script runs a short warm-up first.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE


def build(nthreads: int, epc_pages: int = 1024, cpus: int = 16, bulk: bool = False):  # type: ignore[no-untyped-def]
    """Row 10's system, its enclave (a TCS per thread), each thread entered once."""
    system = epcsim.System(
        epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=5, content_mode="tag", fast_core=False,
        nopage_flood="bulk" if bulk else "simulate",
    )  # fmt: skip
    n = 4 * epc_pages
    size = 1 << ((n + nthreads) * PAGE_SIZE - 1).bit_length()
    encl = system.create_enclave(size)
    assert encl.add_pages(0, nthreads * PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(nthreads * PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    system.machine.env.run()
    threads = [encl.new_thread(f"t{i}") for i in range(nthreads)]
    for th in threads:
        system._call(th, th.access_stream(np.array([nthreads]), False))
        system.machine.env.run()
    return system, threads, n


def run(
    mode: str, nthreads: int, accesses: int, until_us: float = 0, bulk: bool = False
) -> dict[str, object]:
    from epcsim.fast.driver.threads_bridge import run_threads, start_streams

    system, threads, n = build(nthreads, bulk=bulk)
    rng = np.random.default_rng(5)
    streams = [nthreads + rng.integers(0, n, size=accesses) for _ in range(nthreads)]
    s0 = system.stats()
    c0 = time.process_time()
    handed_back = None
    tcs_faults = None
    core_counts: dict[str, int] = {}
    if mode == "core":
        r = run_threads(system, threads, streams)
        # with more threads than CPUs ksgxd may take a waiting thread's TCS (a hand-back
        # at the regime's end): the figures are then of the run up to it
        assert r.handed_back in (None, "TCS fault", "SECS eviction"), r
        handed_back = r.handed_back
        tcs_faults = r.core["tcs_faults"]  # the waiting threads' TCS faults (``tcsfault``)
        core_counts = {k: v for k, v in r.core.items() if k.startswith("flood_")}
    else:
        start_streams(system, threads, streams)
        # ``until_us``: stop there (the instant a core run of the same streams handed
        # back: the same work, since the core is exact up to it)
        system.machine.env.run(until=until_us * 1000 if until_us else None)
    cpu = time.process_time() - c0
    s = system.stats()
    acc = s["enclave_accesses"] - s0["enclave_accesses"]
    flood = system.sgx.flood
    parked = {} if flood is None else {"parks": flood.parks, "bulk_retries": flood.bulk_retries}
    return {
        **parked,
        "threads": nthreads,
        "accesses": acc,
        "faults": s["page_faults"] - s0["page_faults"],
        "retries": s["fault_retries"] - s0["fault_retries"],
        "simulated_us": system.now / 1000,
        "cpu_s": cpu,
        "us_per_access": cpu / max(acc, 1) * 1e6,
        "handed_back": handed_back,
        "tcs_faults": tcs_faults,
        **core_counts,
    }


def main() -> None:
    mode, nthreads, accesses = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rest = sys.argv[4:]
    bulk = "bulk" in rest
    nums = [a for a in rest if a != "bulk"]
    until_us = float(nums[0]) if nums else 0.0
    if mode == "core":
        run("core", 1, 200, bulk=bulk)  # warm-up: the machines loaded from numba's cache
    print(run(mode, nthreads, accesses, until_us, bulk))


if __name__ == "__main__":
    main()
