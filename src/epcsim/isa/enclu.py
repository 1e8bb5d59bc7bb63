"""ENCLU leaves and the enclave entry/exit the model needs (SDM Vol.3D ch. 40).

EENTER/ERESUME put a logical processor inside an enclave; EEXIT and AEX take it out. Exits
are what completes an ETRACK epoch. EACCEPT, EACCEPTCOPY and EMODPE are the enclave's side
of SGX2. ``access`` is the EPCM check the CPU applies to every enclave memory access; it
returns the page-fault error code of an SGX #PF (``PF_SGX`` set), or 0.

An ENCLU leaf executed outside an enclave, or by an LP index that does not exist, is a #GP
(the real instruction raises #UD/#GP there).
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import (
    PAGE_SIZE,
    PF_PROT,
    PF_SGX,
    PF_USER,
    PF_WRITE,
    SGX_SECINFO_RESERVED_MASK,
    PageType,
    SgxReturn,
    secinfo_page_type,
)
from epcsim.isa.core import GP, PF, SgxCore
from epcsim.isa.secs import SecsState

_STATE_BITS = 0x38
_SECINFO_RESERVED = SGX_SECINFO_RESERVED_MASK & ~_STATE_BITS  # bits 6-7 and 16-63


class EncluMixin(SgxCore):
    # -- entry and exit ----------------------------------------------------------------------
    def eenter(self, lp: int, tcs_epc: int, secs: int = -1) -> int:
        """EENTER through a TCS page: #PF if it is not a valid, unblocked TCS in a settled
        state (not PENDING/MODIFIED); #GP if the LP is already inside, the TCS is busy
        (another LP entered through it) or the enclave is not initialized.

        ``tcs_epc=-1`` with ``secs`` given enters through an *implicit* TCS outside the EPC:
        a named model simplification for scripts that do not model thread control structures.
        """
        if not self._lp_ok(lp) or self.lp_eid[lp] >= 0:
            return GP
        e = self.epcm
        st: SecsState | None
        if tcs_epc >= 0:
            if not self._page_ok(tcs_epc):
                return PF
            if not e.valid[tcs_epc] or e.blocked[tcs_epc] or int(e.pt[tcs_epc]) != PageType.TCS:
                return PF
            if e.pending[tcs_epc] or e.modified[tcs_epc]:
                return PF
            st = self.secs_of(tcs_epc)
            if st is None or tcs_epc in st.busy_tcs:
                return GP
        else:
            st = self._resident_secs(secs)
            if st is None:
                return GP
        if not st.initialized:
            return GP
        if tcs_epc >= 0:
            st.busy_tcs.add(int(tcs_epc))
        st.inside.add(lp)
        self.lp_eid[lp] = st.eid
        self.lp_tcs[lp] = int(tcs_epc)
        return 0

    def eresume(self, lp: int, tcs_epc: int, secs: int = -1) -> int:
        """ERESUME after an AEX. The model keeps no SSA frames (CSSA/NSSA), so this is
        re-entry with EENTER's checks."""
        return self.eenter(lp, tcs_epc, secs)

    def _leave(self, lp: int) -> int:
        if not self._lp_ok(lp) or self.lp_eid[lp] < 0:
            return GP
        st = self.secs_by_eid[self.lp_eid[lp]]
        st.inside.discard(lp)
        st.tracking.discard(lp)  # an exit completes this LP's part of the ETRACK epoch
        st.busy_tcs.discard(self.lp_tcs[lp])
        self.lp_eid[lp] = -1
        self.lp_tcs[lp] = -1
        return 0

    def resumes_after_aex(self, lp: int, tcs_epc: int, secs: int = -1) -> bool:
        """Would ``aex(lp)`` followed by ``eresume(lp, tcs_epc, secs)`` succeed, for an LP
        inside its enclave through ``tcs_epc`` now? ``eenter``'s checks, restated for that
        case (keep them in step): the fast engine's batched EAUG (``epcsim.fast.eaug``)
        takes one AEX and one ERESUME per page and applies the pair once."""
        if not self._lp_ok(lp) or self.lp_eid[lp] < 0 or self.lp_tcs[lp] != tcs_epc:
            return False
        e = self.epcm
        st: SecsState | None
        if tcs_epc >= 0:
            if not self._page_ok(tcs_epc):
                return False
            if not e.valid[tcs_epc] or e.blocked[tcs_epc] or int(e.pt[tcs_epc]) != PageType.TCS:
                return False
            if e.pending[tcs_epc] or e.modified[tcs_epc]:
                return False
            st = self.secs_of(tcs_epc)  # busy_tcs holds tcs_epc for lp only: the AEX frees it
        else:
            st = self._resident_secs(secs)
        return st is not None and st.initialized and st.eid == self.lp_eid[lp]

    def eexit(self, lp: int) -> int:
        """EEXIT: leave the enclave synchronously."""
        return self._leave(lp)

    def aex(self, lp: int) -> int:
        """Asynchronous exit (interrupt, IPI, fault): leaves the enclave like EEXIT."""
        return self._leave(lp)

    # -- the EPCM check on accesses ---------------------------------------------------------
    def _active(self, lp: int) -> SecsState | None:
        if not self._lp_ok(lp) or self.lp_eid[lp] < 0:
            return None
        return self.secs_by_eid[self.lp_eid[lp]]

    def _owned(self, st: SecsState, epc: int) -> bool:
        """Is ``epc`` a valid EPC page of the running enclave?"""
        e = self.epcm
        return self._page_ok(epc) and bool(e.valid[epc]) and int(e.secs[epc]) == st.epc

    def access(self, lp: int, linaddr: int, epc: int, write: bool, execute: bool = False) -> int:
        """0 if the EPCM allows this in-enclave access, else the SGX #PF error code:
        ``PF_SGX|PF_USER|PF_PROT`` (0x8005) for a read/execute, plus ``PF_WRITE`` (0x8007)
        for a write. Refused: a page of another enclave or address, not PT_REG (TCS, TRIM),
        PENDING, MODIFIED, or without the permission. PR alone does not refuse an access:
        EMODPR already restricted RWX. BLOCKED is not checked (no TLB is modelled; the
        kernel zaps the PTEs before EBLOCK)."""
        code = PF_SGX | PF_USER | PF_PROT | (PF_WRITE if write else 0)
        st = self._active(lp)
        if st is None or not self._owned(st, epc):
            return code
        e = self.epcm
        if int(e.linaddr[epc]) != linaddr - linaddr % PAGE_SIZE:
            return code
        if int(e.pt[epc]) != PageType.REG or e.pending[epc] or e.modified[epc]:
            return code
        need = (2 if write else 1) | (4 if execute else 0)
        if int(e.rwx[epc]) & need != need:
            return code
        return 0

    # -- SGX2 from inside --------------------------------------------------------------------
    def _enclu_operands(self, lp: int, secinfo_flags: int, linaddr: int):
        """The #GP checks EACCEPT, EACCEPTCOPY and EMODPE start with: the LP is inside an
        enclave, SECINFO has no reserved bits, ``linaddr`` is page aligned and in ELRANGE.
        Returns ``(enclave state, flags)``, or ``(None, flags)`` for a #GP."""
        st = self._active(lp)
        flags = int(secinfo_flags)
        if st is None or flags & _SECINFO_RESERVED or linaddr % PAGE_SIZE:
            return None, flags
        if not st.contains(linaddr):
            return None, flags
        return st, flags

    def eaccept(self, lp: int, secinfo_flags: int, linaddr: int, epc: int) -> int:
        """EACCEPT: the enclave agrees to an EAUG, EMODPR or EMODT; SECINFO must match.

        In the SDM's order: #GP outside an enclave, for reserved SECINFO bits, for a
        ``linaddr`` outside ELRANGE or unaligned, or for a request outside the allowed
        combinations (REG with PENDING or PR and not MODIFIED; TCS/TRIM with MODIFIED only);
        #PF if the page is not a valid, unblocked REG/TCS/TRIM page of this enclave;
        PAGE_ATTRIBUTES_MISMATCH if the EPCM's address, PT, RWX, PENDING, MODIFIED or PR
        differ from the request; NOT_TRACKED for a PR/MODIFIED change whose ETRACK has not
        completed. Success clears PENDING, MODIFIED and PR.
        """
        st, flags = self._enclu_operands(lp, secinfo_flags, linaddr)
        if st is None:
            return GP
        pt = secinfo_page_type(flags)
        pending, modified, pr = bool(flags & 8), bool(flags & 16), bool(flags & 32)
        allowed = (pt == PageType.REG and (pr or pending) and not modified) or (
            pt in (PageType.TCS, PageType.TRIM) and modified and not pending and not pr
        )
        if not allowed:
            return GP
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        if not self._owned(st, epc) or e.blocked[epc]:
            return PF
        if int(e.pt[epc]) not in (PageType.REG, PageType.TCS, PageType.TRIM):
            return PF
        if int(e.linaddr[epc]) != linaddr or flags & 0xFF3F != e.secinfo(epc):
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if (pr or modified) and not st.tracked(int(e.bepoch[epc])):
            return SgxReturn.NOT_TRACKED
        e.pending[epc] = e.modified[epc] = e.pr[epc] = False
        return 0

    def eacceptcopy(self, lp: int, secinfo_flags: int, linaddr: int, epc: int, src_epc: int) -> int:
        """EACCEPTCOPY: fill a PENDING page (from EAUG) with ``src_epc`` and give it the
        SECINFO's RWX, clearing PENDING.

        #GP outside an enclave, for reserved bits, W without R, PT not REG, or ``linaddr``
        outside ELRANGE; #PF if the source is not a valid, settled, readable REG page of this
        enclave; PAGE_ATTRIBUTES_MISMATCH if the destination is not a PENDING RW REG page of
        this enclave at ``linaddr``.
        """
        st, flags = self._enclu_operands(lp, secinfo_flags, linaddr)
        if st is None:
            return GP
        if (flags & 2 and not flags & 1) or secinfo_page_type(flags) != PageType.REG:
            return GP
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        src_ok = (
            self._owned(st, src_epc)
            and int(e.pt[src_epc]) == PageType.REG
            and not (e.pending[src_epc] or e.modified[src_epc] or e.blocked[src_epc])
            and e.rwx[src_epc] & 1
        )
        if not src_ok:
            return PF
        if (
            not self._owned(st, epc)
            or int(e.pt[epc]) != PageType.REG
            or not e.pending[epc]
            or e.modified[epc]
            or e.blocked[epc]
            or int(e.rwx[epc]) != 3
            or int(e.linaddr[epc]) != linaddr
        ):
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if e.data is not None:
            e.data[epc] = e.data[src_epc]
        else:
            e.tag[epc] = e.tag[src_epc]
        e.rwx[epc] = flags & 7
        e.pending[epc] = False
        return 0

    def emodpe(self, lp: int, secinfo_flags: int, linaddr: int, epc: int) -> int:
        """EMODPE: extend a REG page's EPCM permissions from inside (RWX |= mask; faults only).

        #GP outside an enclave, for reserved bits, ``linaddr`` outside ELRANGE, or W without
        R on a page without R; #PF if the page is not a valid, settled (not PENDING, MODIFIED
        or BLOCKED) REG page of this enclave at ``linaddr``.
        """
        st, flags = self._enclu_operands(lp, secinfo_flags, linaddr)
        if st is None:
            return GP
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        if (
            not self._owned(st, epc)
            or int(e.pt[epc]) != PageType.REG
            or e.pending[epc]
            or e.modified[epc]
            or e.blocked[epc]
            or int(e.linaddr[epc]) != linaddr
        ):
            return PF
        if not e.rwx[epc] & 1 and not flags & 1 and flags & 2:
            return GP
        e.rwx[epc] = np.uint8(int(e.rwx[epc]) | (flags & 7))
        return 0
