"""The backing store's records (``epcsim.kernel.backing``), compiled: the reclaimer's store
of an EWB output (``__sgx_encl_ewb`` writing into the pages ``sgx_encl_get_backing``
pinned), ELDU's read of a record (``sgx_encl_lookup_backing``) and its truncation after
ELDU (``sgx_encl_truncate_backing_page`` and the PCMD-page check of ``sgx_encl_eldu``).

They work on the file's arrays only: ``present`` (a bit per record) and ``odd`` (a bit
per chunk: the chunk has a record kept raw; both ``BitArray.bits``), the chunk table
(``chunk_row``, ``high_row``: chunk -> row), the rows as numba typed lists
(``EnclaveBacking.compiled()``: ``contents``, ``mac``, ``flags``, ``high``; record ``index``
is entry ``index % CHUNK`` of its chunk's row) and the PCMD pages' ``pcmd_live``,
``pcmd_kept`` and ``pcmd_gen``. What they cannot do they leave untouched and say so in
their return code, for the caller to do in Python before calling again: give a chunk its
row (``NEED_CHUNK``: ``EnclaveBacking.add_chunk``) or its MACs' second halves
(``NEED_HIGH``: ``add_high``), and anything involving a record kept raw (``NEED_PYTHON``:
any record of a chunk holding a tampered one, or a PCMD lost to a truncated page - the raw
side table is a Python dict; both are rare by construction). Rows are only added in
Python, and never move.

Counters stay with the caller: ``backing_store`` returns 1 when the record is new (the
caller adds it to ``nr_records``), ``backing_truncate`` 1 when a record went. The pin
(``_pinned_gen``) is the caller's too: ``backing_pin`` returns the PCMD page's generation
and the caller hands it to ``backing_store`` (a ksgxd batch holds at most 16 pins, and
none outlives the batch, so a compiled driver keeps them next to its batch; the Python
path keeps its dict).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import PCMDS_PER_PAGE
from epcsim.fast.ops.typed_rows import row as row_of

#: pages per chunk of the backing store's table (``epcsim.kernel.backing``): a chunk gets
#: its row of the tables on its first record
CHUNK = 512

#: the record's chunk has no row yet: ``EnclaveBacking.add_chunk``, then call again
NEED_CHUNK = -1
#: the MAC has non-zero second half and the chunk no ``mac_high`` row: ``add_high``
NEED_HIGH = -2
#: the record is (or must be) kept raw: the Python path does it (``store``/``truncate``)
NEED_PYTHON = -3
#: ``backing_lookup``: no record (a shmem hole)
ABSENT = -1
#: ``backing_lookup``: the record is kept raw (``EnclaveBacking.lookup`` reads it)
RAW = -2


@njit(cache=True, nogil=True)
def bit(bits, i):
    """Bit ``i`` of a ``BitArray``'s bytes (8 to a byte, little-endian bit order)."""
    return (bits[i >> 3] >> (i & 7)) & 1 != 0


@njit(cache=True, nogil=True)
def set_bit(bits, i, value):
    if value:
        bits[i >> 3] |= 1 << (i & 7)
    else:
        bits[i >> 3] &= 0xFF ^ (1 << (i & 7))


