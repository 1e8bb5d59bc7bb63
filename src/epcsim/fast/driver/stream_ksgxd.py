"""ksgxd's compiled machine between two pair calls of ``access_stream``'s hook
(``stream.py``, issue 9 sessions ``upair`` and ``kmove2``): the core's arrays and the
kernel's ``KState`` of the pair, the SimPy side that serves ksgxd's machine when a call
ends in the middle of a batch, the two ways in - from ksgxd asleep in its generator at a
thread's loop top (``Session.begin``), or from its running generator at K0's check
(``Session.at_check``, served from there inside ksgxd's own process) - and the way back
to ksgxd's own generator (its sleep, ``KB_TOP``, ``KB_SECS``: ``on_stop``,
``asleep_on_core``).

``stream.py``'s and ``core_stream.py``'s module docstrings say what the pair does and
decides; this module is the session object ``StreamCore.session`` keeps while ksgxd is a
machine. A session
entered at K0 has no thread until a stream takes it over (``adopt``): its task 0 is a
placeholder ``Task`` (never run, never on a CPU), since at K0 ksgxd cannot know which
thread will stream next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen, Task
from epcsim.engine.mutex import LinuxMutex
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.request import RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    R_BLOCKED,
    R_STOP,
    T_PC,
    T_RQ,
    T_STATE,
    TS_READY,
    TS_SLEEP,
)
from epcsim.fast.cosim.transfer import _frame_locals, _process
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import _serve, fold_kernel, refresh_layout, take_small
from epcsim.fast.driver.engine_state import absolute_counters, take_engine
from epcsim.fast.driver.ksgxd import P_IPI_RUN, P_WAIT, R_SVC, ksgxd_resume
from epcsim.fast.driver.pins import check_no_direct_pins, pinned_rows
from epcsim.fast.driver.thread import P_LOCKED, P_NAMES, P_TOP, thread_resume
from epcsim.fast.driver.thread_bridge import KSGXD, THREAD, _serve_thread, entered, fold_thread
from epcsim.kernel.main import Sgx
from epcsim.kernel.policy import KernelLru
from epcsim.kernel.reclaim import sgx_reclaim_write_back
from epcsim.user.thread import STREAM_ON, STREAM_PF, STREAM_SIGBUS

if TYPE_CHECKING:
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.system import System


class Session:
    """ksgxd's compiled machine from its entry until it is ksgxd's generator again (module
    docstring): the core's arrays, the kernel's ``KState``, the SimPy side (``Served``:
    task 0 the enclave thread, task 1 ksgxd) and, entered from ksgxd asleep, its own
    generator's wait (``parked``), put back on ``ksgxd_waitq`` when the machine sleeps."""

    def __init__(
        self,
        owner: StreamCore,
        encl: Any,
        thread: Task,
        co: Any,
        ks: Any,
        high: int,
        parked: list[Any],
        mode: str = "core",
    ):
        self.owner = owner
        self.system = owner.system
        #: the stream's thread (task 0): a placeholder ``Task`` that never runs while no
        #: stream has taken a session entered at K0 over (``adopt``)
        self.thread = thread
        self.encl = encl
        self.co = co
        self.ks = ks
        self.ts: Any = None
        nblk = owner._kstate[3] if owner._kstate is not None else None
        self.nblk = len(owner.system.cpu.va.blocks) if nblk is None else nblk
        sgx = owner.system.sgx
        #: the watermark ksgxd's generator read when it started (its loop's ``high``)
        self.high = high
        #: ksgxd's own generator's wait, put aside (entered from ksgxd asleep); empty when
        #: entered at K0's check from the running generator
        self.parked = parked
        kt = sgx.ksgxd_task
        mutex = encl.lock
        assert kt is not None and isinstance(mutex, LinuxMutex)
        self.sv = Served(
            co, owner.system.machine, [thread, kt], [mutex], [sgx.ksgxd_waitq], self.step,
            mode=mode, on_stop=self.on_stop,
        )  # fmt: skip
        #: the process that entered at K0's check (``serve_at_check``), while it still runs
        #: ksgxd's machine from inside ksgxd's generator (``to_core`` closes it)
        self._hook_proc: Any = None
        self._kmachine: Any = None
        self._tmachine: Any = None
        #: the backing indices this session wrote into ``EnclaveBacking._pinned_gen``
        self._pins: list[int] = []
        #: the SECS's state (``SecsState``, kept by the CPU across its evictions): the
        #: thread served after ``KB_SECS`` may step while the SECS is written back
        self._secs: Any = owner.system.cpu.secs_at.get(encl.secs_epc)
        #: the thread served to its stop (``CoreStream.run``, after ``KB_SECS``): the stop's
        #: ``kstate.KB_*`` code and how the stream goes on (``user.thread.STREAM_*``)
        self.thread_end: tuple[int, int] | None = None

    def adopt(self, thread: Task, encl: Any) -> bool:
        """``CoreStream.run`` taking the session over for its thread (module docstring,
        "Which thread"): possible while no thread is served in it (task 0 has no process),
        the thread - or the ioctl's task - of the session's enclave ``encl``. The thread
        row's arrays are ``to_core``'s. With ``fast_core="auto"``, not while serving is not
        worth it (``_worth_serving``): the stream's iteration then runs in Python and the
        served ksgxd stops at its next K0 (its ``K_TOP_STOP``), which a stream taking the
        session would clear - the demo's MODIFY_TYPES calls without direct reclaim (~1 page
        each) kept ksgxd served for the whole trim that way, ~2.5x that run's CPU
        (BENCHMARKS.md, ``demo5``)."""
        owner = self.owner
        if owner.auto and not _worth_serving(owner.system):
            return False
        if thread is self.thread:
            return True
        if encl is not self.encl or self.sv.procs[THREAD] is not None:
            return False
        self.thread = thread
        self.sv.tasks[THREAD] = thread
        return True

    def fit_trace(self) -> None:
        """The core's mutex trace buffer as ``encl->lock``'s trace is now (on or off): a
        session entered at K0 may predate the trace being turned on (its size is what
        ``take_engine`` gives; ``to_core`` starts it empty)."""
        want = (1 << 16) if self.encl.lock.trace is not None else 0
        if self.co.trace.shape[0] != want:
            self.co = self.co._replace(trace=np.zeros((want, 4), np.int64))
            self.sv.st = self.co

    def fold_pins(self) -> None:
        """``EnclaveBacking._pinned_gen`` as the reference's ksgxd leaves it at this point of
        its batch: ``get_backing`` pins a page's PCMD generation in phase B, ``store`` drops
        it in D; the machine keeps them in its batch (``batch[:, 2]``) and stores through
        the compiled op, so while it is mid-batch under SimPy the dict is written from the
        batch (the pages kept so far in B, all kept ones in C, those not yet stored in D)."""
        pinned = self.encl.backing._pinned_gen
        for index in self._pins:
            pinned.pop(index, None)
        ks = self.ks
        rows = pinned_rows(ks, 0, int(self.co.tasks[KSGXD, T_PC]))  # ksgxd's row, pc mirrored
        batch = ks.batch[0]
        self._pins = []
        for r in rows:
            index, gen = int(batch[r, 1]), int(batch[r, 2])
            if gen >= 0:
                pinned[index] = gen
                self._pins.append(index)

    @classmethod
    def begin(cls, owner: StreamCore, thread: Task, encl: Any, secs: Any) -> Session:
        """A session from ksgxd asleep in its generator: the core as ``run_pair``'s, with
        the thread running at its loop top and absolute counters (``to_simpy`` writes them
        back absolute)."""
        system = owner.system
        m = system.machine
        mutex = encl.lock
        co = _core_state_running(system, thread, mutex, mutex.trace is not None)
        absolute_counters(co, m.elided, mutex)
        sgx = system.sgx
        parked = list(sgx.ksgxd_waitq._waiters)
        resume: Any = parked[0].callbacks[0]  # the generator's Process._resume
        frame = _frame_locals(resume.__self__._generator, Sgx._ksgxd.__code__)
        high = sgx.high_pages if frame is None else int(frame["high"])
        ks = owner.kernel_state(encl, secs)
        return cls(owner, encl, thread, co, ks, high, parked)

    @classmethod
    def at_check(cls, owner: StreamCore, encl: Any, secs: Any, high: int) -> Session:
        """A session from ksgxd's generator at K0's check (``Sgx._ksgxd``, awake): the
        machine served by SimPy from ``P_CHECK`` (``serve_at_check``), in ksgxd's own
        process; the core's arrays are only the machine's request rows until a stream
        moves the session onto the core (``to_core`` writes the rest), so the thread row
        is a placeholder task until then (``adopt``)."""
        system = owner.system
        sgx = system.sgx
        kt = sgx.ksgxd_task
        mutex = encl.lock
        assert kt is not None and isinstance(mutex, LinuxMutex)
        placeholder = Task(system.machine, "fast_core: no stream yet")
        co = take_engine(system, [placeholder, kt], mutex, mutex.trace is not None)
        co.tasks[KSGXD, T_PC] = KM.P_CHECK
        ks = owner.kernel_state(encl, secs)
        return cls(owner, encl, placeholder, co, ks, high, [], mode="simpy")

    def serve_at_check(self) -> Gen:
        """ksgxd's machine served from K0's check inside ksgxd's generator (``yield from``:
        its own process, so no process takes an eid the reference does not); returns what
        ``Sgx._ksgxd``'s ``rest`` returns where the machine hands ksgxd back
        (``on_stop``)."""
        proc = self.system.machine.env.active_process
        self.sv.procs[KSGXD] = self._hook_proc = proc
        return (yield from self.sv.serve(KSGXD))

    # -- served by SimPy ----------------------------------------------------------------------
    def step(self, t: int) -> int:
        """One served step of task ``t``'s machine, the kernel's (and the thread's) small
        arrays taken from the Python objects before it and folded after it (the Python
        objects are the truth between two steps: other tasks run there)."""
        system = self.system
        encl = self.encl
        co = self.co
        hw = system.cpu
        # the SECS resident: not evicted, nor written back with its EREMOVE to come (the
        # thread served after KB_SECS steps meanwhile: its machine then sees no SECS)
        secs_epc = encl.secs_epc if encl.secs_epc in hw.secs_at else -1
        if secs_epc >= 0:
            self._secs = hw.secs_at[secs_epc]
        secs = self._secs
        if t == KSGXD:
            kc = self.ks.kc
            if int(co.tasks[KSGXD, T_PC]) == P_IPI_RUN:
                # send_ipi after its run: every LP of the mask inside the enclave takes an
                # AEX (the machine does it for the thread it knows only on the core)
                mask = int(self.ks.rc[0, K.RC_IPI_MASK])
                for lp in range(len(hw.lp_eid)):
                    if (mask >> lp) & 1 and encl.secs_epc >= 0 and hw.inside(lp) == encl.secs_epc:
                        hw.aex(lp)
        self.ks, self.nblk = refresh_layout(system, encl, self.ks, self.nblk)
        ks = self.ks
        kc = ks.kc
        if secs is not None:
            take_small(system, encl, secs, ks)
        kc[K.K_HIGH] = self.high
        kc[K.K_SECS_EPC] = secs_epc
        counts: dict[str, int] = {}
        if t == KSGXD:
            self.owner.served_steps += 1
            kc[K.K_THREAD_T] = -1  # the IPI's AEX is Python's (above)
            # Python may have left the regime between two calls (another enclave, ...): the
            # machine then finishes the batch it holds and its generator goes on from K0
            kc[K.K_TOP_STOP] = int(not _served_regime(system, encl) or not _worth_serving(system))
            if self._kmachine is None:
                self._kmachine = entry_point(ksgxd_resume, co, ks, KSGXD)
            while True:
                r = int(self._kmachine(co, self.ks, KSGXD))
                if r != R_SVC:
                    break
                self.ks = _serve(system, encl, self.ks, counts)
            if secs is not None:
                fold_kernel(system, encl, secs, self.ks)
            self.fold_pins()
            if r == R_BLOCKED and int(co.tasks[KSGXD, T_RQ]) == RQ_SLEEP:
                return R_STOP  # asleep at K0: its own generator's wait (``on_stop``)
            return r
        thread: Any = self.thread  # a stream's (only a stream's thread is ever served)
        ts = self.ts
        kc[K.K_THREAD_T] = THREAD
        cpu = thread.cpu
        kc[K.K_INSIDE] = int(cpu is not None and hw.inside(cpu) >= 0)
        ts.tc[T.TC_ENTERED] = int(entered(thread))
        if self._tmachine is None:
            self._tmachine = entry_point(thread_resume, co, ks, ts, THREAD)
        while True:
            r = int(self._tmachine(co, self.ks, ts, THREAD))
            if r != R_SVC:
                break
            self.ks = _serve_thread(system, encl, self.ks, ts, counts)
        assert secs is not None  # a stream's entry had the SECS resident (``CoreStream.run``)
        fold_thread(system, thread, encl, secs, self.ks, ts)
        check_no_direct_pins(co, self.ks, ts, THREAD)  # Python runs next (pins.py)
        return r

    def on_stop(self, t: int) -> Gen:
        """A served machine stopped (``R_STOP``). The thread: at a loop top (its serving
        generator ends: ``CoreStream.run`` goes on), or in a fault under ``encl->lock``
        (``core_stream.IN_FAULT``: the fault's rest in Python, here, in the thread's process).
        ksgxd: asleep at K0, between batches outside the regime (``KB_TOP``), or before a
        step of its batch only its generator does (``KB_SECS``; ``KB_RELEASE``, the last
        reference dropped): its own generator goes on from there - entered from ksgxd
        asleep, its parked wait goes back on ``ksgxd_waitq`` instead and this process waits
        forever (an ended process would take an eid the reference does not)."""
        if t == THREAD:
            return self._thread_stopped()
        co = self.co
        hb = int(co.clk[C_HB])
        if hb == 0 and self.parked:
            return self._asleep()
        if hb not in (0, 100 + K.KB_TOP, 100 + K.KB_SECS, 100 + K.KB_RELEASE):
            # KB_UNEXPECTED only: its sites are proven unreachable (ksgxd.py's docstring)
            raise RuntimeError(
                f"fast_core: ksgxd served stopped at {K.KB_NAMES[int(self.ks.kc[K.K_HB])]}"
            )
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        if self.owner.session is self:
            self.owner.session = None
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        hooked = self._hook_proc is not None and self.sv.procs[KSGXD] is self._hook_proc
        rest: Gen
        if hb == 0:
            # asleep at K0 (the machine's sleep and the generator's are the same instant
            # and state): its generator sleeps itself, and its next wake-up comes back to
            # K0's check (``Sgx._ksgxd``'s hook)
            rest = _none_reclaimed()
        elif hb == 100 + K.KB_TOP:
            self.owner.top_stops += 1
            # at K0's loop top after a batch, or at K0's check after the wake-up run
            at_check = int(co.tasks[KSGXD, T_PC]) == KM.P_CHECK
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
        rw = self.ks.rc[0]  # ksgxd's row (reclaim.py)
        j, nk = int(rw[K.RC_I]), int(rw[K.RC_NK])
        rows = self.ks.batch[0, :nk].tolist()
        encl = self.encl
        for index in self._pins:
            encl.backing._pinned_gen.pop(index, None)
        self._pins = []
        pc = int(co.tasks[KSGXD, T_PC])
        written = pc == KM.P_D_UNLOCKED  # KB_RELEASE: page j written back, unlocked
        # KB_SECS at P_STORED: page j's EWB done (its record stored, its pin dropped) under
        # encl->lock, which ksgxd still holds; the rest of sgx_reclaimer_write from there
        ewbed = None
        if pc == KM.P_STORED:
            ewbed = (int(rw[K.RC_RET]), int(rw[K.RC_VA]), int(rw[K.RC_SLOT]))
            self.owner.stored_stops += 1
        for _page, index, pinned in rows[j + (written or ewbed is not None) :]:
            encl.backing._pinned_gen[index] = pinned
        kept = [(page, encl, index) for page, index, _ in rows]
        if code == K.KB_RELEASE:
            self.owner.release_stops += 1
        if pc == KM.P_AGE_RUN:
            # KB_RELEASE in phase B, a young page put back, its kref_put to come. Each
            # isolated page holds a reference from A until it is put back (B) or written
            # back (D), so the last one left means: the batch's last page and none kept
            # (the machine stops there only then; anything else is a defect)
            if code != K.KB_RELEASE or nk != 0 or j != int(rw[K.RC_NB]) - 1:
                raise RuntimeError("fast_core: ksgxd stopped in its age check otherwise")
            return _released_young(encl, task)
        return sgx_reclaim_write_back(sgx, task, kept, j, written, ewbed)

    def _thread_stopped(self) -> Gen:
        """The served thread's machine stopped: record where (``thread_end``); in a fault
        under ``encl->lock`` the fault's rest runs here, in Python (the reference's code
        from the lock on: ``EnclaveThread.fault_locked``)."""
        from epcsim.fast.driver.core_stream import IN_FAULT, resumable

        co = self.co
        code = int(self.ks.kc[K.K_HB]) if int(co.clk[C_HB]) >= 100 else -1
        pc = int(co.tasks[THREAD, T_PC])
        ts = self.ts
        thread: Any = self.thread  # a stream's (only a stream's thread is ever served)
        if int(ts.tc[T.TC_MODE]) >= T.MODE_TRIM:  # an ioctl loop (MODIFY_TYPES, REMOVE_PAGES)
            from epcsim.fast.driver.core_stream import END_DIRECT, END_LOCKED, _trim_locked
            from epcsim.fast.driver.trim import P_DIRECT

            # MODIFY_TYPES' page from _load on, or its direct batch's rest: _page_loop's
            end = END_LOCKED if _trim_locked(code, pc) else None
            if code == K.KB_SECS and pc == P_DIRECT:
                end = END_DIRECT
            if end is not None:
                co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
                self.thread_end = (code, end)
                return
        if code in IN_FAULT and pc == P_LOCKED:
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            owner = self.owner
            owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
            ok = yield from thread.fault_locked(int(ts.tc[T.TC_IDX]), int(ts.tc[T.TC_T0]))
            self.thread_end = (code, STREAM_ON if ok else STREAM_SIGBUS)
            return
        if not resumable(code, pc):
            # KB_ENTRY after the entry's run or KB_UNEXPECTED: defect guards, unreachable
            # (core_stream.py's docstring, "The thread's stops" (c))
            raise RuntimeError(
                f"fast_core: the thread served stopped at {K.KB_NAMES[max(code, 0)]} "
                f"({P_NAMES[pc]})"
            )
        self.thread_end = (code, STREAM_PF if code == K.KB_PF else STREAM_ON)

    def asleep_on_core(self) -> None:
        """ksgxd asleep on the core when a pair call ends (its machine's wait is dropped):
        its own generator waits again - the parked wait, or, entered at K0's check, a new
        generator at the same point of ``Sgx._ksgxd`` (``_woken``: ``task.sleep``'s tail,
        ``wait_event``'s re-check, the wake-up run, then K0's check), built as
        ``transfer._process`` builds a moved task's (no Initialize: no eid)."""
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


