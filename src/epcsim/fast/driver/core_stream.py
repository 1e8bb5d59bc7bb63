"""One call on the compiled core, from a loop top: ``CoreStream`` (issue 9; PATHS.md, "What
is built for the stream", "The pair from the user path", "The EACCEPT loop" and "The
MODIFY_TYPES loop").

``StreamCore`` (``stream.py``, the owner) makes one ``CoreStream`` per stream, EACCEPT
range or MODIFY_TYPES call; its ``run`` is the continuation the Python loop ``yield from``s
at each of its loop tops: the dynamic regime (``_ready``), the entry (a ``Session`` begun
or moved onto the core), the drive, and the hand-back - the stop decoded, the state
folded, and where the caller goes on. The regime is ``core_regime.py``'s
(``CoreStreamRegime``, a mixin of ``CoreStream``), the thread's stops and how each goes on
``stream_stops.py``'s (split by session ``split2``, no code changed); the thread served to
its next loop top after a stop in the middle of its iteration, and the call's results taken
at a stop, ``core_served.py``'s (``CoreStreamServed``, a mixin too; split by session
``twoone``, no code changed).

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
  flood, ...: ``ksgxd_serving._served_regime``, checked before each served step), the
  machine finishes the batch it holds and stops at K0's loop top (``kc[K_TOP_STOP]``),
  where ksgxd's generator goes on (``Sgx._ksgxd(moved=...)`` with nothing left to do).
* *A stop in the middle of the thread's iteration*: ksgxd's ``KB_SECS`` (the SECS's last
  child about to be written back). Its own generator takes over from that page
  (``Sgx._ksgxd(moved=...)``, as ``served_ksgxd``), and the thread goes on served *in its
  own process*: ``to_simpy(inline=sess.trow)`` gives the thread's serving generator, which
  ``run`` drives (yield the event, send the answer) until the thread's machine stops at
  its next loop top (``tc[TC_HOOK] == 2``) or in a fault under ``encl->lock``
  (``stream_stops.py``).
  Tested since session ``tstops`` (``tests/fast/test_stream_stops.py``): a thread that
  stays on one page for many steps has it written back mid-step, the SECS next.
* *ksgxd's ``KB_RELEASE`` while served* (session ``tstops``): the enclave's last
  reference dropped by the batch (the process closed it while ksgxd's machine held a
  batch). The machine checks it at the ``kref_put`` itself (Python may put references
  between two served steps), and its generator goes on from there
  (``Session.on_stop``): in phase D after the page's unlock
  (``sgx_reclaim_write_back(written=True)``), or in phase B after a young page's putback,
  where the last reference means the batch's last page with none kept
  (``_released_young``: ``sgx_encl_release``, then the batch returns 0). On the core
  it is kept unreachable: the handle's references go only by a Python task, or by a
  started thread's exit after its stream, and a served batch left holding a closed
  enclave's last references is not taken onto the core (``_ready``'s
  ``held_by_a_batch_only``, session ``row1b``; reached without it by a call's first
  iteration on the core, ``test_a_batch_holding_a_closed_enclaves_last_references_...``):
  ``RuntimeError`` there.

Decisions kept from session ``integ`` (the others: ``stream.py``, ``core_regime.py``):

* CFS's idle list is rebuilt in CPU order by ``to_simpy`` (``CfsRunQueue`` keeps it
  sorted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen
from epcsim.fast.cosim.deadline import take_stops
from epcsim.fast.cosim.state import (
    C_CSW,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    HANDED_BACK,
    HB_DEADLINE,
    M_CONTENDED,
    T_PC,
    T_STATE,
    TS_NEW,
    TS_READY,
    TS_RUNQ,
)
from epcsim.fast.cosim.transfer_to_core import to_core
from epcsim.fast.cosim.transfer_to_simpy import to_simpy
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.add import P_ADIRECT
from epcsim.fast.driver.bridge import lp_mask
from epcsim.fast.driver.core_regime import CoreStreamRegime
from epcsim.fast.driver.core_served import CoreStreamServed, _ksgxd_after_stop, _ksgxd_asleep
from epcsim.fast.driver.engine_state import fold_task
from epcsim.fast.driver.group_regime import group_regime
from epcsim.fast.driver.observe import drive_observed
from epcsim.fast.driver.reclaim_pc import RECLAIM_DIRECT
from epcsim.fast.driver.slots import fold_slots, refresh_slots, take_slots
from epcsim.fast.driver.stream_group import GroupSession
from epcsim.fast.driver.stream_ksgxd import Session
from epcsim.fast.driver.stream_stops import (
    END_DIRECT,
    END_GROW,
    END_LOCKED,
    IN_FAULT,
    _direct_rest,
    _fault_rest,
    _trim_locked,
    add_grow,
    resumable,
)
from epcsim.fast.driver.thread_bridge import _thread_state
from epcsim.fast.driver.thread_fold import fold_thread
from epcsim.fast.driver.thread_pc import P_LOCKED, P_NAMES, P_TOP
from epcsim.fast.driver.trim import P_DIRECT
from epcsim.user.thread import STREAM_ON, STREAM_PF, STREAM_SIGBUS, EnclaveThread

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.fast.driver.stream import StreamCore


#: rows for the runtime's calls the machine makes itself in one run (``TState.calls``)
_CALL_ROWS = 8192
#: ``CoreStream.calls`` when the machine made no call
_NO_CALLS = np.zeros((0, 3), np.int64)


class CoreStream(CoreStreamServed, CoreStreamRegime):
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
        #: the process running the stream (``access_stream`` builds this in it): a group
        #: move that joins the thread mid-fault throws into it (``group_join.py``)
        self.proc: Any = self.system.machine.env.active_process
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
        #: ADD_PAGES' SECINFO flags (``StreamCore.add``)
        self.add_flags = 0
        #: after ``END_GROW``: the ADD_PAGES page's EPC page, allocated (``_add_page_rest``)
        self.grow_page = -1
        #: after ``END_DIRECT``: the direct batch's ``(rows, j, ewbed)`` (``_direct_rest``)
        self.direct: (
            tuple[list[tuple[int, Any, int, int]], int, tuple[int, int, int] | None] | None
        ) = None
        #: after a MODIFY_TYPES ``run``: the call's ``ret`` (0, or -EAGAIN with its cause,
        #: ``tstate.CAUSE_*``) where the loop stopped at a page top
        self.mret = 0
        self.cause = 0
        #: the runtime's calls after -EAGAIN the machine may still end and make itself
        #: (``StreamCore.trim``'s ``retry``; ``fast/driver/retry.py``), and whether it may
        self.calls_left = 0
        self.retrying = False
        #: the runtime calls no more after this call (``StreamCore.trim``'s ``final``)
        self.final = False
        #: the runtime's calls in a row with no progress before the current one, and its
        #: ``max_stalled`` (0: none)
        self.stalled = 0
        self.max_stalled = 0
        #: after a ``run``: those it made, one row each, ``(range index where it stopped,
        #: its instant back in the runtime, tstate.CAUSE_*)`` (``ioctl_sgx2._calls_made``
        #: takes them); no rows when it made none
        self.calls: np.ndarray = _NO_CALLS

    def close(self) -> None:
        """``access_stream`` returned: the stream is no longer live (``StreamCore.live``)."""
        self.owner.live -= 1
        if self.owner.streams.get(self.thread) is self:
            del self.owner.streams[self.thread]
        if self.trim is not None and self.ioctl_mode == T.MODE_ADD:
            self.owner.add_live -= 1
        elif self.trim is not None:
            self.owner.trim_live -= 1
        if self.retrying:
            self.owner.retry_live -= 1
            self.retrying = False
        if self.final:
            self.owner.final_live -= 1
            self.final = False

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
        if isinstance(sess, GroupSession):  # several threads (``stream_group``): join it
            return (yield from sess.join(self, i, done))
        if not self._ready(sess is not None):
            if sess is None and (group := group_regime(self)) is not None:
                sess = owner.session = GroupSession(owner, self.encl, group)
                return (yield from sess.join(self, i, done))
            return None
        system = self.system
        encl = self.encl
        secs = system.cpu.secs_state(encl.secs_epc)
        if sess is None:
            sess = Session.begin(owner, thread, encl, secs)
            # a ``run(until=)`` deadline: a stop row (_ready); the parked flood's timers
            take_stops(sess.sv, system.sgx.flood)
        elif not sess.adopt(thread, encl):
            return None
        else:
            sess.fit_trace()
            if not to_core(sess.sv):
                return None
            # ``to_core`` closed the process that entered at K0's check: ksgxd is no longer
            # inside its generator's hook, so a stop hands it to a generator of its own
            # (``SessionStops.on_stop``'s ``hooked``; found by session ``twoencl3``: a
            # ``KB_SECS`` on the core after such a move ran the batch's rest and then ended
            # ksgxd's process - reached with two enclaves, the other's SECS evicted)
            sess._hook_proc = None
            co = sess.co
            co.tasks[sess.trow, T_STATE] = TS_READY
            sess.kt, sess.nblk = refresh_slots(system, sess.encls, sess.kt, sess.nblk)
        co = sess.co
        # the session's rows (``Session.kr``, ``trow``; PATHS.md N6 item 3)
        tr, kr = sess.trow, sess.kr
        sess._secs = secs  # resident (``_ready``): the thread's served steps fold into it
        for s, e in enumerate(sess.encls):  # each resident SECS's state (an evicted one's kept)
            if s != sess.tslot and e.secs_epc >= 0 and e.secs_epc in system.cpu.secs_at:
                sess.secss[s] = system.cpu.secs_at[e.secs_epc]
        take_slots(system, sess.encls, sess.secss, sess.kt)
        tslot = sess.tslot
        kt = sess.kt
        ks = kt[tslot]
        kc = ks.kc
        ke = ks.ke
        kc[K.K_HIGH] = sess.high
        ke[K.K_SECS_EPC] = encl.secs_epc
        kc[K.K_THREAD_T] = 0  # the thread rows 0 .. kr - 1 (ksgxd's IPI, ``reclaimer_write``)
        kc[K.K_NTHREADS] = kr
        kc[K.K_THREAD_SLOT] = tslot
        kc[K.K_TOP_STOP] = 0
        lp = thread.cpu
        assert lp is not None
        ke[K.K_INSIDE] = (1 << lp) if system.cpu.inside(lp) >= 0 else 0  # an LP mask (N2)
        ke[K.K_TRACKING] = lp_mask(secs.tracking)
        ke[K.K_CPUMASK] = 0  # no other task of the mm runs (_ready); the thread's is added
        co.tasks[tr, T_PC] = P_TOP
        mode = self.mode
        trim = self.trim
        if mode is None and trim is None:
            ts = _thread_state(system, thread, self.pages, self.writes, False, encl=encl)
        else:  # the EACCEPT/MODIFY_TYPES loop: one note per step pages, and the last's
            step = trim[1] if trim is not None else mode[3] if mode is not None else 1
            rows = (self.pages.size - i) // step + 2
            # the retry's rows (retry.py): where they run out the machine leaves that call
            # to Python, and the next call is a new run (one more stop per 8,192 calls)
            calls = min(self.calls_left, _CALL_ROWS)
            ts = _thread_state(system, thread, self.pages, self.writes, False, rows, encl, calls)
        sess.ts = ts
        tc = ts.tc
        tc[T.TC_ESLOT] = tslot
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
            # the runtime's retry (retry.py): only with no signal to deliver at the return
            tc[T.TC_RETRY] = int(
                self.calls_left > 0 and not thread.pending_signal and not tc[T.TC_ENTERED]
            )
            tc[T.TC_CALL_I0] = self.base
            tc[T.TC_CALLS_LEFT] = self.calls_left
            tc[T.TC_STALLED] = self.stalled
            tc[T.TC_MAX_STALLED] = self.max_stalled
            tc[T.TC_USER_RETURN_NS] = costs.user_return
            tc[T.TC_SYSCALL_NS] = costs.syscall
            tc[T.TC_ADD_FLAGS] = self.add_flags
            tc[T.TC_EADD_NS] = costs.eadd
            tc[T.TC_EPA_NS] = costs.epa
            tc[T.TC_PAGE_CNT] = encl.page_cnt
        contended = int(co.mtx[:, M_CONTENDED].sum())
        switches = int(co.clk[C_CSW])
        rc, kt = drive_observed(owner, sess.sv, system, sess.encls, co, kt, ts, tslot, tr)
        owner.lock_contended += int(co.mtx[:, M_CONTENDED].sum()) - contended
        owner.core_switches += int(co.clk[C_CSW]) - switches
        sess.kt = kt
        ks = kt[tslot]
        for s, other in enumerate(kt[: len(sess.encls)]):  # records into the other's file
            if s != tslot:
                owner.foreign_records += int(other.ke[K.K_NR_RECORDS])
        owner.entries += 1
        if mode is not None:
            owner.eaccept_entries += 1
        owner.ksgxd_pages += int(ks.cnt[K.CN_PAGES])
        hb = int(co.clk[C_HB])
        code = int(ks.kc[K.K_HB]) if hb >= 100 else -1
        who = int(co.clk[C_HB_TASK])
        if rc == HANDED_BACK and hb == HB_DEADLINE:
            return (yield from self._deadline(sess, ts, done))
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
        pc = int(co.tasks[tr, T_PC])
        in_fault = who == tr and code in IN_FAULT and pc == P_LOCKED
        locked = trim is not None and who == tr and _trim_locked(code, pc)
        # a direct batch stopped before a SECS's eviction: MODIFY_TYPES' M1, or ADD_PAGES'
        # allocation (A1), whose batch may take the other enclave's last child (session
        # ``twoencl3``)
        direct = (
            trim is not None and who == tr and code == K.KB_SECS and pc in (P_DIRECT, P_ADIRECT)
        )
        # ADD_PAGES' VA page found the free list empty (``add.py`` A2): the page's rest
        grow = trim is not None and who == tr and add_grow(code, pc)
        if who == tr and (resumable(code, pc) or in_fault or locked or direct or grow):
            # the thread at a loop top (or under encl->lock in a fault: below): the
            # generator goes on; ksgxd asleep goes back to its own generator's wait, else
            # it goes on served by SimPy
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            co.tasks[tr, T_STATE] = TS_NEW  # the running generator: no process built
            asleep = _ksgxd_asleep(co, kr)
            # the thread's CPU first: its LP state folds onto it (``fold_thread``), and a FIFO
            # waiter of encl->lock may have woken on another CPU (``to_simpy`` writes the
            # same fields again)
            fold_task(thread, co.tasks[tr])
            fold_thread(system, thread, encl, secs, ks, ts)
            fold_slots(system, sess.encls, sess.secss, kt, skip=tslot)
            sess.fold_pins()
            to_simpy(sv)
            sv.procs[tr] = None
            _ksgxd_after_stop(owner, sess, asleep)
            owner.keep(sess)
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
            if mode is not None and code == K.KB_TCS and new_done == done:
                owner.eaccept_tcs_stops += 1
            if trim is not None:
                self._take_ret(tc)
                if locked:  # the page from _load on, in Python (the caller's)
                    owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
                    return new_i, new_done, END_LOCKED
                # the page's EPC page when the stop was in its VA page's allocation (its
                # reclaim batch, or -ENOMEM: ``add.py`` A2): the page's rest is from the grow
                self.grow_page = int(tc[T.TC_PAGE]) if tc[T.TC_ADD_VA] < 0 or grow else -1
                if direct:  # the direct batch's rest, then the page, in Python
                    owner.secs_stops += 1
                    self.direct = _direct_rest(sess.kt[0], sess.encls)
                    sess.forget_pins(RECLAIM_DIRECT)  # Python's batch from here
                    return new_i, new_done, END_DIRECT
                if grow:  # the page's rest from sgx_encl_grow on, in Python
                    owner.grow_stops += 1
                    return new_i, new_done, END_GROW
                return new_i, new_done, end
            if in_fault:
                # the rest of the fault in Python, the reference's code from the lock on
                # (``stream_stops.py``'s docstring, "The thread's stops")
                owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
                assert isinstance(thread, EnclaveThread)  # a stream's or EACCEPT loop's
                ok = yield from _fault_rest(thread, tc)
                end = STREAM_ON if ok else STREAM_SIGBUS
            return new_i, new_done, end
        # Any other stop is a defect guard (``stream_stops.py``, "The thread's stops" (c)):
        # among them ksgxd's KB_RELEASE on the core, not reachable - during a pair call only
        # the thread and ksgxd run, and neither puts the handle's references (the fd's and
        # the mm's go by ``Enclave.close``, a Python task, or by a started thread's exit
        # after its stream), and a batch that holds the last ones already is declined at
        # entry (``_ready``), so the batch's kref_put never drops the last one here
        if who != kr or code != K.KB_SECS:
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on "
                f"({'the thread' if who == tr else 'ksgxd'}: {K.KB_NAMES[code]}, "
                f"{'at ' + P_NAMES[pc] if who == tr else ''})"
            )
        # ksgxd before the SECS's eviction (KB_SECS): its own generator takes over, in
        # SimPy, from that page (``Served.on_stop``); the thread, in the middle of its
        # iteration, goes on served in this process to its next loop top (or, stopped in
        # a fault under encl->lock, through the fault's end in Python: ``Session.on_stop``)
        owner.session = None
        owner.secs_stops += 1
        owner.queued_stops += int(co.tasks[tr, T_STATE]) == TS_RUNQ  # yielded to ksgxd
        fold_task(thread, co.tasks[tr])  # its CPU first (above)
        fold_thread(system, thread, encl, secs, ks, ts)
        fold_slots(system, sess.encls, sess.secss, kt, skip=tslot)
        sess.fold_pins()  # ksgxd's batch's pins, and the thread's direct batch's (pins.py)
        sess.thread_end = None
        kept = to_simpy(sv, inline=tr)
        assert kept is not None
        # what the core ran is counted at the stop, as at a deadline (``_deadline``): a
        # ``run(until=)`` ending before the served thread's next loop top read
        # ``fast_core_accesses`` without the call's accesses (session ``fixes``)
        new_done = int(tc[T.TC_DONE])
        self._count(new_done - done)
        return (yield from self._served_to_top(sess, ts, kept, new_done))


__all__ = ["CoreStream"]
