"""Fingerprints of the model's results, to check that a refactor changed no result.

    python benchmarks/fingerprint.py [--engine fast|reference] [-n 60] [--demo] > before.txt
    (change the tree)
    python benchmarks/fingerprint.py [same options] > after.txt && diff before.txt after.txt

Each line is one run's digest: a generated scenario of ``tests/fast/test_differential.py``
(drawn from a fixed seed, so the same list in every tree) or the demo's seed run. The digest
covers what ``differential_cases.fingerprint`` collects - every counter, the free-page
timeline, the fault latencies, the LRU order, the EPCM tags, each enclave's page arrays and
the raw backing records - in a canonical form, so a change of container (a list for a tuple,
a NumPy integer for an int) does not change it but any changed value or order does.

This is how the "ops written once" and the packed layouts of issue 9 were checked (the
reference's meaning unchanged, byte for byte); the differential tests compare the two engines
of one tree, this compares one engine across two trees.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fast"))

SCENARIO_SEED = 20261125


def canonical(x: Any) -> Any:
    """A plain, ordered form of ``x``: dicts as sorted pairs, sequences as lists, bytes as
    their hex, NumPy scalars and arrays as Python values, dataclasses as their fields."""
    if isinstance(x, dict):
        return [
            [canonical(k), canonical(v)] for k, v in sorted(x.items(), key=lambda kv: repr(kv[0]))
        ]
    if isinstance(x, (list, tuple)):
        return [canonical(v) for v in x]
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if isinstance(x, np.ndarray):
        return canonical(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return [type(x).__name__, [canonical(getattr(x, f.name)) for f in dataclasses.fields(x)]]
    return x


def digest(x: Any) -> str:
    return hashlib.sha256(repr(canonical(x)).encode()).hexdigest()[:16]


def generated(n: int) -> list[dict]:
    """``n`` scenarios drawn like the differential test's strategy, from a fixed seed."""
    rng = np.random.default_rng(SCENARIO_SEED)
    out = []
    for _ in range(n):
        out.append(
            {
                "epc_pages": int(rng.integers(24, 97)),
                "cpus": int(rng.integers(1, 5)),
                "policy": str(rng.choice(["lru", "fifo"])),
                "content_mode": str(rng.choice(["tag", "mac"])),
                "direct_reclaim": bool(rng.integers(0, 2)),
                "seed": int(rng.integers(0, 2**16)),
                "footprint": float(rng.uniform(0.3, 3.0)),
                "threads": int(rng.integers(1, 4)),
                "accesses": int(rng.integers(1, 121)),
                "writes": float(rng.uniform(0.0, 1.0)),
                "trim": bool(rng.integers(0, 2)),
                "until_us": [None, 50, 400][int(rng.integers(0, 3))],
                "nopage_flood": "simulate",
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="reference", choices=["reference", "fast"])
    ap.add_argument("-n", type=int, default=60, help="generated scenarios (default 60)")
    ap.add_argument("--demo", action="store_true", help="also the demo's seed run (1 MiB EPC)")
    args = ap.parse_args()
    from differential_cases import run_generated

    for i, p in enumerate(generated(args.n)):
        print(f"scenario {i:3d} {digest(run_generated(p, args.engine))}", flush=True)
    if args.demo:
        from epcsim.demo import SeedConfig, run_seed

        r = run_seed(SeedConfig(epc="1M", direct_reclaim=False, cpus=2, engine=args.engine))
        print(f"demo         {digest((r.summary(), r.stats, r.free_timeline, r.modify.eagain_at))}")


if __name__ == "__main__":
    main()
