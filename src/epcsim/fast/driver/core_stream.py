"""One call on the compiled core, from a loop top: ``CoreStream`` (issue 9; PATHS.md, "What
is built for the stream", "The pair from the user path", "The EACCEPT loop" and "The
MODIFY_TYPES loop").

``StreamCore`` (``stream.py``, the owner) makes one ``CoreStream`` per stream, EACCEPT
range or MODIFY_TYPES call; its ``run`` is the continuation the Python loop ``yield from``s
at each of its loop tops: the dynamic regime (``_ready``), the entry (a ``Session`` begun
or moved onto the core), the drive, and the hand-back - the stop decoded, the state
folded, and where the caller goes on.

The pair (2026-11-26, issue 9 session ``upair``; ksgxd awake in its generator, the counts
and the entry's kept state are ``stream.py``'s):

* *ksgxd between two calls*. If ksgxd is asleep on the core when the thread stops, its
  own generator's wait (put aside at entry, ``Session.parked``) goes back on the wait
  queue: the machine's K0 sleep and the generator's are the same state (PATHS.md K0).
  Otherwise ksgxd is mid-batch: ``transfer.to_simpy`` moves its pending events into
  SimPy's queue and its machine goes on *served* (``cosim.served``), its ``KState``
  small arrays taken from the Python objects before each served step and folded after it
  (``bridge.take_small``/``fold_kernel``; the PCMD pins of its batch written into
  ``EnclaveBacking._pinned_gen``, ``Session.fold_pins``; the IPI's AEX done by Python,
  which knows every LP), while Python tasks run in between. At the next loop top the hook
  moves it back (``transfer.to_core``, which refuses - nothing moved, a Python iteration -
  while SimPy's queue holds anything else); when the served machine asks to sleep its
  generator's wait goes back instead (``Session.on_stop``; the served process then waits
  forever on an event nobody triggers: an ended process would take an eid the reference
  does not). If Python left the machine's regime between calls (another enclave, the
  flood, ...: ``stream_ksgxd._served_regime``, checked before each served step), the
  machine finishes the batch it holds and stops at K0's loop top (``kc[K_TOP_STOP]``),
  where ksgxd's generator goes on (``Sgx._ksgxd(moved=...)`` with nothing left to do).
* *A stop in the middle of the thread's iteration*: ksgxd's ``KB_SECS`` (the SECS's last
  child about to be written back). Its own generator takes over from that page
  (``Sgx._ksgxd(moved=...)``, as ``served_ksgxd``), and the thread goes on served *in its
  own process*: ``to_simpy(inline=THREAD)`` gives the thread's serving generator, which
  ``run`` drives (yield the event, send the answer) until the thread's machine stops at
  its next loop top (``tc[TC_HOOK] == 2``) or in a fault under ``encl->lock`` (below).
  Tested since session ``tstops`` (``tests/fast/test_stream_stops.py``): a thread that
  stays on one page for many steps has it written back mid-step, the SECS next.
* *The thread's stops* (decisions 2026-11-26, session ``tstops``; ``thread.py`` has the
  machine's side). Each of the machine's stops is one of:
  (a) *at a loop top*, where the generator goes on (``_RESUMABLE``): the TCS fault, a #PF
  to the runtime, SIGBUS, EAUG (decided before the iteration's first step, session
  ``integ``), and EENTER/ERESUME failing (``KB_ENTRY``): the leaf's checks are read at T0
  before its run (``eldu.tcs_refused``), so the stop is the loop top's, where ``enter()``
  reports it; with the implicit TCS, the SECS gone during the run (only after
  ``KB_SECS``) is ``enter()``'s retry, ``KB_TCS`` at the loop top.
  (b) *in a fault, under ``encl->lock``* (``thread.P_LOCKED``, ``IN_FAULT``): the SECS to
  load (``KB_SECS_LOAD``: only the thread served after ``KB_SECS`` meets it), -ENOMEM
  (``KB_ENOMEM``: no free page, the LRU empty - every page isolated by a reclaimer), an
  ELDU that would fail (``KB_ELDU``: its record and checks are now read *before* the
  allocation, which nothing between changes). Nothing of the fault's rest is applied, so
  the rest is the reference's own code from the lock on:
  ``EnclaveThread.fault_locked`` (``kernel/fault.sgx_vma_fault_locked``, then the
  latency, SIGBUS or the return to user), run in the thread's process - by ``run`` after
  the same hand-back as (a) on the core, by ``Session.on_stop`` when served - and the
  stream goes on (``STREAM_ON``) or ends with SIGBUS (``STREAM_SIGBUS``). A tampered
  store is therefore no longer refused at entry.
  (c) *not reachable, a defect guard*: ``KB_ENTRY`` after the entry's run (the leaf's
  checks change during the run only through the TCS's zap or the SECS's eviction, both
  stops of their own: ``thread.py``), ``KB_UNEXPECTED`` (a page of another enclave, a
  list link broken). ``RuntimeError`` if met, never a different result; the first is
  shown on a hand-made machine state (``test_the_entry_checks_are_decided_at_the_loop_
  top``).
* *ksgxd's ``KB_RELEASE`` while served* (session ``tstops``): the enclave's last
  reference dropped by the batch (the process closed it while ksgxd's machine held a
  batch). The machine checks it at the ``kref_put`` itself (Python may put references
  between two served steps), and its generator goes on from there
  (``Session.on_stop``): in phase D after the page's unlock
  (``sgx_reclaim_write_back(written=True)``), or in phase B after a young page's putback,
  where the last reference means the batch's last page with none kept
  (``_released_young``: ``sgx_encl_release``, then the batch returns 0). On the core
  it is not reachable (the handle's references go only by a Python task, or by a started
  thread's exit after its stream): ``RuntimeError`` there.
* *The #PF that ends a stream* is returned as such (``STREAM_PF``): after a resident run an IPI
  may have AEXed the thread, and the generator's own loop top would ERESUME first.

Decisions kept from session ``integ`` (the other: ``stream.py``):

* *Dynamic regime* (``CoreStream._ready``, cheap checks first): the thread on its CPU with
  no other task running but ksgxd; ksgxd asleep on its wait queue with SimPy's queue
  empty and ``encl->lock`` free, or its machine served (``to_core`` checks the queue, the
  lock, its spin); no LP but the thread's inside, the SECS resident,
  the rest of ``bridge._check_regime``'s static checks (``_static_regime``).
* CFS's idle list is rebuilt in CPU order by ``to_simpy`` (``CfsRunQueue`` keeps it
  sorted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen
from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.state import (
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    HANDED_BACK,
    T_PC,
    T_STATE,
    TS_NEW,
    TS_READY,
)
from epcsim.fast.cosim.transfer import to_core, to_simpy
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import (
    refresh_layout,
    take_small,
)
from epcsim.fast.driver.pins import check_no_direct_pins
from epcsim.fast.driver.stream_ksgxd import Session
from epcsim.fast.driver.thread import P_LOCKED, P_NAMES, P_TOP
from epcsim.fast.driver.thread_bridge import (
    KSGXD,
    THREAD,
    _thread_state,
    drive_serving,
    fold_thread,
)
from epcsim.fast.driver.trim import P_DIRECT
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.policy import KernelLru
from epcsim.user.thread import STREAM_ON, STREAM_PF, STREAM_SIGBUS, EnclaveThread

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.system import System

#: the stops the generator goes on from, each at a loop top (or before the iteration's
#: first step): the core's own, the TCS fault, a failing EENTER/ERESUME, a #PF to the
#: runtime, SIGBUS, EAUG, and the EACCEPT loop's failing leaf (the thread inside at the
#: page: ``enclu_on_page``'s ``enter()`` is then nothing, PATHS.md E1)
_RESUMABLE = frozenset((K.KB_TOP, K.KB_TCS, K.KB_ENTRY, K.KB_PF, K.KB_SIGBUS, K.KB_EAUG, K.KB_LEAF))
#: the thread's stops in a fault under encl->lock (``thread.P_LOCKED``), before anything
#: of the fault's rest is applied: the rest runs in Python (``EnclaveThread.fault_locked``)
IN_FAULT = frozenset((K.KB_SECS_LOAD, K.KB_ENOMEM, K.KB_ELDU))
#: ``CoreStream.run``'s ``end`` for the MODIFY_TYPES loop stopped under ``encl->lock`` at
#: its page (``KB_PAGE``, or T4's ``IN_FAULT`` stops): the caller runs the page from
#: ``_load`` on in Python (``ioctl_sgx2._page_locked``)
END_LOCKED = -100
#: ... stopped in its direct reclaim's batch before the SECS's eviction (``KB_SECS`` in
#: ``reclaim_run``'s row 1, the thread at ``P_DIRECT``): the caller runs the batch's rest in
#: Python (``sgx_reclaim_write_back`` from ``CoreStream.direct``), then the page
END_DIRECT = -101


def resumable(code: int, pc: int) -> bool:
    """Whether the thread's stop ``code`` at ``pc`` is one the generator goes on from at
    its loop top (``_RESUMABLE``; a failing entry only before its run: ``KB_ENTRY`` after
    it is the machine's defect guard, ``thread.py``)."""
    return code in _RESUMABLE and (code != K.KB_ENTRY or pc == P_TOP)


class CoreStream:
    """The core's side of one ``access_stream`` (or, with ``mode``, of ``eaccept_range``'s
    loop; with ``trim``, of MODIFY_TYPES' page loop): the stream's arrays made contiguous
    once. ``thread`` is the task on the core's thread row: the enclave thread, or for
    MODIFY_TYPES called from the process's ioctl task (``Enclave.modify_types``) that
    plain ``Task`` (``plain``: it never enters the enclave, PATHS.md "What is built:
    ``MODE_TRIM``")."""

    def __init__(self, owner: StreamCore, thread: Task, pages: Any, writes: Any, encl: Any) -> None:
        self.owner = owner
        self.system = owner.system
        self.thread = thread
        self.encl = encl
        #: the task is not an enclave thread (the ioctl's task): no TCS, never inside, no
        #: ``entered`` (``thread_bridge.entered``)
        self.plain = not isinstance(thread, EnclaveThread)
        # contiguous *and writable*: a read-only array (``np.broadcast_to``'s mask, a
        # caller's frozen stream) is another numba type, a second compile of the machine
        self.pages = np.require(pages, np.int64, ["C", "W"])
        self.writes = np.require(writes, np.bool_, ["C", "W"])
        #: the EACCEPT loop's ``(SECINFO flags, entry_per_page, marks, note step)``, or
        #: None for ``access_stream`` (``StreamCore.eaccept``)
        self.mode: tuple[int, int, int, int] | None = None
        #: the EACCEPT loop's ``OpRecord.note`` points of the last ``run``
        self.notes: list[tuple[int, int]] = []
        #: the MODIFY_TYPES or REMOVE_PAGES loop's ``(new type, note step, marks)``
        #: (``StreamCore.trim``; the new type 0 for REMOVE_PAGES)
        self.trim: tuple[int, int, int] | None = None
        #: which ioctl loop: ``tstate.MODE_TRIM`` or ``MODE_REMOVE`` (session ``ioctlcore``)
        self.ioctl_mode = T.MODE_TRIM
        #: its range's pages done before this ioctl call (``ioctl_sgx2._trim_core``)
        self.base = 0
        #: after ``END_DIRECT``: the direct batch's ``(rows, j, ewbed)`` (``_direct_rest``)
        self.direct: tuple[list[list[int]], int, tuple[int, int, int] | None] | None = None
        #: after a MODIFY_TYPES ``run``: the call's ``ret`` (0, or -EAGAIN with its cause,
        #: ``tstate.CAUSE_*``) where the loop stopped at a page top
        self.mret = 0
        self.cause = 0

    def _count(self, n: int) -> None:
        if self.trim is not None and self.ioctl_mode == T.MODE_REMOVE:
            self.owner.removes += n
        elif self.trim is not None:
            self.owner.trims += n
        elif self.mode is None:
            self.owner.accesses += n
        else:
            self.owner.eaccepts += n

    def _take_ret(self, tc: Any) -> None:
        """The ioctl loop's ``ret`` and cause where the machine stopped it (``mret``), and
        ``StreamCore.ioctl_rets`` counts it: only the machine's own branches set them (M2's
        -EAGAIN, R3's -EBUSY), so the tests can tell them from Python's ``per_page``."""
        self.mret, self.cause = int(tc[T.TC_MRET]), int(tc[T.TC_CAUSE])
        tc[T.TC_MRET] = tc[T.TC_CAUSE] = 0
        if self.mret:
            key = (self.mret, self.cause)
            self.owner.ioctl_rets[key] = self.owner.ioctl_rets.get(key, 0) + 1

    def _take_notes(self, ts: Any) -> None:
        tc = ts.tc
        k = int(tc[T.TC_NOTE_N])
        self.notes = [(int(a), int(b)) for a, b in ts.notes[:k].tolist()]
        tc[T.TC_NOTE_N] = 0

    def close(self) -> None:
        """``access_stream`` returned: the stream is no longer live (``StreamCore.live``)."""
        self.owner.live -= 1
        if self.trim is not None:
            self.owner.trim_live -= 1

    def _ready(self, served: bool) -> bool:
        """The dynamic regime (module docstring), cheapest checks first. ``served``: ksgxd
        is the compiled machine served by SimPy (``Session``), which ``to_core`` checks."""
        system = self.system
        sgx = system.sgx
        thread = self.thread
        m = system.machine
        encl = self.encl
        if thread.cpu is None or thread._user_proc is not None:
            return False
        if not served:
            if not sgx.ksgxd_sleeping or m.env._queue or m.spinning:
                return False
            if len(sgx.ksgxd_waitq._waiters) != 1:
                return False
            lock = encl.lock
            if lock.owner is not None or lock._waiters:
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
        return _static_regime(system)

    def run(self, i: int, done: int) -> Gen:
        """``yield from`` this at the loop top: runs the stream from index ``i`` (``done``
        accesses so far) with ksgxd on the core; returns the new ``(i, done, end)``
        (``end``: ``STREAM_ON``, or the stream ends with a #PF at ``pages[i]``,
        ``STREAM_PF``, or with SIGBUS from the fault at ``pages[i]``, ``STREAM_SIGBUS``),
        or None if the regime does not hold now (the generator runs this iteration
        itself). It yields only when the core stopped in the middle of the thread's
        iteration: the thread then goes on served by SimPy, in its own process, to its
        next loop top, or through a fault's rest in Python (module docstring)."""
        owner = self.owner
        sess = owner.session
        thread = self.thread
        if not self._ready(sess is not None):
            return None
        system = self.system
        encl = self.encl
        secs = system.cpu.secs_state(encl.secs_epc)
        if sess is None:
            sess = Session.begin(owner, thread, encl, secs)
        elif not sess.adopt(thread, encl):
            return None
        else:
            sess.fit_trace()
            if not to_core(sess.sv):
                return None
            co = sess.co
            co.tasks[THREAD, T_STATE] = TS_READY
            sess.ks, sess.nblk = refresh_layout(system, encl, sess.ks, sess.nblk)
            take_small(system, encl, secs, sess.ks)
        co = sess.co
        ks = sess.ks
        sess._secs = secs  # resident (``_ready``): the thread's served steps fold into it
        kc = ks.kc
        kc[K.K_HIGH] = sess.high
        kc[K.K_SECS_EPC] = encl.secs_epc
        kc[K.K_THREAD_T] = THREAD
        kc[K.K_TOP_STOP] = 0
        lp = thread.cpu
        assert lp is not None
        kc[K.K_INSIDE] = int(system.cpu.inside(lp) >= 0)
        kc[K.K_TRACKING] = int(bool(secs.tracking))
        kc[K.K_CPUMASK] = 0  # no other task of the mm runs (_ready); the thread's is added
        co.tasks[THREAD, T_PC] = P_TOP
        mode = self.mode
        trim = self.trim
        if mode is None and trim is None:
            ts = _thread_state(system, thread, self.pages, self.writes, False, encl=encl)
        else:  # the EACCEPT/MODIFY_TYPES loop: one note per step pages, and the last's
            step = trim[1] if trim is not None else mode[3] if mode is not None else 1
            rows = (self.pages.size - i) // step + 2
            ts = _thread_state(system, thread, self.pages, self.writes, False, rows, encl)
        sess.ts = ts
        tc = ts.tc
        tc[T.TC_I] = tc[T.TC_I0] = i
        tc[T.TC_DONE] = done
        tc[T.TC_HOOK] = 1
        if mode is not None:
            tc[T.TC_MODE] = T.MODE_EACCEPT
            tc[T.TC_SECINFO], tc[T.TC_EPP], tc[T.TC_MARKS], tc[T.TC_NOTE_STEP] = mode
        if trim is not None:
            costs = system.machine.costs
            tc[T.TC_MODE] = self.ioctl_mode
            tc[T.TC_NEW_TYPE], tc[T.TC_NOTE_STEP], tc[T.TC_MARKS] = trim
            tc[T.TC_IOCTL_NS] = costs.ioctl_page
            tc[T.TC_EMODT_NS] = costs.emodt
            tc[T.TC_ETRACK_NS] = costs.etrack
            tc[T.TC_EMODPR_NS] = costs.emodpr
            tc[T.TC_ZAP_NS] = costs.zap_ptes
            tc[T.TC_EREMOVE_NS] = costs.eremove
            tc[T.TC_DIRECT] = int(system.sgx.direct_reclaim)
        rc, ks = drive_serving(owner.drive, system, encl, co, ks, ts, THREAD, {})
        sess.ks = ks
        owner.entries += 1
        owner.ksgxd_pages += int(ks.cnt[K.CN_PAGES])
        hb = int(co.clk[C_HB])
        code = int(ks.kc[K.K_HB]) if hb >= 100 else -1
        who = int(co.clk[C_HB_TASK])
        if rc != HANDED_BACK or code < 0:
            # IDLE needs both tasks blocked for ever (a deadlock the reference has too);
            # the core's own hand-backs (``HB_*``: no idle CPU, a mutex sleep, a full
            # queue or trace) are what ``_ready``'s entry checks are for. Not re-proven
            # for every CPU count by session ``pstored`` (PATHS.md, "Default")
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on (rc {rc}, "
                f"hand-back {hb})"
            )
        sv = sess.sv
        pc = int(co.tasks[THREAD, T_PC])
        in_fault = who == THREAD and code in IN_FAULT and pc == P_LOCKED
        locked = trim is not None and who == THREAD and _trim_locked(code, pc)
        direct = trim is not None and who == THREAD and code == K.KB_SECS and pc == P_DIRECT
        if who == THREAD and (resumable(code, pc) or in_fault or locked or direct):
            # the thread at a loop top (or under encl->lock in a fault: below): the
            # generator goes on; ksgxd asleep goes back to its own generator's wait, else
            # it goes on served by SimPy
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            co.tasks[THREAD, T_STATE] = TS_NEW  # the running generator: no process built
            asleep = int(co.wq[0]) == 1 and int(co.wql[0, 0]) == KSGXD
            if asleep:
                co.tasks[KSGXD, T_STATE] = TS_NEW
                co.wq[0] = 0
            fold_thread(system, thread, encl, secs, ks, ts)
            sess.fold_pins()
            to_simpy(sv)
            sv.procs[THREAD] = None
            if asleep:
                sess.asleep_on_core()
                sv.procs[KSGXD] = None
                owner.session = None
            else:
                owner.session = sess
            owner.keep(encl, secs, sess.ks, sess.nblk)
            # nothing reads the call's TState after the call (the next one brings its own),
            # and a session ended here lives on in a reference cycle (its Served's bound
            # methods) until the cyclic GC runs: drop the stream's arrays from it now (an
            # 8 GiB REMOVE_PAGES called 46 times kept ~9 MB a call, session ``ioctlcore``)
            sess.ts = None
            new_i = int(tc[T.TC_I])
            new_done = int(tc[T.TC_DONE])
            self._count(new_done - done)
            self._take_notes(ts)
            end = STREAM_PF if code == K.KB_PF else STREAM_ON
            if trim is not None:
                self._take_ret(tc)
                if locked:  # the page from _load on, in Python (the caller's)
                    owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
                    return new_i, new_done, END_LOCKED
                if direct:  # the direct batch's rest, then the page, in Python
                    owner.secs_stops += 1
                    self.direct = _direct_rest(sess.ks)
                    return new_i, new_done, END_DIRECT
                return new_i, new_done, end
            if in_fault:
                # the rest of the fault in Python, the reference's code from the lock on
                # (module docstring, "The thread's stops")
                owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
                assert isinstance(thread, EnclaveThread)  # a stream's or EACCEPT loop's
                ok = yield from thread.fault_locked(int(tc[T.TC_IDX]), int(tc[T.TC_T0]))
                end = STREAM_ON if ok else STREAM_SIGBUS
            return new_i, new_done, end
        # Any other stop is a defect guard (module docstring, "The thread's stops" (c)):
        # among them ksgxd's KB_RELEASE on the core, not reachable - during a pair call only
        # the thread and ksgxd run, and neither puts the handle's references (the fd's and
        # the mm's go by ``Enclave.close``, a Python task, or by a started thread's exit
        # after its stream), so the batch's kref_put never drops the last one here
        if who != KSGXD or code != K.KB_SECS:
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on "
                f"({'the thread' if who == THREAD else 'ksgxd'}: {K.KB_NAMES[code]}, "
                f"{'at ' + P_NAMES[pc] if who == THREAD else ''})"
            )
        # ksgxd before the SECS's eviction (KB_SECS): its own generator takes over, in
        # SimPy, from that page (``Served.on_stop``); the thread, in the middle of its
        # iteration, goes on served in this process to its next loop top (or, stopped in
        # a fault under encl->lock, through the fault's end in Python: ``Session.on_stop``)
        owner.session = None
        owner.secs_stops += 1
        fold_thread(system, thread, encl, secs, ks, ts)
        sess.fold_pins()
        check_no_direct_pins(co, ks, ts, THREAD)  # the direct batch's pins (pins.py)
        sess.thread_end = None
        kept = to_simpy(sv, inline=THREAD)
        assert kept is not None
        gen, ev = kept
        tc[T.TC_HOOK] = 2
        while True:
            value = yield ev
            try:
                ev = gen.send(value)
            except StopIteration:
                break
        sv.procs[THREAD] = None
        sv.begun[THREAD] = False
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        sess.ts = None  # as above: the session has ended (ksgxd's generator took over)
        stop = sess.thread_end
        if stop is None:  # its serving generator ends only at a stop (on_stop): a guard
            raise RuntimeError("fast_core: the thread served ended without a stop")
        code, end = stop
        new_i = int(tc[T.TC_I])
        new_done = int(tc[T.TC_DONE])
        self._count(new_done - done)
        self._take_notes(ts)
        if trim is not None:
            self._take_ret(tc)
            if end == END_DIRECT:
                self.direct = _direct_rest(sess.ks)
        return new_i, new_done, end


