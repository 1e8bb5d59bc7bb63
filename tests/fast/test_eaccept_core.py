"""``eaccept_range``'s per-page loop on the compiled core (``System(fast_core=True)``: the
enclave thread's machine in its EACCEPT mode, PATHS.md "The EACCEPT loop", rows E0-E4)
against the fast engine without the core and the reference.

The removal stress test's shape on a small EPC: a heap 1-3x the EPC added and initialized,
MODIFY_TYPES(TRIM) over it (called again after -EAGAIN), EACCEPT(TRIM|MODIFIED) on each
page from inside - one entry per page as the selftest, or one entry for the range - while
ksgxd (and, with direct reclaim, the ioctls) page, then REMOVE_PAGES. Some pages may be
left untrimmed: their EACCEPT fails (PAGE_ATTRIBUTES_MISMATCH), which the core hands back
to the Python loop at the page (``KB_LEAF``). After every step every observable must be
equal (the kernel's and the CPU's arrays, backing records byte for byte, counters, free
timeline, latencies, the lock's trace, clock, eids, the thread's accounting) and so must
the ``OpRecord`` (progress points and all); the core must have accepted pages
(``StreamCore.eaccepts``), or the test proves nothing.

REMOVE_PAGES runs on the core too (session ``ioctlcore``, PATHS.md "The REMOVE_PAGES loop",
``StreamCore.removes``): over the whole heap, so the untrimmed pages stop it with -EPERM
(Python's ``per_page`` at the page, ``KB_PAGE``), from the thread (``drive_range``) or from
the process's ioctl task (``Enclave.remove_pages``: every call's result compared).
"""

from __future__ import annotations

import numpy as np
from core_cases import agree, eaccept_scenario
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags


def _three(*args, **kw) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """The scenario on the three systems, equal step by step; the core's accepted, trimmed
    and removed pages."""
    b = agree(eaccept_scenario, args, kw)
    assert len(b) == 6
    return int(b[0]), int(b[1]), int(b[2])


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    cpus=st.integers(2, 4),
    heap_x=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    direct=st.booleans(),
    epp=st.booleans(),
    settle=st.booleans(),
    short=st.sampled_from([0, 0, 3]),
    via=st.sampled_from(["thread", "ioctl"]),
)
def test_the_eaccept_loop_on_the_core_matches_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool, epp: bool,
    settle: bool, short: int, via: str,
) -> None:  # fmt: skip
    """Equal in every observable and in the ``OpRecord``s. With a heap of at least the EPC
    the loop pages and the core takes it from the second page (the first one's entry
    takes the CPU in Python); a heap that fits is the fast engine's batch
    (``fast/eaccept.accept_run``) once the first page is done, where the core has nothing
    to do."""
    eaccepts, trims, removes, entries, tcs_stops, _ = agree(
        eaccept_scenario, (seed, epc_pages, cpus, heap_x, direct, epp, settle, short), {"via": via}
    )
    if heap_x >= 1:
        # the core accepts pages, unless every EACCEPT call it entered stopped at once on
        # the TCS ksgxd had reclaimed (``StreamCore.eaccept_tcs_stops``; seed 263, EPC 64,
        # 2 CPUs, heap 2x, direct reclaim, settled, short 3 does: the loop then runs in
        # Python, the results equal - session ``tcsguard``, 2026-11-26)
        assert eaccepts > 0 or tcs_stops == entries > 0, "the core accepted no page"
        assert trims > 0, "the core trimmed no page"
        assert removes > 0, "the core removed no page"


def test_on_pages_sees_each_256_page_mark_as_the_reference_does() -> None:
    """``eaccept_range``'s ``on_pages`` with the loop on the core: the machine stops at each
    256-page mark after its entry (``TC_MARKS``) and Python calls the hook there, with the
    clock and the counters of the reference's call (after the page's EEXIT); three
    untrimmed pages fail on the way (``KB_LEAF``). Equal on the three systems, the core
    engaged, the marks reached (a 768-page heap: 256, 512, 768)."""
    eaccepts, trims, removes = _three(5, 128, 2, 6.0, True, True, True, 3, marks=True)
    assert eaccepts > 700 and trims > 0 and removes > 0


def _inside():  # type: ignore[no-untyped-def]
    """An LP inside a small initialized enclave (the implicit TCS): the CPU, the SECS's
    state, the enclave and the LP."""
    system = epcsim.System(epc=64 * PAGE_SIZE, cpus=2, seed=0)
    encl = system.create_enclave(16 * PAGE_SIZE)
    assert encl.add_pages(0, 4 * PAGE_SIZE).ok and encl.init().ok
    hw, e = system.cpu, encl.encl
    assert hw.eenter(0, -1, e.secs_epc) == 0
    return hw, hw.secs_state(e.secs_epc), e, 0


_HW = []


