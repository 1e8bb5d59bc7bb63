"""``fast.emodt.emodt_word_ok`` - the one restatement of EMODT's outcome (``EdmmMixin.emodt``)
that MODIFY_TYPES' batch calls and the compiled MODIFY_TYPES loop is to call (PATHS.md "The
MODIFY_TYPES loop", M3) - and ``emodt_apply``, the change it makes to one page, against the
leaf itself, over EPCM words."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE, PageType, secinfo_flags
from epcsim.isa.epcm import EPCM_BLOCKED, EPCM_MODIFIED, EPCM_PENDING, EPCM_PR, EPCM_VALID

_HW: list = []


def _enclave():  # type: ignore[no-untyped-def]
    """A small initialized enclave: the CPU and one of its EPC pages."""
    system = epcsim.System(epc=64 * PAGE_SIZE, cpus=2, seed=0)
    encl = system.create_enclave(16 * PAGE_SIZE)
    assert encl.add_pages(0, 4 * PAGE_SIZE).ok and encl.init().ok
    return system.cpu, int(encl.encl.epc[1])


_REG, _TCS, _TRIM = int(PageType.REG), int(PageType.TCS), int(PageType.TRIM)


@settings(max_examples=400, deadline=None)
@given(
    pt=st.sampled_from([int(p) for p in PageType]),
    rwx=st.integers(0, 7),
    state=st.sampled_from([0, 0, EPCM_PENDING, EPCM_MODIFIED, EPCM_PR, EPCM_PENDING | EPCM_PR]),
    valid=st.booleans(),
    blocked=st.booleans(),
    new=st.sampled_from([_TCS, _TRIM]),
)
# each check of the leaf, one at a time (dropping any one from emodt_word_ok fails here)
@example(pt=_REG, rwx=3, state=0, valid=True, blocked=False, new=_TRIM)  # success
@example(pt=_TCS, rwx=0, state=0, valid=True, blocked=True, new=_TRIM)  # BLOCKED: success
@example(pt=_REG, rwx=3, state=0, valid=False, blocked=False, new=_TRIM)  # invalid: #PF
@example(pt=_TCS, rwx=0, state=0, valid=True, blocked=False, new=_TCS)  # TCS -> TCS: #PF
@example(pt=_TRIM, rwx=0, state=0, valid=True, blocked=False, new=_TRIM)  # TRIM: #PF
@example(pt=_REG, rwx=3, state=EPCM_PENDING, valid=True, blocked=False, new=_TRIM)
@example(pt=_REG, rwx=3, state=EPCM_MODIFIED, valid=True, blocked=False, new=_TCS)
def test_the_compiled_emodt_outcome_is_the_leafs(pt, rwx, state, valid, blocked, new) -> None:  # type: ignore[no-untyped-def]
    """True exactly when ``SgxCpu.emodt`` returns 0, for the requests the kernel builds
    (``secinfo_flags(new_type)``, TCS or TRIM) on a page of an initialized enclave; the
    vector form agrees with the scalar one."""
    import numpy as np

    from epcsim.fast.emodt import emodt_apply, emodt_word, emodt_word_ok, emodt_words_ok
    from epcsim.isa.epcm import EPCM_PT_SHIFT

    if not _HW:
        _HW.append(_enclave())
    hw, epc = _HW[0]
    word = (pt << EPCM_PT_SHIFT) | rwx | state
    word |= (EPCM_VALID if valid else 0) | (EPCM_BLOCKED if blocked else 0)
    m = hw.epcm
    saved = int(m.flags[epc]), int(m.bepoch[epc])
    try:
        m.flags[epc] = word
        ok = emodt_word_ok(np.int64(m.flags[epc]), new)  # int64, as the machines pass it
        flags, bepoch = m.flags.copy(), m.bepoch.copy()
        assert ok == (hw.emodt(secinfo_flags(new), epc) == 0)
        if ok:  # the element form of the change: the same word and stamp, nothing else
            # the page as the state holds it (``desc`` is int32), as the trim's machine passes
            # it: one compiled signature (tests/README.md)
            emodt_apply(flags, bepoch, np.int32(epc), new, hw.secs_of(epc).epoch)
            assert int(emodt_word(word, new)) == int(m.flags[epc])
            assert np.array_equal(flags, m.flags) and np.array_equal(bepoch, m.bepoch)
        words = np.array([word, word ^ EPCM_VALID], dtype=m.flags.dtype)
        assert emodt_words_ok(words, new).tolist() == [ok, emodt_word_ok(np.int64(words[1]), new)]
    finally:
        m.flags[epc], m.bepoch[epc] = saved
