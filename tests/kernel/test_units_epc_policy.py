"""Pure kernel data structures: sizes, the FIFO free lists, the LRU policy interface."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.kernel.epc import SGX_EPC_PAGE_IS_FREE, EpcPages, FreeList
from epcsim.kernel.policy import KernelLru, make_policy
from epcsim.units import parse_duration, parse_pages, parse_size


def test_parse_size_forms():
    assert parse_size(4096) == 4096
    assert parse_size("4K") == 4096
    assert parse_size("93.5M") == int(93.5 * (1 << 20))
    assert parse_size("64G") == 64 << 30
    assert parse_size("1MiB") == 1 << 20
    assert parse_size("sgx1-client") == 98_041_856
    assert parse_pages("sgx1-client") == 23_936
    assert parse_duration("10ms") == 10_000_000


@pytest.mark.parametrize("bad", ["", "12Q", "-4K", True, None, 1.5, "abc"])
def test_parse_size_rejects_with_the_argument_name(bad):
    with pytest.raises(ValueError, match="^epc:"):
        parse_size(bad, "epc")


def test_free_list_is_fifo():
    fl = FreeList(8)  # links for pages 0..7
    for p in (3, 1, 2):
        fl.push_tail(p)
    assert fl.pop_head() == 3
    fl.push_tail(7)
    assert list(fl.pages()) == [1, 2, 7]
    assert [fl.pop_head() for _ in range(4)] == [1, 2, 7, -1]


def test_epc_alloc_takes_head_and_free_appends_tail():
    epc = EpcPages([4])
    a = epc.alloc(0)
    b = epc.alloc(0)
    assert (a, b) == (0, 1) and epc.nr_free_pages == 2
    epc.free(a)
    # FIFO reuse (spec §5.3): the freed page goes to the tail, after 2 and 3
    assert [epc.alloc(0) for _ in range(3)] == [2, 3, 0]
    assert epc.alloc(0) == -1
    with pytest.raises(RuntimeError, match="freed twice"):
        epc.free(2)
        epc.free(2)


def test_epc_nodes_round_robin_from_local_node():
    epc = EpcPages([2, 2], [0, 1])
    assert epc.alloc(1) in (2, 3)
    assert epc.alloc(1) in (2, 3)
    assert epc.alloc(1) in (0, 1)  # node 1 empty: next node
    assert epc.flags[3] != SGX_EPC_PAGE_IS_FREE


@settings(deadline=None)  # the first isolate compiles pop_head_many on a fresh checkout
@given(
    st.lists(
        st.tuples(st.sampled_from(["mark", "unmark", "isolate"]), st.integers(0, 15)), max_size=200
    )
)
def test_kernel_lru_matches_a_list_model(ops):
    lru = KernelLru(16)
    model: list[int] = []
    for op, page in ops:
        if op == "mark" and page not in model:
            lru.mark(page)
            model.append(page)
        elif op == "unmark" and page in model:
            lru.unmark(page)
            model.remove(page)
        elif op == "isolate":
            n = page % 5
            assert lru.isolate(n) == model[:n]
            del model[:n]
        assert lru.order() == model and len(lru) == len(model)


def test_unknown_policy_is_a_value_error():
    with pytest.raises(ValueError, match="policy: unknown reclaim policy 'clockx'"):
        make_policy("clockx", 4)


def test_random_policy_isolates_distinct_members_deterministically():
    def draw(seed):
        pol = make_policy("random", 64, seed)
        for p in range(0, 64, 2):
            pol.mark(p)
        return pol, pol.isolate(10)

    pol, got = draw(3)
    assert len(set(got)) == 10 and all(p % 2 == 0 for p in got)
    assert len(pol) == 22 and not any(p in pol for p in got)
    assert draw(3)[1] == got and draw(4)[1] != got


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alloc", "free", "mark", "unmark", "isolate"]), st.integers(0, 11)
        ),
        max_size=150,
    )
)
def test_free_lists_and_lru_share_one_link_pair(ops):
    """``sgx_epc_page.list`` serves both lists (issue 9): allocation order, the LRU order and
    the isolated batch all match plain list models whatever the interleaving."""
    epc = EpcPages([6, 6], [0, 1])
    lru = make_policy("lru", 12, 0, epc)
    assert lru.prev is epc.links.prev and lru.next is epc.links.next
    free = {0: list(range(6)), 1: list(range(6, 12))}
    lru_model: list[int] = []
    in_use: list[int] = []  # allocated, off the LRU
    for op, arg in ops:
        if op == "alloc":
            page = epc.alloc(arg % 2)
            nodes = [arg % 2, 1 - arg % 2]
            want = next((free[nd].pop(0) for nd in nodes if free[nd]), -1)
            assert page == want
            if page >= 0:
                in_use.append(page)
        elif op == "free" and in_use:
            page = in_use.pop(arg % len(in_use))
            epc.free(page)
            free[page // 6].append(page)
        elif op == "mark" and in_use:
            page = in_use.pop(arg % len(in_use))
            lru.mark(page)
            lru_model.append(page)
        elif op == "unmark" and lru_model:
            page = lru_model.pop(arg % len(lru_model))
            lru.unmark(page)
            in_use.append(page)
        elif op == "isolate":
            n = arg % 4
            got = lru.isolate(n)
            assert got == lru_model[:n]
            del lru_model[:n]
            in_use.extend(got)
        assert lru.order() == lru_model
        assert [fl.pages() for _, fl in sorted(epc.free_lists.items())] == [free[0], free[1]]
        assert all(p in lru for p in lru_model) and not any(p in lru for p in in_use)


def test_a_page_on_the_lru_cannot_be_freed():
    epc = EpcPages([4])
    lru = make_policy("lru", 4, 0, epc)
    page = epc.alloc(0)
    lru.mark(page)
    with pytest.raises(RuntimeError, match="on the LRU"):
        epc.free(page)
    lru.unmark(page)
    epc.free(page)
    assert epc.free_lists[0].pages() == [1, 2, 3, page]


def test_owner_ids_widen_when_they_no_longer_fit():
    epc = EpcPages([4])
    epc.owner_encl[0] = 7
    assert epc.owner_encl.itemsize == 1
    epc.fit_owner_id(127)
    assert epc.owner_encl.itemsize == 1
    epc.fit_owner_id(128)
    epc.owner_encl[2] = 128
    assert epc.owner_encl.itemsize == 2
    epc.fit_owner_id(32_767)
    assert epc.owner_encl.itemsize == 2
    epc.fit_owner_id(32_768)
    epc.owner_encl[1] = 32_768
    assert epc.owner_encl.tolist() == [7, 32_768, 128, -1]
    epc.fit_owner_id(40_000_000)  # two steps at once
    assert epc.owner_encl.itemsize == 4
