"""The dynamic regime of one ``CoreStream`` call (issue 9; PATHS.md, "What is built for the
stream", "The regime"): whether, at a loop top, the thread's iteration may run on the
compiled core with ksgxd, or the generator runs it itself.

Why a module of its own: the regime is decided before anything moves onto the core and
changes nothing; ``core_stream.py`` holds the entry, the drive and the hand-back that follow
it. ``CoreStreamRegime`` is a mixin of ``CoreStream`` (split from ``core_stream.py`` by
session ``split2``, no code changed): the attributes it reads are ``CoreStream.__init__``'s.

Decisions kept from session ``integ``:

* *Dynamic regime* (``CoreStream._ready``, cheap checks first): the thread on its CPU with
  no other task running but ksgxd; ksgxd asleep on its wait queue with SimPy's queue
  empty (but for a ``System.run(until=)`` deadline, session ``deadline``: the core stops
  before it, ``cosim/deadline.py``) and ``encl->lock`` free, or its machine served
  (``to_core`` checks the queue, the lock, its spin); no LP but the thread's inside, the
  SECS resident, the rest of ``bridge._check_regime``'s static checks (``_static_regime``).

Two enclaves (session ``twoencl3``; PATHS.md "Two enclaves in the regime", item 7): each
enclave in its slot's regime (``_enclave_regime``), and the one that is not the caller's
idle - its lock free, no task of its mms on a CPU, no LP inside it, no tracking set open
(``CoreStream._ready``).

Two enclaves on one CPU (session ``twoone``; PATHS.md "Two enclaves in the regime", "Left"
item 1): no check of their own - each half's holds (nobody waiting for the CPU at entry,
the other enclave idle), and what the two meet together the halves handle already:
ksgxd's ``KB_SECS`` of the other enclave while the thread waits in the run queue (served
from there, ``to_simpy``'s ``_picked``; ``StreamCore.queued_stops``), the thread's direct
batch switched out at a lock's might_sleep, the switch-out's AEX on the thread's own slot
(``resched.thread_resched``, ``TC_ESLOT``), and no IPI on one CPU (ksgxd never runs while
the thread holds the CPU, a direct batch's own CPU is not a target, and the other enclave
has no LP inside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.deadline import only_stops
from epcsim.fast.cosim.transfer_flood import is_flood_timer
from epcsim.fast.driver.kstate import N_SLOTS
from epcsim.fast.driver.slots import file_ok, secs_of
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.system import System


class CoreStreamRegime:
    """The dynamic regime of ``CoreStream`` (module docstring)."""

    # set by ``CoreStream.__init__``
    system: System
    thread: Task
    encl: Any
    plain: bool

    def _ready(self, served: bool) -> bool:
        """The dynamic regime (module docstring), cheapest checks first. ``served``: ksgxd
        is the compiled machine served by SimPy (``Session``), which ``to_core`` checks."""
        system = self.system
        sgx = system.sgx
        thread = self.thread
        m = system.machine
        encl = self.encl
        if thread.cpu is None or thread._user_proc is not None or thread._resched:
            return False
        if m.rq.waiting():
            # a task waiting for a CPU (one CPU: ksgxd woken while the thread runs, or
            # yielded to it): the core takes no queued task in (``to_core`` declines it
            # too; PATHS.md "One CPU", item 2's decision), the generator runs the iteration
            return False
        if not served:
            # SimPy's queue empty but for a ``run(until=)`` deadline, which the core holds
            # as a stop (``cosim/deadline.py``; session ``deadline``)
            also = None if sgx.flood is None else is_flood_timer(sgx.flood, thread, encl.lock)
            if not sgx.ksgxd_sleeping or not only_stops(m.env._queue, also) or m.spinning:
                return False
            if len(sgx.ksgxd_waitq._waiters) != 1:
                return False
            lock = encl.lock
            if lock.owner is not None or lock._waiters:
                return False
        elif held_by_a_batch_only(sgx.enclaves.values()):
            # ksgxd's served batch may hold an enclave's last references (closed between two
            # calls): its ``kref_put`` there is ``sgx_encl_release``, which its generator
            # runs, not the core (``KB_RELEASE``; session ``row1b``)
            sgx.stream_core.release_declines += 1
            return False
        kt = sgx.ksgxd_task
        if any(r is not None and r is not thread and r is not kt for r in m.running):
            return False
        if m.running[thread.cpu] is not thread:
            return False
        secs_epc = encl.secs_epc
        if secs_epc < 0 or secs_epc not in system.cpu.secs_at:
            return False
        st = system.cpu.secs_state(secs_epc)
        lp = thread.cpu
        if not st.inside <= {lp} or not st.tracking <= {lp}:
            return False
        if self.plain and (st.inside or st.tracking):
            return False  # the ioctl's task is never inside: no LP may be (its fold has none)
        hw = system.cpu
        if any(e >= 0 for c, e in enumerate(hw.lp_eid) if c != lp):
            return False
        # the other enclave (PATHS.md "Two enclaves in the regime", item 7, session
        # ``twoencl3``): its lock free (or, served, ``to_core``'s), no task of its mms on a
        # CPU (its cpumask empty: not the thread's mm either, whose CPU the machines add to
        # its own enclave's mask only), no LP inside it nor a tracking set open
        for other in sgx.enclaves.values():
            if other is encl:
                continue
            if not served and (other.lock.owner is not None or other.lock._waiters):
                return False
            if other.cpumask():
                return False
            if other.secs_epc >= 0:
                ost = hw.secs_at.get(other.secs_epc)
                if ost is None or ost.inside or ost.tracking:
                    return False
        return _static_regime(system)


def flood_regime(system: System) -> bool:
    """``nopage_flood="bulk"`` on the user path (session ``uflood``; PATHS.md "What is
    built: the parked flood on the user path"): taken with one enclave and one enclave
    thread, whose parks move between the core and ``NopageFlood`` with the one-thread
    session (``cosim/transfer_flood.py``). Why not more: ksgxd served by SimPy while a
    thread is parked in Python has the park written into the session's thread row for
    its compiled hooks (``mirror_in``), one row; and the group sessions' moves
    (``stream_group``, ``group_move``) do not carry parked rows yet. Without the option,
    True."""
    sgx = system.sgx
    if sgx.flood is None:
        return True
    if len(sgx.enclaves) != 1:
        return False
    handle = next(iter(sgx.enclaves.values())).handle
    return handle is not None and getattr(handle, "_nthreads", 2) <= 1


def held_by_a_batch_only(encls: Any) -> bool:
    """Whether an enclave of ``encls`` is alive only by the references reclaimer batches
    hold (each isolated page holds one from phase A until it is put back or written back):
    its process closed the fd and its mm is gone (``Enclave.close``), so the batch's last
    ``kref_put`` will run ``sgx_encl_release``. The core declines while one is (session
    ``row1b``, PATHS.md "Row 1 again", item 3): ksgxd's machine stops there (``KB_RELEASE``)
    only to hand its batch to its generator, which a served machine does (``Session.on_stop``)
    and one on the core cannot (``core_stream.py`` raises). An enclave without a user handle
    has references nobody here can count: declined too (none streams on the core)."""
    for e in encls:
        if e.dead:
            continue
        h = e.handle
        if h is None or (h.closed and not h._mm_ref):
            return True
    return False


def _static_regime(system: System) -> bool:
    """``bridge._check_regime``'s checks of what no task changes while the thread runs (the
    model's options, one or two enclaves each in its slot's regime - ``_enclave_regime`` -,
    the LRU's owners theirs, the EPCM layout); ksgxd's, the queue's and the locks' are
    ``CoreStream._ready``'s or ``to_core``'s."""
    sgx = system.sgx
    if system.cpu.content_mode != "tag" or type(sgx.lru) is not KernelLru:
        return False
    # Linux's or the model's FIFO variants (session ``fifo``: PATHS.md "The regime")
    if not isinstance(system.machine.rq, CfsRunQueue | FifoRunQueue) or not flood_regime(system):
        return False
    # one CPU is in the regime with one enclave (session ``onecpu2``) and with two
    # (``twoone``): the module docstring
    if len(system.machine.running) > 63:
        return False  # (the LP masks are int64: kstate.K_INSIDE; session ``nthreads``)
    if not 1 <= len(sgx.enclaves) <= N_SLOTS or sgx.ksgxd_task is None:
        return False
    if system.cpu.epcm.has_aside():
        return False
    fresh = len(sgx.enclaves) > 1  # a file without a record yet: with two enclaves only
    for encl in sgx.enclaves.values():
        if not _enclave_regime(system, encl, fresh):
            return False
    if sgx._next_encl_id == len(sgx.enclaves):
        # every enclave ever created is live (none released, no failed create), so every
        # LRU page's owner - a created enclave's id - is a slot's: the scan below would
        # find nothing. It is O(EPC) - 0.8 ms of CPU at 1M pages (4 GiB), 8.1 ms at 4M
        # (16 GiB), ~94 ms at 16M (64 GiB, NumPy alone) - and runs at every core entry
        # (each slice, each ksgxd K0 check), so it is left for the systems where an enclave
        # has gone (lead, 2026-11-27; tests/fast/test_core_regime.py).
        return True
    return lru_owners_are(sgx, list(sgx.enclaves))


def lru_owners_are(sgx: Any, ids: list[int]) -> bool:
    """Every page on the reclaimer's LRU belongs to one of the enclaves ``ids`` (one or
    two): a scan of the whole EPC's owners."""
    epc = sgx.epc
    owners = epc.owner_encl[(epc.flags & SGX_EPC_PAGE_ON_LRU) != 0]
    if len(ids) == 1:
        return not np.any(owners != ids[0])
    return not np.any((owners != ids[0]) & (owners != ids[1]))


