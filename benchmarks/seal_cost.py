"""Host CPU of the compiled seal: ``tag_sealing.seal`` + ``unseal`` called from compiled
code, as the machines call them (uint64 words), 200K times, min and median of 7.

    PYTHONPATH=src /work/main/.venv/bin/python benchmarks/seal_cost.py [LABEL]

Why it exists: ``digest2`` passes ``compress`` literal constants (offset, counter, final
flag) that ``tests/fast/test_no_literal_args.py`` would otherwise forbid; this measured
that dropping them costs the seal +36% (session ``suite3``, 2026-11-26,
``fast/ops/tag_sealing.py``). Run it before and after a change to the sealing's constants.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from epcsim.fast.ops import tag_sealing as ts


@njit(cache=False)
def _loop(keys, h, m, n):  # type: ignore[no-untyped-def]
    acc = np.uint64(0)
    three, five = np.uint64(3), np.uint64(5)
    for i in range(n):
        tag, version, linaddr = np.uint64(i), np.uint64(i * 7), np.uint64(i << 12)
        ct, mac = ts.seal(keys, h, m, tag, version, three, linaddr, five, five)
        z = np.uint64(0)
        ok, back = ts.unseal(keys, h, m, ct, mac, z, version, three, linaddr, five, five)
        acc ^= ct ^ mac ^ back ^ np.uint64(ok)
    return acc


def main() -> None:
    keys = ts.sealer_keys(b"k" * 32, b"m" * 32)
    h, m = ts.scratch()
    print("check", _loop(keys, h, m, 1000))  # (compiles; the same value before and after)
    runs = []
    for _ in range(7):
        t0 = time.process_time()
        _loop(keys, h, m, 200_000)
        runs.append(time.process_time() - t0)
    label = sys.argv[1] if len(sys.argv) > 1 else "seal"
    med = sorted(runs)[3]
    print(f"{label}: seal+unseal x200K host CPU min {min(runs):.3f} s median {med:.3f} s")


if __name__ == "__main__":
    main()
