"""How the core is compiled: ``@core_jit`` (one place to change it).

* ``cache=True``: the machine code is kept next to the sources (the package's
  ``__init__`` drops it when any source of the package changes, see there);
* ``nogil=True``: a driver call holds no GIL while it runs;
* ``_nrt=False``: no reference counting. Every primitive takes the ``CoState`` tuple of
  arrays, and with numba's runtime on each call increfs and decrefs all of them (an atomic
  operation each): measured on the lock ping-pong (``benchmarks/cosim.py``) that was 2.4x
  the core's whole cost (84 ms against 36 ms for 160K events). The core allocates nothing
  (its arrays come from ``new_state``), so it needs no runtime; numba refuses to compile an
  allocation here, which keeps it so. ``_nrt`` is one of numba's target options but
  underscored (not in its user documentation): if a numba release drops it, remove it here
  and the core is only slower.

**No constant int to a non-inlined compiled function** (rule set by session ``literal``,
2026-11-26). numba types a constant argument - ``0``, ``True``, or a module-level ``int``
such as ``RQ_RUN`` or ``HB_BUDGET`` - as ``Literal[int](k)`` (``Literal[bool]``) and
compiles the callee once per distinct constant: ``schedule`` had 12 versions, ``perform``
13, ``hand_back`` 11 in the machines' tests, each a cold compile that a fresh clone's CI
pays. A call site from compiled code wraps such a constant in ``np.int64(...)``
(``np.bool_(...)``), or passes a module-level ``np.int64`` (``driver/ksgxd.py``'s
``_ROW_KSGXD``): typed ``int64``, one signature per state type (by value / ``Borrowed``).
The callee then tests the value at run time instead of having the branch folded away,
which row 1 does not show (BENCHMARKS.md, "No literal ints"). A callee with
``inline="always"`` is exempt (inlined into its caller's IR, no compile of its own).
``tests/fast/test_no_literal_args.py`` checks every compiled function's source.
"""

from __future__ import annotations

from typing import Any

from numba import njit


def core_jit(fn: Any = None, **extra: Any) -> Any:
    """``@core_jit`` or ``@core_jit(inline="always")``."""
    opts: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False, **extra}
    dec = njit(**opts)
    return dec if fn is None else dec(fn)


def entry_point(fn: Any, *args: Any) -> Any:
    """The compiled ``fn`` for exactly these argument types, without numba's dispatcher:
    a Python call of a dispatcher types every argument first (~2 us for the ``CoState``
    tuple and a few arrays, measured), the compiled overload's entry point does not
    (~0.7 us). For calls repeated with the same arrays (served mode, ``served.py``): the
    caller must pass arguments of the same types as ``args``, which nothing checks; ``fn``
    is not called here. Falls back to ``fn`` itself if numba lacks these attributes
    (``overloads[...].entry_point`` is not documented API)."""
    try:
        sig = tuple(fn.typeof_pyval(a) for a in args)
        fn.compile(sig)  # compiled, or loaded from the cache, for these types
        return fn.overloads[sig].entry_point
    except (AttributeError, KeyError):
        return fn
