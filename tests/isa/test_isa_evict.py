"""EBLOCK, ETRACK, EWB, ELDU/ELDB and the sealing (spec §14, §14.1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_helpers import (
    BASE,
    GP,
    MODES,
    PF,
    SECS_EPC,
    VA_EPC,
    create,
    enclave,
    evict,
    init,
    page_content,
    reload,
    snapshot,
)

from epcsim.arch import PAGE_SIZE, PageType, SgxReturn, secinfo_flags
from epcsim.isa import PageInfo, SgxCpu


# -- EBLOCK / ETRACK ------------------------------------------------------------------------
def test_eblock_errors():
    cpu = enclave()
    assert cpu.eblock(20) == SgxReturn.PG_INVLD
    assert cpu.eblock(SECS_EPC) == SgxReturn.PG_IS_SECS
    assert cpu.eblock(VA_EPC) == SgxReturn.NOTBLOCKABLE
    assert cpu.eblock(99) == PF
    assert cpu.eblock(2) == 0 and cpu.epcm.blocked[2]
    assert cpu.eblock(2) == SgxReturn.BLKSTATE


def test_etrack_waits_for_the_lps_inside():
    cpu = enclave(lps=3)
    assert cpu.etrack(2) == PF  # not a SECS
    assert cpu.eenter(0, -1, SECS_EPC) == 0 and cpu.eenter(1, -1, SECS_EPC) == 0
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eenter(2, -1, SECS_EPC) == 0  # entered after the ETRACK: not waited for
    assert cpu.etrack(SECS_EPC) == SgxReturn.PREV_TRK_INCMPL
    assert cpu.eexit(0) == 0
    assert cpu.etrack(SECS_EPC) == SgxReturn.PREV_TRK_INCMPL
    assert cpu.aex(1) == 0
    assert cpu.etrack(SECS_EPC) == 0  # LP 2 is inside: it now has to exit
    assert cpu.etrack(SECS_EPC) == SgxReturn.PREV_TRK_INCMPL


# -- EWB ------------------------------------------------------------------------------------
def test_ewb_needs_block_and_tracking():
    cpu = enclave(lps=2)
    ret, rec = cpu.ewb(PageInfo(), 2, VA_EPC, 0)
    assert ret == SgxReturn.PAGE_NOT_BLOCKED and rec is None
    assert cpu.eblock(2) == 0
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == SgxReturn.NOT_TRACKED  # no ETRACK yet
    assert cpu.eenter(1, -1, SECS_EPC) == 0  # an LP is inside during the ETRACK
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == SgxReturn.NOT_TRACKED
    assert cpu.epcm.valid[2] and cpu.va_slot(VA_EPC, 0) == 0  # a failed EWB changed nothing
    assert cpu.aex(1) == 0  # the IPI's AEX completes the epoch
    ret, sealed = cpu.ewb(PageInfo(), 2, VA_EPC, 0)
    assert ret == 0 and not cpu.epcm.valid[2] and cpu.va_slot(VA_EPC, 0) != 0
    assert len(sealed.pcmd) == 128 and cpu.secs_state(SECS_EPC).child_count == 3


def test_ewb_blocked_before_an_older_etrack_is_not_tracked():
    cpu = enclave()
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eblock(2) == 0  # blocked after the only ETRACK
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == SgxReturn.NOT_TRACKED
    assert cpu.etrack(SECS_EPC) == 0
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == 0


def test_ewb_operand_checks():
    cpu = enclave()
    assert cpu.eblock(3) == 0 and cpu.etrack(SECS_EPC) == 0
    assert cpu.ewb(PageInfo(), 3, 3, 6)[0] == GP  # VA slot on the page itself
    assert cpu.ewb(PageInfo(), 3, 20, 6)[0] == PF  # VA operand not a VA page
    assert cpu.ewb(PageInfo(), 3, 2, 6)[0] == PF
    assert cpu.ewb(PageInfo(), 20, VA_EPC, 6)[0] == PF  # invalid page
    assert cpu.ewb(PageInfo(), 3, VA_EPC, 512)[0] == GP  # slot outside the VA page
    assert cpu.ewb(PageInfo(linaddr=BASE), 3, VA_EPC, 6)[0] == GP  # PAGEINFO.LINADDR != 0
    assert cpu.ewb(PageInfo(secs=SECS_EPC), 3, VA_EPC, 6)[0] == GP
    assert cpu.ewb(PageInfo(), SECS_EPC, VA_EPC, 7)[0] == SgxReturn.CHILD_PRESENT
    assert cpu.epcm.valid[3] and not cpu.va[VA_EPC].any()


def test_ewb_into_an_occupied_slot_overwrites_it():
    """SDM: VA_SLOT_OCCUPIED is reported (CF) but the page is still written out and the
    slot takes the new version, so the record whose version was there can no longer load."""
    cpu = enclave()
    first = evict(cpu, 2, slot=5)
    assert cpu.eblock(3) == 0 and cpu.etrack(SECS_EPC) == 0
    ret, second = cpu.ewb(PageInfo(), 3, VA_EPC, 5)
    assert ret == SgxReturn.VA_SLOT_OCCUPIED and second is not None
    assert not cpu.epcm.valid[3]
    assert reload(cpu, first, 10, BASE, slot=5) == SgxReturn.MAC_COMPARE_FAIL
    assert reload(cpu, second, 10, BASE + PAGE_SIZE, slot=5) == 0


# -- ELDU -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_ewb_eldu_round_trip_restores_everything(mode):
    cpu = enclave(mode)
    cpu.write(2, 10, b"hello")  # folded into the tag in mac/tag modes
    assert cpu.emodpr(secinfo_flags(PageType.REG, 1), 2) == 0  # PR=1, R only
    before = snapshot(cpu, 2)
    sealed = evict(cpu, 2)
    assert reload(cpu, sealed, 7, BASE) == 0
    assert snapshot(cpu, 7) == before
    e = cpu.epcm
    assert e.valid[7] and e.pt[7] == PageType.REG and e.rwx[7] == 1 and e.pr[7]
    assert not e.blocked[7] and e.secs[7] == SECS_EPC and e.linaddr[7] == BASE
    assert cpu.va_slot(VA_EPC, 0) == 0  # the version was consumed
    assert cpu.secs_state(SECS_EPC).child_count == 4


def test_full_mode_is_byte_exact():
    cpu = enclave("full")
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes()
    cpu.write(2, 0, data)
    sealed = evict(cpu, 2)
    assert len(sealed.contents) == PAGE_SIZE and sealed.contents != data  # encrypted
    assert reload(cpu, sealed, 9, BASE) == 0 and cpu.read(9, 0, PAGE_SIZE) == data


def test_eldb_leaves_the_page_blocked():
    cpu = enclave()
    sealed = evict(cpu, 2)
    assert reload(cpu, sealed, 7, BASE, blocked=True) == 0 and cpu.epcm.blocked[7]


def test_eldu_operand_checks():
    cpu = enclave()
    sealed = evict(cpu, 2)
    assert reload(cpu, sealed, 3, BASE) == PF  # target page valid
    assert reload(cpu, sealed, 99, BASE) == PF  # not an EPC page
    assert reload(cpu, sealed, 7, BASE, va=3) == PF  # VA operand not a VA page
    assert reload(cpu, sealed, 7, BASE, secs=3) == PF  # parent not a SECS
    assert reload(cpu, sealed, 7, BASE, slot=1) == GP  # empty slot
    assert reload(cpu, sealed, 7, BASE, slot=512) == GP
    short = type(sealed)(sealed.contents, sealed.pcmd[:100])
    assert reload(cpu, short, 7, BASE) == GP
    zero = type(sealed)(sealed.contents, bytes(128))
    assert reload(cpu, zero, 7, BASE) == GP  # all-zero PCMD (spec §7)
    assert not cpu.epcm.valid[7] and cpu.va_slot(VA_EPC, 0) != 0  # nothing changed
    assert reload(cpu, sealed, 7, BASE) == 0


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
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
    # a changed page type can make the record inconsistent (#GP) before the MAC is checked
    assert ret in (SgxReturn.MAC_COMPARE_FAIL, GP)
    assert not cpu.epcm.valid[7] and cpu.va_slot(VA_EPC, 0) != 0


@pytest.mark.parametrize("mode", MODES)
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
    assert create(cpu, 20) == 0
    pi = PageInfo(linaddr=BASE, secs=20, contents=page_content(mode, 0), metadata=0x203)
    assert cpu.eadd(pi, 21) == 0 and init(cpu, 20) == 0
    rec = evict(cpu, 21, slot=3, secs=20)
    assert reload(cpu, rec, 9, BASE, slot=3) == SgxReturn.MAC_COMPARE_FAIL  # SECS 0's enclave
    assert reload(cpu, rec, 9, BASE, slot=3, secs=20) == 0  # its own enclave loads it


@pytest.mark.parametrize("mode", MODES)
def test_records_of_two_pages_cannot_be_swapped(mode):
    cpu = enclave(mode)
    a, b = evict(cpu, 2, slot=0), evict(cpu, 3, slot=1)
    mixed = type(a)(b.contents, a.pcmd)
    assert reload(cpu, mixed, 7, BASE, slot=0) == SgxReturn.MAC_COMPARE_FAIL
    assert reload(cpu, b, 7, BASE + PAGE_SIZE, slot=0) == SgxReturn.MAC_COMPARE_FAIL
    assert reload(cpu, a, 7, BASE, slot=0) == 0 and reload(cpu, b, 8, BASE + PAGE_SIZE, 1) == 0


def test_sealing_is_deterministic_per_seed():
    def record(seed):
        cpu = enclave("full", seed=seed)
        return evict(cpu, 2)

    assert record(3) == record(3)
    assert record(3).contents != record(4).contents


# -- SECS and VA pages ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_secs_eviction_after_last_child_and_reload(mode):
    cpu = enclave(mode, pages=1)
    child = evict(cpu, 2, slot=0)
    st_ = cpu.secs_state(SECS_EPC)
    ret, secs_rec = cpu.ewb(PageInfo(), SECS_EPC, VA_EPC, 1)
    assert ret == 0 and not cpu.epcm.valid[SECS_EPC] and SECS_EPC not in cpu.secs_at
    assert reload(cpu, child, 13, BASE) == PF  # the parent SECS is not resident
    bad = PageInfo(secs=SECS_EPC, contents=secs_rec.contents, metadata=secs_rec.pcmd)
    assert cpu.eldu(bad, 12, VA_EPC, 1) == GP  # a SECS record has no parent
    pi = PageInfo(contents=secs_rec.contents, metadata=secs_rec.pcmd)
    assert cpu.eldu(pi, 12, VA_EPC, 1) == 0
    assert cpu.secs_state(12) is st_ and st_.epc == 12 and st_.initialized
    assert cpu.epcm.pt[12] == PageType.SECS
    assert reload(cpu, child, 13, BASE, secs=12) == 0 and cpu.epcm.secs[13] == 12


def test_secs_pcmd_enclave_id_is_integrity_protected():
    cpu = enclave(pages=1)
    evict(cpu, 2, slot=0)
    _, rec = cpu.ewb(PageInfo(), SECS_EPC, VA_EPC, 1)
    pcmd = bytearray(rec.pcmd)
    pcmd[64] ^= 1  # PCMD.ENCLAVEID
    pi = PageInfo(contents=rec.contents, metadata=bytes(pcmd))
    assert cpu.eldu(pi, 12, VA_EPC, 1) == SgxReturn.MAC_COMPARE_FAIL


@pytest.mark.parametrize("mode", MODES)
def test_va_pages_can_be_evicted_into_another_va_page(mode):
    """Linux never does this, the SDM allows it: versions form a tree."""
    cpu = enclave(mode, nr_pages=16)
    child = evict(cpu, 2, slot=9)
    version = cpu.va_slot(VA_EPC, 9)
    assert cpu.epa(10) == 0
    ret, va_rec = cpu.ewb(PageInfo(), VA_EPC, 10, 0)
    assert ret == 0 and not cpu.epcm.valid[VA_EPC] and VA_EPC not in cpu.va
    assert len(va_rec.contents) == PAGE_SIZE
    assert cpu.eldu(PageInfo(contents=va_rec.contents, metadata=va_rec.pcmd), 11, 10, 0) == 0
    assert cpu.epcm.pt[11] == PageType.VA and cpu.va_slot(11, 9) == version
    assert reload(cpu, child, 12, BASE, slot=9, va=11) == 0


# -- a random walk of evictions and reloads -------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=30))
def test_random_evict_reload_keeps_contents_and_child_count(ops):
    """Each op evicts page i if resident, else reloads it into a free EPC page."""
    cpu = enclave("full", pages=4, nr_pages=24)
    where = {i: 2 + i for i in range(4)}  # page -> EPC index, or -1 while evicted
    records, free = {}, list(range(6, 24))
    expect = {i: snapshot(cpu, 2 + i) for i in range(4)}
    for i, via_aex in ops:
        if where[i] >= 0:
            if via_aex:  # an LP inside during ETRACK must AEX before EWB passes
                assert cpu.eenter(0, -1, SECS_EPC) == 0
            assert cpu.eblock(where[i]) == 0 and cpu.etrack(SECS_EPC) == 0
            if via_aex:
                assert cpu.ewb(PageInfo(), where[i], VA_EPC, i)[0] == SgxReturn.NOT_TRACKED
                assert cpu.aex(0) == 0
            ret, records[i] = cpu.ewb(PageInfo(), where[i], VA_EPC, i)
            assert ret == 0
            free.append(where[i])
            where[i] = -1
        else:
            epc = free.pop(0)
            assert reload(cpu, records[i], epc, BASE + i * PAGE_SIZE, slot=i) == 0
            where[i] = epc
        resident = [p for p in where.values() if p >= 0]
        assert cpu.secs_state(SECS_EPC).child_count == len(resident)
        assert int(cpu.epcm.valid[:].sum()) == 2 + len(resident)
    for i, epc in where.items():
        if epc >= 0:
            assert snapshot(cpu, epc) == expect[i]


def test_bad_constructor_and_content_arguments():
    with pytest.raises(ValueError, match="content_mode"):
        SgxCpu(4, content_mode="zip")
    with pytest.raises(ValueError, match="nr_pages"):
        SgxCpu(0)
    with pytest.raises(ValueError, match="nr_lps"):
        SgxCpu(4, nr_lps=0)
    cpu = SgxCpu(4, content_mode="tag")
    with pytest.raises(ValueError, match="content_mode"):
        cpu.read(0, 0, 4)
    full = enclave("full", pages=1, init_=False)
    with pytest.raises(ValueError, match="contents"):
        full.eadd(PageInfo(linaddr=BASE + PAGE_SIZE, secs=0, contents=5, metadata=0x203), 9)
    with pytest.raises(ValueError, match="offset"):
        full.write(2, PAGE_SIZE - 2, b"abc")