@settings(max_examples=300, deadline=None)
@given(
    flip=st.sampled_from([0, 0, 0, 1, 2, 4, 8, 16, 32, 1 << 8, 3 << 8, 6 << 8]),
    valid=st.booleans(),
    blocked=st.booleans(),
    bepoch=st.integers(0, 0xFFFF),
    behind=st.sampled_from([0, 1, 2, 3, 0x8000]),
    tracking=st.booleans(),
    req=st.sampled_from(
        [
            (PageType.TRIM, 0, SecinfoFlags.MODIFIED),
            (PageType.TCS, 0, SecinfoFlags.MODIFIED),
            (PageType.REG, 3, SecinfoFlags.PENDING),
            (PageType.REG, 1, SecinfoFlags.PR),
            (PageType.REG, 7, SecinfoFlags.PR),
        ]
    ),
)
def test_the_compiled_eaccept_outcome_is_the_leafs(  # type: ignore[no-untyped-def]
    flip, valid, blocked, bepoch, behind, tracking, req
) -> None:
    """``fast.eaccept.eaccept_word_ok`` (the one restatement, which the core's E1 and the
    batch call) returns True exactly when ``SgxCpu.eaccept`` returns 0, over EPCM words,
    epochs and the tracking set, for the requests ``_request_allowed`` passes."""
    from epcsim.fast.eaccept import _request_allowed, eaccept_word_ok
    from epcsim.isa.epcm import EPCM_BLOCKED, EPCM_PT_SHIFT, EPCM_VALID

    if not _HW:
        _HW.append(_inside())
    hw, secs, e, lp = _HW[0]
    flags = secinfo_flags(*req)
    assert _request_allowed(flags)
    epc = int(e.epc[1])
    # the request's own attributes, or one field off (a type, a permission, a state bit)
    word = (flags & 0xFF3F) ^ flip
    if (word >> EPCM_PT_SHIFT) > 4:
        word &= 0xFF
    word |= (EPCM_VALID if valid else 0) | (EPCM_BLOCKED if blocked else 0)
    m = hw.epcm
    saved = (int(m.flags[epc]), int(m.bepoch[epc]), secs.epoch, set(secs.tracking))
    try:
        m.flags[epc] = word
        m.bepoch[epc] = bepoch
        secs.epoch = bepoch + behind
        secs.tracking = {lp} if tracking else set()
        # the word as the EPCM holds it (uint16), as the core's E1 passes it: one signature
        ok = eaccept_word_ok(np.uint16(word), m.bepoch[epc], secs.epoch, bool(secs.tracking), flags)
        assert ok == (hw.eaccept(lp, flags, e.linaddr(1), epc) == 0)
    finally:
        m.flags[epc], m.bepoch[epc] = saved[0], saved[1]
        secs.epoch, secs.tracking = saved[2], saved[3]


_QUIET = []


@settings(max_examples=200, deadline=None)
@given(
    pt=st.sampled_from([PageType.REG, PageType.TCS, PageType.TRIM]),
    rwx=st.integers(0, 7),
    pending=st.booleans(),
    modified=st.booleans(),
    pr=st.booleans(),
    valid=st.booleans(),
    blocked=st.booleans(),
)
def test_the_compiled_remove_outcome_is_the_leafs(  # type: ignore[no-untyped-def]
    pt, rwx, pending, modified, pr, valid, blocked
) -> None:
    """``fast/driver/remove.remove_word_ok`` (REMOVE_PAGES on the core, PATHS.md R3-R5) is
    True exactly for a valid TRIM page on which ``SgxCpu.emodpr``'s probe faults with #PF
    and ``SgxCpu.eremove`` then succeeds - over EPCM words of each type and state bit.
    Anything else the core leaves to Python's ``per_page``."""
    from epcsim.arch import X86_TRAP_PF, encls_faulted, encls_trapnr
    from epcsim.fast.driver.remove import remove_word_ok
    from epcsim.isa.epcm import (
        EPCM_BLOCKED,
        EPCM_MODIFIED,
        EPCM_PENDING,
        EPCM_PR,
        EPCM_PT_SHIFT,
        EPCM_VALID,
    )  # fmt: skip

    if not _QUIET:  # an initialized enclave, no LP inside
        system = epcsim.System(epc=64 * PAGE_SIZE, cpus=2, seed=0)
        handle = system.create_enclave(16 * PAGE_SIZE)
        assert handle.add_pages(0, 4 * PAGE_SIZE).ok and handle.init().ok
        _QUIET.append((system.cpu, handle.encl))
    hw, e = _QUIET[0]
    epc = int(e.epc[1])
    secs = hw.secs_state(e.secs_epc)
    word = (int(pt) << EPCM_PT_SHIFT) | rwx
    for on, bit in ((pending, EPCM_PENDING), (modified, EPCM_MODIFIED), (pr, EPCM_PR),
                    (valid, EPCM_VALID), (blocked, EPCM_BLOCKED)):  # fmt: skip
        word |= bit if on else 0
    m = hw.epcm
    saved = (int(m.flags[epc]), int(m.bepoch[epc]), secs.child_count, set(secs.busy_tcs))
    try:
        m.flags[epc] = word
        ok = remove_word_ok(np.int64(word))
        r = hw.emodpr(secinfo_flags(PageType.REG, 7), epc)
        probe = encls_faulted(r) and encls_trapnr(r) == X86_TRAP_PF
        m.flags[epc] = word  # EMODPR may have restricted a REG page
        gone = hw.eremove(epc) == 0
        assert ok == (probe and gone and valid and pt == PageType.TRIM)
    finally:
        m.flags[epc], m.bepoch[epc] = saved[0], saved[1]
        secs.child_count, secs.busy_tcs = saved[2], saved[3]
