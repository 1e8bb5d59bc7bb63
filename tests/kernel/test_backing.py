"""The shmem backing file: PCMD layout and truncation after ELDU (spec §3.1, §7)."""

from hypothesis import given
from hypothesis import strategies as st

from epcsim.arch import PAGE_SIZE
from epcsim.isa.sealing import pack_pcmd
from epcsim.kernel.backing import CHUNK, BackingRecord, EnclaveBacking


def test_pcmd_layout_follows_the_kernel():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    # 64 pages + SECS; PCMDs start right after the SECS page, 32 per page, 128 B each
    assert f.secs_index == 64
    assert f.pcmd_page_index(0) == 65 and f.pcmd_page_index(31) == 65
    assert f.pcmd_page_index(32) == 66 and f.pcmd_offset(33) == 128
    assert f.file_size == 65 * PAGE_SIZE + (65 * PAGE_SIZE >> 5)


def test_pcmd_page_is_truncated_when_empty_unless_the_reclaimer_writes_to_it():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    for i in (0, 1, 40):
        f.store(i, BackingRecord(b"c", bytes(128)))
    assert f.bytes_used == 3 * PAGE_SIZE + 2 * PAGE_SIZE  # 3 contents + 2 PCMD pages
    f.truncate(0)
    assert f.bytes_used == 2 * PAGE_SIZE + 2 * PAGE_SIZE  # PCMD page 65 still has page 1
    f.truncate(1, pcmd_busy=True)  # a neighbour is BEING_RECLAIMED: keep the PCMD page
    assert f.bytes_used == PAGE_SIZE + 2 * PAGE_SIZE
    f.truncate(40)
    assert f.lookup(40) is None and f.bytes_used == PAGE_SIZE  # only the kept PCMD page


def test_records_live_in_arrays_and_read_back_exactly():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    f.va_of = lambda i: (7, i)  # the enclave's record of the VA slot, shown in the record
    recs = {
        i: BackingRecord(bytes([i]) * 8, pack_pcmd(0x200 | i & 0x3F, 77, bytes([i + 1]) * 16), 7, i)
        for i in (3, 9, 64)
    }
    for i, r in recs.items():
        f.store(i, r)
    assert sorted(f.records) == [3, 9, 64] and len(f.records) == 3 and 9 in f.records
    assert all(f.records[i] == r for i, r in recs.items())  # index 64 is the SECS slot
    # one chunk of the table (pages 3, 9 and 64 are all in chunk 0), no per-page objects
    assert not f._odd and f.chunk_row.tolist() == [0] and len(f.contents_rows) == 1
    assert f.contents_rows[0].shape == (CHUNK, 8)
    # of each PCMD only the flags and the MAC are stored: 18 bytes, not 128 (these MACs
    # use all 16 bytes, so the chunk has the MACs' second halves too)
    assert f.mac_rows[0].shape == (CHUNK, 8) and f.high_rows[0].shape == (CHUNK, 8)
    assert f.high_row.tolist() == [0] and f.flag_rows[0].dtype.itemsize == 1


def test_the_chunk_table_gives_rows_in_order_of_first_use():
    """Chunk ``c`` of the file gets the next row of the tables when its first record is
    stored; record ``index`` is entry ``index % CHUNK`` of its chunk's row, and the
    compiled form (typed lists, ``compiled()``) holds the same arrays, before and after
    rows are added."""
    f = EnclaveBacking(1, 4 * CHUNK * PAGE_SIZE)
    order = [3 * CHUNK + 5, 7, 3 * CHUNK + 6, 2 * CHUNK, 4 * CHUNK]  # the last: the SECS
    recs = {
        i: BackingRecord(i.to_bytes(8, "little"), pack_pcmd(0x200, 9, bytes(16))) for i in order
    }
    f.store(order[0], recs[order[0]])
    rows = f.compiled()  # built with one row; the later rows are appended to it
    for i in order[1:]:
        f.store(i, recs[i])
    assert f.chunk_row.tolist() == [1, -1, 2, 0, 3] and len(f.contents_rows) == 4
    assert f.contents_rows[0][5].tobytes() == recs[3 * CHUNK + 5].contents
    assert f.contents_rows[2][0].tobytes() == recs[2 * CHUNK].contents
    assert all(f.lookup(i).contents == recs[i].contents for i in order)
    assert f.high_row.tolist() == [-1] * 5 and not f.high_rows and len(rows.high) == 0
    assert len(rows.contents) == len(rows.mac) == len(rows.flags) == 4
    rows.contents[3][0, 0] = 0xAB  # the same memory as the Python list's row
    assert f.contents_rows[3][0, 0] == 0xAB


def test_a_tag_mode_mac_takes_8_bytes():
    """``tag`` mode's MAC is 8 bytes and 8 zeros (``Sealer._tag_mac``): a chunk of such
    records keeps 8 bytes per MAC, and a record with a full MAC adds the second halves."""
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    short = pack_pcmd(0x201, 5, b"m" * 8 + bytes(8))
    f.store(1, BackingRecord(b"c" * 8, short))
    assert f.lookup(1).pcmd == short and not f.high_rows
    full = pack_pcmd(0x201, 5, b"n" * 16)
    f.store(2, BackingRecord(b"c" * 8, full))
    f.store(3, BackingRecord(b"c" * 8, short))
    assert [f.lookup(i).pcmd for i in (1, 2, 3)] == [short, full, short]
    assert f.high_row.tolist() == [0] and f.lookup(1).va_page == -1  # no enclave: no slot