def _enclave_regime(system: System, encl: Any, fresh: bool) -> bool:
    """``_static_regime``'s checks of one enclave slot: alive, built (or being built on the
    core), its lock one the core models, its page numbers ENCLAVEADDRESS's, and either its
    SECS resident with its backing file as the machines take it (``slots.file_ok``: laid
    out, or with ``fresh`` without a record yet - item 5) or, the SECS evicted (PATHS.md
    N9: the idle enclave after its last child went), no child resident and the file laid
    out for it.

    ``fresh`` only with two enclaves (decision, session ``twoencl3``; a cost choice, the
    core being exact either way): with one enclave a file without a record means nothing
    was paged yet, where the Python batches take the ioctl loops' pages at ~1-2 us each
    (``tests/fast/test_batched.py``'s guard; rows 3-4's heaps that fit) - not re-measured
    with the core there, so one enclave keeps main's rule; the demo's neighbour build
    starts with neither file laid out and is the case this opens."""
    if encl.dead or not isinstance(encl.lock, LinuxMutex | FifoMutex):
        return False
    if (encl.base + encl.size) >> 12 >= 0xFFFFFFFF:
        return False
    if encl.secs_epc >= 0:
        if not _built_or_building(system, encl):
            return False
        st = system.cpu.secs_at.get(encl.secs_epc)
        return st is not None and file_ok(encl, st, fresh)
    st = secs_of(system, encl)
    return (
        encl.initialized
        and encl.secs_child_cnt == 0
        and st is not None
        and encl.backing._width == 8
        and encl.backing._eid == st.eid
    )


def _built_or_building(system: System, encl: Any) -> bool:
    """The enclave initialized (the stream, EACCEPT and the SGX2 loops), or not yet while
    an ADD_PAGES loop is live on the core (``StreamCore.add_live``, session ``addcore``:
    EADD wants it uninitialized; ksgxd's machine handles both, PATHS.md "The ADD_PAGES
    loop", design item 3)."""
    if encl.initialized:
        return True
    core = system.sgx.stream_core
    return core is not None and core.add_live > 0


__all__ = ["CoreStreamRegime", "_built_or_building", "flood_regime", "held_by_a_batch_only"]
