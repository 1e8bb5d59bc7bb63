"""EWB/ELDU cryptography: encryption, MAC and anti-replay of evicted pages (spec §14.1; SDM
Vol.3D EWB/ELDU pseudo-code).

EWB builds a 128-byte MAC header from the page's SECINFO (PT, RWX, PENDING, MODIFIED, PR), its
linear address and the EID of the owning enclave (0 for a SECS or VA page), then seals the page
under the CPU's paging key (CR_BASE_PK, here derived from the seed) with a fresh 64-bit version
that only the VA slot keeps; the AES-GCM nonce is the version (the SDM's ``TMP_VER << 32``
counter). ELDU rebuilds the header from the PCMD and PAGEINFO and verifies with the version
from the slot; any mismatch - a changed byte, another page's or enclave's record, an older
version - fails.

Header layout (model): SECINFO (64 B, as in the PCMD) | LINADDR u64 | EID u64 |
PCMD.ENCLAVEID u64 | the PCMD's 40 reserved bytes. The SDM MACs SECINFO, the reserved field,
LINADDR and EID; PCMD.ENCLAVEID is only a software handle there. The model MACs it too so that
every byte of the PCMD is integrity-protected.

Three content modes:
* ``full`` - AES-GCM over the real 4 KiB page (ciphertext 4096 B, MAC 16 B in the PCMD).
* ``mac``  - the same AES-GCM, over the page's 64-bit content tag (ciphertext 8 B).
* ``tag``  - a keyed BLAKE2b-64 MAC over header, encrypted tag and version (zero-padded to the
  16-byte MAC field), with the tag encrypted by a keyed keystream: cheap enough for millions
  of evictions, still detects tampering and replay (a forgery needs the key).
Raw 4 KiB pages that have no tag (evicted VA pages) always use the ``full`` path.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from epcsim.arch import PAGE_SIZE, PCMD_SIZE, SECINFO_SIZE

HEADER_SIZE = 128
PCMD_RESERVED = 40


@dataclass
class SealedPage:
    """What EWB writes to untrusted memory: the contents page and the 128-byte PCMD.

    ``contents`` is 4096 bytes in ``full`` mode and the encrypted 8-byte tag in ``mac`` and
    ``tag`` modes. ``pcmd`` is SECINFO (64) | ENCLAVEID (8) | reserved (40) | MAC (16).
    """

    contents: bytes
    pcmd: bytes


@dataclass(frozen=True, slots=True)
class Pcmd:
    """A parsed PCMD."""

    secinfo: bytes  # the 64-byte SECINFO (flags + reserved)
    flags: int
    enclave_id: int
    reserved: bytes  # 40 bytes
    mac: bytes  # 16 bytes


def mac_header(secinfo: bytes, linaddr: int, eid: int, pcmd_eid: int, reserved: bytes) -> bytes:
    """The 128-byte header the MAC covers (layout in the module docstring)."""
    return secinfo + struct.pack("<QQQ", linaddr, eid, pcmd_eid) + reserved


def secinfo_bytes(flags: int) -> bytes:
    """SECINFO as stored in a PCMD: FLAGS (u64) and 56 zero bytes."""
    return struct.pack("<Q56x", flags)


def pack_pcmd(flags: int, enclave_id: int, mac: bytes) -> bytes:
    """SDM PCMD layout: SECINFO (64) | ENCLAVEID (8) | reserved (40) | MAC (16)."""
    out = secinfo_bytes(flags) + struct.pack("<Q40x", enclave_id) + mac.ljust(16, b"\0")
    assert len(out) == PCMD_SIZE
    return out


def unpack_pcmd(pcmd: bytes) -> Pcmd | None:
    """Parse a PCMD, or None if it is not 128 bytes."""
    if len(pcmd) != PCMD_SIZE:
        return None
    (flags,) = struct.unpack_from("<Q", pcmd, 0)
    (eid,) = struct.unpack_from("<Q", pcmd, SECINFO_SIZE)
    return Pcmd(pcmd[:SECINFO_SIZE], flags, eid, pcmd[72:112], pcmd[112:128])


class Sealer:
    """The paging key and the three sealing modes."""

    def __init__(self, mode: str, seed: int):
        self.mode = mode
        key = hashlib.sha256(b"epcsim paging key" + struct.pack("<Q", seed & (2**64 - 1))).digest()
        self._aes = AESGCM(key[:16])
        self._mac_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-mac").digest()
        self._enc_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-enc").digest()

    @staticmethod
    def _nonce(version: int) -> bytes:
        return struct.pack("<Q", version) + b"\0\0\0\0"

    def seal(self, header: bytes, content: bytes | int, version: int) -> tuple[bytes, bytes]:
        """Return (ciphertext, 16-byte MAC). ``content`` is page bytes or a 64-bit tag."""
        if isinstance(content, bytes | bytearray):
            out = self._aes.encrypt(self._nonce(version), bytes(content), header)
            return out[:-16], out[-16:]
        if self.mode == "tag":
            ct = (int(content) ^ self._keystream(header, version)).to_bytes(8, "little")
            return ct, self._tag_mac(header, ct, version)
        out = self._aes.encrypt(self._nonce(version), int(content).to_bytes(8, "little"), header)
        return out[:-16], out[-16:]

    def unseal(
        self, header: bytes, ct: bytes, mac: bytes, version: int, raw: bool
    ) -> bytes | int | None:
        """The plaintext - 4096 bytes if ``raw``, else the 64-bit tag - or None on mismatch."""
        if raw:
            plain = self._aes_open(header, ct, mac, version)
            return plain if plain is not None and len(plain) == PAGE_SIZE else None
        if self.mode == "tag":
            if len(ct) != 8 or mac != self._tag_mac(header, ct, version):
                return None
            return int.from_bytes(ct, "little") ^ self._keystream(header, version)
        plain = self._aes_open(header, ct, mac, version)
        return int.from_bytes(plain, "little") if plain is not None and len(plain) == 8 else None

    def _aes_open(self, header: bytes, ct: bytes, mac: bytes, version: int) -> bytes | None:
        try:
            return self._aes.decrypt(self._nonce(version), bytes(ct) + bytes(mac), header)
        except InvalidTag:
            return None

    def _keystream(self, header: bytes, version: int) -> int:
        ks = hashlib.blake2b(
            struct.pack("<Q", version) + header, digest_size=8, key=self._enc_key
        ).digest()
        return int.from_bytes(ks, "little")

    def _tag_mac(self, header: bytes, ct: bytes, version: int) -> bytes:
        d = hashlib.blake2b(
            header + ct + struct.pack("<Q", version), digest_size=8, key=self._mac_key
        ).digest()
        return d + bytes(8)
