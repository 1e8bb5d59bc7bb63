"""VA pages and slots (spec §3.2): sgx_encl_grow, slot allocation order, head/tail moves."""

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE, SGX_VA_SLOT_COUNT


def test_slot_order_full_page_to_tail_freed_slot_to_head():
    system = epcsim.System(epc="4M", cpus=1, seed=1)
    e = system.create_enclave("4M").encl
    first = e.va_pages[0]
    # a second VA page (bookkeeping only), at the head as sgx_encl_grow's caller puts it
    e.va_used[1234] = np.zeros(SGX_VA_SLOT_COUNT // 8, dtype=np.uint8)  # no slot used
    e.va_pages.insert(0, 1234)  # new VA pages go to the head
    assert e.va_pages == [1234, first]
    slots = [e.va_alloc_slot() for _ in range(SGX_VA_SLOT_COUNT)]
    assert slots[:3] == [(1234, 0), (1234, 1), (1234, 2)]  # first zero bit of the head page
    assert e.va_pages == [first, 1234]  # full: moved to the tail
    assert e.va_alloc_slot() == (first, 0)
    e.va_free_slot(1234, 7, to_head=True)  # ELDU frees a slot: that VA page to the head
    assert e.va_pages == [1234, first]
    assert e.va_alloc_slot() == (1234, 7)


def test_one_va_page_per_512_pages_needing_a_slot_and_never_freed_by_remove():
    system = epcsim.System(epc="8M", cpus=2, seed=1)
    encl = system.create_enclave("8M")
    e = encl.encl
    assert e.page_cnt == 1 and len(e.va_pages) == 1  # CREATE: the SECS and the first VA page
    assert encl.add_pages(0, 511 * PAGE_SIZE).ok
    assert e.page_cnt == 512 and len(e.va_pages) == 1
    assert encl.add_pages(511 * PAGE_SIZE, PAGE_SIZE).ok  # page_cnt % 512 == 0: grow
    assert e.page_cnt == 513 and len(e.va_pages) == 2
    assert encl.init().ok
    off = 100 * PAGE_SIZE
    assert encl.modify_types(off, 4 * PAGE_SIZE, "trim").ok
    for i in range(4):
        assert encl.eaccept(off + i * PAGE_SIZE, "trim", "", modified=True).ok
    assert encl.remove_pages(off, 4 * PAGE_SIZE).count == 4 * PAGE_SIZE
    # REMOVE_PAGES only drops page_cnt; VA pages stay until release (spec §3.2)
    assert e.page_cnt == 509 and len(e.va_pages) == 2
