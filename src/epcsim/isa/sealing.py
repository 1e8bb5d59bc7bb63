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
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from epcsim.arch import PAGE_SIZE, PCMD_SIZE, SECINFO_SIZE

#: ``isinstance`` operand as a tuple: ``bytes | bytearray`` written in a call builds a union
#: object on every call
_BYTES = (bytes, bytearray)

HEADER_SIZE = 128
PCMD_RESERVED = 40

# Precompiled layouts (EWB and ELDU pack and parse these once per page; a ``struct.Struct``
# saves re-reading the format string, and one pack replaces several concatenations).
_U64 = struct.Struct("<Q")
_HEADER_MID = struct.Struct("<QQQ")  # LINADDR | EID | PCMD.ENCLAVEID
#: the whole header when SECINFO is FLAGS + zeros and the reserved bytes are zero (EWB's)
_HEADER_EWB = struct.Struct("<Q56xQQQ40x")
#: PCMD without its MAC: SECINFO (FLAGS + 56 zero bytes) | ENCLAVEID | 40 reserved bytes
_PCMD_HEAD = struct.Struct("<Q56xQ40x")


@dataclass
class SealedPage:
    """What EWB writes to untrusted memory: the contents page and the 128-byte PCMD.

    ``contents`` is 4096 bytes in ``full`` mode and the encrypted 8-byte tag in ``mac`` and
    ``tag`` modes. ``pcmd`` is SECINFO (64) | ENCLAVEID (8) | reserved (40) | MAC (16).
    """

    contents: bytes
    pcmd: bytes


class Pcmd(NamedTuple):
    """A parsed PCMD (a tuple: ELDU parses one per page, and a frozen dataclass costs
    several times as much to build)."""

    secinfo: bytes  # the 64-byte SECINFO (flags + reserved)
    flags: int
    enclave_id: int
    reserved: bytes  # 40 bytes
    mac: bytes  # 16 bytes


def mac_header(secinfo: bytes, linaddr: int, eid: int, pcmd_eid: int, reserved: bytes) -> bytes:
    """The 128-byte header the MAC covers (layout in the module docstring)."""
    return secinfo + _HEADER_MID.pack(linaddr, eid, pcmd_eid) + reserved


def ewb_header(flags: int, linaddr: int, eid: int, pcmd_eid: int) -> bytes:
    """``mac_header(secinfo_bytes(flags), linaddr, eid, pcmd_eid, bytes(PCMD_RESERVED))``,
    the header EWB MACs (its SECINFO and reserved bytes are zero but for FLAGS), in one pack.
    """
    return _HEADER_EWB.pack(flags, linaddr, eid, pcmd_eid)


def secinfo_bytes(flags: int) -> bytes:
    """SECINFO as stored in a PCMD: FLAGS (u64) and 56 zero bytes."""
    return struct.pack("<Q56x", flags)


def pack_pcmd(flags: int, enclave_id: int, mac: bytes) -> bytes:
    """SDM PCMD layout: SECINFO (64) | ENCLAVEID (8) | reserved (40) | MAC (16)."""
    out = _PCMD_HEAD.pack(flags, enclave_id) + mac.ljust(16, b"\0")
    assert len(out) == PCMD_SIZE
    return out


def unpack_pcmd(pcmd: bytes) -> Pcmd | None:
    """Parse a PCMD, or None if it is not 128 bytes."""
    if len(pcmd) != PCMD_SIZE:
        return None
    flags, eid = _PCMD_HEAD.unpack_from(pcmd)
    return Pcmd(pcmd[:SECINFO_SIZE], flags, eid, pcmd[72:112], pcmd[112:128])


class Sealer:
    """The paging key and the three sealing modes."""

    def __init__(self, mode: str, seed: int):
        self.mode = mode
        key = hashlib.sha256(b"epcsim paging key" + struct.pack("<Q", seed & (2**64 - 1))).digest()
        self._aes = AESGCM(key[:16])
        self._mac_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-mac").digest()
        self._enc_key = hashlib.blake2b(key, digest_size=32, person=b"epcsim-enc").digest()
        # The keyed BLAKE2b states before any data: each MAC and keystream copies one instead
        # of keying a new hash (the same digests; keying costs a compression per call).
        self._mac_init = hashlib.blake2b(digest_size=8, key=self._mac_key)
        self._enc_init = hashlib.blake2b(digest_size=8, key=self._enc_key)

    @staticmethod
    def _nonce(version: int) -> bytes:
        return struct.pack("<Q", version) + b"\0\0\0\0"

    def seal(self, header: bytes, content: bytes | int, version: int) -> tuple[bytes, bytes]:
        """Return (ciphertext, 16-byte MAC). ``content`` is page bytes or a 64-bit tag."""
        if isinstance(content, _BYTES):
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
        """BLAKE2b-64 keyed with the encryption key over version | header."""
        h = self._enc_init.copy()
        h.update(_U64.pack(version))
        h.update(header)
        return int.from_bytes(h.digest(), "little")

    def _tag_mac(self, header: bytes, ct: bytes, version: int) -> bytes:
        """BLAKE2b-64 keyed with the MAC key over header | ciphertext | version, zero-padded
        to the PCMD's 16-byte MAC field."""
        h = self._mac_init.copy()
        h.update(header)
        h.update(ct)
        h.update(_U64.pack(version))
        return h.digest() + bytes(8)
