"""How ksgxd's served machine and the stream's served thread stop (issue 9 sessions
``upair``, ``kmove2`` and ``tstops``): ``Session.on_stop`` and the way back to ksgxd's own
generator - its sleep (``asleep_on_core``, ``_asleep``), K0's loop top or check
(``KB_TOP``), the rest of its batch from the page it stopped at (``KB_SECS``,
``KB_RELEASE``: ``sgx_reclaim_write_back``) - and the served thread's stop, at a loop top or
in a fault under ``encl->lock`` whose rest runs here in Python (``_thread_stopped``).

Why a module of its own: ``stream_ksgxd.py`` enters the session and steps its machines; this
is where each stop hands the work back to a Python generator. ``SessionStops`` is a mixin of
``Session`` (split from ``stream_ksgxd.py`` by session ``split2``, no code changed): the
attributes it reads are ``Session.__init__``'s. ``stream.py``'s, ``core_stream.py``'s and
``stream_stops.py``'s module docstrings say what the pair decides at each stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Gen
from epcsim.fast.cosim.state import C_HB, C_HB_NOW, C_HB_TASK, T_PC
from epcsim.fast.cosim.transfer_to_simpy import _process
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.stream_stops import IN_FAULT, _fault_rest, park_rest, resumable
from epcsim.fast.driver.thread_pc import P_LOCKED, P_NAMES
from epcsim.kernel.reclaim import sgx_reclaim_write_back
from epcsim.user.thread import STREAM_ON, STREAM_PF, STREAM_SIGBUS

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.fast.cosim.served import Served
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.kernel.main import Sgx
    from epcsim.system import System


class SessionStops:
    """The stops of ``Session``'s served machines (module docstring)."""

    # set by ``Session.__init__``
    owner: StreamCore
    system: System
    thread: Task
    kr: int
    trow: int
    encls: list[Any]
    kt: Any
    co: Any
    ts: Any
    high: int
    parked: list[Any]
    sv: Served
    _hook_proc: Any
    _pins: dict[int, list[tuple[Any, int]]]
    _unpin: Callable[[int], None]
    ksgxd_out: bool
    thread_end: tuple[int, int] | None

    def on_stop(self, t: int) -> Gen:
        """A served machine stopped (``R_STOP``). The thread: at a loop top (its serving
        generator ends: ``CoreStream.run`` goes on), or in a fault under ``encl->lock``
        (``stream_stops.IN_FAULT``: the fault's rest in Python, here, in the thread's process).
        ksgxd: asleep at K0, between batches outside the regime (``KB_TOP``), or before a
        step of its batch only its generator does (``KB_SECS``; ``KB_RELEASE``, the last
        reference dropped): its own generator goes on from there - entered from ksgxd
        asleep, its parked wait goes back on ``ksgxd_waitq`` instead and this process waits
        forever (an ended process would take an eid the reference does not)."""
        if t < self.kr:
            return self._thread_stopped(t)
        self.ksgxd_out = True  # its generator from here (``fold_pins`` leaves its row)
        co = self.co
        hb = int(co.clk[C_HB])
        if hb == 0 and self.parked:
            return self._asleep()
        if hb not in (0, 100 + K.KB_TOP, 100 + K.KB_SECS, 100 + K.KB_RELEASE):
            # KB_UNEXPECTED only: its sites are proven unreachable (ksgxd.py's docstring)
            raise RuntimeError(
                f"fast_core: ksgxd served stopped at {K.KB_NAMES[int(self.kt[0].kc[K.K_HB])]}"
            )
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        if self.owner.session is self:
            self.owner.session = None
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        hooked = self._hook_proc is not None and self.sv.procs[self.kr] is self._hook_proc
        rest: Gen
        if hb == 0:
            # asleep at K0 (the machine's sleep and the generator's are the same instant
            # and state): its generator sleeps itself, and its next wake-up comes back to
            # K0's check (``Sgx._ksgxd``'s hook)
            rest = _none_reclaimed()
        elif hb == 100 + K.KB_TOP:
            self.owner.top_stops += 1
            # at K0's loop top after a batch, or at K0's check after the wake-up run
            at_check = int(co.tasks[self.kr, T_PC]) == KM.P_CHECK
            rest = _at_check() if at_check else _none_reclaimed()
        else:
            rest = self._rest_of_batch(hb - 100)
        # inside ksgxd's generator (entered at K0's check, not moved since): ``rest`` is
        # what its hook returns; else this process goes on as ksgxd's generator
        return rest if hooked else sgx._ksgxd(task, (self.high, rest))

    def _rest_of_batch(self, code: int) -> Gen:
        """ksgxd's generator from where its machine stopped in a batch: ``KB_SECS`` before
        page ``j``'s D step (``sgx_reclaim_write_back`` from ``j``); ``KB_RELEASE`` at the
        ``kref_put`` that drops the enclave's last reference - in D after page ``j``'s
        unlock (``written=True``), or in B after a young page's putback."""
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        co = self.co
        ks = self.kt[0]
        rw = ks.rc[0]  # ksgxd's row (reclaim.py)
        j, nk = int(rw[K.RC_I]), int(rw[K.RC_NK])
        # each kept page with its own enclave (its slot, ``batch[:, 3]``: PATHS.md "Two
        # enclaves in the regime", session ``twoencl3``)
        rows = [
            (page, self.encls[slot], index, pinned)
            for page, index, pinned, slot in ks.batch[0, :nk, :4].tolist()
        ]
        self._unpin(0)
        pc = int(co.tasks[self.kr, T_PC])
        written = pc == KM.P_D_UNLOCKED  # KB_RELEASE: page j written back, unlocked
        # KB_SECS at P_STORED: page j's EWB done (its record stored, its pin dropped) under
        # encl->lock, which ksgxd still holds; the rest of sgx_reclaimer_write from there
        ewbed = None
        if pc == KM.P_STORED:
            ewbed = (int(rw[K.RC_RET]), int(rw[K.RC_VA]), int(rw[K.RC_SLOT]))
            self.owner.stored_stops += 1
        for _page, encl, index, pinned in rows[j + (written or ewbed is not None) :]:
            encl.backing._pinned_gen[index] = pinned
        kept = [(page, encl, index) for page, encl, index, _ in rows]
        if code == K.KB_RELEASE:
            self.owner.release_stops += 1
        if pc == KM.P_AGE_RUN:
            # KB_RELEASE in phase B, a young page put back, its kref_put to come. Each
            # isolated page holds a reference from A until it is put back (B) or written
            # back (D), so the last one left means: the batch's last page and none kept
            # (the machine stops there only then; anything else is a defect)
            if code != K.KB_RELEASE or nk != 0 or j != int(rw[K.RC_NB]) - 1:
                raise RuntimeError("fast_core: ksgxd stopped in its age check otherwise")
            # the young page's own enclave (its slot: the batch's row j, not compacted)
            young = self.encls[int(ks.batch[0, j, 3])]
            return _released_young(young, task)
        return sgx_reclaim_write_back(sgx, task, kept, j, written, ewbed)

    def _thread_stopped(self, t: int) -> Gen:
        """The served thread's machine (task row ``t``) stopped: record where
        (``thread_end``); in a fault under ``encl->lock`` the fault's rest runs here, in
        Python (the reference's code from the lock on: ``EnclaveThread.fault_locked``)."""
        co = self.co
        code = int(self.kt[0].kc[K.K_HB]) if int(co.clk[C_HB]) >= 100 else -1
        pc = int(co.tasks[t, T_PC])
        ts = self.ts
        thread: Any = self.thread  # a stream's (only a stream's thread is ever served)
        if int(ts.tc[T.TC_MODE]) >= T.MODE_TRIM:  # an ioctl loop (MODIFY_TYPES, REMOVE_PAGES)
            from epcsim.fast.driver.add import P_ADIRECT
            from epcsim.fast.driver.stream_stops import (
                END_DIRECT,
                END_GROW,
                END_LOCKED,
                _trim_locked,
                add_grow,
            )
            from epcsim.fast.driver.trim import P_DIRECT

            # MODIFY_TYPES' page from _load on, or its direct batch's rest (ADD_PAGES' too,
            # whose batch may evict the other enclave's SECS): _page_loop's, the add loop's;
            # ADD_PAGES' page from its grow on (its VA page's allocation, session addrun)
            end = END_LOCKED if _trim_locked(code, pc) else None
            if code == K.KB_SECS and pc in (P_DIRECT, P_ADIRECT):
                end = END_DIRECT
            if add_grow(code, pc):
                end = END_GROW
            if end is not None:
                co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
                self.thread_end = (code, end)
                return
        if code == K.KB_PARK:
            # its retry would park (the flood, served): the park and the rest of
            # ``_fault_or_park`` in Python, here (session ``uflood``)
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            self.owner.park_stops += 1
            ok = yield from park_rest(thread, ts.tc)
            self.thread_end = (code, STREAM_ON if ok else STREAM_SIGBUS)
            return
        if code in IN_FAULT and pc == P_LOCKED:
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            owner = self.owner
            owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
            ok = yield from _fault_rest(thread, ts.tc)
            self.thread_end = (code, STREAM_ON if ok else STREAM_SIGBUS)
            return
        if not resumable(code, pc):
            # KB_ENTRY after the entry's run or KB_UNEXPECTED: defect guards, unreachable
            # (stream_stops.py's docstring, "The thread's stops" (c))
            raise RuntimeError(
                f"fast_core: the thread served stopped at {K.KB_NAMES[max(code, 0)]} "
                f"({P_NAMES[pc]})"
            )
        self.thread_end = (code, STREAM_PF if code == K.KB_PF else STREAM_ON)

    def parked_rest(self, t: int, moved: Any) -> Gen:
        """``Served.on_parked``: the thread (row ``t``) parked on the core at a move back
        goes on in Python inside its park (``moved``: ``(park, decided)``), then the rest
        of ``_fault_or_park``; its stream from its loop top (``CoreStream._served_to_top``
        reads ``thread_end``). Session ``uflood``."""
        ok = yield from park_rest(self.thread, self.ts.tc, moved)
        self.thread_end = (K.KB_PARK, STREAM_ON if ok else STREAM_SIGBUS)

    def asleep_on_core(self) -> None:
        """ksgxd asleep on the core when a pair call ends (its machine's wait is dropped):
        its own generator waits again - the parked wait, or, entered at K0's check, a new
        generator at the same point of ``Sgx._ksgxd`` (``_woken``: ``task.sleep``'s tail,
        ``wait_event``'s re-check, the wake-up run, then K0's check), built as
        ``transfer_to_simpy._process`` builds a moved task's (no Initialize: no eid)."""
        sgx = self.system.sgx
        waitq = sgx.ksgxd_waitq
        if self.parked:
            waitq._waiters = self.parked
            return
        task = sgx.ksgxd_task
        assert task is not None
        env = self.system.machine.env
        ev = env.event()
        waitq._waiters = [ev]
        gen = sgx._ksgxd(task, (self.high, _woken(sgx, task, ev, self.high)))
        if next(gen) is not ev:  # _woken's first yield is ``ev``: a defect guard
            raise RuntimeError("fast_core: ksgxd's generator does not wait on its wait queue")
        _process(env, gen, ev, True)

    def _asleep(self) -> Gen:
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        waitq = sgx.ksgxd_waitq
        # perform_simpy's RQ_SLEEP with the generator's own event: queued, the CPU released
        waitq._waiters.extend(self.parked)
        task.release_cpu()
        if self.owner.session is self:
            self.owner.session = None
        yield self.system.machine.env.event()  # never triggered


