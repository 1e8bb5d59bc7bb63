"""The cold compile of the ``run_pair`` path (issue 9, PATHS.md "Per fault on the core"):
host CPU time of the first ``run_pair`` call, which compiles the core's ``drive``, both
state machines and the fold. Run it with an empty ``NUMBA_CACHE_DIR`` (else it measures a
cache load), and alternate trees on a shared machine:

    d=$(mktemp -d); NUMBA_CACHE_DIR=$d PYTHONPATH=src .venv/bin/python benchmarks/cold_pair.py
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    t0 = time.process_time()
    from driver_pair import build, stream  # the sources PYTHONPATH names (src_tree.py)
    from epcsim.fast.driver import thread_bridge as tb

    t_imp = time.process_time() - t0
    system, encl = build(1, "fast", "1M", 600, 2)
    t1 = time.process_time()
    tb.run_pair(system, encl._main_thread(), *stream(1, 600, 256, 500, 0.0))
    print(f"import {t_imp:.1f} s, first run_pair {time.process_time() - t1:.1f} s")


if __name__ == "__main__":
    main()