def _direct_rest(ks: Any) -> tuple[list[list[int]], int, tuple[int, int, int] | None]:
    """Where the direct reclaim's batch (``reclaim_run``'s row 1) stopped before the SECS's
    eviction: its kept pages ``(page, index, pinned)``, the page ``j`` whose D step is next
    and, stopped at ``P_STORED``, that page's ``sgx_encl_ewb`` result ``(ret, va, slot)``
    with ``encl->lock`` held (as ksgxd's ``Session._rest_of_batch`` reads row 0)."""
    from epcsim.fast.driver.reclaim import P_STORED, RECLAIM_DIRECT

    rw = ks.rc[RECLAIM_DIRECT]
    j, nk = int(rw[K.RC_I]), int(rw[K.RC_NK])
    rows = ks.batch[RECLAIM_DIRECT, :nk].tolist()
    ewbed = None
    if int(rw[K.RC_PC]) == P_STORED:
        ewbed = (int(rw[K.RC_RET]), int(rw[K.RC_VA]), int(rw[K.RC_SLOT]))
    return rows, j, ewbed


def _trim_locked(code: int, pc: int) -> bool:
    """The MODIFY_TYPES loop's stops under ``encl->lock`` with nothing of the page applied:
    its own (``KB_PAGE`` after ``run(ioctl_page)`` or at T4) and T4's fault stops."""
    from epcsim.fast.driver.trim import P_IOCTL_RUN

    if code == K.KB_PAGE:
        return pc in (P_IOCTL_RUN, P_LOCKED)
    return code in IN_FAULT and pc == P_LOCKED


