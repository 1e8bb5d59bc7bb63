"""SGX2 (EDMM) ENCLS leaves: EAUG, EMODPR, EMODT (SDM Vol.3D ch. 40; spec §4.5, §14).

The OS side of dynamic memory management. Each change leaves the page in a state the enclave
must EACCEPT (:mod:`epcsim.isa.enclu`): EAUG gives a PENDING page, EMODPR sets PR, EMODT sets
MODIFIED. EMODPR and EMODT stamp the page with the SECS's tracking epoch: EACCEPT of a PR or
MODIFIED change needs an ETRACK after it and every LP inside at that ETRACK to have exited.
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import PAGE_SIZE, SGX_SECINFO_RESERVED_MASK, PageType, SgxReturn
from epcsim.isa.core import GP, PF, PageInfo, SgxCore

_STATE_BITS = 0x38  # PENDING | MODIFIED | PR: accepted (ignored) in EMODPR/EMODT's SECINFO


class EdmmMixin(SgxCore):
    def eaug(self, pageinfo: PageInfo, epc: int) -> int:
        """EAUG: add a zeroed, PENDING, RW regular page to an initialized enclave.

        #GP: unaligned LINADDR, PAGEINFO contents/metadata given, enclave not initialized,
        LINADDR outside ELRANGE. #PF: target page valid, PAGEINFO.SECS not a resident SECS.
        """
        if not self._page_ok(epc):
            return PF
        addr = pageinfo.linaddr
        if addr % PAGE_SIZE or pageinfo.contents is not None or pageinfo.metadata:
            return GP
        if not self._page_ok(pageinfo.secs):
            return PF
        e = self.epcm
        if e.valid[epc]:
            return PF
        st = self._resident_secs(pageinfo.secs)
        if st is None:
            return PF
        if not st.initialized or not st.contains(addr):
            return GP
        self._store_contents(epc, None)
        e.clear(epc)
        e.valid[epc] = True
        e.pt[epc] = PageType.REG
        e.rwx[epc] = 3
        e.pending[epc] = True
        e.secs[epc] = st.epc
        e.linaddr[epc] = addr
        st.child_count += 1
        return 0

    def emodpr(self, secinfo_flags: int, epc: int) -> int:
        """EMODPR: restrict a REG page's EPCM permissions: RWX &= mask, PR = 1.

        In the SDM's order: #GP for reserved SECINFO bits or W without R; #PF if the page is
        invalid; PAGE_NOT_MODIFIABLE if PENDING or MODIFIED; #PF if not PT_REG; #GP if the
        enclave is not initialized. PR is set even when no permission is removed (SDM).
        The kernel's REMOVE_PAGES relies on this order as a probe: an unaccepted TRIM page
        (MODIFIED=1) gives PAGE_NOT_MODIFIABLE, an accepted one #PF (spec §10.7).
        """
        if not self._page_ok(epc):
            return PF
        flags = int(secinfo_flags)
        if flags & SGX_SECINFO_RESERVED_MASK & ~_STATE_BITS or (flags & 2 and not flags & 1):
            return GP
        e = self.epcm
        if not e.valid[epc]:
            return PF
        if e.pending[epc] or e.modified[epc]:
            return SgxReturn.PAGE_NOT_MODIFIABLE
        if int(e.pt[epc]) != PageType.REG:
            return PF
        st = self.secs_of(epc)
        if st is None or not st.initialized:
            return GP
        e.rwx[epc] = np.uint8(int(e.rwx[epc]) & flags & 7)
        e.pr[epc] = True
        e.stamp_epoch(epc, st.epoch)
        return 0

    def emodt(self, secinfo_flags: int, epc: int) -> int:
        """EMODT: change the type to TCS or TRIM; MODIFIED = 1, RWX = 0, PR = 0.

        In the SDM's order: #GP for reserved SECINFO bits or a new type other than TCS/TRIM;
        #PF if the page is invalid or the change is not REG->TCS, REG->TRIM or TCS->TRIM;
        PAGE_NOT_MODIFIABLE if PENDING or MODIFIED; #GP if the enclave is not initialized.
        """
        if not self._page_ok(epc):
            return PF
        flags = int(secinfo_flags)
        new = (flags >> 8) & 0xFF
        if flags & SGX_SECINFO_RESERVED_MASK & ~_STATE_BITS:
            return GP
        if new not in (PageType.TCS, PageType.TRIM):
            return GP
        e = self.epcm
        if not e.valid[epc]:
            return PF
        old = int(e.pt[epc])
        if not (old == PageType.REG or (old == PageType.TCS and new == PageType.TRIM)):
            return PF
        if e.pending[epc] or e.modified[epc]:
            return SgxReturn.PAGE_NOT_MODIFIABLE
        st = self.secs_of(epc)
        if st is None or not st.initialized:
            return GP
        e.pt[epc] = new
        e.modified[epc] = True
        e.rwx[epc] = 0
        e.pr[epc] = False
        e.stamp_epoch(epc, st.epoch)
        return 0