@given(
    flags=st.integers(0, 2**64 - 1),
    eid=st.integers(0, 2**64 - 1),
    reserved=st.binary(min_size=40, max_size=40),
    mac=st.binary(min_size=16, max_size=16),
    raw=st.binary(min_size=0, max_size=160),
)
def test_any_pcmd_reads_back_byte_for_byte(flags, eid, reserved, mac, raw):
    """Canonical PCMDs are stored compactly, anything else (tampered) raw: either way the
    bytes ELDU reads are exactly the bytes stored."""
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    f.store(0, BackingRecord(b"c" * 8, pack_pcmd(0x201, 5, b"m" * 16)))  # the file's EID is 5
    pcmd = bytearray(pack_pcmd(flags, eid, mac))
    pcmd[72:112] = reserved
    for i, p in ((1, bytes(pcmd)), (2, raw)):
        f.store(i, BackingRecord(b"d" * 8, p))
        assert f.lookup(i).pcmd == p
        f.tamper(i, pcmd=pack_pcmd(0x202, 5, mac))
        assert f.lookup(i).pcmd == pack_pcmd(0x202, 5, mac)
    assert 1 not in f._odd and f.lookup(0).pcmd == pack_pcmd(0x201, 5, b"m" * 16)


def test_a_record_rewritten_to_another_length_is_kept_as_the_attacker_left_it():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    f.store(5, BackingRecord(b"\1" * 8, b"\2" * 128))
    f.tamper(5, contents=b"\1" * 3)  # truncated ciphertext
    assert f.lookup(5).contents == b"\1" * 3 and f.lookup(5).pcmd == b"\2" * 128
    f.truncate(5)
    assert f.lookup(5) is None and 5 not in f.records


def test_truncated_ciphertext_is_caught_at_eldu_for_that_enclave_only():
    import epcsim

    system = epcsim.System(epc="2M", cpus=2, seed=2)
    victim = system.create_enclave("1M", name="victim")
    assert victim.add_pages(0, 200 * PAGE_SIZE).ok and victim.init().ok
    other = system.create_enclave("4M", name="other")
    assert other.add_pages(0, 600 * PAGE_SIZE).ok and other.init().ok
    system.run(until="50ms")
    page = next(iter(system.backing[victim.id].records))
    system.backing.tamper(victim.id, page, contents=b"")
    assert victim.access(page * PAGE_SIZE).sigbus
    assert other.access(0).ok


@given(st.integers(0, 0xFFFF))
def test_pcmd_flags_fit_a_byte_when_ewb_can_write_them(flags):
    """The flags byte holds every SECINFO.FLAGS EWB writes (SECS/TCS/REG/TRIM, bits 0-5);
    anything else is kept raw - and either way reads back exactly."""
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    f.store(0, BackingRecord(b"c" * 8, pack_pcmd(0x201, 5, b"m" * 16)))
    f.store(1, BackingRecord(b"d" * 8, pack_pcmd(flags, 5, b"n" * 16)))
    assert f.lookup(1).pcmd == pack_pcmd(flags, 5, b"n" * 16)
    compact = flags >> 8 in (0, 1, 2, 4) and not flags & 0xC0
    assert (1 in f._odd) == (not compact)


def test_a_copy_gets_typed_lists_of_its_own_rows():
    """``compiled()``'s typed lists are not copied: a deep copy (or an unpickled file)
    builds them from its own arrays, so writes through one file's lists never reach the
    other's records."""
    import copy
    import pickle

    f = EnclaveBacking(1, 4 * CHUNK * PAGE_SIZE)
    rec = BackingRecord(b"12345678", pack_pcmd(0x201, 9, bytes(16)))
    f.store(CHUNK + 3, rec)
    rows = f.compiled()
    for twin in (copy.deepcopy(f), pickle.loads(pickle.dumps(f))):
        assert twin.lookup(CHUNK + 3) == rec
        twin_rows = twin.compiled()
        assert twin_rows is not rows and len(twin_rows.contents) == 1
        twin_rows.contents[0][3, 0] = ord("x")
        assert twin.lookup(CHUNK + 3).contents == b"x2345678"
        assert f.lookup(CHUNK + 3) == rec


@given(
    width=st.sampled_from([8, 4096]),
    order=st.lists(st.integers(0, 40 * CHUNK - 1), min_size=1, max_size=40),
)
def test_a_sequential_run_gets_rows_ahead_and_only_it(width, order):
    """``add_chunk``'s rows ahead (session ``trim3``): a chunk whose predecessor has a row
    gives the next chunks without one theirs too, up to ``AHEAD_BYTES`` of rows (``tag``'s
    8-byte contents: 15; ``full``'s pages: none), numbered in order; any other chunk gets
    its own row only. Restated here chunk by chunk; every record reads back."""
    from epcsim.kernel.backing import _MAC_LOW, AHEAD_BYTES

    f = EnclaveBacking(1, 40 * CHUNK * PAGE_SIZE)
    rows = f.compiled()
    ahead = AHEAD_BYTES // (CHUNK * (width + _MAC_LOW + 1))
    assert ahead == (15 if width == 8 else 0)
    want = [-1] * f.chunk_row.size
    recs = {}
    for i in [0, *order]:
        c = i // CHUNK
        if want[c] < 0:  # the rows this store adds, restated
            nxt = max(want) + 1
            want[c], nxt = nxt, nxt + 1
            if c > 0 and want[c - 1] >= 0:
                for d in range(c + 1, min(c + 1 + ahead, len(want))):
                    if want[d] < 0:
                        want[d], nxt = nxt, nxt + 1
        recs[i] = BackingRecord(
            i.to_bytes(4, "little") * (width // 4), pack_pcmd(0x200, 9, bytes(16))
        )
        f.store(i, recs[i])
        assert f.chunk_row.tolist() == want
    assert len(f.contents_rows) == len(rows.contents) == max(want) + 1
    assert all(f.lookup(i).contents == r.contents for i, r in recs.items())