def _static_regime(system: System) -> bool:
    """``bridge._check_regime``'s checks of what no task changes while the thread runs (the
    model's options, one initialized enclave, the LRU's owners, the EPCM and backing store
    layouts); ksgxd's, the queue's and the lock's are ``CoreStream._ready``'s or
    ``to_core``'s."""
    sgx = system.sgx
    if system.cpu.content_mode != "tag" or type(sgx.lru) is not KernelLru:
        return False
    if not isinstance(system.machine.rq, CfsRunQueue) or sgx.flood is not None:
        return False
    if len(system.machine.running) < 2:
        # the regime puts the thread and ksgxd each on its own CPU (PATHS.md "The
        # regime"): with one CPU, ksgxd woken by T4 finds none idle and the core stops
        # with HB_NO_CPU, which access_stream cannot go on from (found by session
        # fdefault: tests/isa/test_isa_epcm_owner.py's cpus=1 build with the core on)
        return False
    if len(sgx.enclaves) != 1:
        return False
    encl = next(iter(sgx.enclaves.values()))
    if not encl.initialized or encl.dead or encl.secs_epc < 0:
        return False
    if not isinstance(encl.lock, LinuxMutex) or sgx.ksgxd_task is None:
        return False
    if system.cpu.epcm.has_aside():
        return False
    st = system.cpu.secs_state(encl.secs_epc)
    b = encl.backing
    if b._width != 8 or b._eid != st.eid:
        return False
    epc = sgx.epc
    on_lru = (epc.flags & SGX_EPC_PAGE_ON_LRU) != 0
    return not np.any(epc.owner_encl[on_lru] != encl.id)


__all__ = ["END_DIRECT", "END_LOCKED", "IN_FAULT", "CoreStream", "resumable"]
