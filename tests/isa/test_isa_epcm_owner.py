"""ENCLAVESECS and ENCLAVEADDRESS stored once (issue 9 rows 6 and 8): the EPCM reads them
from the kernel's owner of the page where they agree, and keeps the exact value aside where
they differ. Whatever the writes, each entry reads what a plain pair of arrays would hold."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.isa.epcm import Epcm

N = 6  # EPC pages
ENCLAVES = 3


class Owners:
    """A stand-in for ``kernel.epc.EpcPages``: the owner of each page, and per enclave id
    its SECS page and ELRANGE base."""

    def __init__(self) -> None:
        self.owner_encl = np.full(N, -1, dtype=np.int16)
        self.owner_index = np.full(N, -1, dtype=np.int32)
        self.owner_flags = self.owner_index  # its sign is the index's (OwnerMap)
        self.encl_secs = np.full(ENCLAVES, -1, dtype=np.int32)
        self.encl_base = np.zeros(ENCLAVES, dtype=np.int64)


page = st.integers(0, N - 1)
encl = st.integers(0, ENCLAVES - 1)
secs_value = st.integers(-1, N)
addr = st.sampled_from([0, 1 << 12, 5 << 12, 0x10000, 0x10000 + (3 << 12), 123, 1 << 50])
op = st.one_of(
    # a leaf making an entry valid (EADD, EAUG, ELDU): clear, VALID, then SECS and address
    st.tuples(st.just("make"), page, secs_value, addr),
    # ... at the SECS and address the page's owner implies (the kernel's usual case)
    st.tuples(st.just("make_owned"), page),
    st.tuples(st.just("make_owned"), page),
    st.tuples(st.just("clear"), page),  # EWB, EREMOVE
    # the kernel changes a page's owner (alloc, free, OWNER_LEAKED): the EPCM keeps first
    st.tuples(st.just("own"), page, encl, st.integers(-5, 20)),
    st.tuples(st.just("own"), page, encl, st.integers(0, 3)),
    # an enclave's SECS page or base changes (ECREATE, SECS write-back and reload)
    st.tuples(st.just("encl"), encl, st.integers(-1, N - 1), st.sampled_from([0, 0x10000])),
    st.tuples(st.just("encl"), encl, st.integers(0, N - 1), st.just(0x10000)),
    st.tuples(st.just("secs"), st.lists(page, min_size=1, max_size=3), secs_value),
    st.tuples(st.just("lin"), st.lists(page, min_size=1, max_size=3), addr),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40), st.booleans())
def test_the_derived_fields_read_what_plain_arrays_hold(ops, bound):
    e, own = Epcm(N), Owners()
    if bound:
        e.bind_owner(own)
    secs = np.full(N, -1, dtype=np.int64)
    lin = np.zeros(N, dtype=np.uint64)
    for o in ops:
        if o[0] in ("make", "make_owned"):
            if o[0] == "make":
                _, p, s, a = o
            else:
                p = o[1]
                enc, idx = int(own.owner_encl[p]), int(own.owner_index[p])
                s = int(own.encl_secs[enc]) if idx >= 0 else -1
                a = int(own.encl_base[enc]) + (idx << 12) if idx >= 0 else 0
            e.clear(p)
            e.valid[p] = True
            e.secs[p] = s
            e.linaddr[p] = a
            secs[p], lin[p] = s, a
        elif o[0] == "clear":
            e.clear(o[1])
            secs[o[1]], lin[o[1]] = -1, 0
        elif o[0] == "own":
            _, p, enc, idx = o
            e.keep(p)
            own.owner_encl[p], own.owner_index[p] = (enc, idx) if idx != -1 else (-1, -1)
        elif o[0] == "encl":
            _, enc, s, base = o
            e.keep_owned(enc)
            own.encl_secs[enc], own.encl_base[enc] = s, base
        elif o[0] == "secs":
            pages = np.array(o[1])
            e.secs[pages] = o[2]
            secs[pages] = o[2]
        else:
            pages = np.array(o[1])
            e.linaddr[pages] = o[2]
            lin[pages] = o[2]
        assert [e.secs[p] for p in range(N)] == secs.tolist()
        assert [e.linaddr[p] for p in range(N)] == lin.tolist()
        assert e.secs[:].tolist() == secs.tolist()
        assert e.linaddr[np.arange(N)].tolist() == lin.tolist()
        assert [e.secs.item(p) for p in range(N)] == secs.tolist()
    for p in range(N):  # an entry cleared keeps nothing aside
        e.clear(p)
    assert not e.aside


def test_entries_built_by_the_kernel_keep_nothing_aside():
    """The common case costs no side table: a build, paging and removal leave it empty."""
    import epcsim

    system = epcsim.System(epc="256K", cpus=1, seed=2)
    enc = system.create_enclave("1M")
    assert enc.add_pages(0, "512K").ok and enc.init().ok
    enc.access_pages(list(range(128)), write=True)
    system.run(until="5ms")
    assert enc.swapped_pages > 0 and not system.cpu.epcm.aside
    e, encl = system.cpu.epcm, enc.encl
    res = np.flatnonzero(encl.epc >= 0)
    pages = encl.epc[res].astype(np.int64)
    assert (e.secs[pages] == encl.secs_epc).all()
    assert (e.linaddr[pages] == encl.base + (res.astype(np.uint64) << np.uint64(12))).all()
