"""ECREATE, EADD, EEXTEND, EINIT, EREMOVE, EPA and MRENCLAVE (SDM Vol.3D ch. 40)."""

import hashlib
import struct

import pytest
from isa_helpers import (
    BASE,
    GP,
    MODULUS,
    PF,
    REG_RW,
    SECS_EPC,
    SECS_FLAGS,
    SIZE,
    VA_EPC,
    create,
    enclave,
    init,
)

from epcsim.arch import (
    PAGE_SIZE,
    SGX_ENCLS_FAULT_FLAG,
    Attribute,
    PageType,
    SgxReturn,
    secinfo_flags,
)
from epcsim.isa import PageInfo, Secs, SgxCpu, Sigstruct


def test_encls_fault_encoding():
    assert GP == SGX_ENCLS_FAULT_FLAG | 13 and PF == SGX_ENCLS_FAULT_FLAG | 14


# -- ECREATE --------------------------------------------------------------------------------
AMX = 3 | (3 << 17)
BAD_SECS = {
    "size below 8K": Secs(size=4096, base=0),
    "size not a power of 2": Secs(size=0x3000, base=0),
    "base not aligned to size": Secs(size=0x10000, base=0x1000),
    "xfrm without x87/SSE": Secs(size=0x10000, base=0, xfrm=1),
    "xfrm unsupported bit": Secs(size=0x10000, base=0, xfrm=3 | 1 << 30),
    "xfrm AVX-512 without AVX": Secs(size=0x10000, base=0, xfrm=3 | 0xE0),
    "ssa_frame_size 0": Secs(size=0x10000, base=0, ssa_frame_size=0),
    "SSA too small for AMX": Secs(size=0x10000, base=0, xfrm=AMX, ssa_frame_size=1),
    "INIT already set": Secs(size=0x10000, base=0, attributes=int(Attribute.MODE64BIT | 1)),
    "unsupported attribute": Secs(size=0x10000, base=0, attributes=4 | 1 << 20),
    "unsupported miscselect": Secs(size=0x10000, base=0, miscselect=2),
    "32-bit enclave above 4G": Secs(size=0x10000, base=1 << 32, attributes=0),
    "non-canonical base": Secs(size=0x10000, base=1 << 50),
}


@pytest.mark.parametrize("name", sorted(BAD_SECS))
def test_ecreate_faults_on_bad_secs(name):
    cpu = SgxCpu(4)
    assert cpu.ecreate(PageInfo(contents=BAD_SECS[name], metadata=SECS_FLAGS), 0) == GP
    assert not cpu.epcm.valid[0] and not cpu.secs_at


def test_ecreate_checks_pageinfo_and_target():
    cpu = SgxCpu(4)
    secs = Secs(size=SIZE, base=BASE)
    reg = secinfo_flags(PageType.REG)
    assert cpu.ecreate(PageInfo(contents=secs, metadata=reg), 0) == GP  # SECINFO.PT
    assert cpu.ecreate(PageInfo(contents=secs, metadata=SECS_FLAGS | 1 << 40), 0) == GP
    assert cpu.ecreate(PageInfo(linaddr=BASE, contents=secs, metadata=SECS_FLAGS), 0) == GP
    assert cpu.ecreate(PageInfo(secs=2, contents=secs, metadata=SECS_FLAGS), 0) == GP
    assert cpu.ecreate(PageInfo(contents=b"not a secs", metadata=SECS_FLAGS), 0) == GP
    assert cpu.ecreate(PageInfo(contents=secs, metadata=SECS_FLAGS), 4) == PF  # not EPC
    amx = Secs(size=SIZE, base=BASE, xfrm=AMX, ssa_frame_size=3)  # 3 pages hold the AMX state
    assert cpu.ecreate(PageInfo(contents=amx, metadata=SECS_FLAGS), 0) == 0
    assert cpu.ecreate(PageInfo(contents=secs, metadata=SECS_FLAGS), 0) == PF  # page in use
    e = cpu.epcm
    assert e.valid[0] and e.pt[0] == PageType.SECS and e.rwx[0] == 0


