"""The packed EPCM (issue 9): the views read back what the leaves wrote, BEPOCH's 16 bits
give the answers of the full epoch for any number of ETRACKs, and odd addresses are exact."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_helpers import SECS_EPC, VA_EPC, enclave

from epcsim.arch import PageType, SgxReturn
from epcsim.isa import PageInfo
from epcsim.isa.epcm import BEPOCH_MASK, BEPOCH_REBASE, EPCM_VALID, Epcm, _rebase

FIELDS = {"valid": 1, "blocked": 1, "pending": 1, "modified": 1, "pr": 1, "rwx": 3, "pt": 8}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(FIELDS)), st.integers(0, 7), st.integers(0, 255))))
def test_flag_fields_are_independent(writes):
    """Each view behaves as its own array: a write changes that field of that entry only."""
    e = Epcm(8)
    model = {f: np.zeros(8, dtype=np.int64) for f in FIELDS}
    for field, epc, value in writes:
        value &= (1 << FIELDS[field]) - 1
        getattr(e, field)[epc] = value
        model[field][epc] = value
    for field, want in model.items():
        assert getattr(e, field)[:].astype(np.int64).tolist() == want.tolist()
        assert [int(getattr(e, field)[i]) for i in range(8)] == want.tolist()
    rwx, pt = model["rwx"], model["pt"]
    for i in range(8):
        want = rwx[i] | model["pending"][i] << 3 | model["modified"][i] << 4 | model["pr"][i] << 5
        assert e.secinfo(i) == int(want | pt[i] << 8)


def test_array_writes_and_allows():
    e = Epcm(6)
    e.valid[np.arange(6)] = True
    e.pt[:] = int(PageType.REG)
    e.rwx[np.array([0, 1, 2])] = np.array([1, 3, 7])
    e.pending[3] = True
    e.modified[4] = True
    assert e.allows(np.arange(6)).tolist() == [True, True, True, False, False, False]
    assert e.allows(np.arange(6), write=True).tolist() == [False, True, True, False, False, False]
    assert e.allows(np.arange(6), execute=True).tolist() == [False, False, True] + [False] * 3
    e.clear(2)
    assert not e.valid[2] and e.rwx[2] == 0 and e.secs[2] == -1


@given(st.integers(0, (1 << 64) - 1))
def test_linaddr_reads_back_any_value(addr):
    e = Epcm(3)
    e.linaddr[1] = addr
    e.linaddr[2] = 5 << 12
    assert e.linaddr[1] == addr and e.linaddr[2] == 5 << 12 and e.linaddr[0] == 0
    assert e.linaddr[:].tolist() == [0, addr, 5 << 12]
    e.linaddr[1] = 7 << 12
    assert e.linaddr[np.array([1])].tolist() == [7 << 12]
    e.linaddr[1] = e.linaddr[2] = 0  # what an unbound EPCM implies: the side table empties
    assert not e.aside


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([0, 1, 2, BEPOCH_REBASE - 1, BEPOCH_REBASE, 1 << 16, (1 << 16) + 1]),
    st.integers(0, 3),
)
def test_bepoch_is_exact_across_wraps(before, after):
    """A page blocked after ``before`` ETRACKs, then ``after`` more: EWB sees it tracked
    exactly when an ETRACK followed the EBLOCK - also when the epoch's distance is a multiple
    of 2**16, where a plain 16-bit compare would say "not tracked"."""
    cpu = enclave()
    for _ in range(before):
        assert cpu.etrack(SECS_EPC) == 0
    assert cpu.eblock(2) == 0
    for _ in range(after):
        assert cpu.etrack(SECS_EPC) == 0
    ret = cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0]
    assert ret == (0 if after else SgxReturn.NOT_TRACKED)


def test_bepoch_distance_survives_2_16_etracks():
    cpu = enclave()
    assert cpu.eblock(2) == 0
    for _ in range(1 << 16):
        assert cpu.etrack(SECS_EPC) == 0
    st_ = cpu.secs_state(SECS_EPC)
    assert (st_.epoch - int(cpu.epcm.bepoch[2])) & BEPOCH_MASK >= 2
    assert cpu.ewb(PageInfo(), 2, VA_EPC, 0)[0] == 0


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, 3 * BEPOCH_REBASE),
    near=st.booleans(),
    before=st.lists(st.integers(0, 40), max_size=6),
    k=st.integers(0, 40),
)
def test_a_batch_of_stamps_and_etracks_leaves_the_stamps_of_single_steps(start, near, before, k):
    """``advance_epoch`` over k epochs and ``stamp_epochs`` (the fast engine's batched
    EMODT + ETRACK) leave byte for byte what k single steps leave, re-bases included."""
    if near:
        start = BEPOCH_REBASE * (1 + start % 3) - 20  # the batch crosses a multiple
    one, batch = Epcm(64), Epcm(64)
    for e in (one, batch):
        e.secs[:] = 5
    epoch = start
    for j, back in enumerate(before):  # earlier stamps, some far behind
        for e in (one, batch):
            e.stamp_epoch(40 + j, max(0, epoch - back))
    pages = np.arange(k)
    for i in range(k):
        one.stamp_epoch(i, epoch)
        one.advance_epoch(5, epoch, epoch + 1)
        epoch += 1
    batch.advance_epoch(5, start, start + k)
    batch.stamp_epochs(pages, start + np.arange(k), start + k)
    assert one.bepoch.tobytes() == batch.bepoch.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(0, 2), st.integers(0, BEPOCH_MASK + 4)),
        min_size=1,
        max_size=40,
    ),
    last=st.integers(1, 5).map(lambda k: k * BEPOCH_REBASE),
    back=st.one_of(st.integers(1, 3), st.integers(1, BEPOCH_REBASE + 2)),
    dtype=st.sampled_from([np.int8, np.int16, np.int32]),
)
def test_the_rebase_pass_restamps_exactly_the_enclaves_entries_far_behind(
    entries, last, back, dtype
):
    """``_rebase`` (written without branches, session ``trim3``) against its rule restated
    entry by entry: a valid entry with an owner index, of enclave 1, 2 or more epochs behind
    ``last`` (its 16-bit distance to ``old`` plus the jump) gets ``last - 2``; every other
    entry keeps its bytes. Each ``owner_encl`` width ``EpcPages.fit_owner_id`` uses; a
    stamp past ``BEPOCH_MASK`` stands for one 0-3 epochs behind ``old`` (the boundary)."""
    old = last - back
    entries = [(v, o, e, b if b <= BEPOCH_MASK else (old - (b - BEPOCH_MASK - 1)) & BEPOCH_MASK)
               for v, o, e, b in entries]  # fmt: skip
    entries += [(True, True, 1, (old - d) & BEPOCH_MASK) for d in range(4)]  # each example
    flags = np.array([EPCM_VALID | 3 if v else 3 for v, _, _, _ in entries], np.uint16)
    owner_flags = np.array([16 if o else -16 for _, o, _, _ in entries], np.int32)
    owner_encl = np.array([e for _, _, e, _ in entries], dtype)
    bepoch = np.array([b for _, _, _, b in entries], np.uint16)
    want = bepoch.copy()
    for i, (valid, owned, encl, b) in enumerate(entries):
        if valid and owned and encl == 1 and ((old - b) & BEPOCH_MASK) + (last - old) >= 2:
            want[i] = (last - 2) & BEPOCH_MASK
    _rebase(flags, owner_encl, owner_flags, bepoch, 1, old, last)
    assert bepoch.tolist() == want.tolist()
