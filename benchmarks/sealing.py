"""The ``tag`` mode's EWB sealing: ``Sealer.seal`` (hashlib, the reference) against the
compiled ``epcsim.fast.ops.tag_sealing.seal`` the co-simulation driver calls, per record, in
the same run (host CPU time; ratios matter on this shared machine).

    .venv/bin/python benchmarks/sealing.py [-n RECORDS]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from epcsim.fast.ops import tag_sealing as ts
from epcsim.isa.sealing import Sealer, ewb_header


@njit(cache=True, nogil=True)
def _seal_all(keys, h, m, tags, versions, linaddrs, out_ct, out_mac):
    """What the driver does per EWB: one compiled ``seal`` per record."""
    for i in range(tags.size):
        ct, mac = ts.seal(keys, h, m, tags[i], versions[i], 0x203, linaddrs[i], 1, 1)
        out_ct[i] = ct
        out_mac[i] = mac


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="records")
    n = ap.parse_args().n
    rng = np.random.default_rng(1)
    tags = rng.integers(0, 2**63, n, dtype=np.uint64)
    versions = rng.integers(1, 2**63, n, dtype=np.uint64)
    linaddrs = (np.arange(n, dtype=np.uint64) << np.uint64(12)) + np.uint64(1 << 30)
    s = Sealer("tag", 3)
    keys, (h, m) = ts.sealer_keys(s._enc_key, s._mac_key), ts.scratch()
    ct = np.empty(n, dtype=np.uint64)
    mac = np.empty(n, dtype=np.uint64)
    _seal_all(keys, h, m, tags[:1], versions[:1], linaddrs[:1], ct, mac)  # compile
    c0 = time.process_time()
    _seal_all(keys, h, m, tags, versions, linaddrs, ct, mac)
    compiled = time.process_time() - c0
    m = min(n, 50_000)
    c0 = time.process_time()
    for i in range(m):
        header = ewb_header(0x203, int(linaddrs[i]), 1, 1)
        ref = s.seal(header, int(tags[i]), int(versions[i]))
    python = (time.process_time() - c0) / m * n
    assert ref[0] == int(ct[m - 1]).to_bytes(8, "little")  # the same bytes
    print(f"records: {n:,}")
    print(f"Sealer.seal (hashlib), per record:   {python / n * 1e9:8.0f} ns")
    print(f"compiled seal (in a loop), per record: {compiled / n * 1e9:8.0f} ns")
    print(f"ratio: {python / compiled:.1f}x")


if __name__ == "__main__":
    main()
