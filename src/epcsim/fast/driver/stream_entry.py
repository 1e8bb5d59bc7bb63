"""A pair call's entry on the compiled core: the machines' compiled entry points by argument
layout and the kernel's ``KState`` kept across entries (issue 9; split from ``stream.py`` by
session ``tidy2``, no code changed).

``EntryPoints`` is a mixin of ``stream.StreamCore`` (one per ``System``): its methods read
the owner's ``system`` and the two caches declared below, which ``StreamCore.__init__``
sets. Why the entry points are kept (the process's: ``ENTRIES``, session ``demo6``) rather
than numba's dispatcher called (``jit.entry_point``: typing the ~45 arrays of ``KState`` at
each call, ~0.5-1.8 ms) and why the layout of the slots' tuple is kept for the last one
(session ``fault5``): the methods' docstrings. The ``KState`` kept across entries: PATHS.md
"Next" item 2, ``stream.py``'s docstring ("The entry's state kept").
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver.slots import kernel_slots, refresh_slots, secs_of, take_slots
from epcsim.fast.driver.thread_bridge import drive

if TYPE_CHECKING:
    from epcsim.fast.driver.stream_ksgxd import Session
    from epcsim.system import System


def _layout(*parts: Any) -> tuple[Any, ...]:
    """What a compiled overload taking these tuples of arrays depends on: each array's
    dtype, dimensions and layout (a typed list's type is fixed by construction)."""
    return tuple(
        (a.dtype.str, a.ndim, a.flags.c_contiguous) if isinstance(a, np.ndarray) else None
        for part in parts
        for a in part
    )


#: ``drive``'s and the served machines' compiled entry points (``jit.entry_point``: a
#: dispatcher call types the ~45 arrays of a ``KState`` each time, ~0.5-1.8 ms) by the
#: function and its arguments' layout (``_layout``: what the compiled overload depends on),
#: the process's, not one ``StreamCore``'s. Why (session ``demo6``): kept per ``StreamCore``
#: before, so every ``System`` typed its arguments again - 2-4 calls of ~1-4 ms a run, ~40
#: runs in ``epcsim demo`` (~0.17 s of its ~5 s). Exact: an entry point depends on the
#: compiled overload only, which the key fixes, not on the ``System`` it was first made for
#: (``thread_bridge._ENTRIES`` is the tests' entries' table, kept the same way);
#: ``tests/fast/test_entry_points.py``.
ENTRIES: dict[tuple[Any, ...], Any] = {}


class EntryPoints:
    """The compiled entry points and the slots' ``KState`` of ``StreamCore``'s calls (a
    mixin: the methods read the owner's ``system`` and these caches)."""

    system: System
    #: the slots' ``KState`` tuple, kept across entries: ``(encls, secs states, kt,
    #: VA blocks)`` (``kernel_slots``)
    _kstate: tuple[list[Any], list[Any], Any, int] | None
    #: the last slots' tuple and its ``_layout`` (``_slots_layout``)
    _kt_layout: tuple[Any, tuple[Any, ...]]

    def drive(self, co: Any, kt: Any, ts: Any, pending: int) -> int:
        """``thread_bridge.drive`` without numba's dispatcher, keyed by what its compiled
        overload depends on (each array's dtype, dimensions and layout); ``kt`` the slots'
        tuple (``kstate.N_SLOTS``). The entry points are the process's (``ENTRIES``)."""
        key = (drive, _layout(co), self._slots_layout(kt), _layout(ts))
        fn = ENTRIES.get(key)
        if fn is None:
            fn = ENTRIES[key] = entry_point(drive, co, kt, ts, pending)
        return int(fn(co, kt, ts, pending))

    def _slots_layout(self, kt: Any) -> tuple[Any, ...]:
        """``_layout`` of the slots' tuple ``kt``, kept for the last one, its ``KState``s
        compared by identity. Why (session ``fault5``): ``_layout`` of the ~90 arrays of two
        ``KState``s took ~40-60 us at each ``drive`` call and served step (``dtype.str``
        formats a string, ``flags`` builds an object), and the slots are mostly the same
        ``KState``s from one call to the next (``bridge.refresh_layout`` rebuilds one only
        when Python replaced an array). Exact: a named tuple's items cannot change, nor an
        array's dtype, dimensions or layout (nothing here sets ``shape``/``strides``/
        ``dtype`` on an array); holding the last slots keeps alive only arrays its
        ``System`` holds (the next new ``KState`` replaces them)."""
        last, lay = self._kt_layout
        if len(last) != len(kt) or not all(map(operator.is_, last, kt)):
            lay = _layout(*kt)
            self._kt_layout = (tuple(kt), lay)
        return lay

    def machine(self, fn: Any, co: Any, kt: Any, ts: Any, t: int) -> Any:
        """A served machine's compiled entry point (``Session.step``: ``ksgxd_resume`` with
        ``ts`` None, ``thread_resume``) for these arguments' layout (``kt`` the slots'
        tuple), kept across sessions. Why (session ``deadline``): ``jit.entry_point`` types
        the ~45 arrays of ``KState`` (~1.8 ms), and a session is begun at each entry from
        ksgxd asleep - under 200 us ``run(until=)`` slices about one a slice, 2.3 of 8.0 s
        of a one-thread run."""
        key = (fn, _layout(co), self._slots_layout(kt), None if ts is None else _layout(ts))
        ep = ENTRIES.get(key)
        if ep is None:
            args = (co, kt) if ts is None else (co, kt, ts)
            ep = ENTRIES[key] = entry_point(fn, *args, t)
        return ep

    def kernel_slots(self, encls: list[Any]) -> Any:
        """The slots' ``KState`` tuple of a pair call's entry (``encls`` in slot order, each
        with its SECS state, ``slots.secs_of``): built once per enclave set and SECS
        states (the big arrays, the typed lists, the sealing keys, the costs; ~0.3-0.5 ms
        a slot), then brought up to date at each entry - a layout change by identity
        (``slots.refresh_slots``), the scalars by ``take_slots`` - as around a served step
        (PATHS.md "Next" item 2; per slot since session ``twoencl3``)."""
        system = self.system
        secss = [secs_of(system, e) for e in encls]
        cached = self._kstate
        if (
            cached is not None
            and len(cached[0]) == len(encls)
            and all(a is b for a, b in zip(cached[0], encls, strict=True))
            and all(a is b for a, b in zip(cached[1], secss, strict=True))
        ):
            kt, nblk = refresh_slots(system, encls, cached[2], cached[3])
            take_slots(system, encls, secss, kt)
            kc = kt[0].kc
            kc[K.K_HB] = kc[K.K_HB_PAGE] = kc[K.K_SVC] = 0
        else:
            kt = kernel_slots(system, list(zip(encls, secss, strict=True)), K.FT_ROWS_KEPT)
            nblk = len(system.cpu.va.blocks)
        self._kstate = (list(encls), secss, kt, nblk)
        return kt

    def keep(self, sess: Session) -> None:
        """The session's slots (``refresh_slots`` may have replaced them) for the next."""
        self._kstate = (list(sess.encls), list(sess.secss), sess.kt, sess.nblk)


__all__ = ["ENTRIES", "EntryPoints"]
