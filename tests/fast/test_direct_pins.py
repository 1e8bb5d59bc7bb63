"""The direct reclaim's PCMD pins when a MODIFY_TYPES loop on the core goes on served
(``fast/driver/pins.py``; PATHS.md "What is built: ``MODE_TRIM``", session ``ioctlcore``).

The reference's ``EnclaveBacking._pinned_gen`` holds a page's PCMD generation from phase
B's ``get_backing`` to D's ``store``; a compiled batch keeps it in ``batch[r, :, 2]``.
``pinned_rows`` is which rows the reference's dict would hold at the batch's pc (what
``Session.fold_pins`` writes for ksgxd's row). The decision for the direct reclaim's row:
Python runs during such a call only while the loop's task is served after ksgxd's
``KB_SECS``, and then that batch provably holds no pin (``check_no_direct_pins``'
docstring); the check is a defect guard, shown here on hand-made states - it fires for a
pin in each phase, and not for a row without one, another mode or another pc. The
scenarios of ``test_trim_core.py`` run it on every served step they reach.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from epcsim.fast.cosim.state import T_PC
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import reclaim_pc as R
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.pins import PHASE_B, PHASE_C, PHASE_D, check_no_direct_pins, pinned_rows
from epcsim.fast.driver.trim import P_DIRECT


def _state(mode: int, pc: int, bpc: int, nk: int, i: int, gens: list[int]):  # type: ignore[no-untyped-def]
    """(co, ks, ts) with the thread (row 0) at ``pc`` in ``mode``, the direct batch at
    ``bpc`` with ``nk`` kept pages, loop index ``i`` and the rows' generations ``gens``."""
    tasks = np.zeros((2, 32), np.int64)
    tasks[0, T_PC] = pc
    rc = np.zeros((2, K.N_RC), np.int64)
    rc[R.RECLAIM_DIRECT, K.RC_PC], rc[R.RECLAIM_DIRECT, K.RC_NK] = bpc, nk
    rc[R.RECLAIM_DIRECT, K.RC_I] = i
    batch = np.full((2, 16, 3), -1, np.int64)
    batch[R.RECLAIM_DIRECT, :, 1] = np.arange(16)
    batch[R.RECLAIM_DIRECT, : len(gens), 2] = gens
    tc = np.zeros(T.N_TC, np.int64)
    tc[T.TC_MODE] = mode
    return SimpleNamespace(tasks=tasks), SimpleNamespace(rc=rc, batch=batch), SimpleNamespace(tc=tc)


def test_pinned_rows_follow_the_phases() -> None:
    """B: the pages kept so far (and the one whose backing was just taken, after its
    unlock); C: every kept page; D: those not yet stored; A and between batches: none."""
    _, ks, _ = _state(T.MODE_TRIM, P_DIRECT, 0, 3, 1, [5, 5, 5, 5])
    for pc in PHASE_B:
        want = [0, 1, 2] + ([1] if pc == R.P_B_UNLOCKED else [])
        assert pinned_rows(ks, R.RECLAIM_DIRECT, pc) == want
    for pc in PHASE_C:
        assert pinned_rows(ks, R.RECLAIM_DIRECT, pc) == [0, 1, 2]
    for pc in PHASE_D:
        stored = pc in (R.P_STORED, R.P_D_UNLOCKED)
        assert pinned_rows(ks, R.RECLAIM_DIRECT, pc) == ([2] if stored else [1, 2])
    assert pinned_rows(ks, R.RECLAIM_DIRECT, R.P_A) == []
    assert pinned_rows(ks, R.RECLAIM_DIRECT, R.P_ISOLATED_RUN) == []


@pytest.mark.parametrize("bpc", sorted(PHASE_B | PHASE_C | PHASE_D))
def test_a_pin_of_the_served_loops_direct_batch_is_a_defect(bpc: int) -> None:
    """The guard fires for a pinned row in every phase of the direct batch of a served
    MODIFY_TYPES loop at ``P_DIRECT``; it lets a row with no pin (generation -1), the
    stream's and EACCEPT's modes and another pc of the loop pass."""
    with pytest.raises(RuntimeError, match="PCMD pins"):
        check_no_direct_pins(*_state(T.MODE_TRIM, P_DIRECT, bpc, 2, 0, [7, 7, 7]), 0)
    check_no_direct_pins(*_state(T.MODE_TRIM, P_DIRECT, bpc, 2, 0, [-1, -1, -1]), 0)
    check_no_direct_pins(*_state(T.MODE_STREAM, P_DIRECT, bpc, 2, 0, [7, 7, 7]), 0)
    check_no_direct_pins(*_state(T.MODE_EACCEPT, P_DIRECT, bpc, 2, 0, [7, 7, 7]), 0)
    check_no_direct_pins(*_state(T.MODE_TRIM, P_DIRECT + 1, bpc, 2, 0, [7, 7, 7]), 0)
