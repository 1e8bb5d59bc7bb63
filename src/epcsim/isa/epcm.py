"""The EPCM: one entry per EPC page, as NumPy struct-of-arrays (SDM Vol.3D §34.11).

Fields: VALID, PT, R/W/X, PENDING, MODIFIED, PR, BLOCKED, the owning SECS (as an EPC index),
ENCLAVEADDRESS, and BEPOCH (the tracking epoch at EBLOCK or at EMODPR/EMODT, which EWB and
EACCEPT compare against the SECS's tracking state). Page contents live here too:
``full`` mode keeps real 4 KiB pages (``data``, n x 4096 bytes allocated up front: 4 GiB per
million pages, 256 MiB for a 256 MiB EPC, so meant for small EPCs); ``mac`` and ``tag``
keep a 64-bit content tag per page (``tag``, 8 bytes per page).
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType

CONTENT_MODES = ("full", "mac", "tag")


class Epcm:
    def __init__(self, nr_pages: int, content_mode: str = "tag"):
        if content_mode not in CONTENT_MODES:
            raise ValueError(
                f"content_mode: one of {', '.join(CONTENT_MODES)}, got {content_mode!r}"
            )
        n = nr_pages
        self.nr_pages = n
        self.content_mode = content_mode
        self.valid = np.zeros(n, dtype=np.bool_)
        self.pt = np.zeros(n, dtype=np.uint8)
        self.rwx = np.zeros(n, dtype=np.uint8)  # R=1 W=2 X=4
        self.pending = np.zeros(n, dtype=np.bool_)
        self.modified = np.zeros(n, dtype=np.bool_)
        self.pr = np.zeros(n, dtype=np.bool_)
        self.blocked = np.zeros(n, dtype=np.bool_)
        self.secs = np.full(n, -1, dtype=np.int32)
        self.linaddr = np.zeros(n, dtype=np.uint64)
        self.bepoch = np.zeros(n, dtype=np.uint64)
        self.tag = np.zeros(n, dtype=np.uint64)
        self.data = np.zeros((n, PAGE_SIZE), dtype=np.uint8) if content_mode == "full" else None

    def state_flags(self, epc: int) -> int:
        """PENDING/MODIFIED/PR as SECINFO bits 3..5."""
        return (
            (8 if self.pending[epc] else 0)
            | (16 if self.modified[epc] else 0)
            | (32 if self.pr[epc] else 0)
        )

    def secinfo(self, epc: int) -> int:
        """The page's EPCM attributes as SECINFO.FLAGS (PT, RWX, state bits)."""
        return (int(self.pt[epc]) << 8) | int(self.rwx[epc]) | self.state_flags(epc)

    def allows(self, epcs: np.ndarray, write: bool = False, execute: bool = False) -> np.ndarray:
        """Vectorised EPCM access check (ownership and address are not checked here):
        a valid REG page, neither PENDING nor MODIFIED, with the needed permissions."""
        need = np.uint8((2 if write else 1) | (4 if execute else 0))
        return (
            self.valid[epcs]
            & (self.pt[epcs] == PageType.REG)
            & ~self.pending[epcs]
            & ~self.modified[epcs]
            & ((self.rwx[epcs] & need) == need)
        )

    def clear(self, epc: int) -> None:
        """Invalidate an entry (EWB, EREMOVE)."""
        self.valid[epc] = False
        self.pt[epc] = 0
        self.rwx[epc] = 0
        self.pending[epc] = self.modified[epc] = self.pr[epc] = self.blocked[epc] = False
        self.secs[epc] = -1
        self.linaddr[epc] = 0
        self.bepoch[epc] = 0
