"""The reclaimer's PTE operations on one ``sgx_encl_page`` (``sgx/encl.c``), over the
packed page flags of ``epcsim.kernel.encl_page`` (one byte per page; the model keeps the
PTE of the one mm that maps the enclave there)."""

from __future__ import annotations

from numba import njit

from epcsim.kernel.encl_page import ENCL_PAGE_PTE_PRESENT, ENCL_PAGE_PTE_YOUNG

_KEEP_ZAP = 0xFF ^ (ENCL_PAGE_PTE_PRESENT | ENCL_PAGE_PTE_YOUNG)
_KEEP_OLD = 0xFF ^ ENCL_PAGE_PTE_YOUNG


@njit(cache=True, nogil=True)
def zap_ptes(page_flags, index):
    """``sgx_zap_enclave_ptes`` for page ``index``: the PTE goes (Present and Accessed)."""
    page_flags[index] &= _KEEP_ZAP


@njit(cache=True, nogil=True)
def test_and_clear_young(page_flags, index):
    """``sgx_encl_test_and_clear_young``: was the page mapped and accessed since the last
    look? The Accessed bit is cleared either way."""
    f = page_flags[index]
    young = (f & ENCL_PAGE_PTE_PRESENT) != 0 and (f & ENCL_PAGE_PTE_YOUNG) != 0
    page_flags[index] = f & _KEEP_OLD
    return young
