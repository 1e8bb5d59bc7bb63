"""Row 3 and one seed run with the EACCEPT loop on the compiled core (issue 9,
``fast/PATHS.md``, "The EACCEPT loop"): host CPU, the fast engine against
``System(fast_core=True)``, alternated in one process (this shared machine's load moves
every figure by 10-20% between runs: compare only what ran together).

Row 3 (``rows.removal_stress``: build, MODIFY_TYPES(TRIM), one entry per page for
EACCEPT, REMOVE_PAGES on an EPC of ``--epc``, heap = EPC, direct reclaim): per heap page
and per phase, the counters checked equal. ``--seed``: the demo's seed run
(``SeedConfig(direct_reclaim=True)``, 2x the 93.5 MiB EPC), its summary checked equal;
the option is the run's ``SeedConfig.fast_core``.

    PYTHONPATH=src .venv/bin/python benchmarks/eaccept_core.py [--epc 2M] [--reps 2] [--seed]
    PYTHONPATH=src .venv/bin/python benchmarks/eaccept_core.py --demo [--quick] --reps 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import rows


def row3(epc: str, reps: int) -> None:
    for e in ("fast-core", "fast+core"):  # compile, load and import outside the timed runs
        rows.removal_stress(e, "1M")
    base = None
    for _ in range(reps):
        for e in ("fast-core", "fast+core"):  # fast_core False, True (not "auto")
            x = rows.removal_stress(e, epc)
            c = x["counters"]
            print(
                f"row 3 {e:9s} EPC {epc}: {x['us_per_page']:.1f} µs/page (ops "
                f"{x['ops_us_per_page']:.1f}); phases (build, trim, EACCEPT, remove) "
                + ", ".join(f"{s:.3f}" for s in x["phases_s"])
                + f" s; {c['eldu'] / x['heap_pages']:.2f} ELDU, {c['ewb'] / x['heap_pages']:.2f}"
                f" EWB per page; {x['core_eaccepts']:,} EACCEPTs on the core",
                flush=True,
            )
            if e == "fast-core":
                base = c
            else:
                print(f"  counters equal: {c == base}", flush=True)


def seed(reps: int, direct: bool) -> None:
    import epcsim.demo as demo

    rows.removal_stress("fast+core", "1M")  # compile or load the machines, untimed
    base = None
    for _ in range(reps):
        for core in (False, True):
            c0 = time.process_time()
            cfg = demo.SeedConfig(direct_reclaim=direct, fast_core=core)
            s = demo.run_seed(cfg).summary()
            cpu = time.process_time() - c0
            print(
                f"seed run, direct_reclaim={direct}, fast_core={core}: {cpu:.1f} s CPU", flush=True
            )
            if not core:
                base = s
            else:
                print(f"  summary equal: {s == base}", flush=True)


def demo_row(reps: int, flip: bool) -> None:
    """Row 5 (``rows.demo``: the seed twice, then the flip sweep unless ``--quick``), with
    every run's ``SeedConfig.fast_core`` False, "auto" (the default) and True, alternated."""

    rows.removal_stress("fast+core", "1M")  # compile or load the machines, untimed
    base = None
    for _ in range(reps):
        for core in (False, "auto", True):
            x = rows.demo("fast", flip=flip, fast_core=core)
            print(f"row 5, fast_core={core}: {x['cpu_s']:.1f} s CPU ({x['runs']} runs)", flush=True)
            if core is False:
                base = x["summaries"]
            else:
                print(f"  summaries equal: {x['summaries'] == base}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epc", default="2M")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seed", action="store_true", help="the demo's seed run instead of row 3")
    ap.add_argument("--no-direct", action="store_true", help="the seed run without direct reclaim")
    ap.add_argument("--demo", action="store_true", help="row 5 (make demo's runs) instead")
    ap.add_argument("--quick", action="store_true", help="with --demo: the seed runs only")
    args = ap.parse_args()
    if args.demo:
        demo_row(args.reps, not args.quick)
    elif args.seed:
        seed(args.reps, not args.no_direct)
    else:
        row3(args.epc, args.reps)


if __name__ == "__main__":
    main()
