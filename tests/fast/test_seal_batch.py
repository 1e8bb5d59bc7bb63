"""Sealing in one batch (``epcsim.fast.ops.seal_batch``): a batch of ``tag``-mode records is
byte for byte what EWB (``isa.sealing.Sealer`` over ``ewb_header``) writes one record at a
time, and sealing a run's records again in place in the backing store, after ELDU/EWB
cycles, gives exactly the bytes the reference's EWBs left there."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE, PageType
from epcsim.fast.ops import seal_batch as sb
from epcsim.fast.ops import tag_sealing as ts
from epcsim.isa.sealing import Sealer, ewb_header, pack_pcmd, unpack_pcmd
from epcsim.kernel.backing import _pack_flags

U64 = st.integers(0, 2**64 - 1)
FLAGS = st.builds(
    lambda bits, pt: bits | (int(pt) << 8),
    st.integers(0, 0x3F),
    st.sampled_from([PageType.SECS, PageType.TCS, PageType.REG, PageType.TRIM]),
)
RECORD = st.tuples(FLAGS, U64.map(lambda a: a & ~0xFFF), U64, U64, U64, st.integers(1, 2**64 - 1))


def _keys(sealer: Sealer):
    return ts.sealer_keys(sealer._enc_key, sealer._mac_key), *ts.scratch()


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORD, max_size=20), st.integers(0, 2**32))
def test_a_batch_is_ewb_one_record_at_a_time(records, seed):
    sealer = Sealer("tag", seed)
    cols = [np.array([r[j] for r in records], dtype=np.uint64) for j in range(6)]
    ct = np.zeros(len(records), dtype=np.uint64)
    mac = np.ones(len(records), dtype=np.uint64)
    sb.seal_tags(*_keys(sealer), *cols, ct, mac)
    for k, (flags, linaddr, eid, pcmd_eid, tag, version) in enumerate(records):
        one_ct, one_mac = sealer.seal(ewb_header(flags, linaddr, eid, pcmd_eid), tag, version)
        assert int(ct[k]).to_bytes(8, "little") == one_ct
        got_pcmd = pack_pcmd(flags, pcmd_eid, int(mac[k]).to_bytes(8, "little"))
        assert got_pcmd == pack_pcmd(flags, pcmd_eid, one_mac)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255))
def test_unpack_flags_inverts_the_backing_stores_packing(packed):
    flags = int(sb.unpack_flags(packed))
    assert _pack_flags(flags) == packed


def test_sealing_a_runs_records_again_in_place_gives_the_stored_bytes():
    """An enclave twice the EPC, swept twice in random orders: pages are written back,
    loaded (ELDU) and written back again. Every record left in the backing store is then
    clobbered where the driver would leave it unsealed (contents and MAC) and sealed again
    in one batch from trusted state - the tag (what ELDU unseals), the page's address, the
    enclave's EID, the version in its VA slot, the flags in the record's row - and must read
    back exactly as the reference's EWB wrote it."""
    for seed in (1, 7):
        system = epcsim.System(epc="1M", cpus=2, seed=seed, content_mode="tag")
        n = 512
        encl = system.create_enclave("4M")
        assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
        rng = np.random.default_rng(seed)
        for _ in range(2):
            encl.access_pages(rng.permutation(n).tolist(), write=True)
        system.run(until="50ms")
        st_ = system.stats()
        assert st_["eldu"] > n // 2 and st_["ewb"] > n  # out, back in, out again
        cpu, kencl = system.cpu, encl.encl
        f = system.backing[kencl.id]
        eid = cpu.secs_at[kencl.secs_epc].eid
        index = np.array([i for i in sorted(f.records) if i != f.secs_index], dtype=np.int64)
        assert index.size > n // 4
        stored, tags, versions, linaddr = [], [], [], []
        for i in index.tolist():
            rec = f.lookup(i)
            va, slot = f.va_of(i)
            version = cpu.va.version(va, slot)
            header = ewb_header(unpack_pcmd(rec.pcmd).flags, kencl.linaddr(i), eid, eid)
            tag = cpu.sealer.unseal(header, rec.contents, rec.pcmd[112:], version, raw=False)
            assert tag is not None  # a genuine record
            stored.append(rec)
            tags.append(tag)
            versions.append(version)
            linaddr.append(kencl.linaddr(i))
        rows = f.compiled()
        for i in index.tolist():  # what the driver's EWB leaves: flags only
            row, j = f.chunk_row[i // 512], i % 512
            f.contents_rows[row][j] = 0
            f.mac_rows[row][j] = 0xFF
        assert f.lookup(int(index[0])) != stored[0]
        sb.seal_backing(
            *_keys(cpu.sealer),
            f.chunk_row,
            rows.contents,
            rows.mac,
            rows.flags,
            f.high_row,
            rows.high,
            index,
            np.array(tags, dtype=np.uint64),
            np.array(versions, dtype=np.uint64),
            np.array(linaddr, dtype=np.uint64),
            eid,
        )
        assert [f.lookup(i) for i in index.tolist()] == stored


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.booleans()), max_size=40))
def test_compacting_the_deferred_list_keeps_each_marked_index_once_in_order(entries):
    """``compact_marked``: a full list of the records a call wrote loses the indices no
    longer marked (loaded again since) and the repeats, keeps the order of first
    appearance, and leaves the marks as they were."""
    dmark = np.zeros(8, dtype=np.uint8)
    marked = {i for i, m in entries if m}
    for i in marked:
        dmark[i >> 3] |= 1 << (i & 7)
    before = dmark.copy()
    dlist = np.array([i for i, _ in entries] + [0], dtype=np.int32)
    n = sb.compact_marked(dlist, len(entries), dmark)
    want = list(dict.fromkeys(i for i, _ in entries if i in marked))
    assert dlist[:n].tolist() == want
    assert np.array_equal(dmark, before)


