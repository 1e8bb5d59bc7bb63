"""Row 5 (what `epcsim demo` simulates) with `fast_core=True`, then "auto", in one process
(`rows.demo` sets each run's `SeedConfig.fast_core`). Run from the project root:
`python benchmarks/demo_core.py`."""

import sys

sys.path.insert(0, "benchmarks")
import rows

for core in (True, "auto"):
    r = rows.demo("fast", fast_core=core)
    print(f"row 5, fast_core={core}: {r['cpu_s']:.1f} s CPU, {r['runs']} runs", flush=True)