def test_eids_are_distinct_and_seeded():
    def eids(seed):
        cpu = SgxCpu(4, seed=seed)
        for epc in range(3):
            assert create(cpu, epc, base=epc * SIZE) == 0
        return [cpu.secs_state(i).eid for i in range(3)]

    a = eids(1)
    assert len(set(a)) == 3 and a == eids(1) and a != eids(2)
    assert a[1] == a[0] + 1  # CR_NEXT_EID is a counter (LockedXAdd)


# -- EADD / EEXTEND -------------------------------------------------------------------------
def test_eadd_preconditions():
    cpu = enclave(pages=1, init_=False)
    at = BASE + 0x1000

    def add(epc, linaddr=at, flags=REG_RW, secs=SECS_EPC, contents=5):
        pi = PageInfo(linaddr=linaddr, secs=secs, contents=contents, metadata=flags)
        return cpu.eadd(pi, epc)

    assert add(2) == PF  # target page already valid
    assert add(40) == PF  # not an EPC page
    assert add(9, secs=2) == PF  # PAGEINFO.SECS is a REG page
    assert add(9, secs=-1) == PF
    assert add(9, linaddr=BASE + SIZE) == GP  # outside ELRANGE
    assert add(9, linaddr=BASE - PAGE_SIZE) == GP
    assert add(9, linaddr=at + 8) == GP  # unaligned
    assert add(9, flags=secinfo_flags(PageType.VA)) == GP
    assert add(9, flags=secinfo_flags(PageType.TRIM)) == GP
    assert add(9, flags=secinfo_flags(PageType.REG, 2)) == GP  # W without R
    assert add(9, flags=REG_RW | 1 << 20) == GP  # reserved bit
    assert add(9, flags=secinfo_flags(PageType.REG, 3, 8)) == GP  # PENDING in EADD
    assert cpu.secs_state(SECS_EPC).child_count == 1 and not cpu.epcm.valid[9]
    assert add(9, linaddr=BASE + 0x2000, flags=secinfo_flags(PageType.TCS, 7)) == 0
    assert cpu.epcm.rwx[9] == 0 and cpu.epcm.pt[9] == PageType.TCS  # the CPU forces RWX = 0
    assert add(10) == 0
    e = cpu.epcm
    assert e.linaddr[10] == at and e.secs[10] == SECS_EPC and e.rwx[10] == 3
    assert cpu.secs_state(SECS_EPC).child_count == 3
    assert init(cpu) == 0
    assert add(11, linaddr=BASE + 0x3000) == GP  # initialized


def test_eextend_preconditions():
    cpu = enclave(pages=1, init_=False)
    assert cpu.eextend(SECS_EPC, 2, 16) == GP  # chunk out of range
    assert cpu.eextend(SECS_EPC, 9, 0) == PF  # invalid page
    assert cpu.eextend(SECS_EPC, VA_EPC, 0) == PF  # not REG/TCS
    assert cpu.eextend(2, 2, 0) == PF  # "SECS" is not a SECS
    assert create(cpu, 20, base=0x100000) == 0
    assert cpu.eextend(20, 2, 0) == GP  # the page belongs to another SECS
    assert cpu.eextend(SECS_EPC, 2, 15) == 0
    assert init(cpu) == 0
    assert cpu.eextend(SECS_EPC, 2, 0) == GP  # initialized


