"""Row 3's sequence (``rows.removal_stress``: heap = EPC, build, MODIFY_TYPES(TRIM), one
EACCEPT entry per page, REMOVE_PAGES) run in full at the EPC sizes given, the host CPU of
each phase printed - the row's own figure scales a 4 MiB run to 8 GiB, which keeps the
per-call fixed costs that a large heap spreads (session ``ioctlcore``). Unlike the row it
does not stop at a failed EACCEPT: it counts them, and calls REMOVE_PAGES again past each
page it refuses (before session ``bepoch``'s ELDU fix some failed from 2 GiB on: BENCHMARKS.md,
``ioctlcore``'s and ``bepoch``'s entries).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/removal_full.py 4M 32M 8G
        [--engine fast+core]   (``rows._system``'s engine names)
"""

from __future__ import annotations

import argparse
import time

import rows
from epcsim.arch import PAGE_SIZE
from epcsim.demo import eaccept_each_page


def run(engine: str, epc: str) -> str:
    c0 = time.process_time()
    system, encl, heap = rows.removal_build(engine, epc)
    c1 = time.process_time()
    off, length = rows.IMAGE * PAGE_SIZE, heap * PAGE_SIZE
    assert encl.modify_types(off, length, "trim").ok
    c2 = time.process_time()
    failed = eaccept_each_page(encl, rows.IMAGE, heap)
    c3 = time.process_time()
    done = calls = removed = 0
    while done < length:
        r = encl.remove_pages(off + done, length - done)
        calls += 1
        removed += r.count
        done += r.count
        if not r.ok:
            done += PAGE_SIZE  # past the refused page (its EACCEPT failed)
    c4 = time.process_time()
    sc = system.sgx.stream_core
    core = "" if sc is None else f"; core trims {sc.trims:,}, EACCEPTs {sc.eaccepts:,}"
    if sc is not None and getattr(sc, "removes", None) is not None:
        core += f", removes {sc.removes:,}"
    return (
        f"EPC {epc} {engine}: heap {heap:,} pages; CPU build {c1 - c0:.2f}, trim {c2 - c1:.2f}, "
        f"EACCEPT {c3 - c2:.2f}, remove {c4 - c3:.2f}, total {c4 - c0:.2f} s "
        f"({(c4 - c0) / heap * 1e6:.2f} µs/page); EACCEPT failures {failed}, removed "
        f"{removed // PAGE_SIZE:,} in {calls} calls{core}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("epc", nargs="+")
    ap.add_argument("--engine", default="fast+core")
    a = ap.parse_args()
    rows.removal_stress(a.engine, "1M")  # imports, the machines loaded (or compiled)
    for epc in a.epc:
        print(run(a.engine, epc), flush=True)


if __name__ == "__main__":
    main()
