"""The processor's state that every leaf works on: EPCM, VA slots, enclaves, LPs.

The leaves (:mod:`~epcsim.isa.encls`, :mod:`~epcsim.isa.paging`, :mod:`~epcsim.isa.edmm`,
:mod:`~epcsim.isa.enclu`) extend ``SgxCore``; :class:`epcsim.isa.cpu.SgxCpu` puts them
together. ``PageInfo`` (SDM "PAGEINFO") is the operand block of ECREATE/EADD/EAUG/EWB/ELDU.

Per-SECS state is kept by EID (``secs_by_eid``) so it outlives an eviction of the SECS page:
a reloaded SECS keeps its EID, measurement, INIT and tracking state, as the real SECS page
carries them in its (encrypted) contents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE, X86_TRAP_GP, X86_TRAP_PF, encls_fault
from epcsim.isa.epcm import CONTENT_MODES, Epcm
from epcsim.isa.measure import tag_chunk
from epcsim.isa.sealing import Sealer
from epcsim.isa.secs import SecsState
from epcsim.isa.va import VaPages

#: ``isinstance`` operands as tuples: ``int | np.integer`` written in a call builds a union
#: object on every call (~0.2 us), and these checks run on every page
_INT = (int, np.integer)

GP = encls_fault(X86_TRAP_GP)
PF = encls_fault(X86_TRAP_PF)
U64 = (1 << 64) - 1


@dataclass(slots=True)
class PageInfo:
    """PAGEINFO: linear address, the SECS (an EPC index, -1 for none), contents, metadata.

    ``contents``: the source page (EADD: ``bytes`` in ``full`` mode, an ``int`` tag in
    ``mac``/``tag`` mode, None for zeros; ECREATE: a :class:`Secs`; ELDU: the sealed
    contents). ``metadata``: SECINFO flags (an ``int``), or the 128-byte PCMD for ELDU.
    """

    linaddr: int = 0
    secs: int = -1
    contents: Any = None
    metadata: Any = None


class SgxCore:
    def __init__(self, nr_pages: int, nr_lps: int = 1, content_mode: str = "tag", seed: int = 0):
        if nr_pages < 1:
            raise ValueError(f"nr_pages: at least one EPC page, got {nr_pages}")
        if nr_lps < 1:
            raise ValueError(f"nr_lps: at least one logical processor, got {nr_lps}")
        if content_mode not in CONTENT_MODES:
            raise ValueError(
                f"content_mode: one of {', '.join(CONTENT_MODES)}, got {content_mode!r}"
            )
        self.nr_pages = nr_pages
        self.nr_lps = nr_lps
        self.content_mode = content_mode
        self.seed = seed
        self.epcm = Epcm(nr_pages, content_mode)
        self.sealer = Sealer(content_mode, seed)
        self.va = VaPages()  # VA page -> 512 version slots (uint64)
        self.secs_by_eid: dict[int, SecsState] = {}  # every SECS that exists, resident or not
        self.secs_at: dict[int, SecsState] = {}  # resident SECS page -> state
        self.lp_eid = [-1] * nr_lps  # enclave each logical processor is executing in
        self.lp_tcs = [-1] * nr_lps
        # IA32_SGXLEPUBKEYHASH. None models Flexible Launch Control as Linux uses it: the
        # kernel writes the signer's hash before each EINIT, so any signer may launch.
        self.lepubkeyhash: bytes | None = None
        rng = np.random.default_rng([seed & U64, 0x5EC5])
        self._next_eid = int(rng.integers(1, 1 << 32))  # CR_NEXT_EID
        self._next_version = int(rng.integers(1, 1 << 48))

    # -- helpers shared by the leaves -----------------------------------------------------------
    def _fresh_version(self) -> int:
        """TMP_VER: a fresh, never-zero 64-bit version per EWB (deterministic per seed)."""
        self._next_version = (self._next_version * 6364136223846793005 + 1442695040888963407) & U64
        return self._next_version or 1

    def _page_ok(self, epc: Any) -> bool:
        """Does ``epc`` resolve to an EPC page? (else the leaf raises #PF)"""
        if type(epc) is int:  # the common case, without the isinstance over a union
            return 0 <= epc < self.nr_pages
        return bool(isinstance(epc, _INT) and 0 <= epc < self.nr_pages)

    def _lp_ok(self, lp: Any) -> bool:
        return bool(isinstance(lp, _INT) and 0 <= lp < self.nr_lps)

    def _resident_secs(self, secs_epc: Any) -> SecsState | None:
        """The state behind a valid PT_SECS page, or None (the leaf then raises #PF)."""
        if not self._page_ok(secs_epc):
            return None
        return self.secs_at.get(int(secs_epc))

    def secs_state(self, secs_epc: int) -> SecsState:
        """The per-enclave state of a resident SECS page (KeyError if there is none)."""
        return self.secs_at[secs_epc]

    def secs_of(self, epc: int) -> SecsState | None:
        """The state of the SECS owning EPC page ``epc`` (None for SECS/VA/free pages)."""
        return self.secs_at.get(self.epcm.secs.item(epc))

    def inside(self, lp: int) -> int:
        """EPC index of the SECS of the enclave ``lp`` executes in, or -1."""
        eid = self.lp_eid[lp]
        if eid < 0:
            return -1
        return self.secs_by_eid[eid].epc

    def lps_inside(self, secs_epc: int) -> set[int]:
        """The logical processors executing inside the enclave of ``secs_epc``."""
        st = self.secs_at.get(secs_epc)
        return set(st.inside) if st else set()

    def va_slot(self, va_epc: int, slot: int) -> int:
        """The version stored in a VA slot (0 = empty)."""
        return self.va.version(va_epc, slot)

    # -- contents ---------------------------------------------------------------------------
    def _store_contents(self, epc: int, contents: Any) -> None:
        """Copy a source page into ``epc`` (EADD/ELDU/EAUG). ``None`` gives a zero page.

        ``full`` mode takes up to 4096 bytes (zero padded). ``mac``/``tag`` modes take a
        64-bit tag; ``bytes`` are folded into a tag the way :meth:`write` folds them.
        """
        e = self.epcm
        if e.data is not None:
            if contents is None:
                e.data[epc] = 0
                return
            if isinstance(contents, _INT):
                raise ValueError("contents: 'full' mode needs the page bytes, not a tag")
            raw = bytes(contents)
            if len(raw) > PAGE_SIZE:
                raise ValueError(f"contents: at most {PAGE_SIZE} bytes, got {len(raw)}")
            e.data[epc] = np.frombuffer(raw.ljust(PAGE_SIZE, b"\0"), np.uint8)
            return
        if type(contents) is int:  # a tag (ELDU in mac/tag mode): the hot case
            e.tag[epc] = contents & U64
        elif contents is None:
            e.tag[epc] = 0
        elif isinstance(contents, _INT):
            e.tag[epc] = np.uint64(int(contents) & U64)
        else:
            e.tag[epc] = 0
            self.write(epc, 0, bytes(contents))

    def _chunk(self, epc: int, chunk: int) -> bytes:
        """The 256 bytes EEXTEND measures (the tag expanded in ``mac``/``tag`` mode)."""
        e = self.epcm
        if e.data is not None:
            return e.data[epc, chunk * 256 : (chunk + 1) * 256].tobytes()
        return tag_chunk(int(e.tag[epc]), chunk)

    def read(self, epc: int, offset: int, n: int) -> bytes:
        """Bytes of an EPC page (``full`` mode only)."""
        if self.epcm.data is None:
            raise ValueError("content_mode: bytes are only kept in 'full' mode")
        if offset < 0 or n < 0 or offset + n > PAGE_SIZE:
            raise ValueError(f"offset/n: must stay inside the page, got {offset}+{n}")
        return self.epcm.data[epc, offset : offset + n].tobytes()

    def write(self, epc: int, offset: int, data: bytes) -> None:
        """Write into a page. In ``mac``/``tag`` modes the bytes are folded into the tag
        (BLAKE2b-64 of old tag, offset and data), so content still changes what EWB seals."""
        if offset < 0 or offset + len(data) > PAGE_SIZE:
            raise ValueError(f"offset: the write must stay inside the page, got {offset}")
        e = self.epcm
        if e.data is not None:
            e.data[epc, offset : offset + len(data)] = np.frombuffer(bytes(data), np.uint8)
            return
        h = hashlib.blake2b(
            int(e.tag[epc]).to_bytes(8, "little") + offset.to_bytes(4, "little") + bytes(data),
            digest_size=8,
        ).digest()
        e.tag[epc] = np.uint64(int.from_bytes(h, "little"))

    def content_tag(self, epc: int) -> int:
        """The page's 64-bit content tag (``mac``/``tag`` modes; 0 in ``full`` mode)."""
        return int(self.epcm.tag[epc])

    def write_tag(self, epc: int, tag: int) -> None:
        """Set the page's content tag directly (``mac``/``tag`` modes)."""
        self.epcm.tag[epc] = np.uint64(tag & U64)
