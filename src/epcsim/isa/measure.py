"""MRENCLAVE: the SHA-256 measurement ECREATE, EADD and EEXTEND extend (SDM §39.1.3.*).

Each update hashes 64-byte blocks laid out as the SDM gives them:
ECREATE: "ECREATE\\0" | SSAFRAMESIZE (u32) | SIZE (u64) | zero padding;
EADD:    "EADD\\0\\0\\0\\0" | page offset from base (u64) | first 48 bytes of SECINFO;
EEXTEND: "EEXTEND\\0" | offset of the 256-byte chunk (u64) | 48 zero bytes, then the 256 bytes.
EINIT finalizes the hash. Two builds of the same image give the same value; any change to
content, offset, permissions or page type changes it.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np


class Measurement:
    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.final: bytes | None = None

    def ecreate(self, ssa_frame_size: int, size: int) -> None:
        self._h.update(struct.pack("<8sIQ44x", b"ECREATE\0", ssa_frame_size, size))

    def eadd(self, offset: int, secinfo_flags: int) -> None:
        secinfo48 = struct.pack("<Q40x", secinfo_flags)
        self._h.update(struct.pack("<8sQ", b"EADD\0\0\0\0", offset) + secinfo48)

    def eextend(self, offset: int, chunk: bytes) -> None:
        assert len(chunk) == 256
        self._h.update(struct.pack("<8sQ48x", b"EEXTEND\0", offset))
        self._h.update(chunk)

    def update_raw(self, blocks: bytes) -> None:
        """Hash bytes laid out by ``eadd_blocks``/``eextend_headers``: what a run of EADD and
        EEXTEND updates hashes, in the same order (the fast engine's batched ADD_PAGES)."""
        self._h.update(blocks)

    def peek(self) -> bytes:
        return self._h.copy().digest()

    def finalize(self) -> bytes:
        if self.final is None:
            self.final = self._h.digest()
        return self.final


def tag_chunk(tag: int, chunk: int) -> bytes:
    """In ``mac``/``tag`` content modes EEXTEND measures the page's 64-bit tag, expanded
    deterministically to 256 bytes per chunk, so the measurement still depends on content."""
    return hashlib.shake_256(struct.pack("<QI", tag, chunk)).digest(256)


def eadd_blocks(offsets: np.ndarray, secinfo_flags: int) -> np.ndarray:
    """The 64-byte block ``Measurement.eadd`` hashes, for each offset: a (n, 64) array."""
    out = np.zeros((offsets.size, 64), dtype=np.uint8)
    out[:, :8] = np.frombuffer(b"EADD\0\0\0\0", np.uint8)
    out[:, 8:16] = offsets.astype("<u8").view(np.uint8).reshape(-1, 8)
    out[:, 16:24] = np.frombuffer(struct.pack("<Q", secinfo_flags), np.uint8)
    return out


def eextend_headers(offsets: np.ndarray) -> np.ndarray:
    """The 64-byte header ``Measurement.eextend`` hashes before a chunk: a (n, 64) array."""
    out = np.zeros((offsets.size, 64), dtype=np.uint8)
    out[:, :8] = np.frombuffer(b"EEXTEND\0", np.uint8)
    out[:, 8:16] = offsets.astype("<u8").view(np.uint8).reshape(-1, 8)
    return out
