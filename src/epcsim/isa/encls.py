"""ENCLS leaves that build and tear down enclaves: ECREATE, EADD, EEXTEND, EINIT, EREMOVE,
EPA (SDM Vol.3D ch. 40, spec §14). Paging leaves are in :mod:`epcsim.isa.paging`, SGX2 leaves
in :mod:`epcsim.isa.edmm`; ``EnclsMixin`` gathers all of them.

Each method checks the SDM's preconditions in the SDM's order, changes nothing on failure,
and returns 0, an ``SgxReturn`` code, or a #GP/#PF encoding. As in the SDM, an operand that
is not an EPC page, or an EPC page in the wrong state (valid where a free page is needed, not
a SECS where one is needed), gives #PF; malformed parameters give #GP.
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import (
    PAGE_SIZE,
    SGX_SECINFO_RESERVED_MASK,
    SGX_VA_SLOT_COUNT,
    Attribute,
    PageType,
    SgxReturn,
    secinfo_page_type,
)
from epcsim.isa.core import GP, PF, PageInfo
from epcsim.isa.edmm import EdmmMixin
from epcsim.isa.measure import Measurement
from epcsim.isa.paging import PagingMixin
from epcsim.isa.secs import Secs, SecsState, secs_valid
from epcsim.isa.sigstruct import Sigstruct

#: ``isinstance`` operands as tuples: ``int | np.integer`` written in a call builds a union
#: object on every call (~0.2 us), and these checks run on every page
_INT = (int, np.integer)

__all__ = ["EnclsMixin", "PageInfo"]

CONTROLLED_ATTRIBUTES = int(Attribute.EINITTOKENKEY)  # only a launch-authorised signer


class EnclsMixin(PagingMixin, EdmmMixin):
    # -- build -------------------------------------------------------------------------------
    def ecreate(self, pageinfo: PageInfo, epc: int) -> int:
        """ECREATE: make ``epc`` the SECS of a new enclave (faults only).

        PAGEINFO.LINADDR and .SECS must be zero (here: 0 and -1), SECINFO.PT must be PT_SECS
        with no reserved bits, the target page free; then the SECS fields must pass
        :func:`~epcsim.isa.secs.secs_valid`. MRENCLAVE starts with the "ECREATE" block and
        the EID comes from the CPU's counter.
        """
        secs = pageinfo.contents
        if not self._page_ok(epc):
            return PF
        if pageinfo.linaddr or pageinfo.secs != -1 or not isinstance(secs, Secs):
            return GP
        flags = int(pageinfo.metadata or 0)
        if secinfo_page_type(flags) != PageType.SECS or flags & SGX_SECINFO_RESERVED_MASK:
            return GP
        e = self.epcm
        if e.valid[epc]:
            return PF
        if not secs_valid(secs):
            return GP
        eid = self._next_eid
        self._next_eid += 1
        m = Measurement()
        m.ecreate(secs.ssa_frame_size, secs.size)
        st = SecsState(eid=eid, secs=secs, epc=epc, measurement=m)
        self.secs_by_eid[eid] = st
        self.secs_at[epc] = st
        e.clear(epc)
        e.valid[epc] = True
        e.pt[epc] = PageType.SECS
        if e.data is not None:
            e.data[epc] = 0
        return 0

    def eadd(self, pageinfo: PageInfo, epc: int) -> int:
        """EADD: copy a page into an uninitialized enclave and measure offset + SECINFO.

        #GP: unaligned LINADDR, reserved SECINFO bits (PENDING/MODIFIED/PR count as reserved
        here), PT not REG/TCS, a REG page with W but not R, LINADDR outside ELRANGE, or an
        initialized enclave. #PF: target page valid, PAGEINFO.SECS not a resident SECS.
        The CPU forces a TCS's RWX to 0 before measuring and storing it.
        """
        if not self._page_ok(epc):
            return PF
        addr = pageinfo.linaddr
        if addr % PAGE_SIZE:
            return GP
        if not self._page_ok(pageinfo.secs):
            return PF
        flags = pageinfo.metadata
        if not isinstance(flags, _INT) or flags < 0:
            return GP
        flags = int(flags)
        pt = secinfo_page_type(flags)
        if flags & SGX_SECINFO_RESERVED_MASK or pt not in (PageType.REG, PageType.TCS):
            return GP
        e = self.epcm
        if e.valid[epc]:
            return PF
        st = self._resident_secs(pageinfo.secs)
        if st is None:
            return PF
        if pt == PageType.REG and flags & 2 and not flags & 1:
            return GP
        if not st.contains(addr) or st.initialized:
            return GP
        if pt == PageType.TCS:
            flags &= ~7
        self._store_contents(epc, pageinfo.contents)
        e.clear(epc)
        e.valid[epc] = True
        e.pt[epc] = pt
        e.rwx[epc] = flags & 7
        e.secs[epc] = st.epc
        e.linaddr[epc] = addr
        st.child_count += 1
        st.measurement.eadd(addr - st.base, flags)
        return 0

    def eextend(self, secs: int, epc: int, chunk: int) -> int:
        """EEXTEND: measure one 256-byte chunk (0..15) of a page of an uninitialized enclave.

        #PF: ``epc`` invalid or not REG/TCS, ``secs`` not a resident SECS; #GP: the page
        belongs to another SECS, the chunk is out of range, or the enclave is initialized.
        """
        if not self._page_ok(epc) or not self._page_ok(secs):
            return PF
        if not isinstance(chunk, _INT) or not 0 <= chunk < 16:
            return GP
        e = self.epcm
        if not e.valid[epc] or int(e.pt[epc]) not in (PageType.REG, PageType.TCS):
            return PF
        st = self._resident_secs(secs)
        if st is None:
            return PF
        if int(e.secs[epc]) != secs or st.initialized:
            return GP
        offset = int(e.linaddr[epc]) - st.base + int(chunk) * 256
        st.measurement.eextend(offset, self._chunk(epc, int(chunk)))
        return 0

    def einit(self, sigstruct: Sigstruct | None, secs: int, token: object = None) -> int:
        """EINIT: check the SIGSTRUCT against the SECS and initialize the enclave.

        In the SDM's order: SIGSTRUCT header (INVALID_SIG_STRUCT), signature
        (INVALID_SIGNATURE), the SECS (#PF if not a resident SECS, #GP if initialized),
        MRENCLAVE (INVALID_MEASUREMENT), controlled attributes and the ATTRIBUTES/XFRM and
        MISCSELECT masks (INVALID_ATTRIBUTE), then the launch check (INVALID_EINITTOKEN).
        Tokens are not modelled: without one the signer must match IA32_SGXLEPUBKEYHASH,
        which Linux (FLC) sets to the signer before EINIT (``lepubkeyhash = None``).
        """
        if not self._page_ok(secs):
            return PF
        if not isinstance(sigstruct, Sigstruct):
            return GP
        if not sigstruct.well_formed():
            return SgxReturn.INVALID_SIG_STRUCT
        if sigstruct.signature != sigstruct.expected_signature():
            return SgxReturn.INVALID_SIGNATURE
        st = self._resident_secs(secs)
        if st is None:
            return PF
        if st.initialized:
            return GP
        if st.measurement.peek() != sigstruct.enclave_hash:
            return SgxReturn.INVALID_MEASUREMENT
        mrsigner = sigstruct.mrsigner
        launch_ok = self.lepubkeyhash is None or mrsigner == self.lepubkeyhash
        s = st.secs
        if s.attributes & CONTROLLED_ATTRIBUTES and not launch_ok:
            return SgxReturn.INVALID_ATTRIBUTE
        amask, xmask, mmask = sigstruct.attribute_mask, sigstruct.xfrm_mask, sigstruct.miscmask
        if (
            (s.attributes & amask) != (sigstruct.attributes & amask)
            or (s.xfrm & xmask) != (sigstruct.xfrm & xmask)
            or (s.miscselect & mmask) != (sigstruct.miscselect & mmask)
        ):
            return SgxReturn.INVALID_ATTRIBUTE
        if not launch_ok:
            return SgxReturn.INVALID_EINITTOKEN
        st.mrenclave = st.measurement.finalize()
        st.mrsigner = mrsigner
        st.isv_prod_id, st.isv_svn = sigstruct.isv_prod_id, sigstruct.isv_svn
        st.initialized = True
        return 0

    # -- removal -----------------------------------------------------------------------------
    def eremove(self, epc: int) -> int:
        """EREMOVE: make an EPC page free again.

        An invalid page, or an accepted TRIM page (PT_TRIM, MODIFIED=0), counts as already
        unused: success even with threads inside (the TRIM page is invalidated). A VA page
        becomes invalid. A SECS with resident children gives CHILD_PRESENT. A REG/TCS/TRIM
        page of an enclave with a logical processor inside gives ENCLAVE_ACT.
        """
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        if not e.valid[epc]:
            return 0
        pt = int(e.pt[epc])
        if pt == PageType.VA:
            self.va.pop(epc, None)
            e.clear(epc)
            return 0
        if pt == PageType.SECS:
            st = self.secs_at.get(epc)
            if st is not None and st.child_count:
                return SgxReturn.CHILD_PRESENT
            if st is not None and st.inside:
                # Only reachable with the model's implicit TCS (no TCS child page).
                return SgxReturn.ENCLAVE_ACT
            if st is not None:
                del self.secs_at[epc]
                self.secs_by_eid.pop(st.eid, None)
            e.clear(epc)
            return 0
        st = self.secs_of(epc)
        accepted_trim = pt == PageType.TRIM and not e.modified[epc]
        if st is not None and st.inside and not accepted_trim:
            return SgxReturn.ENCLAVE_ACT
        if st is not None:
            st.child_count -= 1
            st.busy_tcs.discard(epc)
        e.clear(epc)
        return 0

    def epa(self, epc: int) -> int:
        """EPA: turn a free EPC page into a Version Array of 512 zeroed slots (#PF if the
        page is not free)."""
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        if e.valid[epc]:
            return PF
        e.clear(epc)
        e.valid[epc] = True
        e.pt[epc] = PageType.VA
        self.va[int(epc)] = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
        return 0
