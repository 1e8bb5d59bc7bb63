"""The EPCM: one entry per EPC page, as NumPy struct-of-arrays (SDM Vol.3D §34.11).

Fields: VALID, PT, R/W/X, PENDING, MODIFIED, PR, BLOCKED, the owning SECS (as an EPC index),
ENCLAVEADDRESS, and BEPOCH (the tracking epoch at EBLOCK or at EMODPR/EMODT, which EWB and
EACCEPT compare against the SECS's tracking state). Page contents live here too:
``full`` mode keeps real 4 KiB pages (``data``, n x 4096 bytes allocated up front: 4 GiB per
million pages, 256 MiB for a 256 MiB EPC, so meant for small EPCs); ``mac`` and ``tag``
keep a 64-bit content tag per page (``tag``, 8 bytes per page).

Layout (issue 9: server-scale EPCs), 20 bytes per entry:

====================  =====  ==========================================================
field                 bytes  how
====================  =====  ==========================================================
``flags``             2      SECINFO.FLAGS' own layout: R/W/X bits 0-2, PENDING 3,
                             MODIFIED 4, PR 5, PT bits 8-15; VALID and BLOCKED sit in
                             SECINFO's reserved bits 6 and 7. ``secinfo()`` is a mask.
``secs``              4      the owning SECS's EPC index (-1: none)
``linaddr``           4      ENCLAVEADDRESS >> 12 (a page number); an address that is not
                             page aligned or lies at or above 2**44 is kept exactly in a
                             side table (``_odd_linaddr``), so any value reads back as set
``bepoch``            2      the low 16 bits of the epoch (see below)
``tag``               8      the 64-bit content tag
====================  =====  ==========================================================

The flag fields are read and written through small views (``e.valid[epc]``,
``e.pt[pages]``, ``e.rwx[epc] = 3``) that index like the arrays they replace, so the leaves
read as before. Compiled code reads ``flags`` directly with the ``EPCM_*`` masks below.

Why 16 bits of BEPOCH are exact: the only question ever asked of a stamped epoch is
``SecsState.tracked``, which needs the distance ``epoch - bepoch`` only as 0, 1 or "2 or
more" - and "2 or more" never goes back, since the epoch only grows. The distance is taken
modulo 2**16, and at every multiple of ``BEPOCH_REBASE`` ETRACK re-bases
(``advance_epoch``) the entries of its SECS that are 2 or more behind to exactly 2 behind.
So no stored distance ever exceeds ``BEPOCH_REBASE + 1`` < 2**16 and the modular distance is
the true one (capped at a value that gives the same answer), for any number of ETRACKs. A
batch that EMODTs and ETRACKs many times at once (``epcsim.fast.ioctl``) leaves the same
bytes through ``advance_epoch`` over the whole jump and ``stamp_epochs``.
"""

from __future__ import annotations

from typing import Any

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
_LIN_ODD = np.uint32(0xFFFFFFFF)  # "see the side table"
_LIN_ODD_INT = 0xFFFFFFFF
_LIN_MAX_PAGE = 0xFFFFFFFF  # page numbers below this fit (addresses below 2**44 - 4 KiB)


class LinaddrField(ArrayView):
    """ENCLAVEADDRESS: a 32-bit page number per entry, exact values aside when they do not
    fit (see the module docstring). Indexed like a ``uint64`` array."""

    __slots__ = ("_odd", "_pages")

    def __init__(self, n: int):
        self._pages = np.zeros(n, dtype=np.uint32)
        self._odd: dict[int, int] = {}

    def __len__(self) -> int:
        return int(self._pages.size)

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int:  # one entry by a Python int (EWB): no NumPy scalar
            page = self._pages.item(index)
            return self._odd[index] if page == _LIN_ODD_INT else page << _LIN_SHIFT
        p = self._pages[index]
        if isinstance(p, np.ndarray):
            out = p.astype(np.uint64) << np.uint64(_LIN_SHIFT)
            if self._odd:
                idx = np.arange(self._pages.size)[index]
                for k in np.flatnonzero(p == _LIN_ODD).tolist():
                    out[k] = self._odd[int(idx[k])]
            return out
        if p == _LIN_ODD:
            return self._odd[int(index)]
        return int(p) << _LIN_SHIFT

    def __setitem__(self, index: Any, value: Any) -> None:
        if type(index) is int and type(value) is int:  # one entry (EWB, ELDU): the hot case
            self._set_one(index, value)
            return
        if isinstance(value, np.ndarray) or not isinstance(index, _INT):
            if isinstance(index, np.ndarray) and index.dtype.kind in "iu":
                idx = np.atleast_1d(index)  # page numbers already (no arange over the EPC)
            else:
                idx = np.atleast_1d(np.arange(self._pages.size)[index])
            vals = np.broadcast_to(np.asarray(value, dtype=np.uint64), idx.shape)
            pages = vals >> np.uint64(_LIN_SHIFT)
            odd = ((vals & np.uint64(0xFFF)) != 0) | (pages >= np.uint64(_LIN_MAX_PAGE))
            self._pages[idx] = np.where(odd, _LIN_ODD, pages).astype(np.uint32)
            if self._odd:
                for i in idx[~odd].tolist():
                    self._odd.pop(i, None)
            for i, v in zip(idx[odd].tolist(), vals[odd].tolist(), strict=True):
                self._odd[i] = v
            return
        self._set_one(int(index), int(value))

    def _set_one(self, i: int, addr: int) -> None:
        page = addr >> _LIN_SHIFT
        if addr & ((1 << _LIN_SHIFT) - 1) or page >= _LIN_MAX_PAGE:
            self._pages[i] = _LIN_ODD
            self._odd[i] = addr
        else:
            self._pages[i] = page
            self._odd.pop(i, None)

    @property
    def nbytes(self) -> int:
        return int(self._pages.nbytes) + 64 * len(self._odd)


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
        self.secs = np.full(n, -1, dtype=np.int32)
        self.linaddr = LinaddrField(n)
        self.bepoch = np.zeros(n, dtype=np.uint16)  # low BEPOCH_BITS of the epoch
        self.tag = np.zeros(n, dtype=np.uint64)
        self.data = np.zeros((n, PAGE_SIZE), dtype=np.uint8) if content_mode == "full" else None

    def nbytes(self) -> int:
        """Host bytes of the per-entry arrays (for the memory benchmarks)."""
        return (
            self.flags.nbytes
            + self.secs.nbytes
            + self.linaddr.nbytes
            + self.bepoch.nbytes
            + self.tag.nbytes
            + (0 if self.data is None else self.data.nbytes)
        )

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
        self.secs[epc] = -1
        self.linaddr[epc] = 0
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
        _rebase(self.secs, self.bepoch, int(secs), int(old), int(last))


@njit(cache=True, nogil=True)
def _rebase(secs_of, bepoch, secs, old, last):
    """``Epcm.advance_epoch``'s re-base in one compiled pass over the EPC: every entry of
    ``secs`` stamped 2 or more epochs behind ``last`` gets a stamp exactly 2 behind."""
    stamp = (last - 2) & BEPOCH_MASK
    for i in range(secs_of.size):
        if secs_of[i] == secs:
            behind = ((old - np.int64(bepoch[i])) & BEPOCH_MASK) + (last - old)
            if behind >= 2:
                bepoch[i] = stamp
