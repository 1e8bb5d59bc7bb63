"""The processor's state that every leaf works on: EPCM, VA slots, enclaves, LPs.

The leaves (:mod:`epcsim.isa.encls`, :mod:`epcsim.isa.enclu`) extend ``SgxCore``;
``epcsim.isa.cpu.SgxCpu`` puts them together.
"""

from __future__ import annotations

import numpy as np

from epcsim.isa.epcm import CONTENT_MODES, Epcm
from epcsim.isa.sealing import Sealer
from epcsim.isa.secs import SecsState


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
        self.epcm = Epcm(nr_pages, content_mode)
        self.sealer = Sealer(content_mode, seed)
        self.va: dict[int, np.ndarray] = {}  # VA page -> 512 version slots
        self.secs_by_eid: dict[int, SecsState] = {}
        self.secs_at: dict[int, SecsState] = {}  # resident SECS page -> state
        self.lp_eid = [-1] * nr_lps  # enclave each logical processor is executing in
        self.lp_tcs = [-1] * nr_lps
        rng = np.random.default_rng(seed ^ 0x5EC5)
        self._next_eid = int(rng.integers(1, 1 << 32))
        self._next_version = int(rng.integers(1, 1 << 48))

    # -- helpers shared by the leaves -----------------------------------------------------------
    def _fresh_version(self) -> int:
        """TMP_VER: a fresh, never-zero 64-bit version per EWB (deterministic per seed)."""
        self._next_version = (self._next_version * 6364136223846793005 + 1442695040888963407) & (
            (1 << 64) - 1
        )
        return self._next_version or 1

    def _page_ok(self, epc: int) -> bool:
        return bool(isinstance(epc, int | np.integer) and 0 <= epc < self.nr_pages)

    def _lp_ok(self, lp: int) -> bool:
        return bool(isinstance(lp, int | np.integer) and 0 <= lp < self.nr_lps)

    def secs_state(self, secs_epc: int) -> SecsState:
        """The per-enclave state of a resident SECS page."""
        return self.secs_at[secs_epc]

    def secs_of(self, epc: int) -> SecsState | None:
        owner = int(self.epcm.secs[epc])
        return self.secs_at.get(owner)

    def inside(self, lp: int) -> int:
        """EPC index of the SECS of the enclave ``lp`` executes in, or -1."""
        eid = self.lp_eid[lp]
        if eid < 0:
            return -1
        return self.secs_by_eid[eid].epc

    def lps_inside(self, secs_epc: int) -> set[int]:
        st = self.secs_at.get(secs_epc)
        return set(st.inside) if st else set()

    def va_slot(self, va_epc: int, slot: int) -> int:
        return int(self.va[va_epc][slot])

    # -- contents ---------------------------------------------------------------------------
    def read(self, epc: int, offset: int, n: int) -> bytes:
        if self.epcm.data is None:
            raise ValueError("content_mode: bytes are only kept in 'full' mode")
        return self.epcm.data[epc, offset : offset + n].tobytes()

    def write(self, epc: int, offset: int, data: bytes) -> None:
        """Write into a page. In ``mac``/``tag`` modes the bytes are folded into the tag."""
        if self.epcm.data is not None:
            self.epcm.data[epc, offset : offset + len(data)] = np.frombuffer(data, np.uint8)
        else:
            import hashlib

            h = hashlib.blake2b(
                int(self.epcm.tag[epc]).to_bytes(8, "little")
                + offset.to_bytes(4, "little")
                + bytes(data),
                digest_size=8,
            ).digest()
            self.epcm.tag[epc] = np.uint64(int.from_bytes(h, "little"))

    def content_tag(self, epc: int) -> int:
        return int(self.epcm.tag[epc])

    def write_tag(self, epc: int, tag: int) -> None:
        self.epcm.tag[epc] = np.uint64(tag & ((1 << 64) - 1))
