"""``epcsim warm``: compile the compiled core's machines once into numba's on-disk cache.

``fast_core="auto"`` (the default) engages the core only when its machines cost no cold
compile, so until something has compiled them every short run - ``epcsim demo`` included -
runs on the fast engine without the core (~5x the host CPU). ``make test`` compiles them as
a side effect; this command is the direct way (``epcsim/fast/warm.py`` says what it runs).
Results never depend on it: the core is exact. No ``--json``: its one figure is host time,
which no ``--json`` object carries (their output is byte-identical across runs).
"""

from __future__ import annotations

import typer

from epcsim.cli_base import EXIT_CHECKS, EXIT_OK, err


def warm() -> None:
    """Compile the compiled core's machines into numba's on-disk cache (~1-2 min of CPU,
    once), so that later runs - `epcsim demo` included - engage the core."""
    from epcsim.fast.warm import warm as run_warm

    res = run_warm(lambda i, n: err.print(f"warm: run {i + 1} of {n}"))
    state = "warm" if res["warm"] else "NOT warm (numba's on-disk cache not written?)"
    err.print(f"warm: {res['cpu_s']:.1f} s of CPU; the compiled core's machines are {state}")
    raise typer.Exit(EXIT_OK if res["warm"] else EXIT_CHECKS)
