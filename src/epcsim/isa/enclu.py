"""ENCLU leaves and the enclave entry/exit the model needs (SDM Vol.3D ch. 38/41).

EENTER/ERESUME put a logical processor inside an enclave; EEXIT and AEX take it out. Exits
are what completes an ETRACK epoch. EACCEPT, EACCEPTCOPY and EMODPE are the enclave's side
of SGX2. ``access`` is the EPCM check the CPU applies to every enclave memory access; it
returns the page-fault error code of an SGX #PF (``PF_SGX`` set), or 0.
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
    X86_TRAP_GP,
    X86_TRAP_PF,
    PageType,
    SgxReturn,
    encls_fault,
    secinfo_page_type,
)
from epcsim.isa.core import SgxCore

GP = encls_fault(X86_TRAP_GP)
PF = encls_fault(X86_TRAP_PF)


class EncluMixin(SgxCore):
    # -- entry and exit ----------------------------------------------------------------------
    def eenter(self, lp: int, tcs_epc: int, secs: int = -1) -> int:
        """EENTER through a TCS. ``tcs_epc=-1`` with ``secs`` given enters through an
        *implicit* TCS outside the EPC: a named model simplification for scripts that do not
        model thread control structures."""
        if not self._lp_ok(lp) or self.lp_eid[lp] >= 0:
            return GP
        e = self.epcm
        if tcs_epc >= 0:
            if not self._page_ok(tcs_epc) or not e.valid[tcs_epc]:
                return PF
            if int(e.pt[tcs_epc]) != PageType.TCS or e.pending[tcs_epc] or e.modified[tcs_epc]:
                return GP
            st = self.secs_of(tcs_epc)
            if st is None or tcs_epc in st.busy_tcs:
                return GP
        else:
            st = self.secs_at.get(secs)
            if st is None:
                return GP
        if not st.initialized:
            return GP
        if tcs_epc >= 0:
            st.busy_tcs.add(tcs_epc)
        st.inside.add(lp)
        self.lp_eid[lp] = st.eid
        self.lp_tcs[lp] = tcs_epc
        return 0

    def eresume(self, lp: int, tcs_epc: int, secs: int = -1) -> int:
        """ERESUME after an AEX (same checks as EENTER in this model)."""
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

    def eexit(self, lp: int) -> int:
        return self._leave(lp)

    def aex(self, lp: int) -> int:
        """Asynchronous exit (interrupt, IPI, fault)."""
        return self._leave(lp)

    # -- the EPCM check on accesses ---------------------------------------------------------
    def _in_page(self, lp: int, linaddr: int, epc: int):
        """The page an enclave access at ``linaddr`` reaches through ``epc``, or a fault."""
        if not self._lp_ok(lp) or self.lp_eid[lp] < 0:
            return GP, None
        e = self.epcm
        st = self.secs_by_eid[self.lp_eid[lp]]
        if not self._page_ok(epc) or not e.valid[epc] or int(e.secs[epc]) != st.epc:
            return PF, st
        if int(e.linaddr[epc]) != linaddr - linaddr % PAGE_SIZE:
            return PF, st
        return 0, st

    def access(self, lp: int, linaddr: int, epc: int, write: bool, execute: bool = False) -> int:
        """0 if the EPCM allows the access, else the SGX #PF error code (0x8005, 0x8007 ...)."""
        code = PF_SGX | PF_USER | PF_PROT | (PF_WRITE if write else 0)
        ret, _st = self._in_page(lp, linaddr, epc)
        if ret:
            return code
        e = self.epcm
        if int(e.pt[epc]) != PageType.REG or e.pending[epc] or e.modified[epc]:
            return code
        need = (2 if write else 1) | (4 if execute else 0)
        if int(e.rwx[epc]) & need != need:
            return code
        return 0

    # -- SGX2 from inside --------------------------------------------------------------------
    def eaccept(self, lp: int, secinfo_flags: int, linaddr: int, epc: int) -> int:
        """EACCEPT: the enclave agrees to an EAUG, EMODPR or EMODT; SECINFO must match."""
        ret, st = self._in_page(lp, linaddr, epc)
        if ret:
            return ret
        if secinfo_flags & SGX_SECINFO_RESERVED_MASK & ~0x38:
            return GP
        e = self.epcm
        pt = secinfo_page_type(secinfo_flags)
        pending, modified, pr = (bool(secinfo_flags & b) for b in (8, 16, 32))
        allowed = (pt == PageType.REG and not modified) or (
            pt in (PageType.TCS, PageType.TRIM) and modified and not pending and not pr
        )
        if not allowed:  # not one of the SDM's accepted request combinations
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if e.blocked[epc]:
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if secinfo_flags & 0xFF3F != e.secinfo(epc):
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if (pr or modified) and not st.tracked(int(e.bepoch[epc])):
            return SgxReturn.NOT_TRACKED
        e.pending[epc] = e.modified[epc] = e.pr[epc] = False
        return 0

    def eacceptcopy(self, lp: int, secinfo_flags: int, linaddr: int, epc: int, src_epc: int) -> int:
        """EACCEPTCOPY: fill a PENDING page from ``src_epc``, set its RWX, accept it."""
        ret, _st = self._in_page(lp, linaddr, epc)
        if ret:
            return ret
        e = self.epcm
        if not self._page_ok(src_epc) or not e.valid[src_epc]:
            return PF
        if secinfo_page_type(secinfo_flags) != PageType.REG:
            return GP
        if int(e.pt[epc]) != PageType.REG or not e.pending[epc] or e.modified[epc]:
            return SgxReturn.PAGE_ATTRIBUTES_MISMATCH
        if (secinfo_flags & 2) and not (secinfo_flags & 1):
            return GP
        if e.data is not None:
            e.data[epc] = e.data[src_epc]
        else:
            e.tag[epc] = e.tag[src_epc]
        e.rwx[epc] = secinfo_flags & 7
        e.pending[epc] = False
        return 0

    def emodpe(self, lp: int, secinfo_flags: int, linaddr: int, epc: int) -> int:
        """EMODPE: extend a REG page's EPCM permissions from inside (faults only)."""
        ret, _st = self._in_page(lp, linaddr, epc)
        if ret:
            return ret
        e = self.epcm
        if int(e.pt[epc]) != PageType.REG or e.pending[epc] or e.modified[epc]:
            return PF
        if (secinfo_flags & 2) and not (secinfo_flags & 1) and not (e.rwx[epc] & 1):
            return GP
        e.rwx[epc] = np.uint8(int(e.rwx[epc]) | (secinfo_flags & 7))
        return 0
