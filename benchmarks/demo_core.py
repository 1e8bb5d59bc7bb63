"""Row 5 (what `epcsim demo` simulates) with `fast_core=True`, then "auto", in one process:
`SeedConfig` has no `fast_core` field, so `demo.System` is given the option (as
`benchmarks/eaccept_core.py` does). Run from the project root: `python benchmarks/demo_core.py`."""

import functools
import sys

sys.path.insert(0, "benchmarks")
import rows
from epcsim import demo
from epcsim.system import System

for core in (True, "auto"):
    demo.System = functools.partial(System, fast_core=core)
    r = rows.demo("fast")
    print(f"row 5, fast_core={core}: {r['cpu_s']:.1f} s CPU, {r['runs']} runs", flush=True)
