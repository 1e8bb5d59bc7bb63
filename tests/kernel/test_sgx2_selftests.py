"""The SGX2 selftests of tools/testing/selftests/sgx/main.c (spec §15), by name.

The test enclave mirrors the selftest's: a TCS segment of two pages, ``encl_buffer`` (two RW
data pages, the second used for permission tests), then an unmeasured heap.
"""

import os

import numpy as np
import pytest

import epcsim
from epcsim.arch import PAGE_SIZE, PF_PROT, PF_SGX, PF_USER, PF_WRITE, SgxReturn

TCS0, TCS1, BUF0, BUF1 = 0, 1, 2, 3
IMAGE = 4


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


@pytest.fixture
def system():
    return epcsim.System(epc="2M", cpus=2, seed=5)


def test_tcs_permissions(system):
    encl = test_encl(system)
    r = encl.restrict_permissions(TCS0 * PAGE_SIZE, PAGE_SIZE, "r")
    assert r.errno == "EINVAL" and r.result == 0 and r.count == 0


def test_epcm_permissions(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    r = encl.restrict_permissions(off, PAGE_SIZE, "r")
    assert r.ok and r.count == PAGE_SIZE and r.result == 0
    assert encl.eaccept(off, "reg", "r", pr=True).ok
    out = encl.access(off, write=True)
    assert out.pf_error == PF_SGX | PF_USER | PF_WRITE | PF_PROT  # 0x8007
    t2 = encl.new_thread("tcs1")  # EMODPE from the second TCS
    assert t2.tcs_index == TCS1
    assert encl.emodpe(off, "rw", thread=t2).ok
    assert encl.access(off, write=True).ok


def test_augment(system):
    encl = test_encl(system)
    off = (IMAGE + 1) * PAGE_SIZE  # just past the loaded image, inside ELRANGE
    assert not encl.encl.present[off // PAGE_SIZE]
    out = encl.access(off, write=True)
    # the first fault EAUGs; the retried write finds the page PENDING: SGX #PF 0x8007
    assert out.pf_error == PF_SGX | PF_USER | PF_WRITE | PF_PROT
    assert system.stats()["eaug"] == 1
    assert encl.eaccept(off, "reg", "rw", pending=True).ok
    assert encl.access(off, write=True).ok


def test_augment_via_eaccept(system):
    encl = test_encl(system)
    off = (IMAGE + 2) * PAGE_SIZE
    r = encl.eaccept(off, "reg", "rw", pending=True)  # #PF -> EAUG -> retried EACCEPT
    assert r.ok and system.stats()["eaug"] == 1
    assert encl.access(off, write=True).ok and encl.access(off).ok


def test_tcs_create(system):
    encl = test_encl(system)
    first = IMAGE + 2
    # the test mmaps the three new pages PROT_READ | PROT_WRITE
    assert encl.mprotect(first * PAGE_SIZE, 3 * PAGE_SIZE, "rw") == 0
    for i in range(3):  # stack, TCS, SSA
        assert encl.eaccept((first + i) * PAGE_SIZE, "reg", "rw", pending=True).ok
    tcs = (first + 1) * PAGE_SIZE
    r = encl.modify_types(tcs, PAGE_SIZE, "tcs")
    assert r.ok and r.count == PAGE_SIZE
    assert encl.eaccept(tcs, "tcs", "", modified=True).ok
    # run on the new TCS
    t = encl.new_thread("new-tcs")
    t.tcs_index = first + 1
    assert system._call(t, t.access_stream(np.array([BUF0]))).ok
    # phase 2: trim the three pages, accept, remove
    r = encl.modify_types(first * PAGE_SIZE, 3 * PAGE_SIZE, "trim")
    assert r.ok and r.count == 3 * PAGE_SIZE
    for i in range(3):
        assert encl.eaccept((first + i) * PAGE_SIZE, "trim", "", modified=True).ok
    r = encl.remove_pages(first * PAGE_SIZE, 3 * PAGE_SIZE)
    assert r.ok and r.count == 3 * PAGE_SIZE
    # EACCEPT at the old TCS address EAUGs a fresh REG page
    assert encl.eaccept(tcs, "reg", "rw", pending=True).ok
    assert encl.access(tcs, write=True).ok


def test_remove_added_page_no_eaccept(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    assert encl.modify_types(off, PAGE_SIZE, "trim").ok
    r = encl.remove_pages(off, PAGE_SIZE)
    assert r.errno == "EPERM" and r.count == 0


def test_remove_added_page_invalid_access(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    assert encl.modify_types(off, PAGE_SIZE, "trim").ok
    assert encl.access(off).pf_error == PF_SGX | PF_USER | PF_PROT  # 0x8005


def test_remove_added_page_invalid_access_after_eaccept(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    assert encl.modify_types(off, PAGE_SIZE, "trim").ok
    assert encl.eaccept(off, "trim", "", modified=True).ok
    assert encl.access(off).pf_error == PF_SGX | PF_USER | PF_PROT


def test_remove_untouched_page(system):
    encl = test_encl(system, heap_pages=4)
    off = (IMAGE + 3) * PAGE_SIZE  # a heap page the enclave never touched
    assert encl.modify_types(off, PAGE_SIZE, "trim").ok
    assert encl.eaccept(off, "trim", "", modified=True).ok
    r = encl.remove_pages(off, PAGE_SIZE)
    assert r.ok and r.count == PAGE_SIZE
    assert not encl.encl.present[off // PAGE_SIZE]


def test_eaccept_mismatch_is_reported(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    assert encl.modify_types(off, PAGE_SIZE, "trim").ok
    # a legal request that differs from the EPCM (TRIM with R; the EPCM has no permissions)
    r = encl.eaccept(off, "trim", "r", modified=True)
    assert r.ret == SgxReturn.PAGE_ATTRIBUTES_MISMATCH
    # REG with MODIFIED is not a request EACCEPT accepts at all: #GP (SDM)
    assert encl.eaccept(off, "reg", "rw", modified=True).name == "#GP"


def _oversubscribed_remove(epc):
    """heap = total EPC; one MODIFY_TYPES and one REMOVE_PAGES over the whole heap."""
    system = epcsim.System(epc=epc, cpus=2, seed=9, direct_reclaim=True)
    heap = system.stats()["epc_pages_total"]
    encl = test_encl(system, heap_pages=heap)
    assert encl.swapped_pages > 0  # really oversubscribed
    off, length = IMAGE * PAGE_SIZE, heap * PAGE_SIZE
    r = encl.modify_types(off, length, "trim")
    assert r.ok and r.result == 0 and r.count == length
    from epcsim.demo import eaccept_each_page

    assert eaccept_each_page(encl, IMAGE, heap) == 0
    r = encl.remove_pages(off, length)
    assert r.ok and r.count == length
    assert encl.encl.page_cnt == 1 + IMAGE  # SECS + image pages need slots; the heap is gone
    return system


def test_unclobbered_vdso_oversubscribed_remove():
    system = _oversubscribed_remove("2M")
    assert system.stats()["direct_reclaim_calls"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EPCSIM_FULL"), reason="full size: set EPCSIM_FULL=1")
def test_unclobbered_vdso_oversubscribed_remove_full_size():
    _oversubscribed_remove("sgx1-client")


def _eaug_stress(epc, factor):
    system = epcsim.System(epc=epc, cpus=2, seed=4)
    n = int(system.stats()["epc_pages_total"] * factor)
    encl = test_encl(system, heap_pages=1, size=1 << (n * PAGE_SIZE * 2).bit_length())
    t = encl.new_thread("stress")
    first = IMAGE + 8
    from epcsim.arch import PageType, SecinfoFlags, secinfo_flags

    flags = secinfo_flags(PageType.REG, 3, int(SecinfoFlags.PENDING))

    def prog():
        bad = 0
        for idx in range(first, first + n):
            addr = encl.encl.linaddr(idx)
            ret = yield from t.enclu_on_page(
                idx, lambda lp, epc, addr=addr: system.cpu.eaccept(lp, flags, addr, epc)
            )
            bad += ret != 0
        return bad

    assert system._call(t, prog()) == 0
    st = system.stats()
    assert st["eaug"] == n and st["sigbus"] == 0
    assert encl.resident_pages + encl.swapped_pages == IMAGE + 1 + n
    return st


def test_augment_via_eaccept_stress():
    st = _eaug_stress("1M", 2.0)  # 2x the EPC added dynamically: EAUG must page
    # heap pages are touched once: only the SECS and the thread's TCS may come back
    assert st["ewb_pages"] > 0 and st["eldu"] <= st["secs_reloads"] + 2


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EPCSIM_FULL"), reason="full size: set EPCSIM_FULL=1")
def test_augment_via_eaccept_stress_full_size():
    _eaug_stress("sgx1-client", 2.0)


def test_unclobbered_vdso():
    system = epcsim.System(epc="2M", cpus=2, seed=5, content_mode="full")
    encl = test_encl(system)
    assert encl.write(BUF0 * PAGE_SIZE, b"MAGIC!!!").ok  # PUT_TO_BUFFER
    assert encl.read(BUF0 * PAGE_SIZE, 8) == b"MAGIC!!!"  # GET_FROM_BUFFER


def test_tcs_entry(system):
    encl = test_encl(system)
    for tcs in (TCS0, TCS1):
        t = encl.new_thread(f"tcs{tcs}")
        t.tcs_index = tcs
        assert system._call(t, t.access_stream(np.array([BUF0]))).ok  # ENCL_OP_NOP
        # EENTER went through that TCS page (mapped by the #PF the entry took)
        assert t.entered and t._tcs_epc() >= 0 and encl.encl.pte_present[tcs]


def test_pte_permissions(system):
    encl = test_encl(system)
    off = BUF1 * PAGE_SIZE
    assert encl.access(off, write=True).ok
    assert encl.mprotect(off, PAGE_SIZE, "r") == 0
    # a regular #PF: present | write | user, no SGX bit
    assert encl.access(off, write=True).pf_error == PF_USER | PF_WRITE | PF_PROT
    assert encl.access(off).ok
    assert encl.mprotect(off, PAGE_SIZE, "rw") == 0
    assert encl.access(off, write=True).ok  # ERESUME after restoring RW succeeds
    # mmap/mprotect cannot exceed a page's vm_max_prot_bits (sgx_encl_may_map)
    assert encl.mprotect(off, PAGE_SIZE, "rwx") == -13  # -EACCES


def test_eacceptcopy_from_an_enclave_thread():
    system = epcsim.System(epc="2M", cpus=2, seed=5, content_mode="full")
    encl = test_encl(system)
    assert encl.write(BUF0 * PAGE_SIZE, b"code page").ok
    dst = (IMAGE + 3) * PAGE_SIZE
    assert encl.access(dst).pf_error  # #PF -> EAUG; the page is PENDING
    r = encl.eacceptcopy(dst, BUF0 * PAGE_SIZE, "rx")
    assert r.ok, r
    assert encl.read(dst, 9) == b"code page"
    assert encl.access(dst, write=True).pf_error  # RX now: writes refused by the EPCM
