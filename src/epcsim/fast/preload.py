"""A process's one-time setup of the fast engine, done before it forks workers, so that
they inherit it instead of each paying it (issue 9 row 5, session ``cacheload``,
2026-11-26; BENCHMARKS.md "cacheload").

Why: ``epcsim demo`` runs its first seed run in its own process and the other 39 runs in
a fork-context pool (``cli._demo_pool``), forked before any run. Each worker then paid,
at its first run, what every process pays once before its first result on the compiled
core (measured with ``benchmarks/cache_load.py``): numba's target context's first
``refresh`` (~0.2-0.25 s of CPU: numba's own lazy imports of its implementations, cffi
among them, and its runtime module compiled by LLVM) and the imports of the core
(``fast.driver``, ``fast.cosim``: ~0.05-0.1 s), then the loads of the compiled functions
the runs call from numba's cache (~0.1 s). ``before_fork`` does the first two in the
parent; the loads stay lazy (each process loads what its runs call: a flip cell that never
reaches the core loads no machine).

Why it is safe to fork after it: nothing here starts a thread (numba's threading layers
start only for ``parallel=True`` code, which epcsim has none of), and the LLVM JIT's
memory is copied into the child with the rest of the process, so a function compiled or
loaded in the parent is callable in the child as it is. It changes no result: it runs no
simulation, and the compiled code a worker runs is the same whether the parent or the
worker loaded it (``tests/cli/test_demo_cli.py`` compares the demo's output with a serial
run's: the seed runs, all but the first run in workers).
"""

from __future__ import annotations


def before_fork(engine: str) -> None:
    """numba's first ``refresh`` and, for the fast engine, the core's imports, in this
    process (module docstring): call it before forking workers that run ``engine``. The
    reference engine calls compiled code too (``kernel/page_list.py``'s walk)."""
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()
    if engine == "fast":
        import epcsim.fast.driver.stream  # noqa: F401  (what System imports for its core)


__all__ = ["before_fork"]
