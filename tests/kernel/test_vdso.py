"""The vDSO exchange as a decision table (hypothesis): which exception, with which error code,
a data access reports for every combination of VMA protection, PTE presence and EPCM
permission (uapi asm/sgx.h, spec §8, §9; SDM EPCM checks)."""

from hypothesis import given, settings
from hypothesis import strategies as st
from selftest_encl import (
    BUF1,
    MAGIC,
    MAGIC2,
    TCS0,
    TCS1,
    addr,
    encl_call,
    expect_eexit,
    expect_no_exception,
    test_encl,
)

import epcsim
from epcsim.arch import (
    PAGE_SIZE,
    PF_PROT,
    PF_SGX,
    PF_USER,
    PF_WRITE,
    PageType,
    SecinfoFlags,
    secinfo_flags,
)
from epcsim.user.encl_ops import EacceptOp, GetFromAddress, PutToAddress
from epcsim.user.insn import X86_TRAP_PF
from epcsim.user.vdso import ERESUME


@settings(max_examples=30, deadline=None)
@given(
    epcm_rw=st.booleans(),
    mapped=st.booleans(),
    vma=st.sampled_from(["", "r", "rw"]),
    write=st.booleans(),
)
def test_vdso_reports_what_the_pte_and_epcm_decide(epcm_rw, mapped, vma, write):
    """Decision table for one access to a data page: the VMA (mprotect) is checked first - a
    refused access is a #PF without the SGX bit, with PF_PROT only if the PTE is present
    (mprotect to a readable protection keeps PTEs, PROT_NONE drops them); a missing PTE
    otherwise is fixed by the kernel, invisibly; then the EPCM (EMODPR to R) refuses a write
    with an SGX #PF 0x8007. Anything allowed exits by EEXIT with the data written or read."""
    system = epcsim.System(epc="2M", cpus=2, seed=5, content_mode="full")
    encl = test_encl(system)
    page = addr(encl, BUF1)
    setup = encl.new_run(TCS1 * PAGE_SIZE)
    assert encl_call(encl, PutToAddress(MAGIC, page), setup) == 0
    if not epcm_rw:
        assert encl.restrict_permissions(BUF1 * PAGE_SIZE, PAGE_SIZE, "r").ok
        op = EacceptOp(page, secinfo_flags(PageType.REG, 1, int(SecinfoFlags.PR)))
        assert encl_call(encl, op, setup) == 0 and op.ret == 0
    # PROT_NONE drops the PTE; back to RW, the page is mapped again only when touched
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "") == 0
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "rw") == 0
    if mapped:
        assert encl_call(encl, GetFromAddress(page), setup) == 0
    expect_eexit(setup)
    assert bool(encl.encl.pte_present[BUF1]) == mapped
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, vma) == 0
    run = encl.new_run(TCS0 * PAGE_SIZE)
    op = PutToAddress(MAGIC2, page) if write else GetFromAddress(page)
    assert encl_call(encl, op, run) == 0
    vma_ok = "r" in vma and (not write or "w" in vma)
    if not vma_ok:
        present = mapped and "r" in vma
        code = PF_USER | (PF_WRITE if write else 0) | (PF_PROT if present else 0)
    elif write and not epcm_rw:
        code = PF_SGX | PF_USER | PF_WRITE | PF_PROT
    else:
        expect_eexit(run)
        expect_no_exception(run)
        if not write:
            assert op.value == MAGIC
        else:
            get = GetFromAddress(page)
            assert encl_call(encl, get, encl.new_run(TCS1 * PAGE_SIZE)) == 0
            assert get.value == MAGIC2
        return
    assert (run.function, run.exception_vector) == (ERESUME, X86_TRAP_PF)
    assert (run.exception_error_code, run.exception_addr) == (code, page)
