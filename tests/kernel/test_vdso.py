"""The vDSO exchange as a decision table (hypothesis): which exception, with which error code,
a data access reports for every combination of VMA protection, PTE presence and EPCM
permission (uapi asm/sgx.h, spec §8, §9; SDM EPCM checks)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from selftest_encl import (
    BUF0,
    BUF1,
    IMAGE,
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
from epcsim.user.insn import X86_TRAP_PF, Load, Store
from epcsim.user.vdso import EENTER, ERESUME


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


def test_interrupts_and_paging_inside_one_enclave_call_are_invisible():
    """One EENTER whose code loops on a resident page while another thread of the enclave
    scans 2x the EPC: ksgxd reclaims this enclave's pages, its ETRACK finds our LP inside and
    its IPI forces an AEX; the kernel resumes at the AEP (ERESUME), so the call still ends
    by EEXIT with no exception reported and the value intact."""
    system = epcsim.System(epc="1M", cpus=3, seed=7, content_mode="full")
    heap = 2 * system.stats()["epc_pages_total"]
    encl = test_encl(system, heap_pages=heap)
    scanner = encl.start(np.arange(IMAGE, IMAGE + heap), write=True)  # enters through TCS0
    resumed = []
    eresume = system.cpu.eresume

    def spy(lp, *args):
        resumed.append(system.machine.running[lp].name)
        return eresume(lp, *args)

    system.cpu.eresume = spy
    buf = addr(encl, BUF0)

    def code():
        for i in range(20_000):
            yield Store(buf, i.to_bytes(8, "little"))
            assert (yield Load(buf)) == i.to_bytes(8, "little")

    run = encl.new_run(TCS1 * PAGE_SIZE)
    assert encl.vdso_call(code(), run, EENTER) == 0
    expect_eexit(run)
    expect_no_exception(run)
    system.run()
    assert scanner.value.ok
    st = system.stats()
    assert st["ipi"] > 0 and st["eldu_failed"] == 0
    assert f"{encl.encl.name}:vdso" in resumed  # our call was interrupted and resumed
    get = GetFromAddress(buf)
    assert encl_call(encl, get, run) == 0 and get.value == 19_999
