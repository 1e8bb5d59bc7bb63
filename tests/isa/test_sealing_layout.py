"""The sealing helpers' precompiled layouts give the bytes of their definitions (issue 9's
hot path packs them once per EWB/ELDU; the ``tag`` mode's bytes are part of the result)."""

import hashlib
import struct

from hypothesis import given
from hypothesis import strategies as st

from epcsim.isa.sealing import (
    PCMD_RESERVED,
    Sealer,
    ewb_header,
    mac_header,
    pack_pcmd,
    secinfo_bytes,
    unpack_pcmd,
)

U64 = st.integers(0, 2**64 - 1)


@given(U64, U64, U64, U64)
def test_ewb_header_is_the_mac_header_of_a_zero_secinfo_and_reserved(flags, lin, eid, peid):
    expected = mac_header(secinfo_bytes(flags), lin, eid, peid, bytes(PCMD_RESERVED))
    assert ewb_header(flags, lin, eid, peid) == expected
    assert len(expected) == 128


@given(U64, U64, st.binary(min_size=0, max_size=16))
def test_pcmd_layout_round_trips(flags, eid, mac):
    pcmd = pack_pcmd(flags, eid, mac)
    assert pcmd == secinfo_bytes(flags) + struct.pack("<Q40x", eid) + mac.ljust(16, b"\0")
    parsed = unpack_pcmd(pcmd)
    assert parsed is not None
    assert (parsed.flags, parsed.enclave_id) == (flags, eid)
    assert parsed.secinfo == secinfo_bytes(flags) and parsed.reserved == bytes(40)
    assert parsed.mac == mac.ljust(16, b"\0")
    assert unpack_pcmd(pcmd[:-1]) is None


@given(st.integers(0, 2**32), st.binary(min_size=128, max_size=128), st.binary(max_size=8), U64)
def test_tag_mode_mac_and_keystream_are_keyed_blake2b(seed, header, ct, version):
    """The copied pre-keyed states give what a freshly keyed BLAKE2b gives, every time."""
    s = Sealer("tag", seed)
    v = struct.pack("<Q", version)
    for _ in range(2):  # the initial states are copied, never consumed
        mac = hashlib.blake2b(header + ct + v, digest_size=8, key=s._mac_key).digest()
        assert s._tag_mac(header, ct, version) == mac + bytes(8)
        ks = hashlib.blake2b(v + header, digest_size=8, key=s._enc_key).digest()
        assert s._keystream(header, version) == int.from_bytes(ks, "little")