def _served_regime(system: System, encl: Any) -> bool:
    """What ksgxd's machine needs to start a batch under SimPy (``ksgxd.py`` hands back
    ``KB_UNEXPECTED`` otherwise): the session's enclave the only one, initialized and
    alive, and the model's options the driver's; and nobody waiting for a CPU, nor ksgxd
    asked to reschedule: the machine skips the loop's ``cond_resched()`` (nothing in the
    regime), which its generator then does. Cheap (per served step); a page of another
    owner on the LRU needs another enclave."""
    sgx = system.sgx
    if len(sgx.enclaves) != 1 or next(iter(sgx.enclaves.values())) is not encl:
        return False
    if not encl.initialized or encl.dead or sgx.flood is not None or type(sgx.lru) is not KernelLru:
        return False
    kt = sgx.ksgxd_task
    return kt is not None and not kt._resched and not system.machine.rq.waiting()


def _worth_serving(system: System) -> bool:
    """Whether ksgxd's machine should go on served (a cost choice, never a result: out of
    it the machine stops at K0 and its generator goes on, exactly): at most one task
    besides ksgxd holds a CPU. With more, no stream can take the session onto the core
    (``CoreStream._ready`` wants the thread alone with ksgxd), and a served step costs
    about 4x the generator's (take and fold around each request: 1.3 against 0.33 ms of
    host CPU per EWB with two started threads, session ``kmove2``). Nor while an ioctl
    runs on an enclave (``SGX_ENCL_IOCTL``, session ``eacc``): its thread is in the kernel,
    so no loop top comes before it returns - served through MODIFY_TYPES, row 3's trim
    took 0.37-0.40 s against the generator's 0.16-0.19 s. With ``fast_core="auto"``, also
    only while a stream the core accepted is live (``StreamCore.live``: without one
    nothing repays the served steps; session ``fdland``)."""
    core = system.sgx.stream_core
    if core.auto and not core.live:
        return False
    kt = system.sgx.ksgxd_task
    others = 0
    for r in system.machine.running:
        if r is not None and r is not kt:
            others += 1
    if others > 1:
        return False
    if core.trim_live:  # MODIFY_TYPES' loop on the core takes the session at its page top
        # with "auto", only with direct reclaim: without it a call ends at the first page
        # whose ELDU finds no free page, so while ksgxd is awake the calls are short (the
        # demo's run without it: 47,836 calls for 47,872 pages) and each pays the session's
        # take and fold and ksgxd's served steps for ~1 page (BENCHMARKS.md, ``demo5``)
        return not core.auto or bool(system.sgx.direct_reclaim)
    return not any(e.ioctl_busy for e in system.sgx.enclaves.values())


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


def _core_state_running(system: System, thread: Task, mutex: Any, trace: bool) -> Any:
    """The core with the thread (or the ioctl's task) running its generator on its CPU
    (its event being processed: nothing queued), ksgxd asleep on ``ksgxd_waitq``,
    ``encl->lock`` (``mutex``) free."""
    kt = system.sgx.ksgxd_task
    assert kt is not None and thread.cpu is not None
    assert isinstance(mutex, LinuxMutex)
    co = take_engine(system, [thread, kt], mutex, trace)
    co.tasks[THREAD, T_STATE] = TS_READY
    co.tasks[THREAD, T_PC] = P_TOP
    co.tasks[KSGXD, T_STATE] = TS_SLEEP
    co.tasks[KSGXD, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = KSGXD
    return co


__all__ = ["Session"]
