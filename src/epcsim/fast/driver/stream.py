"""``EnclaveThread.access_stream`` on the compiled core, from its loop top (issue 9; PATHS.md,
"What is built for the stream").

``access_stream`` asks ``StreamCore.stream(thread, pages, writes)`` once per stream (the
structural checks) and, at every loop top, ``CoreStream.run(i, done)``: a plain call from
inside the thread's generator, while SimPy processes the thread's own event. When the
dynamic regime holds, the thread's state machine (``thread.py``) runs from T0 with index
``i`` on the core, the pending engine state taken from the live objects, until it is at a
loop top again that the core leaves to Python (``thread._hook_stop``: the stream's end, a
fault iteration that would wake ksgxd, ...) or at a stop the generator goes on from (the
TCS fault, a #PF to the runtime, SIGBUS, EAUG: each decided before the iteration's first
step). Everything is folded back, and the generator goes on at the core's clock with the
new index.

Decisions (2026-11-26, issue 9 session ``integ``):

* *Off by default*: ``System(fast_core=True)`` turns it on (fast engine only). The hook is
  exact where it engages (the differential tests, ``tests/fast/test_stream_core.py``), but
  it engages only while ksgxd sleeps - the thread alone on the core - which is the part
  that could be made exact in the session's time; the pair (ksgxd woken on the core and
  handed to SimPy mid-batch when the stream ends) is not built, so rows 1 and 2 move
  little. PATHS.md says what is left.
* *Dynamic regime* (checked per entry, cheap checks first): ksgxd asleep on its wait queue
  with SimPy's queue empty (the thread's event is the one being processed), the thread on
  its CPU with no other task running, ``encl->lock`` free, no LP but the thread's inside,
  no tampered record (``EnclaveBacking.tampered``: an ELDU the core would refuse hands
  back in the middle of an iteration), the rest of ``bridge._check_regime``.
* *A hand-back the generator cannot go on from* (any stop but those above) is a defect of
  ``_hook_stop``'s test, not a regime the model may enter: it raises ``RuntimeError``
  rather than go on with a different result.
* *The count*: ``System.fast_core_accesses`` (an attribute, not a ``stats()`` counter,
  which must stay equal between engines) counts the stream accesses done on the core, so
  a test can tell that the hook engaged.
* CFS's idle list is left as it was: on the core the thread keeps its CPU and ksgxd is not
  woken, so no CPU is chosen or freed (``thread_bridge._fold`` rebuilds the list in CPU
  order, which is the reference's only after a call that began with every CPU idle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen
from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.request import RQ_SLEEP
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_ELIDED,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    HANDED_BACK,
    M_CONTENDED,
    M_HANDOFFS,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    R_BLOCKED,
    R_STOP,
    T_PC,
    T_RQ,
    T_STATE,
    TS_NEW,
    TS_READY,
    TS_SLEEP,
)
from epcsim.fast.cosim.transfer import _frame_locals, to_core, to_simpy
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import (
    _kernel_state,
    _serve,
    fold_kernel,
    refresh_layout,
    take_small,
)
from epcsim.fast.driver.engine_state import take_engine
from epcsim.fast.driver.ksgxd import P_IPI_RUN, P_WAIT, R_SVC, ksgxd_resume
from epcsim.fast.driver.thread import P_TOP, thread_resume
from epcsim.fast.driver.thread_bridge import (
    KSGXD,
    SERVE,
    THREAD,
    _serve_thread,
    _thread_state,
    drive,
    fold_thread,
)
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.main import Sgx
from epcsim.kernel.policy import KernelLru
from epcsim.kernel.reclaim import sgx_reclaim_write_back

if TYPE_CHECKING:
    from epcsim.system import System
    from epcsim.user.thread import EnclaveThread

#: the stops the generator goes on from, each at a loop top (or before the iteration's
#: first step): the core's own, the TCS fault, a #PF to the runtime, SIGBUS, EAUG
_RESUMABLE = frozenset((K.KB_TOP, K.KB_TCS, K.KB_PF, K.KB_SIGBUS, K.KB_EAUG))


class StreamCore:
    """One per ``System(fast_core=True)``: hands out a ``CoreStream`` per stream."""

    def __init__(self, system: System):
        self.system = system
        #: the stream accesses done on the core (the module docstring, "The count")
        self.accesses = 0
        #: core calls made (entries)
        self.entries = 0
        #: pages ksgxd wrote back on the core (its batches' ``ksgxd_pages_reclaimed`` while
        #: there; like ``accesses``, not a ``stats()`` counter)
        self.ksgxd_pages = 0
        #: pair calls that ended with ksgxd before the SECS's eviction (``KB_SECS``): the
        #: thread served to its loop top, ksgxd's generator from that page
        self.secs_stops = 0
        #: ksgxd's machine's steps served by SimPy (between pair calls, Python tasks between)
        self.served_steps = 0
        #: ksgxd's machine served by SimPy between two pair calls (None: its generator)
        self.session: _Session | None = None
        #: the kernel's ``KState``, kept across entries: ``(encl, secs, ks)``
        self._kstate: tuple[Any, Any, Any, int] | None = None
        #: ``drive``'s compiled entry point per argument layout (``jit.entry_point``: a
        #: dispatcher call types the ~45 arrays of ``KState`` each time, ~0.5 ms)
        self._drive: dict[tuple[Any, ...], Any] = {}

    def drive(self, co: Any, ks: Any, ts: Any, pending: int) -> int:
        """``thread_bridge.drive`` without numba's dispatcher, keyed by what its compiled
        overload depends on (each array's dtype, dimensions and layout)."""
        key = tuple(
            (a.dtype.str, a.ndim, a.flags.c_contiguous) if isinstance(a, np.ndarray) else None
            for part in (co, ks, ts)
            for a in part
        )
        fn = self._drive.get(key)
        if fn is None:
            fn = self._drive[key] = entry_point(drive, co, ks, ts, pending)
        return int(fn(co, ks, ts, pending))

    def kernel_state(self, encl: Any, secs: Any) -> Any:
        """The ``KState`` of a pair call's entry: built once per enclave and SECS (the big
        arrays, the typed lists, the sealing keys, the costs; ~0.3-0.5 ms), then brought
        up to date at each entry - a layout change by identity (``refresh_layout``), the
        scalars by ``take_small`` - as around a served step (PATHS.md "Next" item 2)."""
        system = self.system
        cached = self._kstate
        if cached is not None and cached[0] is encl and cached[1] is secs:
            ks, nblk = refresh_layout(system, encl, cached[2], cached[3])
            take_small(system, encl, secs, ks)
            ks.kc[K.K_HB] = ks.kc[K.K_HB_PAGE] = ks.kc[K.K_SVC] = 0
        else:
            ks = _kernel_state(system, encl, secs)
            nblk = len(system.cpu.va.blocks)
        self._kstate = (encl, secs, ks, nblk)
        return ks

    def keep(self, encl: Any, secs: Any, ks: Any, nblk: int) -> None:
        """The session's ``KState`` (``refresh_layout`` may have replaced it) for the next."""
        self._kstate = (encl, secs, ks, nblk)

    def stream(self, thread: EnclaveThread, pages: np.ndarray, writes: np.ndarray) -> Any:
        """A ``CoreStream`` for this stream, or None where the structure excludes the core
        (checked once: the thread, the content mode, the policy, ...)."""
        system = self.system
        sgx = system.sgx
        if pages.size == 0:
            return None
        if system.cpu.content_mode != "tag" or sgx.flood is not None:
            return None
        if len(sgx.enclaves) != 1 or thread.encl is not next(iter(sgx.enclaves.values())):
            return None
        if len(sgx.epc.nodes) != 1 or not isinstance(system.machine.rq, CfsRunQueue):
            return None
        if (thread.encl.base + thread.encl.size) >> 12 >= 0xFFFFFFFF:
            return None
        return CoreStream(self, thread, pages, writes)


class CoreStream:
    """The core's side of one ``access_stream``: the stream's arrays made contiguous once."""

    def __init__(self, owner: StreamCore, thread: EnclaveThread, pages: Any, writes: Any):
        self.owner = owner
        self.system = owner.system
        self.thread = thread
        # contiguous *and writable*: a read-only array (``np.broadcast_to``'s mask, a
        # caller's frozen stream) is another numba type, a second compile of the machine
        self.pages = np.require(pages, np.int64, ["C", "W"])
        self.writes = np.require(writes, np.bool_, ["C", "W"])

    def _ready(self, served: bool) -> bool:
        """The dynamic regime (module docstring), cheapest checks first. ``served``: ksgxd
        is the compiled machine served by SimPy (``_Session``), which ``to_core`` checks."""
        system = self.system
        sgx = system.sgx
        thread = self.thread
        m = system.machine
        encl = thread.encl
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
        if getattr(encl.backing, "tampered", False):
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
        hw = system.cpu
        if any(e >= 0 for c, e in enumerate(hw.lp_eid) if c != lp):
            return False
        return _static_regime(system)

    def run(self, i: int, done: int) -> Gen:
        """``yield from`` this at the loop top: runs the stream from index ``i`` (``done``
        accesses so far) with ksgxd on the core; returns the new ``(i, done, pf)`` (``pf``:
        the stream ends with a #PF at ``pages[i]``), or None if the regime does not hold
        now (the generator runs this iteration itself). It yields only when the core
        stopped in the middle of the thread's iteration: the thread then goes on served by
        SimPy, in its own process, to its next loop top (module docstring)."""
        owner = self.owner
        sess = owner.session
        thread = self.thread
        if sess is not None and sess.thread is not thread:
            return None
        if not self._ready(sess is not None):
            return None
        system = self.system
        sgx = system.sgx
        encl = thread.encl
        secs = system.cpu.secs_state(encl.secs_epc)
        if sess is None:
            sess = _Session.begin(owner, thread, encl, secs)
        elif not to_core(sess.sv):
            return None
        else:
            co = sess.co
            co.tasks[THREAD, T_STATE] = TS_READY
            sess.ks, sess.nblk = refresh_layout(system, encl, sess.ks, sess.nblk)
            take_small(system, encl, secs, sess.ks)
        co = sess.co
        ks = sess.ks
        kc = ks.kc
        kc[K.K_HIGH] = sess.high
        kc[K.K_SECS_EPC] = encl.secs_epc
        kc[K.K_THREAD_T] = THREAD
        lp = thread.cpu
        assert lp is not None
        kc[K.K_INSIDE] = int(system.cpu.inside(lp) >= 0)
        kc[K.K_TRACKING] = int(bool(secs.tracking))
        kc[K.K_CPUMASK] = 0  # no other task of the mm runs (_ready); the thread's is added
        co.tasks[THREAD, T_PC] = P_TOP
        ts = _thread_state(system, thread, self.pages, self.writes, alone=False)
        sess.ts = ts
        tc = ts.tc
        tc[T.TC_I] = i
        tc[T.TC_DONE] = done
        tc[T.TC_HOOK] = 1
        counts: dict[str, int] = {}
        pending = THREAD
        while True:
            rc = owner.drive(co, ks, ts, pending)
            if rc > SERVE:
                break
            if rc == SERVE - THREAD:
                ks = _serve_thread(system, encl, ks, ts, counts)
            else:
                ks = _serve(system, encl, ks, counts)
            sess.ks = ks
            pending = SERVE - rc
        owner.entries += 1
        owner.ksgxd_pages += int(ks.cnt[K.CN_PAGES])
        hb = int(co.clk[C_HB])
        code = int(ks.kc[K.K_HB]) if hb >= 100 else -1
        who = int(co.clk[C_HB_TASK])
        if rc != HANDED_BACK or code < 0:
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on (rc {rc}, "
                f"hand-back {hb})"
            )
        sv = sess.sv
        waitq = sgx.ksgxd_waitq
        if who == THREAD and code in _RESUMABLE:
            # the thread at a loop top: the generator goes on; ksgxd asleep goes back to
            # its own generator's wait, else it goes on served by SimPy
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
                waitq._waiters = sess.parked
                sv.procs[KSGXD] = None
                owner.session = None
            else:
                owner.session = sess
            owner.keep(encl, secs, sess.ks, sess.nblk)
            new_i = int(tc[T.TC_I])
            new_done = int(tc[T.TC_DONE])
            owner.accesses += new_done - done
            return new_i, new_done, code == K.KB_PF
        if who != KSGXD or code != K.KB_SECS:
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on "
                f"({'the thread' if who == THREAD else 'ksgxd'}: {K.KB_NAMES[code]})"
            )
        # ksgxd before the SECS's eviction (KB_SECS): its own generator takes over, in
        # SimPy, from that page (``Served.on_stop``); the thread, in the middle of its
        # iteration, goes on served in this process to its next loop top
        owner.session = None
        owner.secs_stops += 1
        fold_thread(system, thread, encl, secs, ks, ts)
        sess.fold_pins()
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
        code = int(sess.ks.kc[K.K_HB])
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        if code not in (K.KB_TOP, K.KB_PF):
            raise RuntimeError(f"fast_core: the thread served stopped at {K.KB_NAMES[code]}")
        new_i = int(tc[T.TC_I])
        new_done = int(tc[T.TC_DONE])
        owner.accesses += new_done - done
        return new_i, new_done, code == K.KB_PF


