"""The program counter of one ``sgx_reclaim_pages`` batch (``reclaim.py``'s ``reclaim_run``)
and the ways the batch leaves its machine: blocked, a service for Python, a hand-back.

Why a module of its own: the pc numbering is read by every machine that runs or continues a
batch - ``ksgxd.py`` (its K0 shares the numbering, ``ksgxd.P_NAMES`` names them all),
``trim.py``'s direct reclaimer, ``pins.py`` and ``core_stream.py`` (the Python side that
goes on from a parked pc) - not only by the state machine itself, and the exits are the
batch's protocol with its caller (below; moved here from ``reclaim.py``'s docstring by
session ``tidy2``). The steps of rows A-D stay in ``reclaim.py``. The exits are
``inline="always"``: their code is compiled into ``reclaim_run`` (``fast/driver/__init__``'s
``drop_stale`` lists every module of this package, so an edit here drops the cached machine
code).

The caller enters at ``P_A`` with ``rc[r, RC_PC] = P_A`` (its own checks done: K0's
``sgx_should_reclaim(high)`` and ``ksgxd_batches`` for ksgxd, ``sgx_reclaim_direct``'s
for the direct reclaimer) and calls again with ``rc[r, RC_PC]`` as it was left after
``R_BLOCKED`` or ``R_SVC``. ``R_RETURNED`` means the batch returned (``rc[r, RC_PC]`` back
at ``P_A``, ``rc[r, RC_NK]`` the pages written back, which the caller counts as its own:
``ksgxd_pages_reclaimed`` or ``direct_reclaim_pages``); ``R_STOP`` a hand-back
(``kc[K_HB]``) before the step at ``rc[r, RC_PC]``. ksgxd's task pc mirrors its row's pc
(``ksgxd_run`` copies it after each call): the Python side that continues a batch in
ksgxd's generator reads the task pc, as before. The pcs keep ksgxd's numbering (0-2 and 20
are K0's) so that one table (``ksgxd.P_NAMES``) names them all.
"""

from __future__ import annotations

from numba import njit

from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.driver.kstate import K_HB, K_HB_PAGE, K_WARN_N, RC_PC
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED

#: ``reclaim_run``'s answer when the batch returned (the ``R_*`` of the core are 0-2,
#: ``ksgxd.R_SVC`` 3)
R_RETURNED = 4
#: the reclaimers' rows of ``ks.rc`` and ``ks.batch``
RECLAIM_KSGXD = 0
RECLAIM_DIRECT = 1
N_RECLAIMERS = 2

# -- the program counter (PATHS.md's rows A-D; 0-2 and 20 are ksgxd's K0) ------------------
P_ISOLATED_RUN = 3  #: A: ``run(lru_op * max(1, n))`` is over
P_B = 4  #: B: the next isolated page
P_AGE_RUN = 5  #: B: ``run(age_check)`` is over
P_B_LOCKED = 6  #: B: ``encl->lock`` taken
P_BACKING_RUN = 7  #: B: ``run(backing_alloc)`` is over
P_C = 8  #: C: the next kept page
P_ZAP_RUN = 9  #: C: ``run(zap_ptes)`` is over
P_C_LOCKED = 10
P_EBLOCK_RUN = 11
P_D = 12  #: D: the next kept page
P_D_LOCKED = 13
P_EWB1_RUN = 14  #: D: the first EWB's run is over
P_ETRACK_RUN = 15
P_EWB2_RUN = 16
P_IPI_RUN = 17
P_EWB3_RUN = 18
P_STORED = 19  #: D: the record is in the backing store (after a Python store)
P_EWB_DONE = 21  #: D: ``sgx_encl_ewb``'s result is final
P_B_UNLOCKED = 22  #: B: ``encl->lock`` released after the backing
P_C_UNLOCKED = 23  #: C: released after EBLOCK
P_D_UNLOCKED = 24  #: D: released after EWB
P_A = 25  #: A: the batch's start (isolate), where a caller enters

_NOT_TRACKED_CLEAR = ~SGX_EPC_PAGE_RECLAIMER_TRACKED  # the flags share a word (kernel.epc)


@njit(cache=True, nogil=True, inline="always")
def _warn(ks, kind, ret, page):
    kc = ks.kc
    n = kc[K_WARN_N]
    ks.warn[n, 0] = kind
    ks.warn[n, 1] = ret
    ks.warn[n, 2] = page
    kc[K_WARN_N] = n + 1


@njit(cache=True, nogil=True, inline="always")
def _rstop(st, ks, t, r, pc, code, page):
    """The driver's own hand-back, before the step at ``pc`` of reclaimer ``r``'s batch."""
    ks.rc[r, RC_PC] = pc
    ks.kc[K_HB] = code
    ks.kc[K_HB_PAGE] = page
    return hand_back(st, 100 + code, t)


@njit(cache=True, nogil=True, inline="always")
def _rsvc(rw, pc):
    rw[RC_PC] = pc
    return 3  # ksgxd.R_SVC: Python serves kc[K_SVC], then the caller calls again


@njit(cache=True, nogil=True, inline="always")
def _rblocked(rw, pc, res):
    """Park the batch at ``pc`` after a primitive that blocked or stopped its task."""
    rw[RC_PC] = pc
    return res


__all__ = [
    "N_RECLAIMERS",
    "RECLAIM_DIRECT",
    "RECLAIM_KSGXD",
    "R_RETURNED",
]
