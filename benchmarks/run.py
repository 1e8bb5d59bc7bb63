"""Benchmarks: epcsim against libCacheSim on the same page streams, in the same run.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/run.py``). Machines here are shared
and noisy, so the figures that matter are ratios measured in one run:

* speed - simulated page accesses per second of wall time, epcsim vs libCacheSim's C core
  (``process_trace`` over the same stream written as an ``oracleGeneral`` trace);
* misses - epcsim's EPC page faults that loaded a page (ELDU) vs libCacheSim's misses for
  LRU, FIFO and Clock with the capacity epcsim actually had for the enclave's pages
  (EPC minus SECS, VA pages and the free pages ksgxd keeps above its high watermark).

epcsim models far more than a cache (ksgxd batches, watermarks, EBLOCK/ETRACK/EWB, crypto,
the fault path in simulated time), so it is expected to be much slower; the ratio tracks how
much, and the miss counts check that its second-chance LRU behaves like the cache policies
it resembles. Results are printed as a Markdown table (paste into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE

ORACLE_DTYPE = np.dtype([("ts", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("next", "<i8")])


def zipf_stream(n_pages: int, n_req: int, alpha: float, seed: int) -> np.ndarray:
    """Zipf(alpha) page indices over ``n_pages`` (rank r with probability ~ r^-alpha),
    ranks shuffled over the address space."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_pages + 1, dtype=np.float64)
    p = ranks ** (-alpha)
    p /= p.sum()
    perm = rng.permutation(n_pages)
    return perm[rng.choice(n_pages, size=n_req, p=p)]


def run_epcsim(stream: np.ndarray, n_pages: int, epc_pages: int, policy: str) -> dict:
    system = epcsim.System(epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, policy=policy)
    size = PAGE_SIZE
    while size < n_pages * PAGE_SIZE:
        size <<= 1
    encl = system.create_enclave(size)
    assert encl.add_pages(0, n_pages * PAGE_SIZE).ok
    assert encl.init().ok
    system.run(until="100ms")  # let ksgxd settle
    st0 = system.stats()
    capacity = encl.resident_pages + st0["epc_pages_free"] - system.sgx.high_pages
    t0 = time.perf_counter()
    out = encl.access_pages(stream)
    wall = time.perf_counter() - t0
    st = system.stats()
    assert out.ok
    return {
        "wall_s": wall,
        "misses": st["eldu"] - st0["eldu"],
        "capacity": int(capacity),
        "simulated_ms": (st["simulated_ns"] - st0["simulated_ns"]) / 1e6,
    }


def run_libcachesim(stream: np.ndarray, capacity: int, trace_path: str) -> dict:
    import libcachesim as lcs

    out = {}
    for name, cls in (("LRU", lcs.LRU), ("FIFO", lcs.FIFO), ("Clock", lcs.Clock)):
        reader = lcs.TraceReader(trace=trace_path, trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = cls(cache_size=capacity)
        t0 = time.perf_counter()
        miss_ratio, _ = cache.process_trace(reader)
        out[name] = {"wall_s": time.perf_counter() - t0, "misses": round(miss_ratio * len(stream))}
    return out


def write_oracle(stream: np.ndarray, path: str) -> None:
    rec = np.zeros(stream.size, dtype=ORACLE_DTYPE)
    rec["ts"] = np.arange(stream.size, dtype=np.uint32)
    rec["id"] = stream
    rec["sz"] = 1
    rec["next"] = -1
    rec.tofile(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--epc-pages", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cases = [  # (name, footprint in EPCs, zipf alpha)
        ("fits (0.5x EPC), zipf 1.0", 0.5, 1.0),
        ("2x EPC, zipf 1.2", 2.0, 1.2),
        ("2x EPC, zipf 0.8", 2.0, 0.8),
        ("4x EPC, uniform", 4.0, 0.0),
    ]
    print(f"# epcsim benchmarks ({platform.python_version()}, {os.cpu_count()} cores)\n")
    print(
        f"`python benchmarks/run.py {' '.join(argv or sys.argv[1:])}`"
        f" - {args.requests:,} accesses per case, EPC {args.epc_pages:,} pages\n"
    )
    print(
        "| case | policy | epcsim acc/s | libCacheSim acc/s | speed ratio | epcsim misses "
        "| LRU | FIFO | Clock | capacity |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, factor, alpha in cases:
            n_pages = int(args.epc_pages * factor)
            stream = zipf_stream(n_pages, args.requests, alpha, args.seed)
            path = os.path.join(tmp, "trace.oracleGeneral.bin")
            write_oracle(stream, path)
            for policy in ("lru", "fifo"):
                e = run_epcsim(stream, n_pages, args.epc_pages, policy)
                lib = run_libcachesim(stream, e["capacity"], path)
                peer = lib["Clock"] if policy == "lru" else lib["FIFO"]
                e_rate = args.requests / e["wall_s"]
                l_rate = args.requests / peer["wall_s"]
                print(
                    f"| {name} | {policy} | {e_rate:,.0f} | {l_rate:,.0f} | "
                    f"1/{l_rate / e_rate:,.0f} | {e['misses']:,} | {lib['LRU']['misses']:,} | "
                    f"{lib['FIFO']['misses']:,} | {lib['Clock']['misses']:,} | "
                    f"{e['capacity']:,} |"
                )
    print(
        "\nspeed ratio: epcsim's accesses/s over libCacheSim's for the peer policy "
        "(Clock for `lru`, FIFO for `fifo`), measured back to back in this run."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
