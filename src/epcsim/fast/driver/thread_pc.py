"""The program counter of the enclave thread's machine (``thread.py``'s ``thread_run``,
PATHS.md T0-T7 and E1-E4; M1-M4 and the ioctl loops' pcs are ``trim.py``'s, from
``P_DIRECT`` on) and the names of all of them.

Why a module of its own (as ``reclaim_pc.py`` is ksgxd's batch's): the numbering is read
by every module that parks, resumes or names the thread at a pc - ``thread_bridge.py``,
``core_stream.py``, ``stream_ksgxd.py``, ``stream_stops.py``, ``session_stops.py`` (the
Python side that goes on from ``P_TOP`` or ``P_LOCKED``) and the tests - not only by the
machine. The steps of each row stay in ``thread.py`` (split from it by session ``tidy``
when it passed 600 lines; no value changed).
"""

from __future__ import annotations

from epcsim.fast.driver import add, trim

P_TOP = 0  #: T0: the loop top (``enter()``)
P_ENTER_RUN = 1  #: T0: ``run(eresume)`` (or eenter) is over
P_ACCESS = 2  #: T1/T2: inside, page ``pages[i]``: a resident run or a fault
P_USER_RUN = 3  #: T1: ``run_user(k2 * access)`` is over
P_FAULT_RUN = 4  #: T2: ``run(aex + fault_entry)`` is over
P_LOCKED = 5  #: T3/T4: ``encl->lock`` taken: ``__sgx_encl_load_page``, the allocation
P_ALLOC = 6  #: T4/T5: the record checked (its result in ``tc[TC_RET]``): allocate
P_ALLOCATED = 7  #: T5: the page allocated (and ksgxd woken): ``run(eldu)``
P_ELDU_RUN = 8  #: T5: ``run(eldu)`` is over
P_TRUNCATED = 9  #: T5: the backing truncated (after a Python truncation)
P_MAP = 10  #: T6: map the page, unlock
P_EBUSY = 11  #: T7: -EBUSY: unlock, retry
P_END = 12  #: the stream is over: leave the CPU, end the process
P_DONE = 13  #: the process ended
P_WOKEN = 14  #: T4: ``wake_ksgxd``'s wake-up is done (its answer in ``T_RQ_RET``)
P_UNLOCKED = 15  #: T6/T7: ``encl->lock`` released: the latency, back to T0
# the EACCEPT loop's own rows (``MODE_EACCEPT``, PATHS.md E1-E4)
P_LEAF_RUN = 16  #: E2: ``run(eaccept)`` is over (the leaf applied before it)
P_EEXIT_RUN = 17  #: E3: ``leave()``'s ``run(eexit)`` is over: EEXIT
P_NEXT = 18  #: E4: the page is done: ``cond_resched()``, then ``i += 1``, E0
# the MODIFY_TYPES loop's own rows (``MODE_TRIM``, PATHS.md M1-M4): ``trim.py``'s pcs,
# P_DIRECT (19) to P_MEAGAIN_UNLOCKED (28); T4-T5 above are shared
# the preemption points (``resched.py``, session ``onecpu2``), after the ioctl loops' pcs
P_URESCHED = 49  #: T1: the loop's ``cond_resched()`` after the user step is over: T0
P_FRESCHED = 50  #: T6/T7: ``_fault_return``'s ``cond_resched()`` is over: T0
P_ERESCHED = 51  #: E4: the loop's ``cond_resched()`` is over: ``i += 1``, E0
#: T1: the user step was interrupted (a wake-up preemption, ``C_MANY``: session ``runq64``)
#: and ``run_user``'s ``_schedule`` is over: the accesses run so far, then ``cond_resched()``
P_UINTR = 52
# the parked NOPAGE flood (``System(nopage_flood="bulk")``, ``cosim/flood_park.py``)
P_PARK = 53  #: T7: parked after a failed retry; resumed by its ``_Park.ev``
P_PARK_LAT = 54  #: T7: the skipped retries' latencies written, then the decision's fault
P_NAMES = (
    "top", "enter", "access", "user", "fault", "locked", "alloc", "allocated",
    "eldu", "truncated", "map", "ebusy", "end", "done", "woken", "unlocked",
    "leaf", "eexit", "next", *trim.PER_PAGE_NAMES,  # the ioctl loops' (trim.py, remove.py)
    "uresched", "fresched", "eresched", "uintr", "park", "park_lat",
    *add.LATE_NAMES,  # A2's VA page (add.py, session addrun)
)  # fmt: skip
assert P_NAMES.index("uresched") == P_URESCHED
assert P_NAMES.index(add.LATE_NAMES[0]) == add.P_AVAWOKEN
assert (trim.P_TOP, trim.P_LOCKED) == (P_TOP, P_LOCKED)  # the rows trim.py meets
