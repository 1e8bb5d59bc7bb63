"""The PCMD pins a compiled reclaim batch holds (``EnclaveBacking._pinned_gen``), read from
its row of ``KState`` (issue 9; PATHS.md "What is built: ``MODE_TRIM``", session
``ioctlcore``).

``get_backing`` pins a page's PCMD generation in phase B of ``sgx_reclaim_pages`` and
``EnclaveBacking.store`` drops it in D. ``store`` is the dict's only reader, and only for
its own page: a page is in one batch at a time (isolated from the LRU). A batch on the
compiled core (``reclaim.reclaim_run``'s row ``r``: ksgxd's, or the direct reclaim's)
keeps its pins in ``batch[r, :, 2]`` and stores through the compiled op, so the dict
lacks them while the batch is a machine; ``pinned_rows`` says which ones the reference's
dict would hold at the batch's pc. Where Python tasks run while a batch is a machine, the
dict is written from it (ksgxd served between calls: ``Session.fold_pins``), or it is
proven that the batch holds none (``check_no_direct_pins``: the direct reclaim's batch of
a served MODIFY_TYPES loop).
"""

from __future__ import annotations

from typing import Any

from epcsim.fast.cosim.state import T_PC
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import reclaim_pc as R
from epcsim.fast.driver.trim import P_DIRECT
from epcsim.fast.driver.tstate import MODE_TRIM, TC_MODE

#: the batch's pcs, by phase of ``sgx_reclaim_pages``
PHASE_B = frozenset((R.P_AGE_RUN, R.P_B_LOCKED, R.P_BACKING_RUN, R.P_B_UNLOCKED))
PHASE_C = frozenset((R.P_C, R.P_ZAP_RUN, R.P_C_LOCKED, R.P_EBLOCK_RUN, R.P_C_UNLOCKED))
PHASE_D = frozenset(
    (R.P_D, R.P_D_LOCKED, R.P_EWB1_RUN, R.P_ETRACK_RUN, R.P_EWB2_RUN, R.P_IPI_RUN,
     R.P_EWB3_RUN, R.P_EWB_DONE, R.P_STORED, R.P_D_UNLOCKED)
)  # fmt: skip


def pinned_rows(ks: Any, r: int, pc: int) -> list[int]:
    """The rows of ``batch[r]`` whose page the reference holds pinned at the batch's ``pc``:
    the pages kept so far in B (and the one whose backing was just taken, after its
    unlock), all kept ones in C, those not yet stored in D. A row pins only if its
    generation (``batch[r, row, 2]``) is >= 0."""
    nk, i = int(ks.rc[r, K.RC_NK]), int(ks.rc[r, K.RC_I])
    if pc in PHASE_B:
        return list(range(nk)) + ([i] if pc == R.P_B_UNLOCKED else [])
    if pc in PHASE_C:
        return list(range(nk))
    if pc in PHASE_D:
        return list(range(i + (pc in (R.P_STORED, R.P_D_UNLOCKED)), nk))
    return []


def check_no_direct_pins(co: Any, ks: Any, ts: Any, t: int) -> None:
    """Where the MODIFY_TYPES loop's task (core row ``t``) goes on served by SimPy - after
    ksgxd's ``KB_SECS``, the only way Python tasks run during such a call - its direct
    reclaim's batch holds no pin (decision 2026-11-26, session ``ioctlcore``: PATHS.md).
    Why: a pin is held from B's ``get_backing`` to D's store of that page, which is then
    still resident and a child of the SECS; ksgxd stops with ``KB_SECS`` only at a page
    that is the SECS's last child (``secs_child_cnt == 1``), so no page of the direct
    batch is pinned then; and a served task stops at its next page top (``TC_HOOK`` 2)
    before M1 could start another batch. So nothing of ``batch[1]`` is missing from the
    dict while Python runs. A defect guard: ``RuntimeError`` if it ever is.

    With one enclave only (session ``twoencl3``): with two, ksgxd's ``KB_SECS`` of one
    enclave says nothing of the direct batch's pages of the other, so the user path no
    longer calls this; ``stream_ksgxd.Session.fold_pins`` writes the direct batch's pins
    into their enclaves' dicts instead, as ksgxd's."""
    if ts is None or int(ts.tc[TC_MODE]) < MODE_TRIM or int(co.tasks[t, T_PC]) != P_DIRECT:
        return
    row = R.RECLAIM_DIRECT
    held = [j for j in pinned_rows(ks, row, int(ks.rc[row, K.RC_PC])) if ks.batch[row, j, 2] >= 0]
    if held:
        raise RuntimeError(
            f"fast_core: the served MODIFY_TYPES loop's direct batch holds {len(held)} PCMD "
            "pins Python cannot see"
        )


__all__ = ["PHASE_B", "PHASE_C", "PHASE_D", "check_no_direct_pins", "pinned_rows"]
