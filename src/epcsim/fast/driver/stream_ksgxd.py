"""ksgxd's compiled machine between two pair calls of ``access_stream``'s hook
(``stream.py``, issue 9 sessions ``upair`` and ``kmove2``): the core's arrays and the
kernel's ``KState`` of the pair, the SimPy side that serves ksgxd's machine when a call
ends in the middle of a batch, the two ways in - from ksgxd asleep in its generator at a
thread's loop top (``Session.begin``), or from its running generator at K0's check
(``Session.at_check``, served from there inside ksgxd's own process) - and its served
steps (``Session.step``). The way back to ksgxd's own generator (its sleep, ``KB_TOP``,
``KB_SECS``: ``on_stop``, ``asleep_on_core``) and the served thread's stops are
``session_stops.py``'s (``SessionStops``, a mixin of ``Session``; split by session
``split2``, no code changed).

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
from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.fast.cosim.request import RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    R_BLOCKED,
    R_STOP,
    T_PC,
    T_RQ,
    T_STATE,
    TS_READY,
    TS_SLEEP,
)
from epcsim.fast.cosim.transfer_to_core import _frame_locals
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import _serve, fold_kernel, refresh_layout, take_small
from epcsim.fast.driver.core_regime import _built_or_building
from epcsim.fast.driver.engine_state import absolute_counters, take_engine
from epcsim.fast.driver.ksgxd import P_IPI_RUN, P_WAIT, R_SVC, ksgxd_resume
from epcsim.fast.driver.pins import check_no_direct_pins, pinned_rows
from epcsim.fast.driver.session_stops import SessionStops
from epcsim.fast.driver.thread import thread_resume
from epcsim.fast.driver.thread_bridge import KSGXD, THREAD, _serve_thread, entered
from epcsim.fast.driver.thread_fold import fold_thread
from epcsim.fast.driver.thread_pc import P_TOP
from epcsim.kernel.main import Sgx
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.system import System


class Session(SessionStops):
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
        assert kt is not None and isinstance(mutex, LinuxMutex | FifoMutex)
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
        assert kt is not None and isinstance(mutex, LinuxMutex | FifoMutex)
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
        ke = ks.ke
        if secs is not None:
            take_small(system, encl, secs, ks)
        kc[K.K_HIGH] = self.high
        ke[K.K_SECS_EPC] = secs_epc
        counts: dict[str, int] = {}
        if t == KSGXD:
            self.owner.served_steps += 1
            kc[K.K_THREAD_T] = -1  # the IPI's AEX is Python's (above)
            # Python may have left the regime between two calls (another enclave, ...): the
            # machine then finishes the batch it holds and its generator goes on from K0
            kc[K.K_TOP_STOP] = int(not _served_regime(system, encl) or not _worth_serving(system))
            if self._kmachine is None:
                self._kmachine = self.owner.machine(ksgxd_resume, co, ks, None, KSGXD)
            while True:
                r = int(self._kmachine(co, K.slots(self.ks), KSGXD))
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
        ke[K.K_INSIDE] = (1 << cpu) if cpu is not None and hw.inside(cpu) >= 0 else 0
        ts.tc[T.TC_ENTERED] = int(entered(thread))
        if self._tmachine is None:
            self._tmachine = self.owner.machine(thread_resume, co, ks, ts, THREAD)
        while True:
            r = int(self._tmachine(co, K.slots(self.ks), ts, THREAD))
            if r != R_SVC:
                break
            self.ks = _serve_thread(system, encl, self.ks, ts, counts)
        assert secs is not None  # a stream's entry had the SECS resident (``CoreStream.run``)
        fold_thread(system, thread, encl, secs, self.ks, ts)
        check_no_direct_pins(co, self.ks, ts, THREAD)  # Python runs next (pins.py)
        return r


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
    if not _built_or_building(system, encl) or encl.dead:
        return False
    if sgx.flood is not None or type(sgx.lru) is not KernelLru:
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
    if core.add_live:  # ADD_PAGES' loop on the core takes the session at its page top
        return True  # (one call builds the range: no short calls, unlike the trim below)
    if core.trim_live:  # MODIFY_TYPES' loop on the core takes the session at its page top
        # with "auto", only with direct reclaim: without it a call ends at the first page
        # whose ELDU finds no free page, so while ksgxd is awake the calls are short (the
        # demo's run without it: 47,836 calls for 47,872 pages) and each pays the session's
        # take and fold and ksgxd's served steps for ~1 page (BENCHMARKS.md, ``demo5``) -
        # unless the machine makes the runtime's next calls itself (``retry.py``, session
        # ``eagain``): the short calls then stay in one session on the core
        return not core.auto or bool(system.sgx.direct_reclaim) or core.retry_live > 0
    return not any(e.ioctl_busy for e in system.sgx.enclaves.values())


def _core_state_running(system: System, thread: Task, mutex: Any, trace: bool) -> Any:
    """The core with the thread (or the ioctl's task) running its generator on its CPU
    (its event being processed: nothing queued), ksgxd asleep on ``ksgxd_waitq``,
    ``encl->lock`` (``mutex``) free."""
    kt = system.sgx.ksgxd_task
    assert kt is not None and thread.cpu is not None
    assert isinstance(mutex, LinuxMutex | FifoMutex)
    co = take_engine(system, [thread, kt], mutex, trace)
    co.tasks[THREAD, T_STATE] = TS_READY
    co.tasks[THREAD, T_PC] = P_TOP
    co.tasks[KSGXD, T_STATE] = TS_SLEEP
    co.tasks[KSGXD, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = KSGXD
    return co


__all__ = ["Session"]
