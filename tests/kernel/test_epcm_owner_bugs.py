"""Kernel bugs the model must still represent once the EPCM reads ENCLAVESECS and
ENCLAVEADDRESS from the kernel's owner (``isa.epcm``): the CPU's view stays its own, and the
invariant checker reports the disagreement as before."""

import numpy as np

import epcsim
from epcsim.arch import PageType, secinfo_flags
from epcsim.isa import PageInfo
from epcsim.kernel.check import check


def _system():
    system = epcsim.System(epc="256K", cpus=1, seed=4)
    enc = system.create_enclave("256K")
    assert enc.add_pages(0, "64K").ok
    return system, enc.encl


def test_a_page_freed_without_eremove_stays_valid_at_its_address():
    system, encl = _system()
    sgx, e = system.sgx, system.cpu.epcm
    idx = 3
    page = int(encl.epc[idx])
    secs, addr = e.secs[page], e.linaddr[page]
    assert secs == encl.secs_epc and addr == encl.base + (idx << 12)
    sgx.unmark_page_reclaimable(page)
    sgx.epc.free(page)  # the bug: no EREMOVE
    assert e.valid[page] and e.secs[page] == secs and e.linaddr[page] == addr
    assert page in e.aside
    assert any("free pages valid in the EPCM" in m for m in check(sgx))
    # handed out again, for another page of the enclave: the CPU's entry is still the old one
    got = sgx.epc.alloc(0)
    while got != page:
        got = sgx.epc.alloc(0)
    sgx.epc.owner_encl[page], sgx.epc.owner_index[page] = encl.id, 9
    assert e.secs[page] == secs and e.linaddr[page] == addr


def test_a_wrong_address_at_eadd_is_kept_and_reported():
    system, encl = _system()
    sgx, e, cpu = system.sgx, system.cpu.epcm, system.cpu
    idx = 20  # a page not added yet
    page = sgx.epc.alloc(0)
    sgx.epc.owner_encl[page], sgx.epc.owner_index[page] = encl.id, idx
    wrong = encl.base + ((idx + 1) << 12)  # the bug: the kernel passes the next page
    info = PageInfo(
        linaddr=wrong,
        secs=encl.secs_epc,
        contents=None,
        metadata=secinfo_flags(PageType.REG, 3),
    )
    assert cpu.eadd(info, page) == 0
    assert e.linaddr[page] == wrong and e.secs[page] == encl.secs_epc and page in e.aside
    encl.present[idx] = True
    encl.epc[idx] = page
    encl.type[idx] = PageType.REG
    assert any("EPCM addresses differ" in m for m in check(sgx))
    assert cpu.eremove(page) == 0
    assert not e.aside and e.linaddr[page] == 0 and e.secs[page] == -1


def test_a_leaked_page_keeps_its_entry():
    system, encl = _system()
    sgx, e = system.sgx, system.cpu.epcm
    page = int(encl.epc[5])
    before = (e.secs[page], e.linaddr[page])
    sgx.epc.set_owner_index(page, -5)  # OWNER_LEAKED after a failed EREMOVE
    assert (e.secs[page], e.linaddr[page]) == before and e.valid[page]
    assert np.asarray(e.secs)[page] == before[0]
