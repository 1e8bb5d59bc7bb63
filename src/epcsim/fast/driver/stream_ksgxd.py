"""ksgxd's compiled machine between two pair calls of ``access_stream``'s hook
(``stream.py``, issue 9 session ``upair``): the core's arrays and the kernel's ``KState``
of the pair, the SimPy side that serves ksgxd's machine when a call ends in the middle of
a batch, and the way back to ksgxd's own generator (its sleep, or ``KB_SECS``).

``stream.py``'s module docstring says what the pair does and decides; this module is the
session object it keeps (``StreamCore.session``) while ksgxd is a machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Gen
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
from epcsim.fast.cosim.transfer import _frame_locals
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import _serve, fold_kernel, refresh_layout, take_small
from epcsim.fast.driver.engine_state import absolute_counters, take_engine
from epcsim.fast.driver.ksgxd import P_IPI_RUN, P_WAIT, R_SVC, ksgxd_resume
from epcsim.fast.driver.thread import P_TOP, thread_resume
from epcsim.fast.driver.thread_bridge import KSGXD, THREAD, _serve_thread, fold_thread
from epcsim.kernel.main import Sgx
from epcsim.kernel.policy import KernelLru
from epcsim.kernel.reclaim import sgx_reclaim_write_back

if TYPE_CHECKING:
    from epcsim.fast.driver.stream import StreamCore
    from epcsim.system import System
    from epcsim.user.thread import EnclaveThread


class Session:
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
    def begin(cls, owner: StreamCore, thread: EnclaveThread, encl: Any, secs: Any) -> Session:
        """A session from ksgxd asleep in its generator: the core as ``run_pair``'s, with
        the thread running at its loop top and absolute counters (``to_simpy`` writes them
        back absolute)."""
        system = owner.system
        m = system.machine
        mutex = encl.lock
        co = _core_state_running(system, thread, mutex.trace is not None)
        absolute_counters(co, m.elided, mutex)
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
            # Python may have left the regime between two calls (another enclave, ...): the
            # machine then finishes the batch it holds and its generator goes on from K0
            kc[K.K_TOP_STOP] = int(not _served_regime(system, encl))
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
        if int(co.clk[C_HB]) == 100 + K.KB_TOP:
            return self._between_batches()
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

    def _between_batches(self) -> Gen:
        """ksgxd at K0's loop top, outside the regime now: its generator from there (the
        batch's ``cond_resched`` is the generator's, which the machine skipped)."""
        co = self.co
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        self.owner.top_stops += 1
        if self.owner.session is self:
            self.owner.session = None
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        return sgx._ksgxd(task, (self.high, _none_reclaimed()))

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


def _served_regime(system: System, encl: Any) -> bool:
    """What ksgxd's machine needs to start a batch under SimPy (``ksgxd.py`` hands back
    ``KB_UNEXPECTED`` otherwise): the session's enclave the only one, alive, and the model's
    options the driver's. Cheap (per served step); a page of another owner on the LRU needs
    another enclave."""
    sgx = system.sgx
    if len(sgx.enclaves) != 1 or next(iter(sgx.enclaves.values())) is not encl:
        return False
    return not encl.dead and sgx.flood is None and type(sgx.lru) is KernelLru


def _none_reclaimed() -> Gen:
    """``Sgx._ksgxd(moved=(high, rest))``'s ``rest`` at K0's top: the batch's pages were
    counted by the machine."""
    return 0
    yield  # a generator


def _nothing() -> Gen:
    return
    yield  # a generator


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


__all__ = ["Session"]