class _Session:
    """ksgxd's compiled machine from a pair call of ``CoreStream.run`` until it sleeps again
    (module docstring, "The pair"): the core's arrays, the kernel's ``KState``, the SimPy
    side (``Served``: task 0 the enclave thread, task 1 ksgxd) and ksgxd's own generator's
    wait (``parked``), put back on ``ksgxd_waitq`` when the machine sleeps."""

    def __init__(self, owner: StreamCore, thread: EnclaveThread, co: Any, ks: Any):
        self.owner = owner
        self.system = owner.system
        self.thread = thread
        self.encl = thread.encl
        self.co = co
        self.ks = ks
        self.ts: Any = None
        self.nblk = len(owner.system.cpu.va.blocks)
        sgx = owner.system.sgx
        waitq = sgx.ksgxd_waitq
        self.parked = list(waitq._waiters)
        resume: Any = self.parked[0].callbacks[0]  # the generator's Process._resume
        frame = _frame_locals(resume.__self__._generator, Sgx._ksgxd.__code__)
        #: the watermark ksgxd's generator read when it started (its loop's ``high``)
        self.high = sgx.high_pages if frame is None else int(frame["high"])
        kt = sgx.ksgxd_task
        mutex = thread.encl.lock
        assert kt is not None and isinstance(mutex, LinuxMutex)
        self.sv = Served(
            co, owner.system.machine, [thread, kt], [mutex], [waitq], self.step,
            mode="core", on_stop=self.on_stop,
        )  # fmt: skip
        self._kmachine: Any = None
        self._tmachine: Any = None
        #: the backing indices this session wrote into ``EnclaveBacking._pinned_gen``
        self._pins: list[int] = []

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
        kc = ks.kc
        pc = int(self.co.tasks[KSGXD, T_PC])
        nk, i = int(kc[K.K_NK]), int(kc[K.K_I])
        if pc in _PHASE_B:
            rows = list(range(nk)) + ([i] if pc == KM.P_B_UNLOCKED else [])
        elif pc in _PHASE_C:
            rows = list(range(nk))
        elif pc in _PHASE_D:
            rows = list(range(i + (pc in (KM.P_STORED, KM.P_D_UNLOCKED)), nk))
        else:
            rows = []
        batch = ks.batch
        self._pins = []
        for r in rows:
            index, gen = int(batch[r, 1]), int(batch[r, 2])
            if gen >= 0:
                pinned[index] = gen
                self._pins.append(index)

    @classmethod
    def begin(cls, owner: StreamCore, thread: EnclaveThread, encl: Any, secs: Any) -> _Session:
        """A session from ksgxd asleep in its generator: the core as ``run_pair``'s, with
        the thread running at its loop top and absolute counters (``to_simpy`` writes them
        back absolute)."""
        system = owner.system
        m = system.machine
        mutex = encl.lock
        co = _core_state_running(system, thread, mutex.trace is not None)
        co.clk[C_ELIDED] = m.elided
        for col, v in (
            (M_CONTENDED, mutex.contended),
            (M_WAIT_NS, mutex.wait_ns),
            (M_STEALS, mutex.steals),
            (M_HANDOFFS, mutex.handoffs),
            (M_SPIN_ACQUIRED, mutex.spin_acquired),
        ):
            co.mtx[0, col] = v
        sess = cls(owner, thread, co, owner.kernel_state(encl, secs))
        sess.nblk = owner._kstate[3] if owner._kstate is not None else sess.nblk
        return sess

    # -- served by SimPy ----------------------------------------------------------------------
    def step(self, t: int) -> int:
        """One served step of task ``t``'s machine, the kernel's (and the thread's) small
        arrays taken from the Python objects before it and folded after it (the Python
        objects are the truth between two steps: other tasks run there)."""
        system = self.system
        encl = self.encl
        secs = system.cpu.secs_state(encl.secs_epc) if encl.secs_epc >= 0 else None
        co = self.co
        hw = system.cpu
        if t == KSGXD:
            kc = self.ks.kc
            if int(co.tasks[KSGXD, T_PC]) == P_IPI_RUN:
                # send_ipi after its run: every LP of the mask inside the enclave takes an
                # AEX (the machine does it for the thread it knows only on the core)
                mask = int(kc[K.K_IPI_MASK])
                for lp in range(len(hw.lp_eid)):
                    if (mask >> lp) & 1 and encl.secs_epc >= 0 and hw.inside(lp) == encl.secs_epc:
                        hw.aex(lp)
        self.ks, self.nblk = refresh_layout(system, encl, self.ks, self.nblk)
        ks = self.ks
        kc = ks.kc
        if secs is not None:
            take_small(system, encl, secs, ks)
        kc[K.K_HIGH] = self.high
        kc[K.K_SECS_EPC] = encl.secs_epc
        counts: dict[str, int] = {}
        if t == KSGXD:
            self.owner.served_steps += 1
            kc[K.K_THREAD_T] = -1  # the IPI's AEX is Python's (above)
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
        thread = self.thread
        ts = self.ts
        kc[K.K_THREAD_T] = THREAD
        cpu = thread.cpu
        kc[K.K_INSIDE] = int(cpu is not None and hw.inside(cpu) >= 0)
        ts.tc[T.TC_ENTERED] = int(thread.entered)
        if self._tmachine is None:
            self._tmachine = entry_point(thread_resume, co, ks, ts, THREAD)
        while True:
            r = int(self._tmachine(co, self.ks, ts, THREAD))
            if r != R_SVC:
                break
            self.ks = _serve_thread(system, encl, self.ks, ts, counts)
        assert secs is not None  # the thread's machine hands back before a SECS load
        fold_thread(system, thread, encl, secs, self.ks, ts)
        return r

    def on_stop(self, t: int) -> Gen:
        """A served machine stopped (``R_STOP``): the thread at its loop top (its serving
        generator ends: ``CoreStream.run`` goes on); ksgxd asleep at K0 (its own
        generator's wait goes back on ``ksgxd_waitq`` and this process waits forever: an
        ended process would take an eid the reference does not) or before the SECS's
        eviction (``KB_SECS``: its own generator from that page, as ``served_ksgxd``)."""
        if t == THREAD:
            return _nothing()
        co = self.co
        sgx = self.system.sgx
        if int(co.clk[C_HB]) == 0:
            return self._asleep()
        if int(co.clk[C_HB]) != 100 + K.KB_SECS:
            raise RuntimeError(
                f"fast_core: ksgxd served stopped at {K.KB_NAMES[int(self.ks.kc[K.K_HB])]}"
            )
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        if self.owner.session is self:
            self.owner.session = None
        kc = self.ks.kc
        j, nk = int(kc[K.K_I]), int(kc[K.K_NK])
        rows = self.ks.batch[:nk].tolist()
        encl = self.encl
        for index in self._pins:
            encl.backing._pinned_gen.pop(index, None)
        self._pins = []
        for _page, index, pinned in rows[j:]:
            encl.backing._pinned_gen[index] = pinned
        kept = [(page, encl, index) for page, index, _ in rows]
        task = sgx.ksgxd_task
        assert task is not None
        return sgx._ksgxd(task, (self.high, sgx_reclaim_write_back(sgx, task, kept, j)))

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


