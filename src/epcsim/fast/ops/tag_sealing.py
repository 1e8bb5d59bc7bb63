"""The ``tag`` content mode's sealing, compiled: EWB's keystream and MAC, ELDU's check
(``epcsim.isa.sealing.Sealer`` in ``tag`` mode, byte for byte).

Why a compiled BLAKE2b. The co-simulation driver of ``DESIGN.md`` runs EWB and ELDU inside
compiled code. In ``tag`` mode each EWB computes two keyed BLAKE2b-64 digests (the keystream
that encrypts the page's content tag, and the MAC) and each ELDU two more; from compiled
code ``hashlib`` cannot be called, and calling back into Python would cost more than the
whole fault the driver is meant to run in a microsecond. No package offers BLAKE2b as a
numba-callable function, so this module restates RFC 7693's BLAKE2b for the two message
shapes the ISA's ``tag`` mode hashes. It is not a new cryptographic design and not a second
source of truth: ``hashlib`` (through ``Sealer``) stays the reference, the Python path keeps
using it, and ``tests/fast/test_tag_sealing.py`` checks these functions against it on
generated keys, headers, tags and versions. With them the driver seals and verifies inline
and writes exactly the bytes the reference writes, so a record it wrote can be loaded by the
reference after a hand-back and a tampered one fails in the driver as it fails there.

The messages (``Sealer._keystream`` / ``Sealer._tag_mac`` over ``ewb_header``):

* header (128 B, EWB's shape): FLAGS (u64) | 56 zero bytes | LINADDR | EID |
  PCMD.ENCLAVEID | 40 zero bytes - as 16 little-endian words: ``flags, 0 x 7, linaddr, eid,
  pcmd_eid, 0 x 5``;
* keystream = BLAKE2b-64 keyed with the encryption key over ``version | header`` (136 B);
* MAC = BLAKE2b-64 keyed with the MAC key over ``header | ciphertext | version`` (144 B),
  zero-padded to the PCMD's 16-byte MAC field.

A keyed BLAKE2b first compresses the key, zero-padded, as a block of its own; that state
(``key_state``) depends only on the key, so it is computed once per ``Sealer``; ``keys`` is
the two of them, ``keys[ENC]`` and ``keys[MAC]``. Each digest is then two compressions, in
scratch arrays the caller owns (``scratch()``: no allocation per record). The rounds are a
loop with the eight G mixes written out, as RFC 7693 3.2 writes them. Measured on this
machine: a seal (two digests) takes ~0.9 us against ~4-6 us for ``Sealer.seal`` from Python
(``benchmarks/sealing.py``); rounds fully unrolled by generated code digested 1.5x faster in
isolation (307 against 466 ns) but took 12 s to compile, against 2.5 s, which every fresh
clone pays. Records whose header has another shape (a PCMD an attacker rewrote: non-zero
reserved bytes, other SECINFO bytes) are the backing store's raw side table, which the
driver leaves to the Python path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_M64 = 0xFFFFFFFFFFFFFFFF

#: RFC 7693 2.6: the initialisation vector (SHA-512's)
IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)

#: RFC 7693 2.7: the message word permutations of the 10 distinct rounds
SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ],
    dtype=np.uint8,
)

#: bytes in a block, and of the digests the ``tag`` mode uses
BLOCK = 128
DIGEST = 8


#: rows of ``keys``: the keyed states of the keystream and of the MAC
ENC, MAC = 0, 1


@njit(cache=True, nogil=True, inline="always")
def _g(a, b, c, d, x, y):
    """RFC 7693 3.1, function G: mix two message words into four state words."""
    a = a + b + x
    d ^= a
    d = (d >> np.uint64(32)) | (d << np.uint64(32))
    c = c + d
    b ^= c
    b = (b >> np.uint64(24)) | (b << np.uint64(40))
    a = a + b + y
    d ^= a
    d = (d >> np.uint64(16)) | (d << np.uint64(48))
    c = c + d
    b ^= c
    b = (b >> np.uint64(63)) | (b << np.uint64(1))
    return a, b, c, d


@njit(cache=True, nogil=True)
def compress(h, m, off, t, last):
    """RFC 7693 3.2, function F: mix the block ``m[off:off + 16]`` into the state ``h`` (in
    place); ``t`` is the byte counter after this block (below 2**64 here), ``last`` the
    final-block flag."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11, v13, v15 = IV[0], IV[1], IV[2], IV[3], IV[5], IV[7]
    v12 = IV[4] ^ np.uint64(t)
    v14 = IV[6] ^ np.uint64(_M64) if last else IV[6]
    for r in range(12):
        s = SIGMA[r % 10]
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[off + s[0]], m[off + s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[off + s[2]], m[off + s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[off + s[4]], m[off + s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[off + s[6]], m[off + s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[off + s[8]], m[off + s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[off + s[10]], m[off + s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[off + s[12]], m[off + s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[off + s[14]], m[off + s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


def key_state(key: bytes) -> np.ndarray:
    """The state of BLAKE2b-64 keyed with ``key`` (1-64 bytes) once the key block is
    compressed: what ``hashlib.blake2b(digest_size=8, key=key)`` holds before any data."""
    if not 1 <= len(key) <= 64:
        raise ValueError(f"key: 1 to 64 bytes, got {len(key)}")
    h = IV.copy()
    # parameter block word 0: digest length, key length, fanout 1, depth 1 (RFC 7693 2.5)
    h[0] ^= np.uint64(0x01010000 | (len(key) << 8) | DIGEST)
    m = np.frombuffer(key.ljust(BLOCK, b"\0"), dtype="<u8").astype(np.uint64)
    compress(h, m, 0, BLOCK, False)
    return h


def sealer_keys(enc_key: bytes, mac_key: bytes) -> np.ndarray:
    """``keys`` for the functions below, from a ``Sealer``'s two BLAKE2b keys."""
    return np.stack([key_state(enc_key), key_state(mac_key)])


def scratch() -> tuple[np.ndarray, np.ndarray]:
    """The working state and message words one caller reuses for every digest."""
    return np.zeros(8, dtype=np.uint64), np.zeros(32, dtype=np.uint64)


# ``keystream`` and ``tag_mac`` pass their constants to ``digest2`` and ``_header`` as int64
# values, not literals: a literal is typed ``Literal[int]`` and compiles the callee once per
# value (tests/README.md, "No literal ints"). ``digest2`` keeps its literals to ``compress``
# (decided by session ``suite3``, 2026-11-26, measured with seal + unseal called 200K
# times from compiled code, host CPU, min of 7): with ``compress``'s offset, counter and
# final flag as int64 the seal costs 0.40 s against 0.29 s (+36%: LLVM specialises the
# 12 rounds on the constants), while ``digest2``'s length and ``_header``'s offset as int64
# cost nothing measurable (0.295-0.301 s against 0.291 s). So ``compress`` is compiled
# three times (two constant sets, and ``key_state``'s int64 call from Python),
# ``digest2`` and ``_header`` once each instead of twice.
_AT0 = np.int64(0)
_AT1 = np.int64(1)
_LEN_KEYSTREAM = np.int64(136)  # version | header
_LEN_MAC = np.int64(144)  # header | ciphertext | version


@njit(cache=True, nogil=True)
def digest2(key_h, h, m, length):
    """BLAKE2b-64 of the ``length``-byte message (129-256 bytes) in ``m`` (32 little-endian
    words, zero-padded), from the keyed state ``key_h``: the digest as a u64."""
    h[:] = key_h
    compress(h, m, 0, 2 * BLOCK, False)
    compress(h, m, 16, BLOCK + length, True)
    return h[0]


@njit(cache=True, nogil=True)
def _header(m, at, flags, linaddr, eid, pcmd_eid):
    """EWB's 128-byte header as 16 words from ``m[at]``: FLAGS, zeros, LINADDR, EID,
    PCMD.ENCLAVEID, zeros."""
    for i in range(16):
        m[at + i] = 0
    m[at] = flags
    m[at + 8] = linaddr
    m[at + 9] = eid
    m[at + 10] = pcmd_eid


@njit(cache=True, nogil=True)
def keystream(keys, h, m, version, flags, linaddr, eid, pcmd_eid):
    """``Sealer._keystream(ewb_header(flags, linaddr, eid, pcmd_eid), version)``: BLAKE2b-64
    over ``version | header`` (136 bytes), as a little-endian u64."""
    m[0] = version
    _header(m, _AT1, flags, linaddr, eid, pcmd_eid)  # its last word lands in the 2nd block
    for i in range(17, 32):
        m[i] = 0
    return digest2(keys[ENC], h, m, _LEN_KEYSTREAM)


@njit(cache=True, nogil=True)
def tag_mac(keys, h, m, flags, linaddr, eid, pcmd_eid, ct, version):
    """``Sealer._tag_mac``'s significant 8 bytes (a little-endian u64; the PCMD's MAC field
    is these and 8 zero bytes): BLAKE2b-64 over ``header | ciphertext | version``."""
    _header(m, _AT0, flags, linaddr, eid, pcmd_eid)
    m[16] = ct
    m[17] = version
    for i in range(18, 32):
        m[i] = 0
    return digest2(keys[MAC], h, m, _LEN_MAC)


@njit(cache=True, nogil=True)
def seal(keys, h, m, tag, version, flags, linaddr, eid, pcmd_eid):
    """EWB's ``Sealer.seal`` of a content tag: ``(ciphertext, mac)`` as u64s - the 8 bytes
    of the contents page and the first 8 of the PCMD's MAC, little-endian."""
    ct = np.uint64(tag) ^ keystream(keys, h, m, version, flags, linaddr, eid, pcmd_eid)
    return ct, tag_mac(keys, h, m, flags, linaddr, eid, pcmd_eid, ct, version)


@njit(cache=True, nogil=True)
def unseal(keys, h, m, ct, mac_lo, mac_hi, version, flags, linaddr, eid, pcmd_eid):
    """ELDU's ``Sealer.unseal`` of a ``tag``-mode record: ``(True, tag)`` when the MAC
    (``mac_lo`` | ``mac_hi``, the 16-byte field as two u64s; the high half is zero in what
    EWB writes) verifies, else ``(False, 0)``."""
    if mac_hi != 0 or tag_mac(keys, h, m, flags, linaddr, eid, pcmd_eid, ct, version) != mac_lo:
        return False, np.uint64(0)
    return True, np.uint64(ct) ^ keystream(keys, h, m, version, flags, linaddr, eid, pcmd_eid)
