"""The compiled core's cold compile against its load from numba's on-disk cache (issue 9,
session ``fdefault``: the figures behind ``fast_core="auto"``'s threshold,
``epcsim/fast/driver/auto.py``).

Run it twice with the same fresh cache directory: the first process compiles, the second
loads::

    export NUMBA_CACHE_DIR=$(mktemp -d)
    python benchmarks/cold_compile.py; python benchmarks/cold_compile.py

Each prints the host CPU (and wall) time of its first ``fast_core=True`` stream (1,500
accesses over 1,024 pages, a 256-page EPC, 2 CPUs) and of a second stream as long.
"""

from __future__ import annotations

import time

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE


def main() -> None:
    system = epcsim.System(engine="fast", fast_core=True, epc=256 * PAGE_SIZE, cpus=2, seed=1)
    n = 1024
    encl = system.create_enclave(n * PAGE_SIZE)
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    stream = np.random.default_rng(1).integers(0, n, size=3000)
    c0, w0 = time.process_time(), time.time()
    encl.access_pages(stream[:1500])
    c1, w1 = time.process_time(), time.time()
    encl.access_pages(stream[1500:])
    c2 = time.process_time()
    print(
        f"first stream: {c1 - c0:.2f} s CPU ({w1 - w0:.2f} s wall); second: {c2 - c1:.3f} s "
        f"CPU; on the core: {system.fast_core_accesses:,} of {stream.size:,} accesses"
    )


if __name__ == "__main__":
    main()
