"""The SGX1 selftests of tools/testing/selftests/sgx/main.c (spec §15), by name, through the
vDSO exchange (``struct sgx_enclave_run``), plus the vDSO's own contract (uapi asm/sgx.h)."""

import pytest
from selftest_encl import (
    BUF0,
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
from epcsim.arch import EINVAL, PAGE_SIZE, PF_PROT, PF_SGX, PF_USER, PF_WRITE
from epcsim.user.encl_ops import GetFromAddress, GetFromBuffer, Nop, PutToAddress, PutToBuffer
from epcsim.user.insn import X86_TRAP_GP, X86_TRAP_PF, X86_TRAP_UD, Illegal, Load, Store
from epcsim.user.vdso import EENTER, EEXIT, ERESUME, SgxEnclaveRun


@pytest.fixture
def system():
    return epcsim.System(epc="2M", cpus=2, seed=5, content_mode="full")


def _put_get(encl, run, clobbered):
    put = PutToBuffer(MAGIC, buffer=addr(encl, BUF0))
    assert encl_call(encl, put, run, clobbered) == 0
    expect_eexit(run)
    get = GetFromBuffer(buffer=addr(encl, BUF0))
    assert encl_call(encl, get, run, clobbered) == 0
    assert get.value == MAGIC
    expect_eexit(run)
    expect_no_exception(run)


def test_unclobbered_vdso(system):
    encl = test_encl(system)
    _put_get(encl, encl.new_run(), clobbered=False)


def test_clobbered_vdso(system):
    encl = test_encl(system)
    _put_get(encl, encl.new_run(), clobbered=True)


def test_clobbered_vdso_and_user_function(system):
    encl = test_encl(system)
    calls = []

    def test_handler(run):
        calls.append(run.function)
        run.user_data = 0
        return 0

    run = encl.new_run(user_handler=test_handler, user_data=0xDEADBEEF)
    put = PutToBuffer(MAGIC, buffer=addr(encl, BUF0))
    assert encl_call(encl, put, run) == 0
    expect_eexit(run)
    assert run.user_data == 0
    run.user_data = 0xDEADBEEF
    get = GetFromBuffer(buffer=addr(encl, BUF0))
    assert encl_call(encl, get, run) == 0
    assert get.value == MAGIC
    expect_eexit(run)
    assert run.user_data == 0
    assert calls == [EEXIT, EEXIT]  # the handler saw every exit


def test_unclobbered_vdso_oversubscribed():
    """heap = total EPC: ADD_PAGES reclaims while building, so the buffer page written first
    has gone to the backing store, and the put/get reload it with ELDU."""
    system = epcsim.System(epc="1M", cpus=2, seed=5, content_mode="full")
    heap = system.stats()["epc_pages_total"]
    encl = test_encl(system, heap_pages=heap)
    assert encl.swapped_pages > 0 and not encl.encl.pte_present[BUF0]
    assert encl.encl.epc[BUF0] < 0  # the buffer itself was evicted while building
    eldu0 = system.stats()["eldu"]
    _put_get(encl, encl.new_run(), clobbered=False)
    assert system.stats()["eldu"] > eldu0


def test_tcs_entry(system):
    encl = test_encl(system)
    for tcs in (TCS0, TCS1):
        run = encl.new_run(tcs * PAGE_SIZE)
        assert encl_call(encl, Nop(), run) == 0
        expect_eexit(run)
        expect_no_exception(run)
        assert encl.encl.pte_present[tcs]  # EENTER faulted the TCS in


def test_pte_permissions(system):
    encl = test_encl(system)
    data_start = addr(encl, BUF1)
    run = encl.new_run()
    # sanity: the enclave runs without exception
    assert encl_call(encl, PutToAddress(MAGIC, data_start), run) == 0
    expect_eexit(run)
    expect_no_exception(run)
    get = GetFromAddress(data_start)
    assert encl_call(encl, get, run) == 0 and get.value == MAGIC
    # mprotect the page RO: the write takes a regular #PF (no SGX bit)
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "r") == 0
    put = PutToAddress(MAGIC2, data_start)
    assert encl_call(encl, put, run) == 0
    assert run.function == ERESUME
    assert run.exception_vector == X86_TRAP_PF
    assert run.exception_error_code == PF_USER | PF_WRITE | PF_PROT == 0x7
    assert run.exception_addr == data_start
    run.clear_exception()
    # restore RW and resume the faulting write
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "rw") == 0
    assert encl.vdso_call(put, run, ERESUME) == 0
    expect_eexit(run)
    expect_no_exception(run)
    get = GetFromAddress(data_start)
    assert encl_call(encl, get, run) == 0 and get.value == MAGIC2
    expect_eexit(run)
    # mmap/mprotect cannot exceed a page's vm_max_prot_bits (sgx_encl_may_map)
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "rwx") == -13  # -EACCES


def test_pte_permissions_prot_none_is_a_not_present_fault(system):
    """PROT_NONE drops the PTEs: the read faults with the present bit clear (0x4) and
    ``access_error`` refuses it before the driver sees it; nothing is loaded."""
    encl = test_encl(system)
    run = encl.new_run()
    assert encl_call(encl, Nop(), run) == 0  # EENTER faults the TCS in
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "") == 0
    faults = system.stats()["page_faults"]
    assert encl_call(encl, GetFromAddress(addr(encl, BUF1)), run) == 0
    assert (run.function, run.exception_vector) == (ERESUME, X86_TRAP_PF)
    assert run.exception_error_code == PF_USER == 0x4
    assert system.stats()["page_faults"] == faults
    # the legacy access helper reports the same code
    assert encl.access(BUF1 * PAGE_SIZE).pf_error == PF_USER


