"""ENCLS paging leaves: EBLOCK, ETRACK, EWB, ELDU/ELDB (SDM Vol.3D ch. 40; spec §14, §14.1).

Eviction is EBLOCK (no new TLB mappings) -> ETRACK (start a tracking epoch; the LPs inside at
that moment must exit) -> EWB (seal the page, version into a VA slot, invalidate). ELDU/ELDB
verify a sealed record against the version in its slot, consume the version and restore the
EPCM entry. The crypto is in :mod:`epcsim.isa.sealing`; the checks and updates of the EPCM
entry are the compiled ops of :mod:`epcsim.fast.ops.epcm` (written once, for both engines
and the compiled driver of ``epcsim/fast/DESIGN.md``).

Besides REG/TCS/TRIM pages, EWB/ELDU handle a SECS (only with no resident children; its EID
travels inside the sealed contents, so a reloaded SECS keeps its identity) and VA pages
(sealed as raw 4 KiB in every content mode; Linux never evicts VA pages, the SDM allows it).
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import PAGE_SIZE, SGX_VA_SLOT_COUNT, PageType, SgxReturn, secinfo_page_type

# a module, not names: epcsim.fast.ops.epcm imports the EPCM layout from this package
from epcsim.fast.ops import epcm as ops
from epcsim.isa.core import GP, PF, U64, PageInfo, SgxCore
from epcsim.isa.sealing import SealedPage, ewb_header, mac_header, pack_pcmd, unpack_pcmd
from epcsim.isa.secs import SecsState

#: ``isinstance`` operand as a tuple: ``bytes | bytearray`` written in a call builds a union
#: object on every call
_BYTES = (bytes, bytearray)

_CHILD_TYPES = (PageType.REG, PageType.TCS, PageType.TRIM)
_ZERO_PCMD = bytes(128)


class PagingMixin(SgxCore):
    def eblock(self, epc: int) -> int:
        """EBLOCK: mark a REG/TCS/TRIM page BLOCKED and stamp it with the SECS's current
        tracking epoch, which EWB later checks. PG_INVLD, PG_IS_SECS, NOTBLOCKABLE (VA),
        BLKSTATE (already blocked); #PF if ``epc`` is not an EPC page."""
        if not self._page_ok(epc):
            return PF
        e = self.epcm
        st = self.secs_of(epc)
        ret = ops.eblock_apply(e.flags, e.bepoch, epc, st.epoch if st else 0)
        return SgxReturn(ret) if ret else 0

    def etrack(self, secs: int) -> int:
        """ETRACK: start a tracking epoch; the LPs inside now must exit (EEXIT or AEX) before
        it completes. PREV_TRK_INCMPL while the previous epoch still has LPs to exit; #PF if
        ``secs`` is not a resident SECS."""
        st = self._resident_secs(secs)
        if st is None:
            return PF
        if st.tracking:
            return SgxReturn.PREV_TRK_INCMPL
        st.epoch += 1
        st.tracking = set(st.inside)
        self.epcm.advance_epoch(secs, st.epoch - 1, st.epoch)  # keeps 16-bit BEPOCH exact
        return 0

    def ewb(
        self, pageinfo: PageInfo, epc: int, va_epc: int, va_slot: int
    ) -> tuple[int, SealedPage | None]:
        """EWB: seal a page to untrusted memory, its version into a VA slot; invalidate it.

        Returns ``(ret, SealedPage | None)``. #GP: the VA slot on the page itself, a slot
        index outside 0..511, PAGEINFO.LINADDR/.SECS not zero. #PF: the page is invalid, the
        VA operand is not a valid VA page. REG/TCS/TRIM: PAGE_NOT_BLOCKED, then NOT_TRACKED
        unless an ETRACK followed the EBLOCK and all LPs inside at that ETRACK have exited.
        SECS: CHILD_PRESENT while it has resident children.

        As in the SDM pseudo-code, an occupied VA slot does not stop EWB: the old version is
        overwritten, the page is evicted, and the leaf reports VA_SLOT_OCCUPIED (with CF, not
        ZF, set) together with the sealed record.
        """
        if not self._page_ok(epc) or not self._page_ok(va_epc):
            return PF, None
        if va_epc == epc or not 0 <= va_slot < SGX_VA_SLOT_COUNT:
            return GP, None
        if pageinfo.linaddr or pageinfo.secs != -1:
            return GP, None
        e = self.epcm
        check = ops.ewb_check(e.flags, epc, va_epc)
        if check:
            return (PF if check == ops.FAULT_PF else SgxReturn(check)), None
        pt = int(e.pt[epc])
        st: SecsState | None = None
        content: bytes | int
        if pt in _CHILD_TYPES:
            st = self.secs_of(epc)
            if st is None or not st.tracked(e.bepoch.item(epc)):
                return SgxReturn.NOT_TRACKED, None
            header_eid = pcmd_eid = st.eid
            content = e.data[epc].tobytes() if e.data is not None else e.tag.item(epc)
        elif pt == PageType.SECS:
            st = self.secs_at[int(epc)]
            if st.child_count:
                return SgxReturn.CHILD_PRESENT, None
            header_eid, pcmd_eid = 0, st.eid
            content = self._secs_image(st.eid)
        else:  # PT_VA
            header_eid = pcmd_eid = 0
            content = self.va[int(epc)].tobytes()
        flags = e.secinfo(epc)
        linaddr = int(e.linaddr[epc])
        header = ewb_header(flags, linaddr, header_eid, pcmd_eid)
        version = self._fresh_version()
        ct, mac = self.sealer.seal(header, content, version)
        occupied = bool(self.va.version(va_epc, va_slot))
        self.va.set_version(va_epc, va_slot, version)
        if pt in _CHILD_TYPES:
            assert st is not None
            st.child_count -= 1
            st.busy_tcs.discard(int(epc))
        elif pt == PageType.SECS:
            assert st is not None
            del self.secs_at[int(epc)]
            st.epc = -1
        else:
            del self.va[int(epc)]
        e.clear(epc)
        ret = SgxReturn.VA_SLOT_OCCUPIED if occupied else 0
        return ret, SealedPage(ct, pack_pcmd(flags, pcmd_eid, mac))

    def eldu(
        self, pageinfo: PageInfo, epc: int, va_epc: int, va_slot: int, blocked: bool = False
    ) -> int:
        """ELDU (ELDB with ``blocked``): verify and reload an evicted page into free ``epc``.

        PAGEINFO: LINADDR, SECS (the resident parent SECS; -1 for a SECS or VA record),
        contents = ``SealedPage.contents``, metadata = ``SealedPage.pcmd``. #PF: ``epc``
        valid, the VA operand not a VA page, the parent not a resident SECS. #GP: a PCMD that
        is not 128 bytes or is all zero (spec §7: a zero page type reads as a SECS, which
        then fails the parameter consistency check), a SECS/VA record given a parent, an
        unknown page type, an empty (zero) VA slot. Any MAC mismatch - tampered bytes, a
        record of another page, address or enclave, an older version - gives
        MAC_COMPARE_FAIL and leaves the slot intact. On success the slot is cleared.
        """
        if not self._page_ok(epc) or not self._page_ok(va_epc):
            return PF
        if not 0 <= va_slot < SGX_VA_SLOT_COUNT:
            return GP
        raw_pcmd = pageinfo.metadata
        if not isinstance(raw_pcmd, _BYTES):
            return GP
        pcmd = unpack_pcmd(bytes(raw_pcmd))
        if pcmd is None:
            return GP
        e = self.epcm
        if e.valid[epc]:
            return PF
        if not e.valid[va_epc] or int(e.pt[va_epc]) != PageType.VA:
            return PF
        if raw_pcmd == _ZERO_PCMD:
            return GP
        pt = secinfo_page_type(pcmd.flags)
        st: SecsState | None = None
        if pt in _CHILD_TYPES:
            st = self._resident_secs(pageinfo.secs)
            if st is None:
                return PF
            header_eid = st.eid
        elif pt in (PageType.SECS, PageType.VA):
            if pageinfo.secs != -1:
                return GP
            header_eid = 0
        else:
            return GP
        version = self.va.version(va_epc, va_slot)
        if version == 0:
            return GP
        linaddr = int(pageinfo.linaddr) & U64
        header = mac_header(pcmd.secinfo, linaddr, header_eid, pcmd.enclave_id, pcmd.reserved)
        raw = e.data is not None or pt == PageType.VA
        ct = pageinfo.contents if isinstance(pageinfo.contents, _BYTES) else b""
        plain = self.sealer.unseal(header, bytes(ct), pcmd.mac, version, raw)
        if plain is None:
            return SgxReturn.MAC_COMPARE_FAIL
        if pt == PageType.SECS:
            st = self.secs_by_eid.get(self._secs_image_eid(plain))
            if st is None or st.epc >= 0:
                return GP  # the enclave no longer exists or its SECS is resident already
        # commit
        self.va.set_version(va_epc, va_slot, 0)  # the version is consumed: no replay
        secs_epc = st.epc if st is not None and pt != PageType.SECS else -1
        epoch = st.epoch if st is not None and pt != PageType.SECS else 0
        ops.eldu_commit(e.flags, e.bepoch, epc, pcmd.flags, pt, bool(blocked), epoch)
        e.secs[epc] = secs_epc
        e.linaddr[epc] = linaddr
        if pt == PageType.VA:
            self.va[int(epc)] = np.frombuffer(plain, dtype=np.uint64).copy()  # type: ignore[arg-type]
            return 0
        self._store_contents(epc, plain)
        assert st is not None
        if pt == PageType.SECS:
            st.epc = int(epc)
            self.secs_at[int(epc)] = st
            return 0
        st.child_count += 1
        return 0

    # -- the SECS page image ----------------------------------------------------------------
    def _secs_image(self, eid: int) -> bytes | int:
        """What EWB seals for a SECS: its EID (the rest of the SECS lives in ``SecsState``)."""
        if self.epcm.data is not None:
            return eid.to_bytes(8, "little").ljust(PAGE_SIZE, b"\0")
        return eid

    @staticmethod
    def _secs_image_eid(plain: bytes | int) -> int:
        if isinstance(plain, _BYTES):
            return int.from_bytes(plain[:8], "little")
        return int(plain)