def test_sealing_the_marked_records_gives_the_stored_bytes():
    """``seal_marked``, the driver's deferred seal: every record of a run rewritten as the
    driver's EWB leaves it - the content tag where the contents go, the VA slot's version
    where the MAC goes, the flags - and marked, listed with repeats and with indices no
    longer marked among them, is sealed back to exactly the bytes the reference's EWB wrote;
    the marks are cleared, and a record not marked is left alone."""
    system = epcsim.System(epc="1M", cpus=2, seed=3, content_mode="tag")
    n = 512
    encl = system.create_enclave("4M")
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(3)
    for _ in range(2):
        encl.access_pages(rng.permutation(n).tolist(), write=True)
    system.run(until="50ms")
    cpu, kencl = system.cpu, encl.encl
    f = system.backing[kencl.id]
    eid = cpu.secs_at[kencl.secs_epc].eid
    index = [i for i in sorted(f.records) if i != f.secs_index]
    assert len(index) > n // 4
    stored = {i: f.lookup(i) for i in index}
    dmark = np.zeros_like(f.present.bits)
    for i in index[:-1]:  # the last one is not marked: it must stay as it is
        rec = stored[i]
        va, slot = f.va_of(i)
        version = cpu.va.version(va, slot)
        header = ewb_header(unpack_pcmd(rec.pcmd).flags, kencl.linaddr(i), eid, eid)
        tag = cpu.sealer.unseal(header, rec.contents, rec.pcmd[112:], version, raw=False)
        row, j = f.chunk_row[i // 512], i % 512
        f.contents_rows[row][j] = np.frombuffer(int(tag).to_bytes(8, "little"), np.uint8)
        f.mac_rows[row][j] = np.frombuffer(int(version).to_bytes(8, "little"), np.uint8)
        dmark[i >> 3] |= 1 << (i & 7)
    assert f.lookup(index[0]) != stored[index[0]]
    stale = [i for i in range(n) if i not in stored][:5]  # loaded again: not marked
    dlist = np.array(index[:-1] + stale + index[: len(index) // 2], dtype=np.int32)
    rows = f.compiled()
    sealed = sb.seal_marked(
        *_keys(cpu.sealer), dlist, dlist.size, dmark, f.present.bits, f.chunk_row,
        rows.contents, rows.mac, rows.flags, f.high_row, rows.high, kencl.base, eid,
    )  # fmt: skip
    assert sealed == len(index) - 1
    assert not dmark.any()
    assert {i: f.lookup(i) for i in index} == stored
