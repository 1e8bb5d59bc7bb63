"""SGX2: EAUG, EMODPR, EMODT, EACCEPT, EACCEPTCOPY, EMODPE and the EPCM access check, with the
spec §4.5 flows the kernel selftests exercise (spec §15)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_helpers import (
    BASE,
    GP,
    PF,
    SECS_EPC,
    SIZE,
    VA_EPC,
    create,
    enclave,
    evict,
    init,
    reload,
)

from epcsim.arch import PAGE_SIZE, PageType, SgxReturn, secinfo_flags
from epcsim.isa import PageInfo

R, RW, RWX = 1, 3, 7
PENDING, MODIFIED, PR = 8, 16, 32
READ_PF, WRITE_PF = 0x8005, 0x8007
AUG_AT = BASE + 8 * PAGE_SIZE


def reg(perm, state=0):
    return secinfo_flags(PageType.REG, perm, state)


def inside(cpu, lp=0):
    assert cpu.eenter(lp, -1, SECS_EPC) == 0
    return cpu


# -- EAUG -----------------------------------------------------------------------------------
def test_eaug_preconditions_and_result():
    cpu = enclave(init_=False)
    aug = PageInfo(linaddr=AUG_AT, secs=SECS_EPC)
    assert cpu.eaug(aug, 10) == GP  # not initialized
    assert init(cpu) == 0
    assert cpu.eaug(PageInfo(linaddr=BASE + SIZE, secs=SECS_EPC), 10) == GP  # outside
    assert cpu.eaug(PageInfo(linaddr=AUG_AT + 8, secs=SECS_EPC), 10) == GP  # unaligned
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC, contents=b"x"), 10) == GP
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC, metadata=0x203), 10) == GP
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=2), 10) == PF  # not a SECS
    assert cpu.eaug(aug, 2) == PF  # target valid
    assert cpu.eaug(aug, 10) == 0
    e = cpu.epcm
    assert e.pending[10] and e.rwx[10] == RW and e.pt[10] == PageType.REG
    assert e.linaddr[10] == AUG_AT and not e.modified[10] and not e.pr[10]
    assert cpu.content_tag(10) == 0 and cpu.secs_state(SECS_EPC).child_count == 5


# -- EMODPR ---------------------------------------------------------------------------------
def test_emodpr_checks_in_sdm_order():
    cpu = enclave(init_=False)
    assert cpu.emodpr(reg(R), 2) == GP  # enclave not initialized
    assert init(cpu) == 0
    assert cpu.emodpr(reg(2), 2) == GP  # W without R
    assert cpu.emodpr(reg(R) | 1 << 40, 2) == GP  # reserved bit
    assert cpu.emodpr(reg(R), 20) == PF  # invalid page
    assert cpu.emodpr(reg(R), VA_EPC) == PF  # not REG
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    assert cpu.emodpr(reg(R), 10) == SgxReturn.PAGE_NOT_MODIFIABLE  # PENDING
    assert cpu.emodpr(reg(R), 2) == 0
    assert cpu.epcm.rwx[2] == R and cpu.epcm.pr[2]


def test_emodpr_sets_pr_even_when_nothing_is_removed():
    cpu = enclave()
    assert cpu.emodpr(reg(RWX), 2) == 0
    assert cpu.epcm.rwx[2] == RW and cpu.epcm.pr[2]


# -- EMODT ----------------------------------------------------------------------------------
def test_emodt_transitions():
    cpu = enclave()
    e = cpu.epcm
    assert cpu.emodt(secinfo_flags(PageType.REG), 2) == GP  # only TCS or TRIM
    assert cpu.emodt(secinfo_flags(PageType.SECS), 2) == GP
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 20) == PF
    assert cpu.emodt(secinfo_flags(PageType.TRIM), VA_EPC) == PF
    assert cpu.emodt(secinfo_flags(PageType.TCS), 2) == 0  # REG -> TCS
    assert e.pt[2] == PageType.TCS and e.modified[2] and e.rwx[2] == 0 and not e.pr[2]
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == SgxReturn.PAGE_NOT_MODIFIABLE
    assert cpu.emodpr(reg(R), 3) == 0
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 3) == 0  # REG (with PR) -> TRIM
    assert e.pt[3] == PageType.TRIM and not e.pr[3]
    assert cpu.emodt(secinfo_flags(PageType.TCS), 3) == PF  # TRIM -> TCS is not a change
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 10) == SgxReturn.PAGE_NOT_MODIFIABLE


def test_emodt_needs_an_initialized_enclave():
    cpu = enclave(init_=False)
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == GP


# -- EACCEPT --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags",
    [
        reg(RW),  # REG without PENDING or PR
        reg(RW, MODIFIED),
        reg(RW, PENDING | MODIFIED),
        secinfo_flags(PageType.TRIM),  # TRIM without MODIFIED
        secinfo_flags(PageType.TRIM, 0, MODIFIED | PENDING),
        secinfo_flags(PageType.TCS, 0, MODIFIED | PR),
        secinfo_flags(PageType.VA, 0, MODIFIED),
        reg(RW, PENDING) | 1 << 6,  # reserved bit
    ],
)
def test_eaccept_rejects_requests_outside_the_allowed_combinations(flags):
    cpu = inside(enclave())
    assert cpu.eaccept(0, flags, BASE, 2) == GP


def test_eaccept_faults_and_mismatches():
    cpu = enclave()
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    ok = reg(RW, PENDING)
    assert cpu.eaccept(0, ok, AUG_AT, 10) == GP  # not inside an enclave
    inside(cpu)
    assert cpu.eaccept(0, ok, BASE + SIZE, 10) == GP  # outside ELRANGE
    assert cpu.eaccept(0, ok, AUG_AT + 8, 10) == GP  # unaligned
    assert cpu.eaccept(0, ok, AUG_AT, 20) == PF  # invalid page
    assert cpu.eaccept(0, ok, AUG_AT, VA_EPC) == PF  # not this enclave's page
    assert cpu.eaccept(0, reg(R, PENDING), AUG_AT, 10) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    assert cpu.eaccept(0, reg(RW, PR), AUG_AT, 10) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    # SDM: ENCLAVEADDRESS is compared with the other attributes, so a wrong address
    # mismatches rather than faults
    assert cpu.eaccept(0, ok, AUG_AT + PAGE_SIZE, 10) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    assert cpu.epcm.pending[10]
    assert cpu.eaccept(0, ok, AUG_AT, 10) == 0 and not cpu.epcm.pending[10]
    assert cpu.eaccept(0, ok, AUG_AT, 10) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH  # done


def test_eaccept_of_a_blocked_page_faults():
    cpu = enclave()
    assert cpu.emodpr(reg(R), 2) == 0 and cpu.eblock(2) == 0 and cpu.etrack(SECS_EPC) == 0
    inside(cpu)
    assert cpu.eaccept(0, reg(R, PR), BASE, 2) == PF


def test_eaccept_of_another_enclaves_page_faults():
    cpu = enclave()
    assert create(cpu, 20, base=0x100000) == 0 and init(cpu, 20) == 0
    assert cpu.eenter(0, -1, 20) == 0
    assert cpu.eaccept(0, reg(R, PR), 0x100000, 2) == PF


# -- the spec §4.5 flows ----------------------------------------------------------------------
def test_epcm_permissions_flow():
    """Selftest ``epcm_permissions``: EMODPR(R), EACCEPT(R|REG|PR), write -> 0x8007,
    EMODPE(RW), write succeeds."""
    cpu = inside(enclave())
    assert cpu.emodpr(reg(R), 2) == 0
    acc = reg(R, PR)
    assert cpu.eaccept(0, acc, BASE, 2) == SgxReturn.NOT_TRACKED  # no ETRACK yet
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eaccept(0, acc, BASE, 2) == SgxReturn.NOT_TRACKED  # this LP has not exited
    assert cpu.aex(0) == 0 and cpu.eresume(0, -1, SECS_EPC) == 0  # the IPI
    assert cpu.eaccept(0, acc, BASE, 2) == 0 and not cpu.epcm.pr[2]
    assert cpu.access(0, BASE, 2, write=False) == 0
    assert cpu.access(0, BASE + 8, 2, write=True) == WRITE_PF
    assert cpu.emodpe(0, reg(RW), BASE, 2) == 0
    assert cpu.access(0, BASE + 8, 2, write=True) == 0


def test_augment_flow():
    """Selftest ``augment``: EAUG, write -> 0x8007 (PENDING), EACCEPT, write succeeds."""
    cpu = enclave("full")
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    inside(cpu)
    assert cpu.access(0, AUG_AT, 10, write=True) == WRITE_PF
    assert cpu.access(0, AUG_AT, 10, write=False) == READ_PF
    assert cpu.eaccept(0, reg(RW, PENDING), AUG_AT, 10) == 0  # no tracking for PENDING
    assert cpu.access(0, AUG_AT, 10, write=True) == 0
    assert cpu.read(10, 0, PAGE_SIZE) == bytes(PAGE_SIZE)  # EAUG zeroed it


def test_trim_and_remove_flow():
    """Selftests ``remove_added_page_*``: TRIM, a read -> 0x8005 before and after EACCEPT,
    the kernel's EMODPR probe, EREMOVE."""
    cpu = enclave()
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == 0
    # unaccepted TRIM: the probe reports PAGE_NOT_MODIFIABLE (REMOVE_PAGES -> -EPERM)
    assert cpu.emodpr(reg(RWX), 2) == SgxReturn.PAGE_NOT_MODIFIABLE
    assert cpu.etrack(SECS_EPC) == 0
    inside(cpu)
    assert cpu.access(0, BASE, 2, write=False) == READ_PF
    assert cpu.eaccept(0, secinfo_flags(PageType.TRIM, 0, MODIFIED), BASE, 2) == 0
    assert cpu.access(0, BASE, 2, write=False) == READ_PF
    assert cpu.emodpr(reg(RWX), 2) == PF  # accepted TRIM: #PF, the kernel may remove it
    assert cpu.eexit(0) == 0
    assert cpu.eremove(2) == 0 and not cpu.epcm.valid[2]


