"""The compiled ``tag``-mode sealing (``epcsim.fast.ops.tag_sealing``) against ``hashlib``'s
BLAKE2b and the ISA's ``Sealer``, which stay the reference: the same digests, the same EWB
bytes, the same ELDU verdicts - on generated keys and fields, and on the records a real run's
EWBs wrote."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.ops import tag_sealing as ts
from epcsim.isa.sealing import Sealer, ewb_header

u64 = st.integers(0, 2**64 - 1)
U = np.uint64


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=129, max_size=256))
def test_keyed_blake2b_64_is_hashlibs(key, msg):
    """Two-block messages from a keyed state: RFC 7693's BLAKE2b as ``hashlib`` computes it."""
    words = np.frombuffer(msg.ljust(2 * ts.BLOCK, b"\0"), dtype="<u8").astype(np.uint64)
    h, _ = ts.scratch()
    got = ts.digest2(ts.key_state(key), h, words, len(msg))
    want = hashlib.blake2b(msg, digest_size=8, key=key).digest()
    assert int(got).to_bytes(8, "little") == want


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), u64, u64, u64, u64, u64, u64)
def test_seal_writes_the_bytes_ewb_writes(seed, tag, version, flags, linaddr, eid, pcmd_eid):
    s = Sealer("tag", seed)
    keys, (h, m) = ts.sealer_keys(s._enc_key, s._mac_key), ts.scratch()
    ct, mac = ts.seal(keys, h, m, U(tag), U(version), U(flags), U(linaddr), U(eid), U(pcmd_eid))
    ref_ct, ref_mac = s.seal(ewb_header(flags, linaddr, eid, pcmd_eid), tag, version)
    assert int(ct).to_bytes(8, "little") == ref_ct
    assert int(mac).to_bytes(8, "little") + bytes(8) == ref_mac


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), u64, u64, u64, u64, st.integers(0, 5), st.integers(0, 63))
def test_unseal_gives_elDUs_verdict(seed, tag, version, flags, linaddr, field, bit):
    """A record as EWB sealed it opens to its tag; one changed bit in any input - the
    ciphertext, either half of the MAC, the version (a replay), the flags, the address -
    fails, exactly when ``Sealer.unseal`` fails."""
    s = Sealer("tag", seed)
    keys, (h, m) = ts.sealer_keys(s._enc_key, s._mac_key), ts.scratch()
    eid = pcmd_eid = 7
    ct, mac = ts.seal(keys, h, m, U(tag), U(version), U(flags), U(linaddr), U(eid), U(eid))
    args = [int(ct), int(mac), 0, version, flags, linaddr]
    args[field] ^= 1 << bit
    ct2, lo, hi, ver2, fl2, lin2 = args
    ok, got = ts.unseal(
        keys, h, m, U(ct2), U(lo), U(hi), U(ver2), U(fl2), U(lin2), U(eid), U(pcmd_eid)
    )
    header = ewb_header(fl2, lin2, eid, pcmd_eid)
    want = s.unseal(
        header,
        ct2.to_bytes(8, "little"),
        lo.to_bytes(8, "little") + hi.to_bytes(8, "little"),
        ver2,
        False,
    )
    assert ok == (want is not None)
    assert not ok  # every single-bit change is caught
    ok, got = ts.unseal(
        keys, h, m, U(ct), U(mac), U(0), U(version), U(flags), U(linaddr), U(eid), U(eid)
    )
    assert ok and int(got) == tag


def test_the_records_of_a_run_open_as_eldu_opens_them():
    """Every record in the backing store after a run with evictions: the compiled check,
    fed the PCMD's fields, the page's address and its VA slot's version, accepts it and
    gives the tag the page had when EWB wrote it out (the reference's ELDU gives the same:
    the pages load back with those tags)."""
    system = epcsim.System(epc="256K", cpus=2, seed=5, content_mode="tag")
    encl = system.create_enclave("1M")
    assert encl.add_pages(0, 160 * PAGE_SIZE).ok and encl.init().ok
    pages = np.arange(160)
    assert encl.access_pages(pages, write=True).ok
    system.run(until="5ms")
    cpu = system.sgx.cpu
    keys, (h, m) = ts.sealer_keys(cpu.sealer._enc_key, cpu.sealer._mac_key), ts.scratch()
    f = system.backing[encl.id]
    e = encl.encl
    opened = {}
    (secs,) = cpu.secs_by_eid.values()  # resident or written out: the EID stays
    eid = secs.eid
    for index in f.records:
        if index >= e.nr_pages:
            continue  # the SECS's record: not a tag (its EID) - not checked here
        rec = f.lookup(index)
        flags = int.from_bytes(rec.pcmd[:8], "little")
        pcmd_eid = int.from_bytes(rec.pcmd[64:72], "little")
        lo, hi = (int.from_bytes(rec.pcmd[i : i + 8], "little") for i in (112, 120))
        version = cpu.va.version(rec.va_page, rec.va_slot)
        ok, tag = ts.unseal(
            keys,
            h,
            m,
            U(int.from_bytes(rec.contents, "little")),
            U(lo),
            U(hi),
            U(version),
            U(flags),
            U(e.linaddr(index)),
            U(eid),
            U(pcmd_eid),
        )
        assert ok, index
        opened[index] = int(tag)
    assert len(opened) > 50
    # the reference loads them back: each page's tag is the one the compiled check found
    assert encl.access_pages(np.array(sorted(opened))).ok
    for index, tag in opened.items():
        assert int(cpu.epcm.tag[e.epc[index]]) == tag