# -- MRENCLAVE ------------------------------------------------------------------------------
def build_mr(
    mode="full", content=1, offset=0, perm=3, pt=PageType.REG, measure=True, ssa=1, size=SIZE
):
    cpu = SgxCpu(8, content_mode=mode)
    secs = Secs(size=size, base=size, ssa_frame_size=ssa)  # base aligned to size
    assert cpu.ecreate(PageInfo(contents=secs, metadata=SECS_FLAGS), 0) == 0
    data = bytes([content]) * PAGE_SIZE if mode == "full" else content
    pi = PageInfo(linaddr=size + offset, secs=0, contents=data, metadata=secinfo_flags(pt, perm))
    assert cpu.eadd(pi, 1) == 0
    if measure:
        for c in range(16):
            assert cpu.eextend(0, 1, c) == 0
    return cpu.secs_state(0).measurement_digest()


def test_mrenclave_matches_the_sdm_layout():
    """ECREATE/EADD/EEXTEND blocks exactly as the SDM pseudo-code builds them."""
    data = bytes([7]) * PAGE_SIZE
    h = hashlib.sha256()
    h.update(b"ECREATE\0" + struct.pack("<IQ", 1, SIZE) + bytes(44))
    h.update(b"EADD\0\0\0\0" + struct.pack("<QQ", 0x2000, REG_RW) + bytes(40))
    for c in range(16):
        h.update(b"EEXTEND\0" + struct.pack("<Q", 0x2000 + c * 256) + bytes(48))
        h.update(data[c * 256 : (c + 1) * 256])
    assert build_mr(content=7, offset=0x2000) == h.digest()


def test_mrenclave_is_reproducible_and_sensitive():
    base = build_mr()
    assert build_mr() == base
    for changed in (
        build_mr(content=2),
        build_mr(offset=PAGE_SIZE),
        build_mr(perm=1),
        build_mr(pt=PageType.TCS, perm=0),
        build_mr(measure=False),
        build_mr(ssa=2),
        build_mr(size=2 * SIZE),
    ):
        assert changed != base
    # a TCS is measured with RWX forced to 0, whatever SECINFO said
    assert build_mr(pt=PageType.TCS, perm=7) == build_mr(pt=PageType.TCS, perm=0)


@pytest.mark.parametrize("mode", ["mac", "tag"])
def test_mrenclave_depends_on_the_tag_in_tag_modes(mode):
    assert build_mr(mode, content=1) == build_mr(mode, content=1)
    assert build_mr(mode, content=1) != build_mr(mode, content=2)


# -- EINIT ----------------------------------------------------------------------------------
def test_einit_error_codes_in_sdm_order():
    cpu = enclave(init_=False)
    st = cpu.secs_state(SECS_EPC)
    mr = st.measurement_digest()
    assert cpu.einit(Sigstruct.sign(mr, MODULUS, vendor=5), 0) == SgxReturn.INVALID_SIG_STRUCT
    short = Sigstruct(enclave_hash=mr, modulus=bytes(10))
    short.signature = short.expected_signature()
    assert cpu.einit(short, 0) == SgxReturn.INVALID_SIG_STRUCT
    tampered = Sigstruct.sign(mr, MODULUS)
    tampered.isv_svn = 9  # changed after signing
    assert cpu.einit(tampered, 0) == SgxReturn.INVALID_SIGNATURE
    assert cpu.einit(Sigstruct.sign(bytes(32), MODULUS), 0) == SgxReturn.INVALID_MEASUREMENT
    for mask in (
        {"attributes": 0x2, "attribute_mask": 0x2},  # wants DEBUG
        {"xfrm": 7, "xfrm_mask": 7},  # wants AVX
        {"miscselect": 1, "miscmask": 1},  # wants EXINFO
    ):
        assert cpu.einit(Sigstruct.sign(mr, MODULUS, **mask), 0) == SgxReturn.INVALID_ATTRIBUTE
    assert cpu.einit(None, 0) == GP
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), 2) == PF  # not a SECS
    assert not st.initialized and not st.mrenclave
    ok = Sigstruct.sign(mr, MODULUS, attributes=4, attribute_mask=4, isv_prod_id=3, isv_svn=2)
    assert cpu.einit(ok, 0) == 0
    assert st.initialized and st.mrenclave == mr and st.mrsigner == hashlib.sha256(MODULUS).digest()
    assert (st.isv_prod_id, st.isv_svn) == (3, 2) and st.attributes & Attribute.INIT
    assert cpu.einit(ok, 0) == GP  # already initialized


