"""The records the compiled core wrote unsealed, per backing file, sealed when Python first
needs their bytes (DESIGN.md item 4; ``kstate``, "Deferred sealing").

Why lazily (decided 2026-11-26, issue 9 session ``lazyseal``): EWB on the core stores a
record's content tag and its VA slot's version in plaintext where the contents and the MAC
go, and marks it. Until 2026-11-26 every call's fold sealed what was still marked, so
Python never saw a placeholder; that batch seal was ~19% of row 1's samples, and most of
those records are loaded again by a later call of the core (which needs no MAC check for
a record it wrote: its outcome is known) or never read at all. Now the marks outlive the
call: the file's ``EnclaveBacking.unsealed`` is this object, and every Python reader or
writer of a record's bytes passes ``EnclaveBacking.sealed_at`` first, which seals the
record it touches if it is pending (every pending record for a reader of them all) - the
reference's bytes, since a seal is a
pure function of what the row holds (tag, version, SECINFO flags) and of the file's
LINADDR base, EID and keys (``ops.seal_batch.seal_marked``), and nothing but the seal
writes a pending record's row.

What is shared between every ``KState`` of the file (a stream's and a served ksgxd
machine's may both be live): ``dmark`` (one bit per record of the file), ``dlist`` (the
indices marked, maybe stale or repeated: ``seal_marked`` skips those no longer marked) and
``dn`` (``dlist``'s length, one ``int64``: the count must be one, not one per ``KState``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.ops import tag_sealing
from epcsim.fast.ops.seal_batch import seal_marked

#: ``dlist``'s length: records written and not loaded again before the list fills, beyond
#: which the core compacts it and, if it is still half full, seals what it holds at once
DEFER_CAP = 1 << 15


class Unsealed:
    """One backing file's pending records (module docstring) and what sealing them takes:
    the keys (``tag_sealing.sealer_keys``), LINADDR base and EID of the enclave whose core
    wrote them."""

    def __init__(self, backing: Any, keys: np.ndarray, base: int, eid: int):
        self.dmark = np.zeros_like(backing.present.bits)
        self.dlist = np.zeros(DEFER_CAP, np.int32)
        self.dn = np.zeros(1, np.int64)
        self._one = np.zeros(1, np.int32)  # ``seal``'s list of one
        self._seal: Any = None  # ``seal_marked``'s entry point, on the first seal
        self.keys = keys
        self.sh, self.sm = tag_sealing.scratch()
        self.base = base
        self.eid = eid
        #: records sealed by ``seal`` (a diagnostic for the benchmarks; not a result)
        self.sealed = 0

    def pending(self, index: int = -1) -> bool:
        """Whether record ``index`` (for ``index < 0``: any record) waits for its seal."""
        if not self.dn[0]:
            return False
        if index < 0:
            return True
        b = index >> 3
        return b < self.dmark.size and bool((int(self.dmark[b]) >> (index & 7)) & 1)

    def seal(self, f: Any, index: int = -1) -> None:
        """Seal pending record ``index`` of backing file ``f`` in place and clear its mark;
        for ``index < 0`` every pending record, and empty the list. (One record when one is
        asked for: a Python fault between two calls of the core reads one record, and the
        rest may still be loaded by the core with no seal at all.)"""
        n = int(self.dn[0])
        if not n:
            return
        rows = f.compiled()
        if index >= 0:
            self._one[0] = index
            dlist, n = self._one, 1
        else:
            dlist = self.dlist
        args = (
            self.keys, self.sh, self.sm, dlist, n, self.dmark, f.present.bits,
            f.chunk_row, rows.contents, rows.mac, rows.flags, f.high_row, rows.high,
            self.base, self.eid,
        )  # fmt: skip
        if self._seal is None:
            # the compiled overload without numba's dispatcher (``jit.entry_point``: typing
            # the three typed lists at each call is most of a one-record seal's cost);
            # every argument's type is fixed for the file's life (its arrays' dtypes, the
            # lists' item types, Python ints)
            self._seal = entry_point(seal_marked, *args)
        self.sealed += self._seal(*args)
        if index < 0:
            self.dn[0] = 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``KState`` fields that are this object's arrays (shared, no copy)."""
        return dict(dmark=self.dmark, dlist=self.dlist, dn=self.dn)


def unsealed_of(backing: Any, keys: np.ndarray, base: int, eid: int) -> Unsealed:
    """``backing``'s ``Unsealed``, made on the core's first use and kept for the file's life
    (every ``KState`` of the file holds its arrays). If the sealing context changed
    (another ``System``'s keys, another SECS's EID, another base: not seen, but cheap to
    rule out), what is pending is sealed first with the context it was written under."""
    u = backing.unsealed
    if u is None:
        u = backing.unsealed = Unsealed(backing, keys, base, eid)
    elif u.base != base or u.eid != eid or not np.array_equal(u.keys, keys):
        u.seal(backing)
        u.keys, u.base, u.eid = keys, base, eid
    return u
