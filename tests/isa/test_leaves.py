"""The hardware model alone: every ENCLS/ENCLU leaf, its error paths, sealing, MRENCLAVE."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.arch import (
    PAGE_SIZE,
    SGX_ENCLS_FAULT_FLAG,
    X86_TRAP_GP,
    X86_TRAP_PF,
    PageType,
    SgxReturn,
    encls_fault,
    secinfo_flags,
)
from epcsim.isa import PageInfo, Secs, SgxCpu, Sigstruct

GP = encls_fault(X86_TRAP_GP)
PF = encls_fault(X86_TRAP_PF)
BASE, SIZE = 0x10000, 0x10000
REG_RW = secinfo_flags(PageType.REG, 3)
MODULUS = bytes(range(256)) + bytes(128)
SECS_EPC, VA_EPC = 0, 1


def enclave(mode="tag", pages=4, init=True, lps=2):
    """ECREATE at EPC 0, EPA at 1, EADD pages at 2.. (linear address BASE + i*4K)."""
    cpu = SgxCpu(32, nr_lps=lps, content_mode=mode, seed=7)
    secs = Secs(size=SIZE, base=BASE)
    assert cpu.ecreate(PageInfo(contents=secs, metadata=secinfo_flags(PageType.SECS)), 0) == 0
    assert cpu.epa(VA_EPC) == 0
    for i in range(pages):
        data = bytes([i + 1]) * PAGE_SIZE if mode == "full" else i + 1
        pi = PageInfo(linaddr=BASE + i * PAGE_SIZE, secs=SECS_EPC, contents=data, metadata=REG_RW)
        assert cpu.eadd(pi, 2 + i) == 0
    if init:
        mr = cpu.secs_state(SECS_EPC).measurement_digest()
        assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == 0
    return cpu


def evict(cpu, epc, slot=0):
    assert cpu.eblock(epc) == 0
    assert cpu.etrack(SECS_EPC) == 0
    ret, sealed = cpu.ewb(PageInfo(), epc, VA_EPC, slot)
    assert ret == 0
    return sealed


def reload(cpu, sealed, epc, linaddr, slot=0):
    pi = PageInfo(linaddr=linaddr, secs=SECS_EPC, contents=sealed.contents, metadata=sealed.pcmd)
    return cpu.eldu(pi, epc, VA_EPC, slot)


def test_encls_fault_encoding():
    assert GP == SGX_ENCLS_FAULT_FLAG | 13 and PF == SGX_ENCLS_FAULT_FLAG | 14


@pytest.mark.parametrize(
    ("secs", "flags"),
    [
        (Secs(size=4096, base=0), secinfo_flags(PageType.SECS)),  # < 8K
        (Secs(size=0x3000, base=0), secinfo_flags(PageType.SECS)),  # not a power of 2
        (Secs(size=0x10000, base=0x1000), secinfo_flags(PageType.SECS)),  # base unaligned
        (Secs(size=0x10000, base=0, xfrm=1), secinfo_flags(PageType.SECS)),
        (Secs(size=0x10000, base=0, ssa_frame_size=0), secinfo_flags(PageType.SECS)),
        (Secs(size=0x10000, base=0), secinfo_flags(PageType.REG)),  # SECINFO.PT not SECS
    ],
)
def test_ecreate_faults_on_bad_secs(secs, flags):
    cpu = SgxCpu(4)
    assert cpu.ecreate(PageInfo(contents=secs, metadata=flags), 0) == GP
    assert not cpu.epcm.valid[0]


def test_eadd_preconditions():
    cpu = enclave(pages=1, init=False)
    ok = PageInfo(linaddr=BASE + 0x1000, secs=SECS_EPC, contents=5, metadata=REG_RW)
    assert cpu.eadd(ok, 2) == GP  # target page already valid
    outside = PageInfo(linaddr=BASE + SIZE, secs=SECS_EPC, contents=5, metadata=REG_RW)
    assert cpu.eadd(outside, 9) == GP
    unaligned = PageInfo(linaddr=BASE + 8, secs=SECS_EPC, contents=5, metadata=REG_RW)
    assert cpu.eadd(unaligned, 9) == GP
    va_type = PageInfo(linaddr=BASE + 0x2000, secs=SECS_EPC, metadata=secinfo_flags(PageType.VA))
    assert cpu.eadd(va_type, 9) == GP
    tcs = PageInfo(linaddr=BASE + 0x2000, secs=SECS_EPC, metadata=secinfo_flags(PageType.TCS, 7))
    assert cpu.eadd(tcs, 9) == 0 and cpu.epcm.rwx[9] == 0  # the CPU forces TCS RWX to 0
    mr = cpu.secs_state(SECS_EPC).measurement_digest()
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == 0
    assert cpu.eadd(ok, 10) == GP  # initialized
    assert cpu.eextend(SECS_EPC, 2, 0) == GP


def test_mrenclave_is_reproducible_and_sensitive():
    def build(content=1, offset=0, perm=3, measure=True):
        cpu = SgxCpu(8, content_mode="full")
        cpu.ecreate(
            PageInfo(contents=Secs(size=SIZE, base=BASE), metadata=secinfo_flags(PageType.SECS)), 0
        )
        pi = PageInfo(
            linaddr=BASE + offset,
            secs=0,
            contents=bytes([content]) * PAGE_SIZE,
            metadata=secinfo_flags(PageType.REG, perm),
        )
        assert cpu.eadd(pi, 1) == 0
        if measure:
            for c in range(16):
                assert cpu.eextend(0, 1, c) == 0
        return cpu.secs_state(0).measurement_digest()

    base = build()
    assert build() == base
    assert build(content=2) != base
    assert build(offset=PAGE_SIZE) != base
    assert build(perm=1) != base
    assert build(measure=False) != base


def test_einit_checks_signature_measurement_attributes():
    cpu = enclave(init=False)
    mr = cpu.secs_state(SECS_EPC).measurement_digest()
    bad_sig = Sigstruct.sign(mr, MODULUS)
    bad_sig.isv_svn = 9  # changed after signing
    assert cpu.einit(bad_sig, SECS_EPC) == SgxReturn.INVALID_SIGNATURE
    assert cpu.einit(Sigstruct.sign(bytes(32), MODULUS), SECS_EPC) == SgxReturn.INVALID_MEASUREMENT
    wrong_attr = Sigstruct.sign(mr, MODULUS, attributes=0x2, attribute_mask=0x2)
    assert cpu.einit(wrong_attr, SECS_EPC) == SgxReturn.INVALID_ATTRIBUTE
    assert not cpu.secs_state(SECS_EPC).initialized
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == 0
    st_ = cpu.secs_state(SECS_EPC)
    assert st_.initialized and st_.mrenclave == mr and len(st_.mrsigner) == 32
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == GP  # already initialized


def test_eremove_rules():
    cpu = enclave(pages=2)
    assert cpu.eremove(SECS_EPC) == SgxReturn.CHILD_PRESENT
    assert cpu.eremove(20) == 0  # an invalid page counts as unused
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    assert cpu.eremove(2) == SgxReturn.ENCLAVE_ACT
    assert cpu.eexit(0) == 0
    assert cpu.eremove(2) == 0 and cpu.eremove(3) == 0
    assert cpu.eremove(VA_EPC) == 0 and not cpu.epcm.valid[VA_EPC]
    assert cpu.eremove(SECS_EPC) == 0


def test_eblock_errors():
    cpu = enclave()
    assert cpu.eblock(20) == SgxReturn.PG_INVLD
    assert cpu.eblock(SECS_EPC) == SgxReturn.PG_IS_SECS
    assert cpu.eblock(VA_EPC) == SgxReturn.NOTBLOCKABLE
    assert cpu.eblock(2) == 0
    assert cpu.eblock(2) == SgxReturn.BLKSTATE


def test_ewb_needs_block_and_tracking():
    cpu = enclave(lps=2)
    ret, _ = cpu.ewb(PageInfo(), 2, VA_EPC, 0)
    assert ret == SgxReturn.PAGE_NOT_BLOCKED
    assert cpu.eblock(2) == 0
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == SgxReturn.NOT_TRACKED  # no ETRACK yet
    assert cpu.eenter(1, -1, SECS_EPC) == 0  # an LP is inside during the ETRACK
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == SgxReturn.NOT_TRACKED
    assert cpu.etrack(SECS_EPC) == SgxReturn.PREV_TRK_INCMPL
    assert cpu.aex(1) == 0  # the IPI's AEX completes the epoch
    ret, sealed = cpu.ewb(PageInfo(), 2, VA_EPC, 0)
    assert ret == 0 and not cpu.epcm.valid[2] and cpu.va_slot(VA_EPC, 0) != 0
    assert len(sealed.pcmd) == 128


def test_ewb_slot_and_secs_rules():
    cpu = enclave()
    evict(cpu, 2, slot=5)
    assert cpu.eblock(3) == 0 and cpu.etrack(SECS_EPC) == 0
    assert cpu.ewb(PageInfo(), 3, VA_EPC, 5)[0] == SgxReturn.VA_SLOT_OCCUPIED
    assert cpu.ewb(PageInfo(), 3, 3, 6)[0] == GP  # VA slot on the page itself
    assert cpu.ewb(PageInfo(), 3, 20, 6)[0] == GP  # not a VA page
    assert cpu.ewb(PageInfo(), SECS_EPC, VA_EPC, 7)[0] == SgxReturn.CHILD_PRESENT


@pytest.mark.parametrize("mode", ["full", "mac", "tag"])
def test_ewb_eldu_round_trip_restores_everything(mode):
    cpu = enclave(mode)
    if mode == "full":
        cpu.write(2, 10, b"hello")
    before = cpu.read(2, 0, PAGE_SIZE) if mode == "full" else cpu.content_tag(2)
    sealed = evict(cpu, 2)
    assert reload(cpu, sealed, 7, BASE) == 0
    after = cpu.read(7, 0, PAGE_SIZE) if mode == "full" else cpu.content_tag(7)
    assert after == before
    e = cpu.epcm
    assert e.valid[7] and e.pt[7] == PageType.REG and e.rwx[7] == 3 and not e.blocked[7]
    assert cpu.va_slot(VA_EPC, 0) == 0  # the version was consumed


@pytest.mark.parametrize("mode", ["full", "mac", "tag"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_detected(mode, data):
    cpu = enclave(mode)
    sealed = evict(cpu, 2)
    field = data.draw(st.sampled_from(["contents", "pcmd"]))
    blob = bytearray(getattr(sealed, field))
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    setattr(sealed, field, bytes(blob))
    ret = reload(cpu, sealed, 7, BASE)
    assert ret in (SgxReturn.MAC_COMPARE_FAIL, GP)
    assert not cpu.epcm.valid[7]


@pytest.mark.parametrize("mode", ["full", "mac", "tag"])
def test_replay_wrong_slot_wrong_address_wrong_enclave(mode):
    cpu = enclave(mode)
    old = evict(cpu, 2, slot=0)
    assert reload(cpu, old, 7, BASE) == 0
    new = evict(cpu, 7, slot=1)
    # replay: the old record, under the slot holding the new version
    assert reload(cpu, old, 8, BASE, slot=1) == SgxReturn.MAC_COMPARE_FAIL
    # the old record under its old, now empty, slot
    assert reload(cpu, old, 8, BASE, slot=0) == GP
    # the right record at another linear address
    assert reload(cpu, new, 8, BASE + PAGE_SIZE, slot=1) == SgxReturn.MAC_COMPARE_FAIL
    assert reload(cpu, new, 8, BASE, slot=1) == 0
    # another enclave's record (same address, same CPU) does not load here
    assert (
        cpu.ecreate(
            PageInfo(contents=Secs(size=SIZE, base=BASE), metadata=secinfo_flags(PageType.SECS)), 20
        )
        == 0
    )
    pi = PageInfo(
        linaddr=BASE, secs=20, contents=b"\1" * PAGE_SIZE if mode == "full" else 1, metadata=REG_RW
    )
    assert cpu.eadd(pi, 21) == 0
    mr = cpu.secs_state(20).measurement_digest()
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), 20) == 0
    assert cpu.eblock(21) == 0 and cpu.etrack(20) == 0
    ret, rec = cpu.ewb(PageInfo(), 21, VA_EPC, 3)
    assert ret == 0
    assert reload(cpu, rec, 9, BASE, slot=3) == SgxReturn.MAC_COMPARE_FAIL  # SECS 0's enclave
    pi = PageInfo(linaddr=BASE, secs=20, contents=rec.contents, metadata=rec.pcmd)
    assert cpu.eldu(pi, 9, VA_EPC, 3) == 0  # its own enclave loads it


def test_all_zero_pcmd_faults():
    cpu = enclave()
    sealed = evict(cpu, 2)
    sealed.pcmd = bytes(128)
    assert reload(cpu, sealed, 7, BASE) == GP


def test_secs_eviction_after_last_child_and_reload():
    cpu = enclave(pages=1)
    child = evict(cpu, 2, slot=0)
    eid = cpu.secs_state(SECS_EPC).eid
    ret, secs_rec = cpu.ewb(PageInfo(), SECS_EPC, VA_EPC, 1)
    assert ret == 0 and not cpu.epcm.valid[SECS_EPC]
    assert (
        cpu.eldu(PageInfo(contents=secs_rec.contents, metadata=secs_rec.pcmd), 12, VA_EPC, 1) == 0
    )
    st_ = cpu.secs_state(12)
    assert st_.eid == eid and st_.initialized  # same enclave, new EPC page
    pi = PageInfo(linaddr=BASE, secs=12, contents=child.contents, metadata=child.pcmd)
    assert cpu.eldu(pi, 13, VA_EPC, 0) == 0 and cpu.epcm.secs[13] == 12


def test_eaug_and_eaccept_flow():
    cpu = enclave(init=False)
    aug = PageInfo(linaddr=BASE + 8 * PAGE_SIZE, secs=SECS_EPC)
    assert cpu.eaug(aug, 10) == GP  # not initialized
    mr = cpu.secs_state(SECS_EPC).measurement_digest()
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == 0
    assert cpu.eaug(PageInfo(linaddr=BASE + SIZE, secs=SECS_EPC), 10) == GP  # outside
    assert cpu.eaug(aug, 10) == 0
    e = cpu.epcm
    assert e.pending[10] and e.rwx[10] == 3 and e.pt[10] == PageType.REG
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    addr = BASE + 8 * PAGE_SIZE
    assert cpu.access(0, addr, 10, write=False) == 0x8005  # PENDING
    flags = secinfo_flags(PageType.REG, 3, 8)
    assert cpu.eaccept(0, secinfo_flags(PageType.REG, 1, 8), addr, 10) == (
        SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    )
    assert cpu.eaccept(0, flags, addr + PAGE_SIZE, 10) == PF  # wrong address
    assert cpu.eaccept(0, flags, addr, 10) == 0
    assert cpu.access(0, addr, 10, write=True) == 0


def test_emodpr_then_eaccept_needs_tracking():
    cpu = enclave()
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    assert cpu.emodpr(secinfo_flags(PageType.REG, 1), 2) == 0
    assert cpu.epcm.rwx[2] == 1 and cpu.epcm.pr[2]
    acc = secinfo_flags(PageType.REG, 1, 32)
    assert cpu.eaccept(0, acc, BASE, 2) == SgxReturn.NOT_TRACKED  # no ETRACK yet
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eaccept(0, acc, BASE, 2) == SgxReturn.NOT_TRACKED  # this LP has not exited
    assert cpu.aex(0) == 0 and cpu.eresume(0, -1, SECS_EPC) == 0
    assert cpu.eaccept(0, acc, BASE, 2) == 0
    assert cpu.access(0, BASE, 2, write=True) == 0x8007
    assert cpu.emodpe(0, secinfo_flags(PageType.REG, 3), BASE, 2) == 0
    assert cpu.access(0, BASE, 2, write=True) == 0


def test_emodt_trim_and_the_emodpr_probe():
    cpu = enclave()
    assert cpu.emodt(secinfo_flags(PageType.REG), 2) == GP  # only TCS or TRIM
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == 0
    e = cpu.epcm
    assert e.pt[2] == PageType.TRIM and e.modified[2] and e.rwx[2] == 0
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == SgxReturn.PAGE_NOT_MODIFIABLE
    # unaccepted TRIM: PAGE_NOT_MODIFIABLE; accepted TRIM: #PF (REMOVE_PAGES's probe)
    assert cpu.emodpr(secinfo_flags(PageType.REG, 7), 2) == SgxReturn.PAGE_NOT_MODIFIABLE
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    assert cpu.access(0, BASE, 2, write=False) == 0x8005
    assert cpu.eaccept(0, secinfo_flags(PageType.TRIM, 0, 16), BASE, 2) == 0
    assert cpu.emodpr(secinfo_flags(PageType.REG, 7), 2) == PF
    assert cpu.eexit(0) == 0
    assert cpu.eremove(2) == 0


def test_eacceptcopy_fills_a_pending_page():
    cpu = enclave("full")
    cpu.write(2, 0, b"source")
    assert cpu.eaug(PageInfo(linaddr=BASE + 9 * PAGE_SIZE, secs=SECS_EPC), 11) == 0
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    flags = secinfo_flags(PageType.REG, 5, 8)
    assert cpu.eacceptcopy(0, flags, BASE + 9 * PAGE_SIZE, 11, 2) == 0
    assert cpu.read(11, 0, 6) == b"source" and cpu.epcm.rwx[11] == 5
    assert not cpu.epcm.pending[11]
    assert cpu.eacceptcopy(0, flags, BASE + 9 * PAGE_SIZE, 11, 2) == (
        SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    )


def test_tcs_entry_rules():
    cpu = enclave(init=False, pages=1)
    tcs = PageInfo(
        linaddr=BASE + 4 * PAGE_SIZE, secs=SECS_EPC, metadata=secinfo_flags(PageType.TCS)
    )
    assert cpu.eadd(tcs, 6) == 0
    mr = cpu.secs_state(SECS_EPC).measurement_digest()
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), SECS_EPC) == 0
    assert cpu.eenter(0, 2, SECS_EPC) == GP  # a REG page is no TCS
    assert cpu.eenter(0, 6) == 0
    assert cpu.eenter(1, 6) == GP  # TCS busy
    assert cpu.eenter(0, 6) == GP  # LP already inside
    assert cpu.inside(0) == SECS_EPC and cpu.lps_inside(SECS_EPC) == {0}
    assert cpu.eexit(0) == 0 and cpu.eenter(1, 6) == 0


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="content_mode"):
        SgxCpu(4, content_mode="zip")
    with pytest.raises(ValueError, match="nr_pages"):
        SgxCpu(0)
    cpu = SgxCpu(4, content_mode="tag")
    with pytest.raises(ValueError, match="content_mode"):
        cpu.read(0, 0, 4)
    assert isinstance(cpu.epcm.tag, np.ndarray)
