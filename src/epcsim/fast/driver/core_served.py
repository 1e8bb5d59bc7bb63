"""The stops after which the thread goes on served by SimPy, and what one ``CoreStream``
call hands back (issue 9; PATHS.md "The pair from the user path", "A deadline inside the
call").

Why a module of its own: ``core_stream.py`` holds the entry and the drive, and decodes the
stop; when the core stopped in the middle of the thread's iteration - ksgxd's ``KB_SECS``
or a ``System.run(until=)`` deadline (``HB_DEADLINE``) - the thread goes on served in its
own process to its next loop top (``_served_to_top``), and ksgxd to its generator's wait or
served (``_ksgxd_asleep``, ``_ksgxd_after_stop``). The call's results taken from its
``TState`` at any stop - the counts, the EACCEPT loop's notes, the ioctl loop's ``ret``
and the runtime's calls the machine made - are here too, since both the call and the
served thread take them. ``CoreStreamServed`` is a mixin of ``CoreStream`` (split from
``core_stream.py`` by session ``twoone`` when it passed 500 lines, no code changed): the
attributes it reads are ``CoreStream.__init__``'s.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen
from epcsim.fast.cosim.state import C_HB, C_HB_NOW, C_HB_TASK, T_STATE, TS_NEW, TS_RUNQ
from epcsim.fast.cosim.transfer_to_simpy import to_simpy
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.engine_state import fold_task
from epcsim.fast.driver.reclaim_pc import RECLAIM_DIRECT
from epcsim.fast.driver.slots import fold_slots
from epcsim.fast.driver.stream_stops import END_DIRECT, END_GROW, _direct_rest
from epcsim.fast.driver.thread_fold import fold_thread

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.fast.driver.stream_ksgxd import Session
    from epcsim.system import System


class CoreStreamServed:
    """The served continuation and the call's results of ``CoreStream`` (module
    docstring)."""

    # set by ``CoreStream.__init__``
    owner: StreamCore
    system: System
    thread: Task
    encl: Any
    mode: tuple[int, int, int, int] | None
    trim: tuple[int, int, int] | None
    ioctl_mode: int
    notes: list[tuple[int, int]]
    direct: tuple[list[tuple[int, Any, int, int]], int, tuple[int, int, int] | None] | None
    grow_page: int
    mret: int
    cause: int
    calls_left: int
    stalled: int
    calls: np.ndarray

    def _served_end(
        self, stop: tuple[int, int] | None, tc: Any, done: int, who: str
    ) -> tuple[int, int, int]:
        """Where a served thread's serving generator ended (``_served_to_top`` and
        ``stream_group.GroupSession.join``): its stop, its stream's index and count, the
        accesses since ``done`` counted; returns ``run``'s ``(i, done, end)``. The
        generator ends only at a stop (``on_stop``): none is a guard (``who`` names the
        thread in its message)."""
        if stop is None:
            raise RuntimeError(f"fast_core: {who} served ended without a stop")
        _code, end = stop
        new_done = int(tc[T.TC_DONE])
        self._count(new_done - done)
        return int(tc[T.TC_I]), new_done, end

    def _count(self, n: int) -> None:
        if self.trim is not None and self.ioctl_mode == T.MODE_ADD:
            self.owner.adds += n
        elif self.trim is not None and self.ioctl_mode == T.MODE_REMOVE:
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
        self.owner.va_reclaims += int(tc[T.TC_VA_DIRECT])  # ADD_PAGES' VA pages' batches
        tc[T.TC_VA_DIRECT] = 0
        if self.mret:
            key = (self.mret, self.cause)
            self.owner.ioctl_rets[key] = self.owner.ioctl_rets.get(key, 0) + 1

    def _take_notes(self, ts: Any) -> None:
        """The call's EACCEPT notes and the runtime's calls the machine made, and the TCS
        faults it ran (``StreamCore.tcs_faults``), taken from its ``TState`` at a stop."""
        tc = ts.tc
        self.owner.tcs_faults += int(tc[T.TC_TCS_FAULTS])
        tc[T.TC_TCS_FAULTS] = 0
        k = int(tc[T.TC_NOTE_N])
        self.notes = [(int(a), int(b)) for a, b in ts.notes[:k].tolist()]
        tc[T.TC_NOTE_N] = 0
        n = int(tc[T.TC_CALL_N])
        if n:  # the runtime's calls the machine made (retry.py): each an -EAGAIN it ended
            # kept as an array (up to 8,192 rows a stop): ``_calls_made`` and
            # ``drive_range`` record them in bulk (session ``seed5``)
            self.calls = ts.calls[:n].copy()
            tc[T.TC_CALL_N] = 0
            self.calls_left -= n
            self.stalled = int(tc[T.TC_STALLED])
            owner = self.owner
            owner.ioctl_retries += n
            # counted by cause, each key added where its first call is (as one by one)
            causes, first, counts = np.unique(
                self.calls[:, 2], return_index=True, return_counts=True
            )
            for j in np.argsort(first, kind="stable"):
                key = (-errno.EAGAIN, int(causes[j]))
                owner.ioctl_rets[key] = owner.ioctl_rets.get(key, 0) + int(counts[j])

    def _deadline(self, sess: Session, ts: Any, done: int) -> Gen:
        """The core stopped before a ``System.run(until=)`` deadline (``HB_DEADLINE``,
        ``cosim/deadline.py``; session ``deadline``): every task waits on an event, so
        the queue goes back to SimPy whole - the until event with its own eid, which SimPy
        pops next and stops at - and each task goes on where it waits, as at the other
        stops: ksgxd asleep on the core to its own generator's wait (``asleep_on_core``),
        else its machine served (the session stays ``StreamCore.session``); the thread,
        in the middle of its iteration (or at a loop top its machine went on from), served
        in its own process to its next loop top (``_served_to_top``), from where the
        hook takes it onto the core again - in the next slice."""
        owner = self.owner
        system = self.system
        thread = self.thread
        encl = self.encl
        co = sess.co
        ks = sess.ks
        sv = sess.sv
        owner.deadline_stops += 1
        tr = sess.trow
        owner.queued_stops += int(co.tasks[tr, T_STATE]) == TS_RUNQ  # yielded to ksgxd
        asleep = _ksgxd_asleep(co, sess.kr)
        fold_task(thread, co.tasks[tr])  # its CPU first (the other stops' order)
        fold_thread(system, thread, encl, sess._secs, ks, ts)
        fold_slots(system, sess.encls, sess.secss, sess.kt, skip=sess.tslot)
        sess.fold_pins()  # ksgxd's batch's pins, and the thread's direct batch's (pins.py)
        sess.thread_end = None
        kept = to_simpy(sv, inline=tr)
        assert kept is not None
        _ksgxd_after_stop(owner, sess, asleep)
        owner.keep(sess)
        # what the core ran is counted at the stop (session ``tcsuser``): a run cut at this
        # deadline (``epcsim run``'s duration) never comes back from the served rest, and
        # with the TCS fault on the core one call may hold the whole stream
        new_done = int(ts.tc[T.TC_DONE])
        self._count(new_done - done)
        return (yield from self._served_to_top(sess, ts, kept, new_done))

    def _served_to_top(self, sess: Session, ts: Any, kept: Any, done: int) -> Gen:
        """The thread served by SimPy in its own process (``kept``: its serving generator
        and the event it waits on, ``to_simpy(inline=sess.trow)``) until its machine stops at
        its next loop top, or in a fault under ``encl->lock`` whose rest Python runs
        (``Session.on_stop``); returns ``run``'s ``(i, done, end)``."""
        co = sess.co
        sv = sess.sv
        tc = ts.tc
        trim = self.trim
        gen, ev = kept
        tc[T.TC_HOOK] = 2
        tc[T.TC_RETRY] = 0  # served, Python tasks run between its steps: no call made there
        while True:
            value = yield ev
            try:
                ev = gen.send(value)
            except StopIteration:
                break
        sv.procs[sess.trow] = None
        sv.begun[sess.trow] = False
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        # the thread's call is over (a session ended at KB_SECS, its ksgxd's generator took
        # over; or one kept served after a deadline: the next call brings its own TState)
        sess.ts = None
        new_i, new_done, end = self._served_end(sess.thread_end, tc, done, "the thread")
        self._take_notes(ts)
        if trim is not None:
            self._take_ret(tc)
            # the page's EPC page if the stop was in its VA page's allocation (core_stream)
            self.grow_page = int(tc[T.TC_PAGE]) if tc[T.TC_ADD_VA] < 0 or end == END_GROW else -1
            if end == END_DIRECT:
                self.direct = _direct_rest(sess.kt[0], sess.encls)
                sess.forget_pins(RECLAIM_DIRECT)  # Python's batch from here
            if end == END_GROW:  # ADD_PAGES' page from its grow on (session addrun)
                self.owner.grow_stops += 1
        return new_i, new_done, end


__all__ = ["CoreStreamServed", "_ksgxd_after_stop", "_ksgxd_asleep"]


def _ksgxd_asleep(co: Any, kr: int) -> bool:
    """Whether ksgxd (task row ``kr``, ``Session.kr``) sleeps alone on the core's wait queue
    at a stop; if so its core task is reset, for its generator's own sleep
    (``_ksgxd_after_stop``)."""
    asleep = int(co.wq[0]) == 1 and int(co.wql[0, 0]) == kr
    if asleep:
        co.tasks[kr, T_STATE] = TS_NEW
        co.wq[0] = 0
    return asleep


def _ksgxd_after_stop(owner: Any, sess: Session, asleep: bool) -> None:
    """After a stop's ``to_simpy``: ksgxd asleep goes back to its generator (the session
    ends); awake, the session lives on, ksgxd served by SimPy (``stream_ksgxd``)."""
    if asleep:
        sess.asleep_on_core()
        sess.sv.procs[sess.kr] = None
        owner.session = None
    else:
        owner.session = sess
