"""ENCLS leaves (SDM Vol.3D ch. 38/40), as the kernel calls them (spec §14).

Each method checks the SDM's preconditions in order, changes nothing on failure, and returns
0, an ``SgxReturn`` code, or a #GP/#PF encoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epcsim.arch import (
    PAGE_SIZE,
    SGX_SECINFO_RESERVED_MASK,
    SGX_VA_SLOT_COUNT,
    X86_TRAP_GP,
    X86_TRAP_PF,
    PageType,
    SgxReturn,
    encls_fault,
    secinfo_page_type,
)
from epcsim.isa.core import SgxCore
from epcsim.isa.measure import Measurement, tag_chunk
from epcsim.isa.sealing import SealedPage, mac_header, pack_pcmd, unpack_pcmd
from epcsim.isa.secs import Secs, SecsState

GP = encls_fault(X86_TRAP_GP)
PF = encls_fault(X86_TRAP_PF)


class PageInfo:
    """PAGEINFO: the linear address, the SECS (EPC index), contents and metadata."""

    __slots__ = ("contents", "linaddr", "metadata", "secs")

    def __init__(
        self, linaddr: int = 0, secs: int = -1, contents: Any = None, metadata: Any = None
    ):
        self.linaddr = linaddr
        self.secs = secs
        self.contents = contents
        self.metadata = metadata


class EnclsMixin(SgxCore):
    # -- build -------------------------------------------------------------------------------
    def ecreate(self, pageinfo: PageInfo, epc: int) -> int:
        """ECREATE: make ``epc`` the SECS of a new enclave (faults only)."""
        secs = pageinfo.contents
        e = self.epcm
        if not self._page_ok(epc) or e.valid[epc] or not isinstance(secs, Secs):
            return GP
        flags = int(pageinfo.metadata or 0)
        if secinfo_page_type(flags) != PageType.SECS or flags & SGX_SECINFO_RESERVED_MASK:
            return GP
        size, base = secs.size, secs.base
        if size < 2 * PAGE_SIZE or size & (size - 1) or base % size:
            return GP
        if secs.xfrm & 3 != 3 or secs.ssa_frame_size < 1:
            return GP
        eid = self._next_eid
        self._next_eid += 1
        m = Measurement()
        m.ecreate(secs.ssa_frame_size, size)
        st = SecsState(eid=eid, secs=secs, epc=epc, measurement=m)
        self.secs_by_eid[eid] = st
        self.secs_at[epc] = st
        e.valid[epc] = True
        e.pt[epc] = PageType.SECS
        return 0

    def eadd(self, pageinfo: PageInfo, epc: int) -> int:
        """EADD: copy a page into an uninitialized enclave and measure offset + SECINFO."""
        e = self.epcm
        st = self.secs_at.get(pageinfo.secs)
        if not self._page_ok(epc) or e.valid[epc] or st is None or st.initialized:
            return GP
        flags = int(pageinfo.metadata if pageinfo.metadata is not None else -1)
        pt = secinfo_page_type(flags)
        if flags < 0 or pt not in (PageType.REG, PageType.TCS):
            return GP
        if flags & SGX_SECINFO_RESERVED_MASK & ~0x38 or flags & 0x38:
            return GP
        addr = pageinfo.linaddr
        if addr % PAGE_SIZE or not st.base <= addr < st.base + st.size:
            return GP
        self._store_contents(epc, pageinfo.contents)
        e.valid[epc] = True
        e.pt[epc] = pt
        e.rwx[epc] = 0 if pt == PageType.TCS else flags & 7
        e.pending[epc] = e.modified[epc] = e.pr[epc] = e.blocked[epc] = False
        e.secs[epc] = st.epc
        e.linaddr[epc] = addr
        st.child_count += 1
        st.measurement.eadd(addr - st.base, (flags & ~0x7) if pt == PageType.TCS else flags)
        return 0

    def _store_contents(self, epc: int, contents) -> None:
        e = self.epcm
        if e.data is not None:
            if contents is None:
                e.data[epc] = 0
            else:
                e.data[epc] = np.frombuffer(
                    bytes(contents).ljust(PAGE_SIZE, b"\0")[:PAGE_SIZE], np.uint8
                )
        else:
            e.tag[epc] = np.uint64(0 if contents is None else int(contents) & ((1 << 64) - 1))

    def eextend(self, secs: int, epc: int, chunk: int) -> int:
        """EEXTEND: measure one 256-byte chunk of a page of an uninitialized enclave."""
        st = self.secs_at.get(secs)
        e = self.epcm
        if st is None or st.initialized or not self._page_ok(epc) or not e.valid[epc]:
            return GP
        if int(e.secs[epc]) != secs or not 0 <= chunk < 16:
            return GP
        offset = int(e.linaddr[epc]) - st.base + chunk * 256
        if e.data is not None:
            data = e.data[epc, chunk * 256 : (chunk + 1) * 256].tobytes()
        else:
            data = tag_chunk(int(e.tag[epc]), chunk)
        st.measurement.eextend(offset, data)
        return 0

    def einit(self, sigstruct, secs: int, token=None) -> int:
        """EINIT: check the SIGSTRUCT against the measurement and initialize the enclave."""
        st = self.secs_at.get(secs)
        if st is None or st.initialized or sigstruct is None:
            return GP
        if sigstruct.signature != sigstruct.expected_signature():
            return SgxReturn.INVALID_SIGNATURE
        mask = sigstruct.attribute_mask
        if (st.secs.attributes & mask) != (sigstruct.attributes & mask):
            return SgxReturn.INVALID_ATTRIBUTE
        mr = st.measurement.peek()
        if mr != sigstruct.enclave_hash:
            return SgxReturn.INVALID_MEASUREMENT
        st.mrenclave = st.measurement.finalize()
        st.mrsigner = sigstruct.mrsigner
        st.initialized = True
        return 0

    # -- removal -----------------------------------------------------------------------------
    def eremove(self, epc: int) -> int:
        """EREMOVE: an invalid or accepted-TRIM page counts as already unused."""
        e = self.epcm
        if not self._page_ok(epc):
            return GP
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
                return SgxReturn.ENCLAVE_ACT
            if st is not None:
                del self.secs_at[epc]
                if st.epc == epc:
                    self.secs_by_eid.pop(st.eid, None)
            e.clear(epc)
            return 0
        st = self.secs_of(epc)
        accepted_trim = pt == PageType.TRIM and not e.modified[epc]
        if st is not None and st.inside and not accepted_trim:
            return SgxReturn.ENCLAVE_ACT
        if st is not None:
            st.child_count -= 1
        e.clear(epc)
        return 0

    # -- paging ------------------------------------------------------------------------------
    def epa(self, epc: int) -> int:
        """EPA: turn a free EPC page into a Version Array of 512 zeroed slots."""
        e = self.epcm
        if not self._page_ok(epc) or e.valid[epc]:
            return GP
        e.valid[epc] = True
        e.pt[epc] = PageType.VA
        self.va[epc] = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
        return 0

    def eblock(self, epc: int) -> int:
        """EBLOCK: no new TLB mappings; records the tracking epoch for EWB."""
        e = self.epcm
        if not self._page_ok(epc):
            return GP
        if not e.valid[epc]:
            return SgxReturn.PG_INVLD
        pt = int(e.pt[epc])
        if pt == PageType.SECS:
            return SgxReturn.PG_IS_SECS
        if pt not in (PageType.REG, PageType.TCS, PageType.TRIM):
            return SgxReturn.NOTBLOCKABLE
        if e.blocked[epc]:
            return SgxReturn.BLKSTATE
        st = self.secs_of(epc)
        e.blocked[epc] = True
        e.bepoch[epc] = st.epoch if st else 0
        return 0

    def etrack(self, secs: int) -> int:
        """ETRACK: start a tracking epoch; the LPs inside now must exit before it completes."""
        st = self.secs_at.get(secs)
        if st is None:
            return GP
        if st.tracking:
            return SgxReturn.PREV_TRK_INCMPL
        st.epoch += 1
        st.tracking = set(st.inside)
        return 0

    def ewb(self, pageinfo: PageInfo, epc: int, va_epc: int, va_slot: int):
        """EWB: seal a page to untrusted memory, its version into a VA slot; invalidate it.

        Returns ``(ret, SealedPage | None)``.
        """
        e = self.epcm
        if not self._page_ok(epc) or not e.valid[epc] or not self._page_ok(va_epc):
            return GP, None
        if va_epc == epc or va_epc not in self.va or not 0 <= va_slot < SGX_VA_SLOT_COUNT:
            return GP, None
        pt = int(e.pt[epc])
        if pt == PageType.VA:
            return GP, None  # Linux never evicts VA pages; not modelled
        st: SecsState | None
        if pt == PageType.SECS:
            st = self.secs_at.get(epc)
            if st is None:
                return GP, None
            if st.child_count:
                return SgxReturn.CHILD_PRESENT, None
            header_eid, pcmd_eid, linaddr = 0, st.eid, 0
        else:
            if not e.blocked[epc]:
                return SgxReturn.PAGE_NOT_BLOCKED, None
            st = self.secs_of(epc)
            if st is None or not st.tracked(int(e.bepoch[epc])):
                return SgxReturn.NOT_TRACKED, None
            header_eid = pcmd_eid = st.eid
            linaddr = int(e.linaddr[epc])
        slots = self.va[va_epc]
        if slots[va_slot]:
            return SgxReturn.VA_SLOT_OCCUPIED, None
        version = self._fresh_version()
        flags = e.secinfo(epc)
        content = e.data[epc].tobytes() if e.data is not None else int(e.tag[epc])
        ct, mac = self.sealer.seal(
            mac_header(flags, linaddr, header_eid, pcmd_eid), content, version
        )
        slots[va_slot] = np.uint64(version)
        assert st is not None
        if pt == PageType.SECS:
            del self.secs_at[epc]
            st.epc = -1
        else:
            st.child_count -= 1
        e.clear(epc)
        return 0, SealedPage(ct, pack_pcmd(flags, pcmd_eid, mac))

    def eldu(
        self, pageinfo: PageInfo, epc: int, va_epc: int, va_slot: int, blocked: bool = False
    ) -> int:
        """ELDU (ELDB with ``blocked``): verify and reload an evicted page."""
        e = self.epcm
        if not self._page_ok(epc) or e.valid[epc] or va_epc not in self.va:
            return GP
        if not 0 <= va_slot < SGX_VA_SLOT_COUNT:
            return GP
        version = int(self.va[va_epc][va_slot])
        pcmd = pageinfo.metadata
        if not isinstance(pcmd, bytes | bytearray) or not any(pcmd):
            return GP  # all-zero PCMD: #GP (spec §7, observed)
        flags, pcmd_eid, mac, reserved_ok = unpack_pcmd(bytes(pcmd))
        if not reserved_ok or flags & SGX_SECINFO_RESERVED_MASK & ~0x38:
            return GP
        if version == 0:
            return GP
        pt = secinfo_page_type(flags)
        if pt == PageType.SECS:
            st = self.secs_by_eid.get(pcmd_eid)
            header = mac_header(flags, 0, 0, pcmd_eid)
        else:
            st = self.secs_at.get(pageinfo.secs)
            if st is None or pt not in (PageType.REG, PageType.TCS, PageType.TRIM):
                return GP
            header = mac_header(flags, pageinfo.linaddr, st.eid, pcmd_eid)
        ct = pageinfo.contents
        plain = self.sealer.unseal(header, bytes(ct or b""), mac, version)
        if plain is None or st is None or (pt == PageType.SECS and st.epc >= 0):
            return SgxReturn.MAC_COMPARE_FAIL
        self.va[va_epc][va_slot] = 0  # the version is consumed: no replay
        self._store_contents(epc, plain)
        e.valid[epc] = True
        e.pt[epc] = pt
        e.rwx[epc] = flags & 7
        e.pending[epc] = bool(flags & 8)
        e.modified[epc] = bool(flags & 16)
        e.pr[epc] = bool(flags & 32)
        e.blocked[epc] = blocked and pt != PageType.SECS
        if pt == PageType.SECS:
            st.epc = epc
            self.secs_at[epc] = st
        else:
            e.secs[epc] = st.epc
            e.linaddr[epc] = pageinfo.linaddr
            st.child_count += 1
        return 0

    # -- SGX2 --------------------------------------------------------------------------------
    def eaug(self, pageinfo: PageInfo, epc: int) -> int:
        """EAUG: add a zeroed, PENDING, RW regular page to an initialized enclave."""
        e = self.epcm
        st = self.secs_at.get(pageinfo.secs)
        if not self._page_ok(epc) or e.valid[epc] or st is None or not st.initialized:
            return GP
        addr = pageinfo.linaddr
        if addr % PAGE_SIZE or not st.base <= addr < st.base + st.size:
            return GP
        self._store_contents(epc, None)
        e.valid[epc] = True
        e.pt[epc] = PageType.REG
        e.rwx[epc] = 3
        e.pending[epc] = True
        e.modified[epc] = e.pr[epc] = e.blocked[epc] = False
        e.secs[epc] = st.epc
        e.linaddr[epc] = addr
        st.child_count += 1
        return 0

    def _modifiable(self, epc: int):
        e = self.epcm
        if not self._page_ok(epc) or not e.valid[epc]:
            return PF, None
        st = self.secs_of(epc)
        if st is None or not st.initialized:
            return GP, None
        return 0, st

    def emodpr(self, secinfo_flags: int, epc: int) -> int:
        """EMODPR: restrict the EPCM permissions of a REG page (PR=1 until EACCEPT)."""
        ret, st = self._modifiable(epc)
        if ret:
            return ret
        e = self.epcm
        if secinfo_flags & SGX_SECINFO_RESERVED_MASK:
            return GP
        # PENDING/MODIFIED is checked before the type: an unaccepted TRIM page (MODIFIED=1)
        # gives PAGE_NOT_MODIFIABLE, an accepted one #PF - the kernel's REMOVE_PAGES probe.
        if e.pending[epc] or e.modified[epc]:
            return SgxReturn.PAGE_NOT_MODIFIABLE
        if int(e.pt[epc]) != PageType.REG:
            return PF
        e.rwx[epc] &= secinfo_flags & 7
        e.pr[epc] = True
        e.bepoch[epc] = st.epoch
        return 0

    def emodt(self, secinfo_flags: int, epc: int) -> int:
        """EMODT: change the type to TCS or TRIM; the enclave must EACCEPT (MODIFIED=1)."""
        ret, st = self._modifiable(epc)
        if ret:
            return ret
        e = self.epcm
        new = secinfo_page_type(secinfo_flags)
        if new not in (PageType.TCS, PageType.TRIM) or secinfo_flags & 0xFF:
            return GP
        if e.pending[epc] or e.modified[epc]:
            return SgxReturn.PAGE_NOT_MODIFIABLE
        if int(e.pt[epc]) not in (PageType.REG, PageType.TCS):
            return GP
        e.pt[epc] = new
        e.modified[epc] = True
        e.rwx[epc] = 0
        e.pr[epc] = False
        e.bepoch[epc] = st.epoch
        return 0
