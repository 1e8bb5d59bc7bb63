"""VA pages and slots (spec §3.2): sgx_encl_grow, slot allocation order, head/tail moves."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE, SGX_VA_SLOT_COUNT


def test_slot_order_full_page_to_tail_freed_slot_to_head():
    system = epcsim.System(epc="4M", cpus=1, seed=1)
    e = system.create_enclave("4M").encl
    first = e.va_pages[0]
    # a second VA page (bookkeeping only), at the head as sgx_encl_grow's caller puts it
    e.add_va_page(1234)  # new VA pages go to the head, no slot used
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


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "take", "free"]), st.integers(0, 10**6)),
        max_size=150,
    )
)
def test_va_page_list_is_the_kernel_list_of_va_pages(ops):
    """``VaPageList`` (arrays by VA page number, grown ``VA_CHUNK`` at a time) against a plain
    statement of ``encl->va_pages``: a Python list of EPC pages, head first, and a set of used
    slots per page. More VA pages than a chunk, numbers reused after a remove."""
    from epcsim.kernel.encl_page import VaIds
    from epcsim.kernel.va_page import VaPageList

    va = VaPageList(VaIds())
    order: list[int] = []
    used: dict[int, set[int]] = {}
    next_epc = 100
    for op, x in ops:
        if op == "add" or not order:
            va.add(next_epc)
            order.insert(0, next_epc)
            used[next_epc] = set()
            next_epc += 1
        elif op == "remove":
            page = [p for p in order if not used[p]]
            if page:
                va.remove(page[0])
                order.remove(page[0])
                del used[page[0]]
        elif op == "take":
            head = order[0]
            free = [s for s in range(SGX_VA_SLOT_COUNT) if s not in used[head]]
            if not free:
                with pytest.raises(IndexError):
                    va.take_slot()
                continue
            assert va.take_slot() == (head, free[0])
            used[head].add(free[0])
            if len(free) == 1:
                order.append(order.pop(0))
        elif op == "free":
            pages = [p for p in order if used[p]]
            if pages:
                page = pages[x % len(pages)]
                slot = sorted(used[page])[x % len(used[page])]
                to_head = bool(x & 1)
                va.free_slot(page, slot, to_head)
                used[page].discard(slot)
                if to_head:
                    order.remove(page)
                    order.insert(0, page)
        assert va.order() == order and len(va) == len(order)
        for page in order:
            assert set(np.flatnonzero(va.used_slots(page)).tolist()) == used[page]
        ids = va.ids
        assert {int(ids.epc[ids.id_of[p]]) for p in order} == set(order)


def test_a_full_va_page_fills_in_slot_order_and_leaves_for_the_tail():
    from epcsim.kernel.encl_page import VaIds
    from epcsim.kernel.va_page import VaPageList

    va = VaPageList(VaIds())
    for page in (7, 8):
        va.add(page)
    assert va.order() == [8, 7]
    assert [va.take_slot() for _ in range(SGX_VA_SLOT_COUNT)][-1] == (8, SGX_VA_SLOT_COUNT - 1)
    assert va.order() == [7, 8] and va.used_slots(8).all()
    va.clear()
    assert va.order() == [] and va.ids.nr == 0
    with pytest.raises(IndexError):
        va.take_slot()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["epa", "load", "remove", "set", "clear"]),
            st.integers(0, 40),
            st.integers(0, SGX_VA_SLOT_COUNT - 1),
        ),
        max_size=120,
    )
)
def test_va_versions_are_a_dict_of_slot_arrays(ops):
    """``isa.va.VaPages`` (rows of one array, allocated on the first non-zero write, reused)
    against the plain statement: a dict of 512-slot arrays. Its two index forms agree."""
    from epcsim.isa.va import VaPages

    va = VaPages()
    model: dict[int, np.ndarray] = {}
    for op, epc, slot in ops:
        if op == "epa" and epc not in model:
            va[epc] = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
            model[epc] = np.zeros(SGX_VA_SLOT_COUNT, dtype=np.uint64)
        elif op == "load" and epc not in model:
            slots = np.arange(SGX_VA_SLOT_COUNT, dtype=np.uint64) * np.uint64(epc % 3)
            va[epc] = slots
            model[epc] = slots.copy()
        elif op == "remove" and epc in model:
            if slot & 1:
                del va[epc]
            else:
                assert (va.pop(epc) == model[epc]).all()
            del model[epc]
        elif op in ("set", "clear") and epc in model:
            version = 0 if op == "clear" else (epc << 40) + slot + 1
            va.set_version(epc, slot, version)
            model[epc][slot] = version
        assert va.check() == []
        assert sorted(va) == sorted(model)
        for page, slots in model.items():
            assert (va[page] == slots).all()
            assert va.version(page, slot) == int(slots[slot])
    assert va.pop(10**6, "none") == "none"
