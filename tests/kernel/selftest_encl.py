"""The selftest enclave (tools/testing/selftests/sgx: ``test_encl.c``, ``load.c``; spec §15)
and the helpers the mirrored tests share.

Layout as the selftest's loader builds it: a TCS segment of two pages, ``encl_buffer`` (two RW
data pages, the second used for permission tests), then an unmeasured heap. ``ENCL_CALL``
enters through ``run.tcs`` with EENTER; the clobbered and unclobbered variants differ only in
which registers survive the call, which the model does not keep, so both are one vDSO call.
"""

from __future__ import annotations

from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags
from epcsim.user.vdso import EENTER, EEXIT

TCS0, TCS1, BUF0, BUF1 = 0, 1, 2, 3
IMAGE = 4  # pages of the loaded image before the heap

MAGIC = 0x1122334455667788
MAGIC2 = 0x8877665544332211

SECINFO_R, SECINFO_W = 1, 2
#: SGX_SECINFO_R | SGX_SECINFO_W | SGX_SECINFO_REG | SGX_SECINFO_PENDING
EACCEPT_AUG = secinfo_flags(PageType.REG, 3, int(SecinfoFlags.PENDING))


def test_encl(system, heap_pages=1, size=None):
    """Build the selftest enclave: 2 TCS, 2 data pages, ``heap_pages`` of heap."""
    total = IMAGE + heap_pages
    if size is None:
        size = PAGE_SIZE
        while size < 2 * total * PAGE_SIZE:  # leave room past the image for EAUG
            size <<= 1
    encl = system.create_enclave(size)
    assert encl.add_pages(0, 2 * PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(BUF0 * PAGE_SIZE, 2 * PAGE_SIZE, "rw", measure=True).ok
    assert encl.add_pages(IMAGE * PAGE_SIZE, heap_pages * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    return encl


test_encl.__test__ = False  # a helper, not a test


def addr(encl, page: int) -> int:
    """Linear address of enclave page ``page``."""
    return encl.base + page * PAGE_SIZE


def encl_call(encl, op, run, clobbered: bool = True) -> int:
    """``ENCL_CALL(op, run, clobbered)``: EENTER through ``run.tcs``."""
    return encl.vdso_call(op, run, EENTER)


def expect_eexit(run) -> None:
    """``EXPECT_EEXIT``: the enclave left by EEXIT (else show the exception it took)."""
    assert run.function == EEXIT, (
        f"function {run.function}, exception vector {run.exception_vector}, "
        f"error {run.exception_error_code:#x}, addr {run.exception_addr:#x}"
    )


def expect_no_exception(run) -> None:
    assert (run.exception_vector, run.exception_error_code, run.exception_addr) == (0, 0, 0)