def test_tcs_create_flow():
    """Selftest ``tcs_create``: EAUG, EACCEPT, EMODT(TCS), EACCEPT(TCS|MODIFIED), enter
    through the new TCS; then TRIM it."""
    cpu = enclave()
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    inside(cpu)
    assert cpu.eaccept(0, reg(RW, PENDING), AUG_AT, 10) == 0
    assert cpu.emodt(secinfo_flags(PageType.TCS), 10) == 0
    assert cpu.eenter(1, 10) == PF  # MODIFIED TCS: not usable yet
    assert cpu.etrack(SECS_EPC) == 0 and cpu.aex(0) == 0 and cpu.eresume(0, -1, 0) == 0
    assert cpu.eaccept(0, secinfo_flags(PageType.TCS, 0, MODIFIED), AUG_AT, 10) == 0
    assert cpu.eenter(1, 10) == 0 and cpu.inside(1) == SECS_EPC
    assert cpu.eexit(1) == 0
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 10) == 0  # TCS -> TRIM


# -- EACCEPTCOPY / EMODPE -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["full", "tag"])
def test_eacceptcopy_fills_a_pending_page(mode):
    cpu = enclave(mode)
    cpu.write(2, 0, b"source")
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 11) == 0
    inside(cpu)
    flags = reg(5, PENDING)
    assert cpu.eacceptcopy(0, reg(2, PENDING), AUG_AT, 11, 2) == GP  # W without R
    assert cpu.eacceptcopy(0, secinfo_flags(PageType.TCS, 5), AUG_AT, 11, 2) == GP
    assert cpu.eacceptcopy(0, flags, AUG_AT, 11, 20) == PF  # source invalid
    assert cpu.eacceptcopy(0, flags, AUG_AT, 3, 2) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    assert cpu.eacceptcopy(0, flags, AUG_AT, 11, 2) == 0
    if mode == "full":
        assert cpu.read(11, 0, 6) == b"source"
    else:
        assert cpu.content_tag(11) == cpu.content_tag(2)
    assert cpu.epcm.rwx[11] == 5 and not cpu.epcm.pending[11]
    assert cpu.eacceptcopy(0, flags, AUG_AT, 11, 2) == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    assert cpu.eaug(PageInfo(linaddr=AUG_AT + PAGE_SIZE, secs=SECS_EPC), 12) == 0
    assert cpu.eacceptcopy(0, flags, AUG_AT + PAGE_SIZE, 13, 12) == PF  # source PENDING


