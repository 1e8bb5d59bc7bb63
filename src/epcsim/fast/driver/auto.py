"""``System(fast_core="auto")``, the default: when the compiled core is worth engaging
(issue 9 rows 1 and 2, session ``fdefault``; PATHS.md "The pair from the user path",
"Default").

The core is exact (the differential tests of ``tests/fast/test_stream_core.py`` and
``test_stream_stops.py`` compare it with the fast engine without it and with the
reference), so engaging it or not changes no result, only the host time a run costs.
What it costs is numba's compile of the machines - ``thread_bridge.drive`` (the pair on
the core, with the machines it calls, ``thread.thread_run`` and ``ksgxd.ksgxd_run``) and
``ksgxd.ksgxd_resume`` (ksgxd served by SimPy between calls, every engaged stream) -
paid once per process, or loaded from numba's on-disk cache (``cache=True``, next to the
sources or under ``NUMBA_CACHE_DIR``) when a previous process compiled them. So "auto"
engages the core for a stream when:

* the machines cost no cold compile: already compiled in this process, or present and
  valid in numba's on-disk cache (``machines_warm``); loading them costs ~1 s of CPU
  (below) against ~0.2 ms saved per fault, repaid within the first few thousand faults;
* or the stream is long enough to repay the cold compile (``AUTO_MIN_ACCESSES``).

ksgxd's machine entered at K0's check (``StreamCore.ksgxd_at_check``) and a served
machine going on between calls: only while a stream the core accepted is live
(``StreamCore.live``, checked in ``ksgxd_serving._worth_serving``; decision, session
``fdland``). A served step costs ~4x the generator's, repaid only when a stream takes the
session onto the core: with the cache warm and the K0 entry allowed whenever warm (the
rule first built), the demo's seed run - ksgxd reclaiming beside ioctl and EACCEPT loops,
no stream on the core - took 11-12 s of CPU against 3-4 s with ``fast_core=False``; with
this rule 3.2-3.9 s against 3.1-3.4 s. ``fast_core=True`` keeps entering whenever its
regime holds (the tests of the served machine rely on it).

The decision is a cost choice and never changes a result; it is made per stream at its
start (``StreamCore.stream``), and a stream the core declines runs in Python exactly as
``fast_core=False``.
"""

from __future__ import annotations

import os
from typing import Any

#: The length from which a stream repays the machines' cold compile (decision, session
#: ``fdefault``, 2026-11-26). Derivation, from figures measured on this 2-core machine
#: (load 2-4): the cold compile of the three machines, empty ``NUMBA_CACHE_DIR``, costs
#: C ~= 60-90 s of CPU (``BENCHMARKS.md``, session ``fdefault``; 73-117 s measured by
#: session ``fastseal`` for the pair alone at higher load); a fault costs ~220-300 us on
#: the fast engine and ~12-20 us on the core (rows 1 and 2), so each fault the core runs
#: saves S ~= 0.2 ms. Break-even is C / S ~= 300,000-450,000 faults. Counted in accesses
#: (a stream's length is all that is known at its start), with rows 1 and 2's shape - every
#: access a fault or nearly - as the reference case; a stream with fewer faults per access
#: gains less, so the threshold is taken at the high end, 500,000 accesses: below it a
#: cold process never compiles (the test suite's processes, a user's first small run,
#: ``epcsim demo``), above it the compile is at most about half the run's fast-engine time.
AUTO_MIN_ACCESSES = 500_000

#: Set to 1, "auto" does not look in numba's on-disk cache: the machines count as warm only
#: once compiled or loaded in this process (decision, the lead, 2026-11-27). For ``make
#: test``'s part 2 (tests/suite_parts.py): the two parts now share numba's cache, so that
#: part 2 loads what part 1 compiled instead of compiling it again; with this set, what
#: part 2's "auto" tests and the ``epcsim`` processes they start exercise (the core or the
#: Python path) depends only on what part 2 itself has run, never on how far part 1 has got.
#: Results do not depend on it either way (the module docstring): a cost choice only.
IGNORE_CACHE_ENV = "EPCSIM_AUTO_IGNORE_CACHE"

#: whether every machine was found compiled or cached (sticky: it cannot become cold)
_warm = False
#: the on-disk check's answer, made once per process (a cache written later by another
#: process is not looked for: a second read of numba's index at every stream would cost
#: more than it saves)
_disk: bool | None = None


def _dispatchers() -> tuple[Any, ...]:
    """The machines an engaged stream compiles. Not ``thread.thread_resume``, the thread's
    served entry: compiled only when the thread itself is served (a few stops), so a
    process whose streams never needed it would never count as warm - nor would its disk
    cache, which holds only what some process compiled (the defect found 2026-11-26 with
    ``test_machines_warm_once_compiled_here`` run alone). It wraps ``thread_run``, which
    ``drive`` has compiled, so what it can still cost is the wrapper's own compile."""
    from epcsim.fast.driver.ksgxd import ksgxd_resume
    from epcsim.fast.driver.thread import thread_run
    from epcsim.fast.driver.thread_bridge import drive

    return (drive, ksgxd_resume, thread_run)


def _cached_on_disk(fn: Any) -> bool:
    """Whether numba's on-disk cache holds machine code for ``fn`` that it would load: an
    index whose source stamp matches the file (numba's own check; ``numba_cache.drop_stale``
    has already removed code whose dependencies changed), with an entry for this CPU and
    this bytecode. Uses numba's cache internals (not documented API): on any surprise the
    answer is False - at worst the core is not engaged, which changes no result."""
    try:
        cache = fn._cache
        if not getattr(cache, "_enabled", False):
            return False
        codegen = fn.targetctx.codegen()
        want = cache._index_key(None, codegen)[1:]
        return any(tuple(key[1:]) == want for key in cache._cache_file._load_index())
    except Exception:  # numba internals: any failure means "not known warm"
        return False


def machines_warm() -> bool:
    """Whether engaging the core costs no cold compile in this process: every machine
    compiled here already, or each loadable from numba's on-disk cache (not looked for
    with ``EPCSIM_AUTO_IGNORE_CACHE=1``, ``IGNORE_CACHE_ENV``)."""
    global _warm, _disk
    if _warm:
        return True
    fns = _dispatchers()
    if all(fn.signatures for fn in fns):
        _warm = True
    else:
        if _disk is None:
            trust = os.environ.get(IGNORE_CACHE_ENV, "") != "1"
            _disk = trust and all(fn.signatures or _cached_on_disk(fn) for fn in fns)
        _warm = _disk
    return _warm


def auto_engages(accesses: int, warm: bool) -> bool:
    """``fast_core="auto"``'s decision for a stream of ``accesses`` accesses: engage when
    the machines are warm (``machines_warm``) or the stream repays their cold compile."""
    return warm or accesses >= AUTO_MIN_ACCESSES
