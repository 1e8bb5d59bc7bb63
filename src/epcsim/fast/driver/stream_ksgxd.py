"""ksgxd's compiled machine between two pair calls of ``access_stream``'s hook
(``stream.py``, issue 9 sessions ``upair`` and ``kmove2``): the core's arrays and the
kernel's ``KState`` of the pair, the SimPy side that serves ksgxd's machine when a call
ends in the middle of a batch, the two ways in - from ksgxd asleep in its generator at a
thread's loop top (``Session.begin``), or from its running generator at K0's check
(``Session.at_check``, served from there inside ksgxd's own process) - and its served
steps (``Session.step``). The way back to ksgxd's own generator (its sleep, ``KB_TOP``,
``KB_SECS``: ``on_stop``, ``asleep_on_core``) and the served thread's stops are
``session_stops.py``'s (``SessionStops``, a mixin of ``Session``; split by session
``split2``, no code changed). When the machine is served at all - its regime and the cost
choice (``_served_regime``, ``_worth_serving``) - is ``ksgxd_serving.py``'s (split by
session ``tidy``, no code changed).

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
from epcsim.fast.cosim.request import RQ_RESCHED, RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_NOW,
    R_BLOCKED,
    R_STOP,
    T_CPU,
    T_PC,
    T_RQ,
    T_STATE,
    TS_READY,
    TS_SLEEP,
)
from epcsim.fast.cosim.transfer_flood import (
    FLOOD_HEAP_ROWS,
    flood_in,
    flood_on,
    mirror_in,
    mirror_out,
)
from epcsim.fast.cosim.transfer_to_core import _frame_locals
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.add import P_ADIRECT
from epcsim.fast.driver.engine_state import absolute_counters, take_engine
from epcsim.fast.driver.ksgxd import P_IPI_RUN, P_WAIT, R_SVC, ksgxd_resume
from epcsim.fast.driver.ksgxd_serving import _served_regime, _worth_serving
from epcsim.fast.driver.pins import pinned_rows
from epcsim.fast.driver.reclaim_pc import RECLAIM_DIRECT
from epcsim.fast.driver.session_stops import SessionStops
from epcsim.fast.driver.slots import (
    fold_slots,
    refresh_slots,
    secs_of,
    serve_slots,
    serve_thread_slots,
    take_slots,
)
from epcsim.fast.driver.thread import thread_resume
from epcsim.fast.driver.thread_bridge import entered
from epcsim.fast.driver.thread_fold import fold_thread
from epcsim.fast.driver.thread_pc import P_TOP
from epcsim.fast.driver.trim import P_DIRECT
from epcsim.kernel.main import Sgx

if TYPE_CHECKING:
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.system import System


class Session(SessionStops):
    """ksgxd's compiled machine from its entry until it is ksgxd's generator again (module
    docstring): the core's arrays, the kernel's ``KState``, the SimPy side (``Served``:
    tasks ``0 .. kr - 1`` the session's enclave threads, task ``kr`` ksgxd) and, entered
    from ksgxd asleep, its own generator's wait (``parked``), put back on ``ksgxd_waitq``
    when the machine sleeps.

    The rows are the session's attributes, not constants (PATHS.md "Several threads on the
    core", N6 item 3; session ``n6``): ``kr`` is ksgxd's task row and the number of thread
    rows, ``trow`` the row of the stream's thread (``thread``). The machines take ksgxd at
    the row past the threads' (``thread_bridge.drive``: ``t < nt`` is a thread), so a
    session of N threads has ``kr`` N; one thread's has ``kr`` 1 and ``trow`` 0, the rows
    every session had before."""

    def __init__(
        self,
        owner: StreamCore,
        encls: list[Any],
        threads: list[Task],
        co: Any,
        kt: Any,
        high: int,
        parked: list[Any],
        mode: str = "core",
        tslot: int = 0,
    ):
        self.owner = owner
        self.system = owner.system
        #: ksgxd's task row, past the thread rows ``0 .. kr - 1``
        self.kr = len(threads)
        #: the stream's thread's row (``thread``)
        self.trow = 0
        #: the stream's thread (task ``trow``): a placeholder ``Task`` that never runs while
        #: no stream has taken a session entered at K0 over (``adopt``)
        self.thread = threads[0]
        #: the enclaves in slot order (``sgx.enclaves``' at the session's begin: PATHS.md
        #: "Two enclaves in the regime", session ``twoencl3``), the slots' ``KState`` tuple,
        #: each slot's SECS state (``slots.secs_of``) and the thread's slot
        self.encls = list(encls)
        self.kt = kt
        self.secss: list[Any] = [secs_of(owner.system, e) for e in encls]
        self.tslot = tslot
        self.co = co
        self.ts: Any = None
        nblk = owner._kstate[3] if owner._kstate is not None else None
        self.nblk = len(owner.system.cpu.va.blocks) if nblk is None else nblk
        sgx = owner.system.sgx
        #: the watermark ksgxd's generator read when it started (its loop's ``high``)
        self.high = high
        #: ksgxd's own generator's wait, put aside (entered from ksgxd asleep); empty when
        #: entered at K0's check from the running generator
        self.parked = parked
        kt_ = sgx.ksgxd_task
        locks = [e.lock for e in encls]
        assert kt_ is not None and all(isinstance(mu, LinuxMutex | FifoMutex) for mu in locks)
        self.sv = Served(
            co, owner.system.machine, [*threads, kt_], locks, [sgx.ksgxd_waitq], self.step,
            mode=mode, on_stop=self.on_stop,
        )  # fmt: skip
        self.sv.on_parked = self.parked_rest  # the parked flood (``transfer_flood.py``)
        #: the process that entered at K0's check (``serve_at_check``), while it still runs
        #: ksgxd's machine from inside ksgxd's generator (``to_core`` closes it)
        self._hook_proc: Any = None
        self._kmachine: Any = None
        self._tmachine: Any = None
        #: the ``(enclave, backing index)`` pins this session wrote into each enclave's
        #: ``EnclaveBacking._pinned_gen``, per reclaimer row (``fold_pins``)
        self._pins: dict[int, list[tuple[Any, int]]] = {0: [], RECLAIM_DIRECT: []}
        #: ksgxd's machine handed back to its generator (``on_stop``): its batch row is no
        #: longer the session's (``fold_pins``)
        self.ksgxd_out = False
        #: the thread served to its stop (``CoreStream.run``, after ``KB_SECS``): the stop's
        #: ``kstate.KB_*`` code and how the stream goes on (``user.thread.STREAM_*``)
        self.thread_end: tuple[int, int] | None = None

    @property
    def encl(self) -> Any:
        """The thread's enclave (slot ``tslot``)."""
        return self.encls[self.tslot]

    @property
    def ks(self) -> Any:
        """The thread's slot's ``KState`` (its global fields are every slot's)."""
        return self.kt[self.tslot]

    @property
    def _secs(self) -> Any:
        """The thread's SECS state (kept by the CPU across its evictions): the thread served
        after ``KB_SECS`` may step while the SECS is written back."""
        return self.secss[self.tslot]

    @_secs.setter
    def _secs(self, secs: Any) -> None:
        self.secss[self.tslot] = secs

    def same_enclaves(self) -> bool:
        """The enclave set is the session's (its slots): none created or released since
        (PATHS.md "Two enclaves", item 6: a session is not rebuilt; a changed set leaves
        the served machine to stop at its next K0, ``_served_regime``)."""
        cur = self.system.sgx.enclaves
        return len(cur) == len(self.encls) and all(
            a is b for a, b in zip(cur.values(), self.encls, strict=True)
        )

    def adopt(self, thread: Task, encl: Any) -> bool:
        """``CoreStream.run`` taking the session over for its thread (module docstring,
        "Which thread"): possible while no thread is served in it (task 0 has no process),
        the thread - or the ioctl's task - of one of the session's enclaves, the enclave
        set unchanged (``same_enclaves``). The thread row's arrays are ``to_core``'s. With
        ``fast_core="auto"``, not while serving is not worth it (``_worth_serving``): the
        stream's iteration then runs in Python and the served ksgxd stops at its next K0
        (its ``K_TOP_STOP``), which a stream taking the session would clear - the demo's
        MODIFY_TYPES calls without direct reclaim (~1 page each) kept ksgxd served for the
        whole trim that way, ~2.5x that run's CPU (BENCHMARKS.md, ``demo5``)."""
        owner = self.owner
        if owner.auto and not _worth_serving(owner.system):
            return False
        if not self.same_enclaves():
            return False
        if thread is self.thread and encl is self.encl:
            return True
        if self.sv.procs[self.trow] is not None:
            return False
        slot = next((s for s, e in enumerate(self.encls) if e is encl), -1)
        if slot < 0:
            return False
        self.tslot = slot
        self.thread = thread
        self.sv.tasks[self.trow] = thread
        return True

    def fit_trace(self) -> None:
        """The core's mutex trace buffer as the enclaves' locks' traces are now (on or off):
        a session entered at K0 may predate the trace being turned on (its size is what
        ``take_engine`` gives; ``to_core`` starts it empty)."""
        want = (1 << 16) if any(e.lock.trace is not None for e in self.encls) else 0
        if self.co.trace.shape[0] != want:
            self.co = self.co._replace(trace=np.zeros((want, 4), np.int64))
            self.sv.st = self.co

    def fold_pins(self) -> None:
        """``EnclaveBacking._pinned_gen`` as the reference's reclaimers leave it at this point
        of their batches: ``get_backing`` pins a page's PCMD generation in phase B, ``store``
        drops it in D; the machine keeps them in its batch (``batch[:, 2]``, the page's slot
        in ``batch[:, 3]``: the pin is in *its* enclave's file) and stores through the
        compiled op, so while a batch is a machine and Python runs, the dicts are written
        from it (``pins.pinned_rows``: the pages kept so far in B, all kept ones in C, those
        not yet stored in D). ksgxd's batch (row 0, its task's pc) always; the thread's
        direct batch (row 1, ``reclaim_run``'s pc) while the thread's call is in it (since
        session ``twoencl3``: with two enclaves ksgxd's ``KB_SECS`` of one enclave no longer
        proves the direct batch pin-free, ``pins.check_no_direct_pins``)."""
        ks = self.kt[0]
        # ksgxd's row while its machine is the session's (once handed to its generator,
        # ``on_stop``, its batch is Python's and the row is stale)
        rows = [] if self.ksgxd_out else [(0, int(self.co.tasks[self.kr, T_PC]))]
        ts = self.ts
        if (
            ts is not None
            and int(ts.tc[T.TC_MODE]) >= T.MODE_TRIM
            and int(self.co.tasks[self.trow, T_PC]) in (P_DIRECT, P_ADIRECT)
        ):
            rows.append((RECLAIM_DIRECT, int(ks.rc[RECLAIM_DIRECT, K.RC_PC])))
        else:
            self._unpin(RECLAIM_DIRECT)
        for r, pc in rows:
            self._unpin(r)
            batch = ks.batch[r]
            held = self._pins[r]
            for row in pinned_rows(ks, r, pc):
                index, gen, slot = int(batch[row, 1]), int(batch[row, 2]), int(batch[row, 3])
                if gen >= 0:
                    encl = self.encls[slot]
                    encl.backing._pinned_gen[index] = gen
                    held.append((encl, index))

    def _unpin(self, r: int) -> None:
        """Drop the pins ``fold_pins`` wrote for reclaimer row ``r``."""
        for encl, index in self._pins[r]:
            encl.backing._pinned_gen.pop(index, None)
        self._pins[r] = []

    def forget_pins(self, r: int) -> None:
        """Reclaimer row ``r``'s batch is Python's from here (its rest run by
        ``sgx_reclaim_write_back``, which pins what it needs): its pins are no longer this
        session's to drop."""
        self._pins[r] = []

    @classmethod
    def begin(cls, owner: StreamCore, thread: Task, encl: Any, secs: Any) -> Session:
        """A session from ksgxd asleep in its generator: the core as ``run_pair``'s, with
        the thread running at its loop top and absolute counters (``to_simpy`` writes them
        back absolute); one enclave slot per enclave (``sgx.enclaves``' order), the
        thread's ``encl`` one of them."""
        system = owner.system
        m = system.machine
        encls = list(system.sgx.enclaves.values())
        locks = [e.lock for e in encls]
        trace = any(mu.trace is not None for mu in locks)
        co = _core_state_running(system, [thread], locks, trace)
        absolute_counters(co, m.elided, *locks)
        sgx = system.sgx
        parked = list(sgx.ksgxd_waitq._waiters)
        resume: Any = parked[0].callbacks[0]  # the generator's Process._resume
        frame = _frame_locals(resume.__self__._generator, Sgx._ksgxd.__code__)
        high = sgx.high_pages if frame is None else int(frame["high"])
        kt = owner.kernel_slots(encls)
        tslot = next(s for s, e in enumerate(encls) if e is encl)
        sess = cls(owner, encls, [thread], co, kt, high, parked, tslot=tslot)
        if sgx.flood is not None:  # its holds and decision instants (``transfer_flood.py``)
            flood_in(sess.sv, sgx.flood)
        return sess

    @classmethod
    def at_check(cls, owner: StreamCore, encls: list[Any], high: int) -> Session:
        """A session from ksgxd's generator at K0's check (``Sgx._ksgxd``, awake): the
        machine served by SimPy from ``P_CHECK`` (``serve_at_check``), in ksgxd's own
        process; the core's arrays are only the machine's request rows until a stream
        moves the session onto the core (``to_core`` writes the rest), so the thread row
        is a placeholder task until then (``adopt``)."""
        system = owner.system
        sgx = system.sgx
        kt_ = sgx.ksgxd_task
        locks = [e.lock for e in encls]
        assert kt_ is not None and all(isinstance(mu, LinuxMutex | FifoMutex) for mu in locks)
        placeholder = Task(system.machine, "fast_core: no stream yet")
        trace = any(mu.trace is not None for mu in locks)
        threads = [placeholder]
        heap = 64 if sgx.flood is None else FLOOD_HEAP_ROWS
        co = take_engine(
            system, [*threads, kt_], locks[0], trace, locks[1:], runq=True, heap_capacity=heap
        )
        if sgx.flood is not None:
            flood_on(system, co)
        co.tasks[len(threads), T_PC] = KM.P_CHECK  # ksgxd's row (``kr``)
        kt = owner.kernel_slots(encls)
        return cls(owner, encls, threads, co, kt, high, [], mode="simpy")

    def serve_at_check(self) -> Gen:
        """ksgxd's machine served from K0's check inside ksgxd's generator (``yield from``:
        its own process, so no process takes an eid the reference does not); returns what
        ``Sgx._ksgxd``'s ``rest`` returns where the machine hands ksgxd back
        (``on_stop``)."""
        proc = self.system.machine.env.active_process
        self.sv.procs[self.kr] = self._hook_proc = proc
        return (yield from self.sv.serve(self.kr))

    # -- served by SimPy ----------------------------------------------------------------------
    def step(self, t: int) -> int:
        """One served step of task ``t``'s machine, the kernel's (and the thread's) small
        arrays taken from the Python objects before it and folded after it (the Python
        objects are the truth between two steps: other tasks run there), in every slot."""
        system = self.system
        encls = self.encls
        co = self.co
        hw = system.cpu
        # each SECS's state while resident (an evicted one keeps the state it had: the
        # thread served after KB_SECS may step while its SECS is written back)
        for s, e in enumerate(encls):
            if e.secs_epc >= 0 and e.secs_epc in hw.secs_at:
                self.secss[s] = hw.secs_at[e.secs_epc]
        kr = self.kr
        if t == kr and int(co.tasks[kr, T_PC]) == P_IPI_RUN:
            # send_ipi after its run: every LP of the mask inside the victim's enclave (the
            # page's slot) takes an AEX (the machine does it for the thread it knows only
            # on the core)
            rk = self.kt[0]
            mask = int(rk.rc[0, K.RC_IPI_MASK])
            victim = encls[int(rk.batch[0, int(rk.rc[0, K.RC_I]), 3])]
            for lp in range(len(hw.lp_eid)):
                if (mask >> lp) & 1 and victim.secs_epc >= 0 and hw.inside(lp) == victim.secs_epc:
                    hw.aex(lp)
        self.kt, self.nblk = refresh_slots(system, encls, self.kt, self.nblk)
        take_slots(system, encls, self.secss, self.kt)
        kc = self.kt[0].kc
        kc[K.K_HIGH] = self.high
        counts: dict[str, int] = {}
        if t == kr:
            self.owner.served_steps += 1
            kc[K.K_THREAD_T] = -1  # the IPI's AEX is Python's (above)
            # Python may have left the regime between two calls (another enclave, ...): the
            # machine then finishes the batch it holds and its generator goes on from K0
            kc[K.K_TOP_STOP] = int(
                not self.same_enclaves()
                or not _served_regime(system, encls)
                or not _worth_serving(system)
            )
            if self._kmachine is None:
                self._kmachine = self.owner.machine(ksgxd_resume, co, self.kt, None, kr)
            # a thread parked in Python: its park in the thread row for the reclaimer's
            # flood hooks, and back after the step (``transfer_flood.mirror_in``)
            flood = system.sgx.flood
            mirrored = None if flood is None else mirror_in(self.sv, flood, self.trow)
            while True:
                r = int(self._kmachine(co, self.kt, kr))
                if r == R_SVC:
                    self.kt = serve_slots(system, encls, self.kt, counts)
                elif r != R_BLOCKED or not self._resched_passes(kr):
                    break
            if mirrored is not None:
                self.owner.flood_mirrors += 1
                mirror_out(self.sv, flood, self.trow, mirrored)
            fold_slots(system, encls, self.secss, self.kt)
            self.fold_pins()
            if r == R_BLOCKED and int(co.tasks[kr, T_RQ]) == RQ_SLEEP:
                return R_STOP  # asleep at K0: its own generator's wait (``on_stop``)
            return r
        thread: Any = self.thread  # a stream's (only a stream's thread is ever served)
        ts = self.ts
        tslot = self.tslot
        kc[K.K_THREAD_T] = 0  # the thread rows 0 .. kr - 1 (ksgxd's IPI, ``reclaimer_write``)
        kc[K.K_NTHREADS] = kr
        kc[K.K_THREAD_SLOT] = tslot
        ts.tc[T.TC_ESLOT] = tslot
        cpu = thread.cpu
        self.kt[tslot].ke[K.K_INSIDE] = (
            (1 << cpu) if cpu is not None and hw.inside(cpu) >= 0 else 0
        )  # its LP's bit (``K_INSIDE`` is a mask of LPs, session ``nthreads``)
        ts.tc[T.TC_ENTERED] = int(entered(thread))
        if self._tmachine is None:
            self._tmachine = self.owner.machine(thread_resume, co, self.kt, ts, t)
        while True:
            r = int(self._tmachine(co, self.kt, ts, t))
            if r == R_SVC:
                self.kt = serve_thread_slots(system, encls, self.kt, ts, tslot, counts)
            elif r != R_BLOCKED or not self._resched_passes(t):
                break
        secs = self.secss[tslot]
        assert secs is not None  # a stream's entry had the SECS resident (``CoreStream.run``)
        fold_thread(system, thread, encls[tslot], secs, self.kt[tslot], ts)
        fold_slots(system, encls, self.secss, self.kt, skip=tslot)
        self.fold_pins()  # Python runs next: the direct batch's pins too (pins.py)
        return r

    def _resched_passes(self, t: int) -> bool:
        """Task ``t``'s machine stopped at a ``cond_resched()`` point (``RQ_RESCHED``) that
        does nothing now (``Task.resched_due`` false: no event, no state changed): answered
        here, and the machine goes on in the same served step. Why (session ``callcost``):
        ``Served.serve`` would perform it without yielding and call the next step at once,
        nothing running in between, and that step's take and fold around the machine's
        call (``refresh_slots``, ``take_slots``, ``fold_slots``, ``fold_pins``: ~70-90 us of
        host CPU a served step) changed nothing (a take after a fold is the identity); since
        session ``onecpu`` every thread iteration and every ksgxd loop served past such a
        point (a one-thread run of 10,000 accesses in 200 us slices: 1,328 of its 16,386
        served steps). What ``serve``'s loop writes before a step (the clock, the task's
        CPU) is written the same way. The step's checks before the machine (the IPI at
        ``P_IPI_RUN``, ksgxd's ``K_TOP_STOP``, the thread's ``K_INSIDE``/``TC_ENTERED``)
        read what ``cond_resched`` did not change; ``P_IPI_RUN`` is left to a step of its
        own anyway.
        Counted in ``StreamCore.resched_passed`` (and those left to ``serve`` because the
        point gives the CPU up, in ``resched_kept``)."""
        co = self.co
        if int(co.tasks[t, T_RQ]) != RQ_RESCHED or (
            t == self.kr and int(co.tasks[t, T_PC]) == P_IPI_RUN
        ):
            return False
        task = self.sv.tasks[t]
        if task.resched_due():
            self.owner.resched_kept += 1
            return False
        co.tasks[t, T_RQ] = 0  # ``serve``'s loop, before the next step
        co.clk[C_NOW] = self.system.machine.env._now
        co.tasks[t, T_CPU] = -1 if task.cpu is None else task.cpu
        self.owner.resched_passed += 1
        return True


def _core_state_running(system: System, threads: list[Task], locks: list[Any], trace: bool) -> Any:
    """The core with the threads (or the ioctl's task), rows ``0 .. kr - 1``, running their
    generators on their CPUs (the driving one's event being processed: nothing queued),
    ksgxd (row ``kr``) asleep on ``ksgxd_waitq``, the enclaves' ``encl->lock``
    (``locks``, mutex row = slot) free."""
    kt = system.sgx.ksgxd_task
    assert kt is not None and all(t.cpu is not None for t in threads)
    assert all(isinstance(mu, LinuxMutex | FifoMutex) for mu in locks)
    kr = len(threads)
    heap = 64 if system.sgx.flood is None else FLOOD_HEAP_ROWS
    co = take_engine(
        system, [*threads, kt], locks[0], trace, locks[1:], runq=True, heap_capacity=heap
    )
    if system.sgx.flood is not None:  # the parked flood (``transfer_flood.py``)
        flood_on(system, co)
    co.tasks[:kr, T_STATE] = TS_READY
    co.tasks[:kr, T_PC] = P_TOP
    co.tasks[kr, T_STATE] = TS_SLEEP
    co.tasks[kr, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = kr
    return co


__all__ = ["Session"]
