"""The EPCM: one entry per EPC page, as NumPy struct-of-arrays (SDM Vol.3D §34.11).

Fields: VALID, PT, R/W/X, PENDING, MODIFIED, PR, BLOCKED, the owning SECS (as an EPC index),
ENCLAVEADDRESS, and BEPOCH (the tracking epoch at EBLOCK or at EMODPR/EMODT, which EWB and
EACCEPT compare against the SECS's tracking state). Page contents live here too:
``full`` mode keeps real 4 KiB pages (``data``, n x 4096 bytes allocated up front: 4 GiB per
million pages, 256 MiB for a 256 MiB EPC, so meant for small EPCs); ``mac`` and ``tag``
keep a 64-bit content tag per page (``tag``, 8 bytes per page).

Layout (issue 9: server-scale EPCs), 12 bytes per entry:

====================  =====  ==========================================================
field                 bytes  how
====================  =====  ==========================================================
``flags``             2      SECINFO.FLAGS' own layout: R/W/X bits 0-2, PENDING 3,
                             MODIFIED 4, PR 5, PT bits 8-15; VALID and BLOCKED sit in
                             SECINFO's reserved bits 6 and 7. ``secinfo()`` is a mask.
``secs``              0      ENCLAVESECS (the owning SECS's EPC index, -1: none) and
``linaddr``           0      ENCLAVEADDRESS: stored once, see below
``bepoch``            2      the low 16 bits of the epoch (see below)
``tag``               8      the 64-bit content tag
====================  =====  ==========================================================

**ENCLAVESECS and ENCLAVEADDRESS are stored once.** For a resident enclave page the CPU's
(SECS, ENCLAVEADDRESS) and the kernel's owner of the page (``sgx_epc_page.owner``:
enclave and page index, ``kernel.epc.EpcPages``) hold the same fact. So the EPCM reads them
from the owner (``bind_owner``): a valid entry whose page the kernel owns as page ``i`` of
enclave ``k`` reads ``(encl_secs[k], encl_base[k] + i * 4096)``, every other entry
(invalid, SECS, VA, free, leaked, a guest's) ``(-1, 0)``. Where the CPU's view differs -
a kernel that passed a wrong address to EADD/EAUG/ELDU, freed a page without EREMOVE,
leaked one after a failed EREMOVE, an EPCM with no kernel bound (the ISA's own tests) - the
exact pair is kept in ``aside`` (a dict by EPC index, empty in a correct run), so either
view stays its own and the invariant checker sees the disagreement as before. What keeps
this exact:

- a leaf writes ``secs``/``linaddr`` after making the entry valid, and invalidates only
  through ``clear`` (EWB, EREMOVE): a write equal to the implied value stores nothing, one
  that differs goes aside, and an entry aside whose pair agrees again leaves the table;
- the kernel calls ``keep`` before it changes the owner of a page whose entry may be valid
  (``EpcPages.free``, ``set_owner_index``; an allocation takes a free page, already
  invalid or kept), and ``SgxEncl`` calls ``keep_owned`` before its SECS page or base moves
  while the old SECS still has children (never in a correct run: the CPU writes back or
  removes a SECS only without children);
- the compiled driver reads the pair derived (``fast/driver/encls.epcm_secs_is_mine``,
  the enclave's base ``K_BASE``) and refuses a state with an entry aside.

The flag fields are read and written through small views (``e.valid[epc]``,
``e.pt[pages]``, ``e.rwx[epc] = 3``) that index like the arrays they replace, so the leaves
read as before. Compiled code reads ``flags`` directly with the ``EPCM_*`` masks below.

Why 16 bits of BEPOCH are exact: the only question ever asked of a stamped epoch is
``SecsState.tracked``, which needs the distance ``epoch - bepoch`` only as 0, 1 or "2 or
more" - and "2 or more" never goes back, since the epoch only grows. The distance is taken
modulo 2**16, and at every multiple of ``BEPOCH_REBASE`` ETRACK re-bases
(``advance_epoch``) the entries of its SECS that are 2 or more behind to exactly 2 behind.
So no stored distance ever exceeds ``BEPOCH_REBASE + 1`` < 2**16 and the modular distance is
the true one (capped at a value that gives the same answer), for any number of ETRACKs.
ELDU stamps a reloaded child page 2 epochs behind (tracked: its EWB needed that,
``fast.ops.epcm.eldu_commit``), so it too is never read as 0 or 1 behind. A
batch that EMODTs and ETRACKs many times at once (``epcsim.fast.ioctl``) leaves the same
bytes through ``advance_epoch`` over the whole jump and ``stamp_epochs``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numba import njit

from epcsim.arch import PAGE_SIZE, PageType
from epcsim.packed import ArrayView, FlagField

#: ``isinstance`` operands as tuples: ``int | np.integer`` written in a call builds a union
#: object on every call (~0.2 us), and these checks run on every page
_INT = (int, np.integer)

CONTENT_MODES = ("full", "mac", "tag")

# Bits of the packed ``flags`` word (SECINFO.FLAGS layout, VALID/BLOCKED in reserved bits).
EPCM_R, EPCM_W, EPCM_X = 1 << 0, 1 << 1, 1 << 2
EPCM_RWX = EPCM_R | EPCM_W | EPCM_X
EPCM_PENDING = 1 << 3
EPCM_MODIFIED = 1 << 4
EPCM_PR = 1 << 5
EPCM_VALID = 1 << 6
EPCM_BLOCKED = 1 << 7
EPCM_PT_SHIFT = 8
#: the bits SECINFO.FLAGS reports for a page (everything but VALID and BLOCKED)
EPCM_SECINFO_MASK = 0xFF3F

BEPOCH_BITS = 16
BEPOCH_MASK = (1 << BEPOCH_BITS) - 1
#: ETRACK re-bases the stamped epochs of its SECS's pages every this many epochs
BEPOCH_REBASE = 1 << 14

_LIN_SHIFT = 12
_U64_LIN = np.uint64(_LIN_SHIFT)


class OwnerMap(Protocol):
    """What the EPCM's derived fields read (``kernel.epc.EpcPages``): the kernel's owner of
    each EPC page (``sgx_epc_page.owner``: enclave id and page index, or an ``OWNER_*`` code
    below 0) and, per enclave id, its SECS page (``encl->secs.epc_page``) and ELRANGE base.
    ``owner_index`` indexes like an array (``item``, ``[...]``); ``owner_flags`` is an array
    whose sign is the owner index's (compiled code reads it: ``kernel.epc`` packs the index
    above the page flags)."""

    owner_encl: np.ndarray
    owner_index: Any
    owner_flags: np.ndarray
    encl_secs: np.ndarray
    encl_base: np.ndarray


class _Derived(ArrayView):
    """ENCLAVESECS or ENCLAVEADDRESS of every entry, stored once (module docstring): what
    the kernel's owner implies, or the exact value in ``Epcm.aside`` where it differs.
    Indexed like the array it replaces (``int32`` for the SECS, ``uint64`` for the address);
    one entry by a Python int reads and writes Python ints."""

    __slots__ = ("_e", "_k")

    def __init__(self, epcm: Epcm, k: int):
        self._e, self._k = epcm, k  # k: 0 SECS, 1 ENCLAVEADDRESS

    def __len__(self) -> int:
        return self._e.nr_pages

    @property
    def nbytes(self) -> int:
        return 0  # nothing per entry: ``Epcm.nbytes`` counts the side table

    def item(self, index: Any) -> int:
        return self._e._one(int(index))[self._k]

    def __getitem__(self, index: Any) -> Any:
        e = self._e
        if isinstance(index, _INT):
            return e._one(int(index))[self._k]
        idx = np.arange(e.nr_pages)[index] if not _is_index_array(index) else index
        if np.ndim(idx) == 0:
            return e._one(int(idx))[self._k]
        out = e._implied_many(np.asarray(idx))[self._k]
        if e.aside:
            flat = np.asarray(idx).ravel()
            for k, page in enumerate(flat.tolist()):
                o = e.aside.get(page)
                if o is not None:
                    out.flat[k] = o[self._k]
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        e = self._e
        if isinstance(index, _INT) and isinstance(value, _INT):  # one entry: the hot case
            e._set_one(int(index), self._k, int(value))
            return
        idx = np.atleast_1d(index if _is_index_array(index) else np.arange(e.nr_pages)[index])
        vals = np.broadcast_to(np.asarray(value), idx.shape)
        implied = e._implied_many(idx)[self._k]
        if self._k == 1:
            differs = vals.astype(np.uint64) != implied
        else:
            differs = vals.astype(np.int64) != implied
        if e.aside:  # entries kept aside are written one by one
            differs |= np.fromiter((p in e.aside for p in idx.tolist()), bool, idx.size)
        for k in np.flatnonzero(differs).tolist():
            e._set_one(int(idx[k]), self._k, int(vals[k]))


def _is_index_array(index: Any) -> bool:
    return isinstance(index, np.ndarray) and index.dtype.kind in "iu"


class Epcm:
    def __init__(self, nr_pages: int, content_mode: str = "tag"):
        if content_mode not in CONTENT_MODES:
            raise ValueError(
                f"content_mode: one of {', '.join(CONTENT_MODES)}, got {content_mode!r}"
            )
        n = nr_pages
        self.nr_pages = n
        self.content_mode = content_mode
        self.flags = np.zeros(n, dtype=np.uint16)
        self.valid = FlagField(self.flags, 6, 1)
        self.blocked = FlagField(self.flags, 7, 1)
        self.rwx = FlagField(self.flags, 0, 3)  # R=1 W=2 X=4
        self.pending = FlagField(self.flags, 3, 1)
        self.modified = FlagField(self.flags, 4, 1)
        self.pr = FlagField(self.flags, 5, 1)
        self.pt = FlagField(self.flags, EPCM_PT_SHIFT, 8)
        #: the kernel's owner map the derived fields read (``bind_owner``); None: every
        #: ENCLAVESECS/ENCLAVEADDRESS not (-1, 0) is kept in ``aside``
        self.owner: OwnerMap | None = None
        #: the entries whose (SECS, ENCLAVEADDRESS) differ from what the owner implies:
        #: EPC index -> [secs, linaddr] (module docstring)
        self.aside: dict[int, list[int]] = {}
        self.secs = _Derived(self, 0)
        self.linaddr = _Derived(self, 1)
        self.bepoch = np.zeros(n, dtype=np.uint16)  # low BEPOCH_BITS of the epoch
        self.tag = np.zeros(n, dtype=np.uint64)
        self.data = np.zeros((n, PAGE_SIZE), dtype=np.uint8) if content_mode == "full" else None

    def nbytes(self) -> int:
        """Host bytes of the per-entry arrays (for the memory benchmarks)."""
        return (
            self.flags.nbytes
            + 96 * len(self.aside)  # a dict slot, an int key and a two-int list
            + self.bepoch.nbytes
            + self.tag.nbytes
            + (0 if self.data is None else self.data.nbytes)
        )

    # -- ENCLAVESECS and ENCLAVEADDRESS, stored once (module docstring) -----------------------
    def bind_owner(self, owner: OwnerMap) -> None:
        """Read the entries' SECS and ENCLAVEADDRESS from the kernel's ``owner`` where they
        agree with it (``kernel.main.Sgx`` binds its ``EpcPages`` before any leaf runs)."""
        if self.aside or self.flags.any():
            raise RuntimeError("bind_owner: the EPCM must be empty")
        self.owner = owner

    def _implied_one(self, epc: int) -> tuple[int, int]:
        """What the kernel's owner implies for entry ``epc``: (-1, 0) for an invalid entry
        or a page not of an enclave's ELRANGE (SECS, VA, free, leaked, virtual EPC)."""
        own = self.owner
        if own is None or not self.flags.item(epc) & EPCM_VALID:
            return -1, 0
        i = own.owner_index.item(epc)
        if i < 0:
            return -1, 0
        encl = own.owner_encl.item(epc)
        return own.encl_secs.item(encl), own.encl_base.item(encl) + (i << _LIN_SHIFT)

    def _implied_many(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        secs = np.full(idx.shape, -1, dtype=np.int32)
        lin = np.zeros(idx.shape, dtype=np.uint64)
        own = self.owner
        if own is None or idx.size == 0:
            return secs, lin
        i = own.owner_index[idx]
        ok = ((self.flags[idx] & EPCM_VALID) != 0) & (i >= 0)
        if ok.any():
            encl = own.owner_encl[idx][ok]
            secs[ok] = own.encl_secs[encl]
            lin[ok] = own.encl_base[encl].astype(np.uint64) + (i[ok].astype(np.uint64) << _U64_LIN)
        return secs, lin

    def _one(self, epc: int) -> tuple[int, int] | list[int]:
        if self.aside:
            o = self.aside.get(epc)
            if o is not None:
                return o
        return self._implied_one(epc)

    def _set_one(self, epc: int, k: int, value: int) -> None:
        """Write field ``k`` (0: SECS, 1: ENCLAVEADDRESS) of entry ``epc``: kept aside while
        the entry differs from what the owner implies, dropped from the side table when it
        agrees again."""
        o = self.aside.get(epc) if self.aside else None
        implied = self._implied_one(epc)
        if o is None:
            if value == implied[k]:
                return
            o = self.aside[epc] = list(implied)
        o[k] = value
        if o[0] == implied[0] and o[1] == implied[1]:
            del self.aside[epc]

    def keep(self, page: int) -> None:
        """Before the kernel changes ``page``'s owner: a valid entry that reads its SECS and
        ENCLAVEADDRESS from the owner gets them kept aside, so the CPU's view stays what it
        was (a page freed without EREMOVE, a leaked page)."""
        own, aside = self.owner, self.aside
        if own is not None and self.flags.item(page) & EPCM_VALID and page not in aside:
            aside[page] = list(self._implied_one(page))

    def keep_owned(self, encl_id: int) -> None:
        """Before enclave ``encl_id``'s SECS page or base changes while valid pages read
        their SECS from it: ``keep`` each of them (never in a run: the CPU refuses to write
        back or remove a SECS with children, so the kernel only moves a SECS with none)."""
        own = self.owner
        if own is None:
            return
        valid = (self.flags & EPCM_VALID) != 0
        for page in np.flatnonzero(
            valid & (own.owner_encl == encl_id) & (own.owner_index >= 0)
        ).tolist():
            self.keep(page)

    def has_aside(self) -> bool:
        """Is any entry's (SECS, ENCLAVEADDRESS) kept in the side table? (The compiled
        driver reads the derived fields only and refuses a state with one.)"""
        return bool(self.aside)

    def state_flags(self, epc: int) -> int:
        """PENDING/MODIFIED/PR as SECINFO bits 3..5."""
        return int(self.flags[epc]) & (EPCM_PENDING | EPCM_MODIFIED | EPCM_PR)

    def secinfo(self, epc: int) -> int:
        """The page's EPCM attributes as SECINFO.FLAGS (PT, RWX, state bits)."""
        return int(self.flags[epc]) & EPCM_SECINFO_MASK

    def secinfo_many(self, epcs: np.ndarray) -> np.ndarray:
        """``secinfo`` of each page (int64), for the fast engine's batched EACCEPT."""
        return self.flags[epcs].astype(np.int64) & EPCM_SECINFO_MASK

    def allows(self, epcs: np.ndarray, write: bool = False, execute: bool = False) -> np.ndarray:
        """Vectorised EPCM access check (ownership and address are not checked here):
        a valid REG page, neither PENDING nor MODIFIED, with the needed permissions."""
        need = (EPCM_W if write else EPCM_R) | (EPCM_X if execute else 0)
        f = self.flags[epcs]
        look = EPCM_VALID | EPCM_PENDING | EPCM_MODIFIED | (0xFF << EPCM_PT_SHIFT) | need
        want = EPCM_VALID | (int(PageType.REG) << EPCM_PT_SHIFT) | need
        return (f & np.uint16(look)) == np.uint16(want)

    def clear(self, epc: int) -> None:
        """Invalidate an entry (EWB, EREMOVE)."""
        self.flags[epc] = 0
        if self.aside:
            self.aside.pop(epc, None)  # an invalid entry reads (-1, 0): nothing to keep
        self.bepoch[epc] = 0

    def stamp_epoch(self, epc: int, epoch: int) -> None:
        """BEPOCH := the SECS's epoch (EBLOCK, EMODPR, EMODT); kept modulo 2**16."""
        self.bepoch[epc] = epoch & BEPOCH_MASK

    def stamp_epochs(self, pages: np.ndarray, epochs: np.ndarray, now: int) -> None:
        """``stamp_epoch`` of each page at its epoch, where the SECS's epoch has since gone
        on to ``now`` (a batch that EMODTs and ETRACKs in turn): exactly the stamps those
        steps one at a time leave, re-bases included (``advance_epoch``)."""
        epochs = np.asarray(epochs, dtype=np.int64)
        last = now - now % BEPOCH_REBASE  # the last re-base up to now
        rebased = (last > epochs) & (last - epochs >= 2)
        stamp = np.where(rebased, last - 2, epochs)
        self.bepoch[pages] = (stamp & BEPOCH_MASK).astype(np.uint16)

    def advance_epoch(self, secs: int, old: int, new: int) -> None:
        """The epoch of SECS ``secs`` went from ``old`` to ``new`` (ETRACK: by one; a batch:
        by more). At every multiple of ``BEPOCH_REBASE`` the pages of that SECS stamped 2 or
        more epochs behind - tracked for good - get a stamp exactly 2 behind, so the 16-bit
        distance never wraps (module docstring). A jump over several multiples leaves what
        the last one does."""
        last = new - new % BEPOCH_REBASE
        if last <= old:
            return
        own = self.owner
        aside = [(p, o) for p, o in self.aside.items() if o[0] == secs]
        kept = {p: self.bepoch.item(p) for p in self.aside}
        if own is not None:  # the entries that read their SECS from the owner
            for encl in np.flatnonzero(own.encl_secs == secs).tolist():
                _rebase(self.flags, own.owner_encl, own.owner_flags, self.bepoch,
                        encl, int(old), int(last))  # fmt: skip
        for p, b in kept.items():  # the side table's entries: their own SECS decides
            self.bepoch[p] = b
        for p, _ in aside:
            behind = ((old - self.bepoch.item(p)) & BEPOCH_MASK) + (last - old)
            if behind >= 2:
                self.bepoch[p] = (last - 2) & BEPOCH_MASK


@njit(cache=True, nogil=True)
def _rebase(flags, owner_encl, owner_flags, bepoch, encl, old, last):
    """``Epcm.advance_epoch``'s re-base in one compiled pass over the EPC: every valid entry
    of enclave ``encl``'s ELRANGE (whose SECS the owner implies) stamped 2 or more epochs
    behind ``last`` gets a stamp exactly 2 behind. The caller restores the entries kept
    aside (their own SECS decides) and re-bases those of its SECS. ``owner_flags``' sign is
    the owner index's (``OwnerMap``): an ELRANGE page has one >= 0.

    Written without branches (session ``trim3``, 2026-11-28): every entry is stored back,
    the stamp where the four conditions hold and its own value elsewhere - the same bytes
    as the test-and-store loop it replaces, but LLVM vectorizes it. A pass runs every
    ``BEPOCH_REBASE`` ETRACKs over the whole EPC, so a long ETRACK loop pays it O(EPC)
    times: row 3's MODIFY_TYPES(TRIM) at 8 GiB (2.2M ETRACKs, 136 passes over 2.1M
    entries) spent ~0.45 s in it, ~3.1 ms a pass, against ~1.4 ms a pass now
    (``fast/PATHS.md``, "Row 3's trim phase at 8 GiB")."""
    stamp = np.uint16((last - 2) & BEPOCH_MASK)
    jump = last - old
    for i in range(flags.size):
        b = bepoch[i]
        behind = ((old - np.int64(b)) & BEPOCH_MASK) + jump
        mine = (flags[i] & EPCM_VALID) != 0
        mine &= owner_flags[i] >= 0
        mine &= owner_encl[i] == encl
        mine &= behind >= 2
        bepoch[i] = stamp if mine else b
