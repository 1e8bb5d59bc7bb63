"""What a ``System.run(until=)`` slice costs with the compiled core (issue 9 row 10, session
``deadline``): one started thread in row 10's shape (1,024 EPC pages, 16 CPUs, uniform over
4x the EPC), run unsliced (``System.run()``) and in slices of 200 us, 1 ms and 10 ms, with
``fast_core="auto"`` (the core, once its machines are warm) and ``fast_core=False`` (the
fast engine in Python). Prints host CPU per simulated access and the core's counts.

    PYTHONPATH=src:benchmarks python benchmarks/deadline_slices.py [ACCESSES] [ROUNDS]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

import rows
from epcsim.arch import PAGE_SIZE


def one(slice_us: int, n_acc: int, engine: str) -> dict[str, Any]:
    """One thread's stream of ``n_acc`` accesses in slices of ``slice_us`` (0: unsliced)."""
    system = rows._system(engine, epc=1024 * PAGE_SIZE, cpus=16, seed=5)
    n = 4 * 1024
    encl = system.create_enclave(rows._pow2((n + 1) * PAGE_SIZE))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs").ok
    assert encl.add_pages(PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
    proc = encl.start(1 + np.random.default_rng(5).integers(0, n, size=n_acc), name="t0")
    st0 = system.stats()
    c0 = time.process_time()
    slices = 0
    if slice_us:
        while proc.is_alive:
            system.run(until=f"{slice_us}us")
            slices += 1
    else:
        system.run()
    cpu = time.process_time() - c0
    acc = system.stats()["enclave_accesses"] - st0["enclave_accesses"]
    sc = system.sgx.stream_core
    return {
        "engine": engine,
        "slice_us": slice_us,
        "slices": slices,
        "us_per_access": round(cpu / max(acc, 1) * 1e6, 2),
        "on_core": 0 if sc is None else sc.accesses,
        "deadline_stops": 0 if sc is None else sc.deadline_stops,
    }


def main() -> int:
    n_acc = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for _ in range(rounds):
        for engine in ("fast", "fast-core"):
            for s in (0, 200, 1000, 10_000):
                print(one(s, n_acc, engine), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
