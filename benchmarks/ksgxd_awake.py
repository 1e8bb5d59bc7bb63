"""Row 1's stream with ksgxd awake at every loop top (issue 9, ``fast/PATHS.md``, "ksgxd awake
in its generator"): host CPU per fault, the fast engine against ``System(fast_core=True)``.

An EPC of ``--epc-pages`` (default 64: ksgxd's high watermark, 64 pages, is then never
reached while the LRU holds pages, so ksgxd never sleeps), an enclave ``--mult`` times
the EPC with the implicit TCS, ``init`` and at once (no ``env.run()``: ksgxd still busy
from the EADDs) a warm-up call of a quarter of the stream, then the timed call of the rest
(uniform accesses, as row 1). Each engine runs the same scenario in this process; the
results are checked equal (counters, clock, the outcome) and the hook's share of the
accesses is printed. Before session ``kmove2`` the hook engaged only from ksgxd asleep,
so here not at all.

    PYTHONPATH=src .venv/bin/python benchmarks/ksgxd_awake.py [--accesses 12000]

``--started N`` measures instead what ksgxd costs when no stream can take it onto the
core: an EPC of 1,024 pages, 4 CPUs, 4x, ``N`` started threads of 3,000 uniform accesses
each run together by ``System.run()``; host CPU per EWB, fast against fast_core (with
``N`` >= 2 ksgxd must stay its generator: ``ksgxd_serving._worth_serving``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE


def run(core: bool, epc_pages: int, mult: int, accesses: int) -> dict[str, object]:
    kw = {"fast_core": True} if core else {}
    system = epcsim.System(epc=epc_pages * PAGE_SIZE, cpus=2, seed=1, content_mode="tag", **kw)
    n = mult * epc_pages
    encl = system.create_enclave(1 << ((n * PAGE_SIZE - 1).bit_length()))
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    stream = np.random.default_rng(1).integers(0, n, size=accesses)
    encl.access_pages(stream[: accesses // 4])
    f0 = system.stats()["page_faults"]
    c0 = time.process_time()
    out = encl.access_pages(stream[accesses // 4 :])
    cpu = time.process_time() - c0
    st = system.stats()
    faults = st["page_faults"] - f0
    return {
        "us_per_fault": cpu / faults * 1e6,
        "faults": faults,
        "on_core": system.fast_core_accesses,
        "result": (dataclasses.astuple(out), system.now, st),
    }


def started(core: bool, threads: int, epc_pages: int = 1024) -> tuple[float, int, object]:
    kw = {"fast_core": True} if core else {}
    system = epcsim.System(epc=epc_pages * PAGE_SIZE, cpus=4, seed=1, content_mode="tag", **kw)
    n = 4 * epc_pages
    encl = system.create_enclave(1 << ((n * PAGE_SIZE - 1).bit_length()))
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(1)
    for _ in range(threads):
        encl.start(rng.integers(0, n, size=3000))
    e0 = system.stats()["ewb"]
    c0 = time.process_time()
    system.run()
    cpu = time.process_time() - c0
    st = system.stats()
    return cpu, st["ewb"] - e0, (system.now, st)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epc-pages", type=int, default=64)
    ap.add_argument("--mult", type=int, default=6)
    ap.add_argument("--accesses", type=int, default=12_000)
    ap.add_argument("--started", type=int, default=0, help="started threads (see above)")
    args = ap.parse_args()
    if args.started:
        started(True, args.started, 256)  # the machines' compile or cache load
        (fc, fe, fr), (cc, ce, cr) = (started(core, args.started) for core in (False, True))
        print(
            f"{args.started} started threads: fast {fc / fe * 1e6:.0f} us per EWB ({fe} EWB), "
            f"fast_core {cc / ce * 1e6:.0f} us per EWB, results equal: {fr == cr}"
        )
        return
    a = (args.epc_pages, args.mult, args.accesses)
    run(True, args.epc_pages, args.mult, 400)  # the machines' compile or cache load
    fast = run(False, *a)
    core = run(True, *a)
    ratio = float(fast["us_per_fault"]) / float(core["us_per_fault"])  # type: ignore[arg-type]
    print(
        f"EPC {args.epc_pages} pages, {args.mult}x, {args.accesses} accesses: "
        f"fast {fast['us_per_fault']:.1f} us/fault ({fast['faults']} faults), "
        f"fast_core {core['us_per_fault']:.1f} us/fault, "
        f"{core['on_core']} of {args.accesses} accesses on the core, "
        f"ratio {ratio:.1f}x, "
        f"results equal: {fast['result'] == core['result']}"
    )


if __name__ == "__main__":
    main()