@njit(cache=True, nogil=True)
def backing_pin(pcmd_gen, index):
    """``sgx_encl_get_backing`` for page ``index``: the reclaimer's reference to the PCMD
    page is to the page as it is now, i.e. to its current generation (bumped by every
    truncation, ``backing_truncate``)."""
    return pcmd_gen[index // PCMDS_PER_PAGE]


@njit(cache=True, nogil=True)
def backing_store(
    present,
    odd,
    chunk_row,
    contents,
    mac,
    flags,
    high_row,
    high,
    pcmd_live,
    pcmd_kept,
    pcmd_gen,
    index,
    pinned_gen,
    ct,
    packed_flags,
    mac16,
):
    """EWB's output for page ``index`` lands in the file: ``ct`` (the contents, the
    table's width), ``packed_flags`` (the PCMD's SECINFO.FLAGS, ``_pack_flags``) and
    ``mac16`` (the PCMD's 16-byte MAC); the rest of the PCMD is the file's ENCLAVEID and
    zeros (the caller's precondition: EWB wrote it for this enclave). ``pinned_gen`` is
    what ``backing_pin`` returned (-1: not pinned). If the PCMD page was truncated since
    the pin, the PCMD goes to the orphaned page (``NEED_PYTHON``: the Python path keeps
    the zero PCMD raw). Returns 1 for a new record, 0 for one overwritten."""
    p = index // PCMDS_PER_PAGE
    if pinned_gen >= 0 and pinned_gen != pcmd_gen[p]:
        return NEED_PYTHON
    if bit(odd, index // CHUNK):  # a raw record in the chunk
        return NEED_PYTHON
    c = index // CHUNK
    row = chunk_row[c]
    if row < 0:
        return NEED_CHUNK
    hrow = high_row[c]
    wide = False
    for k in range(8, 16):
        if mac16[k]:
            wide = True
    if wide and hrow < 0:
        return NEED_HIGH
    new = 0
    if not bit(present, index):
        set_bit(present, index, np.bool_(True))
        pcmd_live[p] += 1
        pcmd_kept[p] = False
        new = 1
    i = index % CHUNK
    row_of(contents, row)[i, :] = ct  # the rows borrowed (``typed_rows``): no refcounting
    row_of(mac, row)[i, :] = mac16[:8]
    if hrow >= 0:
        row_of(high, hrow)[i, :] = mac16[8:]
    row_of(flags, row)[i] = packed_flags
    return new


@njit(cache=True, nogil=True)
def backing_lookup(
    present, odd, chunk_row, contents, mac, flags, high_row, high, index, ct_out, mac_out
):
    """What ELDU reads for page ``index``, compact: the contents into ``ct_out``, the
    16-byte MAC into ``mac_out``; returns the packed SECINFO.FLAGS (0-255), ``ABSENT``
    (no record: a hole) or ``RAW`` (kept raw: the caller reads it in Python)."""
    if not 0 <= index < present.size * 8 or not bit(present, index):
        return ABSENT
    if bit(odd, index // CHUNK):  # a raw record in the chunk
        return RAW
    c = index // CHUNK
    row = chunk_row[c]
    i = index % CHUNK
    ct_out[:] = row_of(contents, row)[i]  # the rows borrowed (``typed_rows``)
    mac_out[:8] = row_of(mac, row)[i]
    hrow = high_row[c]
    if hrow >= 0:
        mac_out[8:] = row_of(high, hrow)[i]
    else:
        mac_out[8:] = 0
    return row_of(flags, row)[i]


@njit(cache=True, nogil=True)
def backing_truncate(present, odd, pcmd_live, pcmd_kept, pcmd_gen, index, pcmd_busy):
    """After ELDU: the contents page goes and the page's PCMD is zeroed; the PCMD page goes
    too (its generation is bumped, ``backing_pin``) once all its entries are zero, unless
    ``pcmd_busy`` (``reclaimer_writing_to_pcmd``), in which case it is kept. Returns 1 if a
    record went, 0 if there was none, ``NEED_PYTHON`` for a record kept raw (untouched)."""
    if not 0 <= index < present.size * 8 or not bit(present, index):
        return 0
    if bit(odd, index // CHUNK):  # a raw record in the chunk
        return NEED_PYTHON
    set_bit(present, index, np.bool_(False))
    p = index // PCMDS_PER_PAGE
    pcmd_live[p] -= 1
    empty = pcmd_live[p] == 0
    pcmd_kept[p] = empty and pcmd_busy
    if empty and not pcmd_busy:
        pcmd_gen[p] += 1
    return 1
