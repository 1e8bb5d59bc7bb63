"""SECS contents (what ECREATE is given) and the processor's per-enclave state.

``Secs`` is the architectural input. ``SecsState`` is what the CPU keeps for an enclave while
its SECS exists, resident or evicted: EID, base/size, attributes, the running MRENCLAVE,
INIT, the number of valid child pages (EREMOVE/EWB of the SECS need it to be zero), and the
ETRACK state. Tracking follows the SDM's epoch scheme: ETRACK starts a new epoch and records
the logical processors inside; it is complete once each of them has exited (EEXIT or AEX).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from epcsim.arch import Attribute
from epcsim.isa.measure import Measurement


@dataclass
class Secs:
    size: int
    base: int
    ssa_frame_size: int = 1
    attributes: int = int(Attribute.MODE64BIT)
    xfrm: int = 3
    miscselect: int = 0


@dataclass
class SecsState:
    eid: int
    secs: Secs
    epc: int  # EPC index of the SECS page while resident, -1 while evicted
    measurement: Measurement
    initialized: bool = False
    mrenclave: bytes = b""
    mrsigner: bytes = b""
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

    def measurement_digest(self) -> bytes:
        """MRENCLAVE as EINIT would finalize it now (the signer's offline computation)."""
        return self.mrenclave if self.initialized else self.measurement.peek()

    def tracked(self, bepoch: int) -> bool:
        """Has the epoch in which a page was blocked/modified been fully tracked?"""
        if bepoch >= self.epoch:
            return False  # no ETRACK since
        if bepoch < self.epoch - 1:
            return True  # a later ETRACK could only start once the earlier one completed
        return not self.tracking
