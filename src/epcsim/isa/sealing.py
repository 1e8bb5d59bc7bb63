"""EWB/ELDU cryptography: encryption, MAC and anti-replay of evicted pages (SDM §14.1 of the
spec; SDM Vol.3D EWB/ELDU pseudo-code).

EWB builds a 128-byte MAC header from the page's SECINFO (PT, RWX, PENDING, MODIFIED, PR), its
linear address and the enclave's EID (0 for a SECS, whose own EID goes in PCMD.ENCLAVEID), then
seals the page under the CPU's paging key with a fresh 64-bit version that only the VA slot
keeps. ELDU recomputes everything from the PCMD, PAGEINFO and the version in the slot; any
mismatch - a changed byte, another page's or enclave's record, an older version - fails.

Three content modes:
* ``full`` - AES-GCM over the real 4 KiB page (ciphertext 4096 B, MAC 16 B in the PCMD).
* ``mac``  - the same AES-GCM, over the page's 64-bit content tag (ciphertext 8 B).
* ``tag``  - a keyed BLAKE2b-64 MAC over header, encrypted tag and version, with the tag
  encrypted by a keyed keystream: cheap enough for millions of evictions, still detects
  tampering and replay (a forgery needs the key).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from epcsim.arch import PCMD_SIZE

HEADER_SIZE = 128


@dataclass
class SealedPage:
    """What EWB writes to untrusted memory: the contents page and the 128-byte PCMD."""

    contents: bytes
    pcmd: bytes


def mac_header(secinfo_flags: int, linaddr: int, eid: int, pcmd_eid: int) -> bytes:
    """The 128-byte header the MAC covers; PCMD.ENCLAVEID is bound too, so a SECS record
    cannot be redirected to another enclave."""
    return struct.pack("<QQQQ96x", secinfo_flags, linaddr, eid, pcmd_eid)


def pack_pcmd(secinfo_flags: int, enclave_id: int, mac: bytes) -> bytes:
    """SDM PCMD layout: SECINFO (64) | ENCLAVEID (8) | reserved (40) | MAC (16)."""
    out = struct.pack("<Q56xQ40x", secinfo_flags, enclave_id) + mac.ljust(16, b"\0")
    assert len(out) == PCMD_SIZE
    return out


def unpack_pcmd(pcmd: bytes) -> tuple[int, int, bytes, bool]:
    """(secinfo flags, enclave id, mac, reserved fields are zero)."""
    if len(pcmd) != PCMD_SIZE:
        return 0, 0, b"", False
    flags, eid = struct.unpack_from("<Q56xQ", pcmd)
    reserved_ok = not any(pcmd[8:64]) and not any(pcmd[72:112])
    return flags, eid, pcmd[112:128], reserved_ok


class Sealer:
    """The paging key (CR_BASE_PK) and the three sealing modes."""

    def __init__(self, mode: str, seed: int):
        self.mode = mode
        key = hashlib.sha256(b"epcsim paging key" + struct.pack("<q", seed)).digest()
        self._aes = AESGCM(key[:16])
        self._mac_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-mac").digest()
        self._enc_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-enc").digest()

    @staticmethod
    def _nonce(version: int) -> bytes:
        return struct.pack("<Q", version) + b"\0\0\0\0"

    def seal(self, header: bytes, content: bytes | int, version: int) -> tuple[bytes, bytes]:
        """Return (ciphertext, 16-byte MAC)."""
        if self.mode == "tag":
            ks = hashlib.blake2b(
                struct.pack("<Q", version) + header, digest_size=8, key=self._enc_key
            ).digest()
            ct = (int(content) ^ int.from_bytes(ks, "little")).to_bytes(8, "little")
            return ct, self._tag_mac(header, ct, version)
        plain = content if self.mode == "full" else int(content).to_bytes(8, "little")
        out = self._aes.encrypt(self._nonce(version), bytes(plain), header)
        return out[:-16], out[-16:]

    def unseal(self, header: bytes, ct: bytes, mac: bytes, version: int) -> bytes | int | None:
        """The plaintext (bytes in ``full`` mode, the tag otherwise), or None on mismatch."""
        if self.mode == "tag":
            if len(ct) != 8 or mac != self._tag_mac(header, ct, version):
                return None
            ks = hashlib.blake2b(
                struct.pack("<Q", version) + header, digest_size=8, key=self._enc_key
            ).digest()
            return int.from_bytes(ct, "little") ^ int.from_bytes(ks, "little")
        try:
            plain = self._aes.decrypt(self._nonce(version), bytes(ct) + bytes(mac), header)
        except Exception:
            return None
        if self.mode == "full":
            return plain if len(plain) == 4096 else None
        return int.from_bytes(plain, "little") if len(plain) == 8 else None

    def _tag_mac(self, header: bytes, ct: bytes, version: int) -> bytes:
        d = hashlib.blake2b(
            header + ct + struct.pack("<Q", version), digest_size=8, key=self._mac_key
        ).digest()
        return d + bytes(8)
