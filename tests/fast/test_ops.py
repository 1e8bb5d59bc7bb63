"""The compiled page-state ops (``epcsim.fast.ops``) against a plain statement of the same
rule, on generated states: the ops are the one place the decisions live, so each is checked
against the SDM/kernel rule written out field by field, as the leaves read before."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.arch import PageType, SgxReturn
from epcsim.fast.ops import encl_page as pte_ops  # (its names start with test_)
from epcsim.fast.ops.epcm import FAULT_PF, eblock_apply, eldu_commit, ewb_check
from epcsim.fast.ops.pcmd import reclaimer_writing_to_pcmd
from epcsim.fast.ops.va import va_take_slot
from epcsim.isa.epcm import Epcm
from epcsim.kernel.encl_page import ENCL_PAGE_BEING_RECLAIMED

CHILD = (PageType.REG, PageType.TCS, PageType.TRIM)
words = st.integers(0, 0xFFFF)
pts = st.integers(0, 6)


def _entry(word: int) -> Epcm:
    e = Epcm(4)
    e.flags[:] = word
    return e


@settings(max_examples=300, deadline=None)
@given(words, st.integers(0, 2**40))
def test_eblock_apply_is_the_sdm_rule(word, epoch):
    e = _entry(word)
    if not e.valid[1]:
        want = SgxReturn.PG_INVLD
    elif e.pt[1] == PageType.SECS:
        want = SgxReturn.PG_IS_SECS
    elif e.pt[1] not in CHILD:
        want = SgxReturn.NOTBLOCKABLE
    elif e.blocked[1]:
        want = SgxReturn.BLKSTATE
    else:
        want = 0
    before = e.flags.copy()
    got = eblock_apply(e.flags, e.bepoch, 1, epoch)
    assert got == want
    if want:
        assert (e.flags == before).all() and not e.bepoch.any()
    else:
        assert e.flags[1] == before[1] | (1 << 7) and e.blocked[1]
        assert e.bepoch[1] == epoch & 0xFFFF
        assert (np.delete(e.flags, 1) == np.delete(before, 1)).all()


@settings(max_examples=300, deadline=None)
@given(words, words)
def test_ewb_check_is_the_sdm_rule(word, va_word):
    e = _entry(word)
    e.flags[2] = va_word
    if not e.valid[1] or not e.valid[2] or e.pt[2] != PageType.VA:
        want = FAULT_PF
    elif e.pt[1] in CHILD and not e.blocked[1]:
        want = SgxReturn.PAGE_NOT_BLOCKED
    else:
        want = 0
    before = e.flags.copy()
    assert ewb_check(e.flags, 1, 2) == want
    assert (e.flags == before).all()


@settings(max_examples=300, deadline=None)
@given(words, pts, st.booleans(), st.integers(-1, 3), words, st.integers(1, 1 << 40))
def test_eldu_commit_writes_the_entry_field_by_field(secinfo, pt, blocked, secs_epc, stale, ep):
    e = _entry(0)
    e.flags[1] = stale & ~(1 << 6)  # an invalid entry, whatever bits it had left
    e.bepoch[1] = 77
    eldu_commit(e.flags, e.bepoch, 1, secinfo, pt, blocked, np.int64(ep))
    e.secs[1] = secs_epc  # the caller's: stored once, derived from the owner (isa.epcm)
    assert e.valid[1] and e.pt[1] == pt
    assert e.rwx[1] == secinfo & 7
    assert e.pending[1] == bool(secinfo & 8)
    assert e.modified[1] == bool(secinfo & 16)
    assert e.pr[1] == bool(secinfo & 32)
    assert e.blocked[1] == (blocked and pt in CHILD)
    # a child page reads "tracked for good" (2 epochs behind), whatever the epoch
    assert e.bepoch[1] == ((ep - 2) & 0xFFFF if pt in CHILD else 0)
    assert e.secs[1] == secs_epc
    assert e.flags[0] == 0 and e.flags[2] == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_va_take_slot_takes_the_first_free_slot(bits):
    """On the packed slot map (8 slots to a byte; slots past ``bits`` are taken)."""
    bools = np.array(bits + [True] * (-len(bits) % 8), dtype=np.bool_)
    used = np.packbits(bools, bitorder="little")
    free = np.flatnonzero(~bools)
    before = bools.copy()
    slot, full = va_take_slot(used)
    after = np.unpackbits(used, bitorder="little").astype(np.bool_)
    if not free.size:
        assert slot == -1 and full and (after == before).all()
        return
    assert slot == free[0] and full == (free.size == 1)
    before[slot] = True
    assert (after == before).all()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 80),
    st.lists(st.integers(0, 8 * 80 - 1), max_size=6),
    st.integers(0, 3),
)
def test_va_take_slot_on_nearly_full_maps(nbytes, free_at, row):  # type: ignore[no-untyped-def]
    """What the machines see (session ``row1jit``: the map read a word at a time): maps of
    up to 80 bytes (the real one is 64, a VA page's 512 slots), all taken but a few slots
    anywhere - in the word of the slot taken, in a later word, in the tail bytes past the
    last whole word -, the map a row of a 2-D array (``KState.va_used``); each take is the
    first free slot, ``full`` exactly when it was the last, until none is free."""
    maps = np.full((4, nbytes), 0xFF, np.uint8)
    bools = np.ones(8 * nbytes, np.bool_)
    for s in free_at:
        if s < 8 * nbytes:
            bools[s] = False
    maps[row] = np.packbits(bools, bitorder="little")
    for _ in range(len(free_at) + 1):
        free = np.flatnonzero(~bools)
        slot, full = va_take_slot(maps[row])
        if not free.size:
            assert slot == -1 and full
            break
        assert slot == free[0] and full == (free.size == 1)
        bools[slot] = True
        assert (np.unpackbits(maps[row], bitorder="little").astype(np.bool_) == bools).all()
    assert (maps[np.arange(4) != row] == 0xFF).all()  # the other rows untouched


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 255)), min_size=0, max_size=100),
    st.integers(0, 130),
)
def test_reclaimer_writing_to_pcmd_looks_at_the_32_pages_of_the_pcmd_page(pages, index):
    desc = np.array([d for d, _ in pages], dtype=np.int32)  # < -1: a VA slot reference
    flags = np.array([f for _, f in pages], dtype=np.uint8)
    first = index & ~31
    sl = slice(first, min(first + 32, desc.size))
    want = bool(np.any((desc[sl] >= 0) & ((flags[sl] & ENCL_PAGE_BEING_RECLAIMED) != 0)))
    assert reclaimer_writing_to_pcmd(desc, flags, index) == want


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255))
def test_pte_ops_touch_only_the_pte_bits(word):
    from epcsim.kernel.encl_page import ENCL_PAGE_PTE_PRESENT as P
    from epcsim.kernel.encl_page import ENCL_PAGE_PTE_YOUNG as Y

    flags = np.full(3, word, dtype=np.uint8)
    young = pte_ops.test_and_clear_young(flags, 1)
    assert young == bool(word & P and word & Y)
    assert flags.tolist() == [word, word & ~Y, word]
    pte_ops.zap_ptes(flags, 2)
    assert flags.tolist() == [word, word & ~Y, word & ~(P | Y)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "pop", "del", "del_many", "isolate"]), st.integers(0, 1)),
        max_size=120,
    ),
    st.randoms(use_true_random=False),
)
def test_list_ops_are_page_list_step_by_step(ops, rnd):
    """The compiled list ops (``ops/page_list.py``) and ``PageList``'s Python methods give
    the same links and the same ``ends`` rows after every step, on two lists sharing one
    link pair (a free list and the LRU), with a plain Python list as the model."""
    from epcsim.fast.ops.page_list import (
        list_add_tail,
        list_del,
        list_del_many,
        list_pop_head,
        pop_head_many,
    )
    from epcsim.kernel.page_list import NIL, PageLinks, PageList

    n = 12
    py_links, op_links = PageLinks(n), PageLinks(n)
    py = [PageList(py_links), PageList(py_links)]
    for _ in range(2):
        PageList(op_links)
    model: list[list[int]] = [[], []]
    # bit 1: on list 1 (the LRU's membership bit); int32, the EPC's owner-flags word, as
    # the kernel's LRU and ksgxd's machine pass it to pop_head_many (one signature)
    flags = np.zeros(n, dtype=np.int32)
    for op, row in ops:
        off = [p for p in range(n) if p not in model[0] and p not in model[1]]
        if op == "add" and off:
            page = rnd.choice(off)
            py[row].add_tail(page)
            list_add_tail(op_links.prev, op_links.next, op_links.ends, row, page)
            model[row].append(page)
            flags[page] |= row
        elif op == "pop":
            got = py[row].pop_head()
            want = model[row].pop(0) if model[row] else NIL
            assert got == want
            assert list_pop_head(op_links.prev, op_links.next, op_links.ends, row) == want
            if want != NIL:
                flags[want] = 0
        elif op == "del" and model[row]:
            page = rnd.choice(model[row])
            py[row].remove(page)
            list_del(op_links.prev, op_links.next, op_links.ends, row, page)
            model[row].remove(page)
            flags[page] = 0
        elif op == "del_many" and model[row]:
            pages = np.array(rnd.sample(model[row], rnd.randint(1, len(model[row]))))
            py[row].remove_many(pages)
            list_del_many(op_links.prev, op_links.next, op_links.ends, row, pages)
            for page in pages.tolist():
                model[row].remove(page)
                flags[page] = 0
        elif op == "isolate" and row == 1:
            k = rnd.randint(0, 5)
            want = model[1][:k]
            for links in (py_links, op_links):
                out = np.empty(max(k, 1), dtype=np.int64)
                got = pop_head_many(links.prev, links.next, flags.copy(), 1, links.ends, 1, k, out)
                assert out[:got].tolist() == want
            del model[1][:k]
            flags[want] = 0
        for r in (0, 1):
            assert py[r].pages() == model[r]
            assert len(py[r]) == len(model[r])
            assert py[r].head == (model[r][0] if model[r] else NIL)
            assert py[r].tail == (model[r][-1] if model[r] else NIL)
        assert (py_links.ends == op_links.ends).all()
        assert (py_links.prev == op_links.prev).all() and (py_links.next == op_links.next).all()


def test_pop_head_many_stops_at_a_page_not_flagged_a_member():
    from epcsim.fast.ops.page_list import pop_head_many
    from epcsim.kernel.page_list import PageLinks, PageList

    links = PageLinks(4)
    lst = PageList(links)
    for page in (2, 0, 3):
        lst.add_tail(page)
    flags = np.array([1, 0, 1, 1], dtype=np.int32)  # the owner-flags word's dtype
    flags[0] = 0  # the second page lost its membership bit: a corrupt list
    out = np.empty(3, dtype=np.int64)
    assert pop_head_many(links.prev, links.next, flags, 1, links.ends, lst.row, 3, out) == -2
    assert out[0] == 2 and lst.pages() == [0, 3] and len(lst) == 2 and flags[2] == 0


def test_page_lists_keep_their_rows_when_ends_grows():
    """``PageLinks.ends`` reallocates when a fifth list is made: the lists made before must
    see the new array (their views are rebound), not a stale copy."""
    import copy

    from epcsim.kernel.page_list import PageLinks, PageList

    links = PageLinks(10)
    lists = [PageList(links) for _ in range(4)]
    for i, lst in enumerate(lists):
        lst.add_tail(i)
    lists += [PageList(links) for _ in range(3)]
    for i, lst in enumerate(lists):
        lst.add_tail(i + 3 if i >= 4 else i + 5)
    assert [lst.pages() for lst in lists[:4]] == [[0, 5], [1, 6], [2, 7], [3, 8]]
    assert links.ends[:4, 2].tolist() == [2, 2, 2, 2]
    twin = copy.deepcopy(lists[0])
    twin.add_tail(9)
    assert twin.pages() == [0, 5, 9] and lists[0].pages() == [0, 5]