#: ksgxd's pcs, by phase of ``sgx_reclaim_pages`` (``fold_pins``)
_PHASE_B = frozenset((KM.P_AGE_RUN, KM.P_B_LOCKED, KM.P_BACKING_RUN, KM.P_B_UNLOCKED))
_PHASE_C = frozenset((KM.P_C, KM.P_ZAP_RUN, KM.P_C_LOCKED, KM.P_EBLOCK_RUN, KM.P_C_UNLOCKED))
_PHASE_D = frozenset(
    (KM.P_D, KM.P_D_LOCKED, KM.P_EWB1_RUN, KM.P_ETRACK_RUN, KM.P_EWB2_RUN, KM.P_IPI_RUN,
     KM.P_EWB3_RUN, KM.P_EWB_DONE, KM.P_STORED, KM.P_D_UNLOCKED)
)  # fmt: skip


def _nothing() -> Gen:
    return
    yield  # a generator


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
    if len(sgx.enclaves) != 1:
        return False
    encl = next(iter(sgx.enclaves.values()))
    if not encl.initialized or encl.dead or encl.secs_epc < 0:
        return False
    if not isinstance(encl.lock, LinuxMutex) or sgx.ksgxd_task is None:
        return False
    if system.cpu.epcm.linaddr._odd:
        return False
    st = system.cpu.secs_state(encl.secs_epc)
    b = encl.backing
    if b._width != 8 or b._eid != st.eid:
        return False
    epc = sgx.epc
    on_lru = (epc.flags & SGX_EPC_PAGE_ON_LRU) != 0
    return not np.any(epc.owner_encl[on_lru] != encl.id)


def _core_state_running(system: System, thread: EnclaveThread, trace: bool) -> Any:
    """The core with the thread running its generator on its CPU (its event being
    processed: nothing queued), ksgxd asleep on ``ksgxd_waitq``, ``encl->lock`` free."""
    kt = system.sgx.ksgxd_task
    assert kt is not None and thread.cpu is not None
    mutex = thread.encl.lock
    assert isinstance(mutex, LinuxMutex)
    co = take_engine(system, [thread, kt], mutex, trace)
    co.tasks[THREAD, T_STATE] = TS_READY
    co.tasks[THREAD, T_PC] = P_TOP
    co.tasks[KSGXD, T_STATE] = TS_SLEEP
    co.tasks[KSGXD, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = KSGXD
    return co


__all__ = ["CoreStream", "StreamCore"]