def _none_reclaimed() -> Gen:
    """``Sgx._ksgxd(moved=(high, rest))``'s ``rest`` at K0's top: the batch's pages were
    counted by the machine."""
    return 0
    yield  # a generator


def _at_check() -> Gen:
    """``Sgx._ksgxd(moved=(high, rest))``'s ``rest`` at K0's check (its wake-up run over)."""
    return None
    yield  # a generator


def _woken(sgx: Sgx, task: Task, ev: Any, high: int) -> Gen:
    """``Sgx._ksgxd``'s sleep from inside ``task.sleep(ev)`` (K0, asleep): woken, the task
    takes a CPU, ``wait_event`` re-checks its condition (sleeping again while it is false),
    then the wake-up run; returns None: ksgxd is at K0's check."""
    yield ev
    yield from task.acquire_cpu()
    yield from sgx.ksgxd_waitq.wait_event(task, lambda: sgx.should_reclaim(high))
    sgx.ksgxd_sleeping = False
    yield from task.run(sgx.m.costs.wakeup)
    return None


def _released_young(encl: Any, task: Any) -> Gen:
    """The rest of a batch whose last page, put back young, held the enclave's last
    reference (``Session.on_stop``): ``kref_put(&encl->refcount, sgx_encl_release)``, then
    phases C and D over no kept page (``sgx_reclaim_pages`` returns 0)."""
    yield from encl.put(task)
    return 0


__all__ = ["SessionStops"]
