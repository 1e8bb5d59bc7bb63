"""EWB's sealing deferred to the end of a compiled call (``DESIGN.md`` item 4, issue 9):
the driver runs its EWBs without computing the ``tag`` mode's keystream and MAC, and at the
end of its call seals, in one batch, the records it wrote that are still in the backing
store (a record it wrote and loaded again in the same call never needs them: it never left
trusted state). The bytes must be exactly what EWB writes one record at a time, so that the
reference can load them after a hand-back: each record is sealed with
``tag_sealing.seal`` (byte for byte ``isa.sealing.Sealer``'s), from its content tag, its
PCMD fields and the version in its VA slot.

``seal_tags`` seals arrays of fields; ``seal_backing`` seals records in place in the backing
store's rows (``EnclaveBacking.compiled()``), reading each one's SECINFO.FLAGS from the
row (the driver's EWB stored the flags, a placeholder contents and MAC; see
``ops.backing.backing_store``). Both are checked against ``Sealer`` per record, and against
a run's backing store after ELDU/EWB cycles (``tests/fast/test_seal_batch.py``).

``defer``/``seal_marked`` are the form the driver uses (``driver/kstate.py``, "Deferred
sealing"): the record's row itself holds what the seal needs - the content tag where the
contents go, the VA slot's version where the MAC's first 8 bytes go, the flags - its bit
is set in a mark array (one bit per record of the file) and its index kept in a list;
``seal_marked`` seals every record still marked and clears the marks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.fast.ops.backing import CHUNK, bit, set_bit
from epcsim.fast.ops.tag_sealing import seal
from epcsim.kernel.backing import _PT_OF_CODE

_PT0, _PT1, _PT2, _PT3 = _PT_OF_CODE


@njit(cache=True, nogil=True)
def unpack_flags(packed):
    """SECINFO.FLAGS from the backing store's one-byte form (``kernel.backing._pack_flags``):
    R/W/X, PENDING, MODIFIED, PR in bits 0-5, the page type (SECS/TCS/REG/TRIM) from the
    code in bits 6-7."""
    code = packed >> 6
    if code == 0:
        pt = _PT0
    elif code == 1:
        pt = _PT1
    elif code == 2:
        pt = _PT2
    else:
        pt = _PT3
    return (packed & 0x3F) | (pt << 8)


@njit(cache=True, nogil=True)
def seal_tags(keys, h, m, flags, linaddr, eid, pcmd_eid, tags, versions, ct_out, mac_out):
    """Seal record ``k`` (SECINFO.FLAGS ``flags[k]``, LINADDR ``linaddr[k]``, the header's
    EID ``eid[k]``, PCMD.ENCLAVEID ``pcmd_eid[k]``, content tag ``tags[k]``, VA slot
    version ``versions[k]``; all ``uint64``) for each ``k``: ``ct_out[k]`` is the contents
    page (8 bytes, little-endian), ``mac_out[k]`` the first 8 bytes of the PCMD's MAC (the
    other 8 are zero). ``keys``, ``h``, ``m``: ``tag_sealing.sealer_keys`` and ``scratch``."""
    for k in range(tags.size):
        ct, mac = seal(keys, h, m, tags[k], versions[k], flags[k], linaddr[k], eid[k], pcmd_eid[k])
        ct_out[k] = ct
        mac_out[k] = mac


@njit(cache=True, nogil=True)
def _put_u64(row, i, value):
    for b in range(8):
        row[i, b] = (value >> (8 * b)) & 0xFF


@njit(cache=True, nogil=True)
def seal_backing(
    keys, h, m, chunk_row, contents, mac, flags, high_row, high, index, tags, versions, linaddr, eid
):
    """Seal the records of pages ``index`` (compact records of enclave ``eid``'s REG, TCS or
    TRIM pages, contents 8 bytes wide) in place: record ``k`` gets the contents and MAC EWB
    writes for content tag ``tags[k]``, VA slot version ``versions[k]``, LINADDR
    ``linaddr[k]`` and the SECINFO.FLAGS already in its row; the MAC's second half is zero
    (where the chunk has ``high`` bytes, they are cleared)."""
    # every word of ``seal`` as uint64 and ``unpack_flags``' byte as int64, the types the
    # driver's ``seal_marked`` passes: one compiled signature each (tests/README.md)
    e = np.uint64(eid)
    for k in range(index.size):
        c = index[k] // CHUNK
        i = index[k] % CHUNK
        row = chunk_row[c]
        secinfo = np.uint64(unpack_flags(np.int64(flags[row][i])))
        ct, mc = seal(keys, h, m, tags[k], versions[k], secinfo, linaddr[k], e, e)
        _put_u64(contents[row], i, ct)
        _put_u64(mac[row], i, mc)
        hrow = high_row[c]
        if hrow >= 0:
            high[hrow][i, :] = 0


@njit(cache=True, nogil=True)
def _get_u64(row, i):
    v = np.uint64(0)
    for b in range(8):
        v |= np.uint64(row[i, b]) << np.uint64(8 * b)
    return v


@njit(cache=True, nogil=True)
def seal_marked(
    keys, h, m, dlist, n, dmark, present, chunk_row, contents, mac, flags, high_row, high, base, eid
):
    """Seal in place every record whose index is in ``dlist[:n]`` and whose bit is set in
    ``dmark`` - a record the driver wrote unsealed: its row holds the content tag (contents)
    and the VA slot's version (the MAC's first 8 bytes) - with the bytes EWB writes
    (LINADDR ``base + (index << 12)``, the header's EID and PCMD.ENCLAVEID ``eid``, the
    row's SECINFO.FLAGS), and clear the marks. An index listed twice is sealed once (its
    mark is cleared at the first). Returns the number of records sealed."""
    sealed = 0
    e = np.uint64(eid)
    for k in range(n):
        index = np.int64(dlist[k])  # (an int32 list: bit/set_bit take int64, one signature)
        if not bit(dmark, index):
            continue
        set_bit(dmark, index, np.bool_(False))
        if not bit(present, index):
            continue  # (not reached: ELDU clears the mark when it takes the record)
        c = index // CHUNK
        i = index % CHUNK
        row = chunk_row[c]
        tag = _get_u64(contents[row], i)
        version = _get_u64(mac[row], i)
        secinfo = unpack_flags(np.int64(flags[row][i]))
        linaddr = np.uint64(base) + (np.uint64(index) << np.uint64(12))
        ct, mc = seal(keys, h, m, tag, version, np.uint64(secinfo), linaddr, e, e)
        _put_u64(contents[row], i, ct)
        _put_u64(mac[row], i, mc)
        hrow = high_row[c]
        if hrow >= 0:
            high[hrow][i, :] = 0
        sealed += 1
    return sealed


@njit(cache=True, nogil=True)
def compact_marked(dlist, n, dmark):
    """``dlist[:n]`` without the indices no longer marked (loaded again since) and without
    repeats, in order; returns the new length."""
    out = 0
    for k in range(n):
        index = np.int64(dlist[k])
        if bit(dmark, index):
            set_bit(dmark, index, np.bool_(False))  # (a repeat further on is then skipped)
            dlist[out] = index
            out += 1
    for k in range(out):
        set_bit(dmark, np.int64(dlist[k]), np.bool_(True))
    return out
