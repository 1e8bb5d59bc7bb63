"""The packed ``sgx_encl_page`` arrays (issue 9): every view reads back what was written,
and the one ``desc`` word holds the EPC page or the VA slot as the driver uses them."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from epcsim.kernel.encl_page import EnclPages, EpcField, VaField, VaIds
from epcsim.packed import FlagField

N = 8
OPS = st.lists(
    st.tuples(
        st.sampled_from(["load", "evict", "lose", "bits", "array_load"]),
        st.integers(0, N - 1),
        st.integers(0, 700),
    ),
    max_size=60,
)


@given(OPS)
def test_desc_holds_the_epc_page_or_the_va_slot(ops):
    ids = VaIds()
    for va in (100, 7, 300):
        ids.add(va)
    ids.remove(7)  # a freed number is reused by the next VA page
    ids.add(55)
    pages = EnclPages(N, ids)
    epc, va_page, va_slot = (
        EpcField(pages.desc),
        VaField(pages.desc, ids, False),
        VaField(pages.desc, ids, True),
    )
    young = FlagField(pages.flags, 3, 1)
    model_epc = [-1] * N
    model_va = [(-1, -1)] * N
    model_young = [False] * N
    for op, i, x in ops:
        if op == "load":  # ELDU: the EPC page replaces the VA slot
            epc[i] = x
            model_epc[i], model_va[i] = x, (-1, -1)
        elif op == "evict" and model_epc[i] >= 0:  # reclaimer_write: EPC gone, then the slot
            epc[i] = -1
            va = (100, 55, 300)[x % 3]
            pages.desc[i] = ids.ref(va, x % 512)
            model_epc[i], model_va[i] = -1, (va, x % 512)
        elif op == "lose":  # a write of -1 keeps a VA slot, clears an EPC page
            epc[i] = -1
            model_epc[i] = -1
        elif op == "bits":
            young[i] = x % 2
            model_young[i] = bool(x % 2)
        elif op == "array_load":
            idx = np.array([i, (i + 3) % N])
            vals = np.array([x, -1])
            epc[idx] = vals
            model_epc[i], model_va[i] = x, (-1, -1)
            model_epc[(i + 3) % N] = -1  # the second is a -1 write: its slot stays
        assert [epc[j] for j in range(N)] == model_epc
        assert epc[:].tolist() == model_epc
        assert [(va_page[j], va_slot[j]) for j in range(N)] == model_va
        assert list(zip(va_page[:].tolist(), va_slot[:].tolist(), strict=True)) == model_va
        assert young[:].tolist() == model_young


def test_views_work_as_arrays():
    pages = EnclPages(4, VaIds())
    present, kind = FlagField(pages.flags, 0, 1), FlagField(pages.flags, 4, 3)
    present[np.array([1, 3])] = True
    kind[:] = 2
    kind[3] = 1
    assert np.flatnonzero(present & (kind == 1)).tolist() == [3]
    assert (~present).tolist() == [True, False, True, False]
    assert present.tobytes() == bytes([0, 1, 0, 1]) and int(kind.sum()) == 7
    assert pages.nbytes == 4 * 6


@given(st.lists(st.tuples(st.integers(-13, 12), st.booleans()), max_size=40))
def test_bit_array_reads_back_like_a_bool_array(writes):
    from epcsim.packed import BitArray

    bits, model = BitArray(13), np.zeros(13, dtype=np.bool_)
    for i, v in writes:
        bits[i] = v
        model[i] = v
        assert bits[i] == model[i]
    assert bits[:].tolist() == model.tolist() and len(bits) == bits.size == 13
    assert np.flatnonzero(bits).tolist() == np.flatnonzero(model).tolist()
    bits[np.array([0, 5])] = True
    model[[0, 5]] = True
    assert bits[2:9].tolist() == model[2:9].tolist() and bits.nbytes == 2


@given(
    st.lists(st.integers(0, 255), min_size=N, max_size=N),
    st.integers(0, 5),  # shift + width <= 8 bits
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(-N, N - 1), st.integers(-3, 300)), max_size=20),
)
def test_a_python_int_index_reads_and_writes_as_a_numpy_one(words, shift, width, writes):
    """The views read and write one page by a Python ``int`` without NumPy scalars (the hot
    path of a fault); by a NumPy integer they take the general path. Both must agree."""
    a = np.array(words, dtype=np.uint8)
    b = a.copy()
    fa, fb = FlagField(a, shift, width), FlagField(b, shift, width)
    for i, v in writes:
        fa[i] = v  # Python int: the fast path
        fb[np.int64(i)] = v  # NumPy integer: the general path
        assert a.tolist() == b.tolist()
        for j in range(-N, N):
            ra, rb = fa[j], fb[np.int64(j)]
            assert ra == rb and type(ra) is type(rb)
    desc = np.array([w - 3 for w in words], dtype=np.int32)  # pages, -1 and VA references
    ids = VaIds()
    ids.add(9)
    for view in (EpcField(desc), VaField(desc, ids, False), VaField(desc, ids, True)):
        for j in range(-N, N):
            assert view[j] == view[np.int64(j)]
