"""SECS contents (what ECREATE is given) and the processor's per-enclave state.

``Secs`` is the architectural input. ``SecsState`` is what the CPU keeps for an enclave while
its SECS exists, resident or evicted: EID, base/size, attributes, the running MRENCLAVE,
INIT, the number of valid child pages (EREMOVE/EWB of the SECS need it to be zero), and the
ETRACK state. Tracking follows the SDM's epoch scheme: ETRACK starts a new epoch and records
the logical processors inside; it is complete once each of them has exited (EEXIT or AEX).

``secs_valid`` holds ECREATE's checks on the SECS fields (SDM ECREATE pseudo-code): XFRM,
MISCSELECT, SSA frame size against the XSAVE area, base/size shape, unsupported attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from epcsim.arch import PAGE_SIZE, Attribute
from epcsim.isa.epcm import BEPOCH_MASK
from epcsim.isa.measure import Measurement

# ATTRIBUTES bits this CPU supports (CR_SGX_ATTRIBUTES_MASK). INIT is never accepted.
SUPPORTED_ATTRIBUTES = int(
    Attribute.DEBUG
    | Attribute.MODE64BIT
    | Attribute.PROVISIONKEY
    | Attribute.EINITTOKENKEY
    | Attribute.KSS
    | Attribute.ASYNC_EXIT_NOTIFY
)
# XCR0 components this CPU supports: x87, SSE, AVX, MPX (2), AVX-512 (3), PKRU, AMX (2).
SUPPORTED_XFRM = 0x2FF | (1 << 9) | (3 << 17)
SUPPORTED_MISCSELECT = 0x1  # EXINFO
# Non-compacted XSAVE layout: component bit -> (offset, size) (SDM Vol.1 §13.4).
_XSAVE_LAYOUT = {
    2: (576, 256),  # AVX
    3: (960, 64),  # MPX BNDREGS
    4: (1024, 64),  # MPX BNDCSR
    5: (1088, 64),  # AVX-512 opmask
    6: (1152, 512),  # ZMM_Hi256
    7: (1664, 1024),  # Hi16_ZMM
    9: (2688, 8),  # PKRU
    17: (2752, 64),  # AMX TILECFG
    18: (2816, 8192),  # AMX TILEDATA
}
GPRSGX_SIZE = 184
EXINFO_SIZE = 16
MAX_ENCLAVE_SIZE_64 = 1 << 47  # CPUID.(12H,0):EDX[15:8]
MAX_ENCLAVE_SIZE_32 = 1 << 31  # CPUID.(12H,0):EDX[7:0]


@dataclass
class Secs:
    size: int
    base: int
    ssa_frame_size: int = 1
    attributes: int = int(Attribute.MODE64BIT)
    xfrm: int = 3
    miscselect: int = 0


def xsave_size(xfrm: int) -> int:
    """Size of the non-compacted XSAVE area for ``xfrm`` (legacy region + header = 576)."""
    end = 576
    for bit, (off, size) in _XSAVE_LAYOUT.items():
        if xfrm >> bit & 1:
            end = max(end, off + size)
    return end


def xfrm_legal(xfrm: int) -> bool:
    """XCR0 rules: x87 and SSE set, only supported bits, and the grouped components
    (AVX-512 needs AVX and all three of its bits; MPX and AMX come in pairs)."""
    if xfrm & 3 != 3 or xfrm & ~SUPPORTED_XFRM:
        return False
    avx512 = xfrm >> 5 & 7
    if avx512 not in (0, 7) or (avx512 and not xfrm & 4):
        return False
    return (xfrm >> 3 & 3) in (0, 3) and (xfrm >> 17 & 3) in (0, 3)


def secs_valid(secs: Secs) -> bool:
    """ECREATE's #GP conditions on the SECS fields, in the SDM's order."""
    size, base, attrs = secs.size, secs.base, secs.attributes
    if not xfrm_legal(secs.xfrm) or secs.miscselect & ~SUPPORTED_MISCSELECT:
        return False
    misc = EXINFO_SIZE if secs.miscselect & 1 else 0
    if secs.ssa_frame_size < 1:
        return False
    if secs.ssa_frame_size * PAGE_SIZE < xsave_size(secs.xfrm) + GPRSGX_SIZE + misc:
        return False
    mode64 = bool(attrs & Attribute.MODE64BIT)
    if base < 0 or size <= 0:
        return False
    if mode64 and not (base < 1 << 47 or base >= (1 << 64) - (1 << 47)):
        return False  # not canonical
    if not mode64 and base >> 32:
        return False
    if size >= (MAX_ENCLAVE_SIZE_64 if mode64 else MAX_ENCLAVE_SIZE_32):
        return False
    if size < 2 * PAGE_SIZE or size & (size - 1) or base & (size - 1):
        return False
    return not attrs & ~SUPPORTED_ATTRIBUTES  # includes INIT: set only by EINIT


@dataclass
class SecsState:
    eid: int
    secs: Secs
    epc: int  # EPC index of the SECS page while resident, -1 while evicted
    measurement: Measurement
    initialized: bool = False
    mrenclave: bytes = b""
    mrsigner: bytes = b""
    isv_prod_id: int = 0
    isv_svn: int = 0
    child_count: int = 0  # valid EPC pages whose EPCM.secs is this SECS
    epoch: int = 1  # the current tracking epoch (CBEPOCH)
    tracking: set[int] = field(default_factory=set)  # LPs still to exit since the last ETRACK
    inside: set[int] = field(default_factory=set)  # LPs executing in the enclave now
    busy_tcs: set[int] = field(default_factory=set)

    @property
    def base(self) -> int:
        return self.secs.base

    @property
    def size(self) -> int:
        return self.secs.size

    @property
    def attributes(self) -> int:
        """SECS.ATTRIBUTES as the enclave sees it (INIT set after EINIT)."""
        return self.secs.attributes | (int(Attribute.INIT) if self.initialized else 0)

    def contains(self, linaddr: int) -> bool:
        """Is ``linaddr`` inside ELRANGE?"""
        return self.secs.base <= linaddr < self.secs.base + self.secs.size

    def measurement_digest(self) -> bytes:
        """MRENCLAVE as EINIT would finalize it now (the signer's offline computation)."""
        return self.mrenclave if self.initialized else self.measurement.peek()

    def tracked(self, bepoch: int) -> bool:
        """Has the epoch in which a page was blocked/modified been fully tracked?

        True once an ETRACK was executed after the page's EBLOCK/EMODPR/EMODT (``bepoch``)
        and every LP that was inside at that ETRACK has exited since. ``bepoch`` is the
        EPCM's 16-bit stamp: the distance is taken modulo 2**16, which is exact because the
        EPCM re-bases old stamps (``epcsim.isa.epcm``, "Why 16 bits of BEPOCH are exact").
        """
        behind = (self.epoch - bepoch) & BEPOCH_MASK
        if behind == 0:
            return False  # no ETRACK since
        if behind >= 2:
            return True  # a later ETRACK could only start once the earlier one completed
        return not self.tracking