def test_einit_launch_control():
    cpu = enclave(init_=False)
    mr = cpu.secs_state(SECS_EPC).measurement_digest()
    cpu.lepubkeyhash = bytes(32)  # locked to another signer, no token
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), 0) == SgxReturn.INVALID_EINITTOKEN
    cpu.lepubkeyhash = hashlib.sha256(MODULUS).digest()  # what Linux writes before EINIT
    assert cpu.einit(Sigstruct.sign(mr, MODULUS), 0) == 0


def test_einittokenkey_needs_the_launch_signer():
    cpu = SgxCpu(4)
    secs = Secs(size=SIZE, base=BASE, attributes=int(Attribute.MODE64BIT | Attribute.EINITTOKENKEY))
    assert cpu.ecreate(PageInfo(contents=secs, metadata=SECS_FLAGS), 0) == 0
    cpu.lepubkeyhash = bytes(32)
    assert init(cpu, 0) == SgxReturn.INVALID_ATTRIBUTE


# -- EREMOVE / EPA --------------------------------------------------------------------------
def test_eremove_rules():
    cpu = enclave(pages=2)
    assert cpu.eremove(SECS_EPC) == SgxReturn.CHILD_PRESENT
    assert cpu.eremove(20) == 0  # an invalid page counts as unused
    assert cpu.eremove(40) == PF  # not an EPC page
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    assert cpu.eremove(2) == SgxReturn.ENCLAVE_ACT
    assert cpu.epcm.valid[2]
    assert cpu.eexit(0) == 0
    assert cpu.eremove(2) == 0 and cpu.eremove(3) == 0
    assert not cpu.epcm.valid[2] and cpu.secs_state(SECS_EPC).child_count == 0
    assert cpu.eremove(VA_EPC) == 0 and not cpu.epcm.valid[VA_EPC]
    eid = cpu.secs_state(SECS_EPC).eid
    assert cpu.eremove(SECS_EPC) == 0
    assert not cpu.epcm.valid[SECS_EPC] and eid not in cpu.secs_by_eid


def test_eremove_of_an_accepted_trim_page_ignores_threads_inside():
    cpu = enclave(pages=2)
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == 0 and cpu.etrack(SECS_EPC) == 0
    assert cpu.eenter(0, -1, SECS_EPC) == 0
    assert cpu.eremove(2) == SgxReturn.ENCLAVE_ACT  # not accepted yet: still in use
    assert cpu.eaccept(0, secinfo_flags(PageType.TRIM, 0, 16), BASE, 2) == 0
    assert cpu.eremove(2) == 0  # accepted TRIM: already unused
    assert not cpu.epcm.valid[2]


def test_epa():
    cpu = SgxCpu(4)
    assert cpu.epa(0) == 0
    assert cpu.epcm.pt[0] == PageType.VA and cpu.epcm.valid[0]
    assert all(cpu.va_slot(0, s) == 0 for s in (0, 255, 511))
    assert cpu.epa(0) == PF  # not free
    assert cpu.epa(4) == PF  # not an EPC page


@pytest.mark.parametrize("mode", ["mac", "tag"])
def test_eadd_folds_bytes_into_the_tag(mode):
    cpu = enclave(mode, pages=1, init_=False)
    pi = PageInfo(linaddr=BASE + PAGE_SIZE, secs=SECS_EPC, contents=b"code", metadata=REG_RW)
    assert cpu.eadd(pi, 9) == 0
    cpu.write_tag(10, 0)
    cpu.write(10, 0, b"code")
    assert cpu.content_tag(9) == cpu.content_tag(10) != 0
