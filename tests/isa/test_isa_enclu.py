"""EENTER, ERESUME, EEXIT, AEX: who is inside, TCS rules (SDM EENTER pseudo-code)."""

from isa_helpers import BASE, GP, PF, SECS_EPC, enclave, init

from epcsim.arch import PAGE_SIZE, PageType, secinfo_flags
from epcsim.isa import PageInfo

TCS_AT = BASE + 4 * PAGE_SIZE


def with_tcs():
    cpu = enclave(init_=False, pages=1)
    tcs = PageInfo(linaddr=TCS_AT, secs=SECS_EPC, metadata=secinfo_flags(PageType.TCS))
    assert cpu.eadd(tcs, 6) == 0
    return cpu


def test_tcs_entry_rules():
    cpu = with_tcs()
    assert cpu.eenter(0, 6) == GP  # not initialized
    assert init(cpu) == 0
    assert cpu.eenter(0, 2) == PF  # a REG page is no TCS
    assert cpu.eenter(0, 20) == PF  # invalid page
    assert cpu.eenter(0, 99) == PF  # not an EPC page
    assert cpu.eenter(5, 6) == GP  # no such logical processor
    assert cpu.eenter(0, 6) == 0
    assert cpu.eenter(1, 6) == GP  # TCS busy
    assert cpu.eenter(0, 6) == GP  # LP already inside
    assert cpu.inside(0) == SECS_EPC and cpu.lps_inside(SECS_EPC) == {0}
    assert cpu.inside(1) == -1
    assert cpu.eexit(0) == 0 and cpu.eenter(1, 6) == 0
    assert cpu.aex(1) == 0 and cpu.lps_inside(SECS_EPC) == set()
    assert cpu.eresume(0, 6) == 0  # another LP may resume the thread
    assert cpu.eexit(0) == 0
    assert cpu.eexit(0) == GP and cpu.aex(1) == GP  # not inside


def test_blocked_tcs_faults_on_entry():
    cpu = with_tcs()
    assert init(cpu) == 0
    assert cpu.eblock(6) == 0
    assert cpu.eenter(0, 6) == PF


def test_implicit_tcs():
    """``tcs_epc=-1``: enter without a TCS page (model simplification)."""
    cpu = enclave(lps=2)
    assert cpu.eenter(0, -1, 5) == GP  # not a SECS
    assert cpu.eenter(0, -1, SECS_EPC) == 0 and cpu.eenter(1, -1, SECS_EPC) == 0
    assert cpu.lps_inside(SECS_EPC) == {0, 1}
    assert cpu.eremove(SECS_EPC) != 0  # children and threads: still in use


def test_eexit_clears_tcs_busy_even_if_the_tcs_was_evicted_meanwhile():
    cpu = with_tcs()
    assert init(cpu) == 0 and cpu.eenter(0, 6) == 0
    assert cpu.eblock(6) == 0 and cpu.etrack(SECS_EPC) == 0 and cpu.aex(0) == 0
    ret, rec = cpu.ewb(PageInfo(), 6, 1, 0)
    assert ret == 0
    pi = PageInfo(linaddr=TCS_AT, secs=SECS_EPC, contents=rec.contents, metadata=rec.pcmd)
    assert cpu.eldu(pi, 7, 1, 0) == 0
    assert cpu.eenter(1, 7) == 0