# -- the vDSO contract (uapi asm/sgx.h) ----------------------------------------------------


def test_vdso_rejects_a_bad_function_and_reserved_bytes(system):
    encl = test_encl(system)
    run = encl.new_run()
    for leaf in (0, 1, EEXIT, 5):
        assert encl.vdso_call(Nop(), run, leaf) == -EINVAL
    assert run.function == 0  # nothing ran
    run = encl.new_run(reserved=b"\x01" + bytes(215))
    assert encl.vdso_call(Nop(), run, EENTER) == -EINVAL
    with pytest.raises(ValueError, match="function"):
        encl.vdso_call(Nop(), encl.new_run(), "eenter")
    with pytest.raises(ValueError, match="op"):  # refused before anything enters
        encl.vdso_call(42, encl.new_run(), EENTER)
    run = encl.new_run()
    assert encl.vdso_call(Nop(), run, EENTER) == 0
    expect_eexit(run)


def test_vdso_eresume_needs_an_interrupted_context_and_eenter_a_free_ssa(system):
    """NSSA = 1: ERESUME on a TCS with nothing to resume and EENTER on a TCS holding an
    interrupted context are #GPs of the ENCLU itself (``function`` keeps the leaf)."""
    encl = test_encl(system)
    run = encl.new_run()
    assert encl.vdso_call(Nop(), run, ERESUME) == 0
    assert (run.function, run.exception_vector) == (ERESUME, X86_TRAP_GP)
    run.clear_exception()
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "r") == 0
    assert encl_call(encl, PutToAddress(1, addr(encl, BUF1)), run) == 0
    assert run.exception_vector == X86_TRAP_PF
    run.clear_exception()
    assert encl_call(encl, Nop(), run) == 0  # EENTER on the interrupted TCS
    assert (run.function, run.exception_vector) == (EENTER, X86_TRAP_GP)
    run.clear_exception()
    other = encl.new_run(TCS1 * PAGE_SIZE)  # the other TCS is free
    assert encl_call(encl, Nop(), other) == 0
    expect_eexit(other)


def test_vdso_user_handler_decides_what_happens_next(system):
    """The handler's return: ERESUME re-enters (here after fixing the PTE), a negative value
    is returned to the caller, any other positive value is -EINVAL."""
    encl = test_encl(system)
    data_start = addr(encl, BUF1)
    assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "r") == 0
    seen = []

    def fix_and_resume(run):
        seen.append((run.function, run.exception_vector, run.exception_error_code))
        if run.function == ERESUME:
            assert encl.mprotect(BUF1 * PAGE_SIZE, PAGE_SIZE, "rw") == 0
            run.clear_exception()
            return ERESUME
        return 0

    run = encl.new_run(user_handler=fix_and_resume)
    assert encl_call(encl, PutToAddress(MAGIC, data_start), run) == 0
    expect_eexit(run)
    # the page was never mapped: the write to the RO VMA faults with present clear (0x6)
    assert seen == [(ERESUME, X86_TRAP_PF, PF_USER | PF_WRITE), (EEXIT, 0, 0)]
    get = GetFromAddress(data_start)
    assert encl_call(encl, get, encl.new_run()) == 0 and get.value == MAGIC

    run = encl.new_run(user_handler=lambda run: -42)
    assert encl_call(encl, Nop(), run) == -42
    expect_eexit(run)
    run = encl.new_run(user_handler=lambda run: EEXIT)
    assert encl_call(encl, Nop(), run) == -EINVAL


def test_vdso_reports_ud_and_eresume_reexecutes_the_instruction(system):
    """#UD (an instruction enclave mode forbids) comes back with vector 6 and no address;
    ERESUME re-executes the same instruction, so it faults again."""
    encl = test_encl(system)
    stores = []

    def code():
        yield Store(addr(encl, BUF0), b"before")
        stores.append(1)
        yield Illegal("cpuid")
        stores.append(2)

    run = encl.new_run()
    assert encl.vdso_call(code(), run, EENTER) == 0
    assert (run.function, run.exception_vector, run.exception_addr) == (ERESUME, X86_TRAP_UD, 0)
    assert encl.vdso_call(None, run, ERESUME) == 0
    assert run.exception_vector == X86_TRAP_UD and stores == [1]


def test_vdso_sgx_pf_on_tcs_and_outside_elrange(system):
    """Reading a TCS page from inside is refused by the EPCM (0x8005); an address outside the
    enclave maps nothing (0x4); entering through a REG page is an EPCM #PF of EENTER."""
    encl = test_encl(system)
    run = encl.new_run()

    def read(a):
        return (yield Load(a))

    assert encl.vdso_call(read(addr(encl, TCS1)), run, EENTER) == 0
    assert run.exception_error_code == PF_SGX | PF_USER | PF_PROT
    assert run.exception_addr == addr(encl, TCS1)
    other = encl.new_run(TCS1 * PAGE_SIZE)
    assert encl.vdso_call(read(encl.base + encl.size), other, EENTER) == 0
    assert (other.exception_error_code, other.exception_addr) == (PF_USER, encl.base + encl.size)
    bad = SgxEnclaveRun(tcs=addr(encl, BUF0))
    assert encl.vdso_call(Nop(), bad, EENTER) == 0
    assert (bad.function, bad.exception_vector) == (EENTER, X86_TRAP_PF)
    assert bad.exception_error_code & PF_SGX and bad.exception_addr == addr(encl, BUF0)