def test_emodpe():
    cpu = enclave()
    assert cpu.emodpe(0, reg(RW), BASE, 2) == GP  # not inside
    inside(cpu)
    assert cpu.emodpr(reg(0), 2) == 0 and cpu.etrack(SECS_EPC) == 0
    assert cpu.emodpe(0, reg(2), BASE, 2) == GP  # W without R on a page without R
    assert cpu.emodpe(0, reg(RWX), BASE + PAGE_SIZE, 2) == PF  # wrong address
    assert cpu.emodpe(0, reg(RWX), BASE, 2) == 0 and cpu.epcm.rwx[2] == RWX
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 10) == 0
    assert cpu.emodpe(0, reg(RWX), AUG_AT, 10) == PF  # PENDING


# -- the access check -------------------------------------------------------------------------
def test_access_codes():
    cpu = enclave()
    assert cpu.access(0, BASE, 2, write=False) == READ_PF  # not inside
    inside(cpu)
    assert cpu.access(0, BASE + 100, 2, write=False) == 0
    assert cpu.access(0, BASE, 2, write=True) == 0
    assert cpu.access(0, BASE, 2, write=False, execute=True) == READ_PF  # no X
    assert cpu.access(0, BASE + PAGE_SIZE, 2, write=False) == READ_PF  # wrong address
    assert cpu.access(0, BASE, 20, write=True) == WRITE_PF  # invalid page
    assert cpu.emodpr(reg(R), 2) == 0  # PR alone: the restricted RWX applies at once
    assert cpu.access(0, BASE, 2, write=False) == 0
    assert cpu.access(0, BASE, 2, write=True) == WRITE_PF
    assert bool(cpu.epcm.allows([2], write=False)[0]) and not cpu.epcm.allows([2], True)[0]


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(-12, 2).map(lambda d: (1 << 16) * 2 + d),
    more=st.integers(0, 14),
    busy=st.booleans(),
)
def test_a_trimmed_page_reloaded_by_eldu_stays_tracked_at_any_epoch(start, more, busy):
    """A TRIM page whose EMODT was tracked, then written back (EWB needs its tracking
    complete) and reloaded by ELDU, is accepted: paging is transparent to the enclave at
    every epoch, also when the SECS's epoch after the ELDU is a multiple of 2**16 or one
    past it with an LP in the tracking set (where a BEPOCH of 0 read "0 epochs behind":
    45 NOT_TRACKED EACCEPTs in an 8 GiB removal run before the fix, 2026-11-26)."""
    cpu = enclave()
    # a fresh enclave has no stamped entry yet, so any starting epoch is a consistent state
    cpu.secs_state(SECS_EPC).epoch = start
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 2) == 0
    assert cpu.etrack(SECS_EPC) == 0
    sealed = evict(cpu, 2)
    for i in range(more):
        if busy and i == more - 1:
            inside(cpu, lp=1)  # LP 1 inside at the last ETRACK: the tracking set not empty
        assert cpu.etrack(SECS_EPC) == 0
    assert reload(cpu, sealed, 2, BASE) == 0
    inside(cpu)
    assert cpu.eaccept(0, secinfo_flags(PageType.TRIM, 0, MODIFIED), BASE, 2) == 0
