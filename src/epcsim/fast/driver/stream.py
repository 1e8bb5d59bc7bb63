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

from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.state import (
    C_HB,
    C_QLEN,
    HANDED_BACK,
    T_PC,
    T_STATE,
    TS_READY,
    TS_SLEEP,
)
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import _check_regime, _kernel_state, _serve
from epcsim.fast.driver.engine_state import take_engine
from epcsim.fast.driver.ksgxd import P_WAIT
from epcsim.fast.driver.thread import P_TOP
from epcsim.fast.driver.thread_bridge import (
    KSGXD,
    SERVE,
    THREAD,
    _fold,
    _serve_thread,
    _thread_state,
    drive,
)
from epcsim.kernel.encl_page import ENCL_PAGE_PTE_PRESENT
from epcsim.kernel.page_list import LEN

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

    def _ready(self, i: int) -> bool:
        """The dynamic regime (module docstring), cheapest checks first."""
        system = self.system
        sgx = system.sgx
        thread = self.thread
        m = system.machine
        encl = thread.encl
        if not sgx.ksgxd_sleeping or m.env._queue or thread.cpu is None:
            return False
        if thread._user_proc is not None or m.spinning:
            return False
        # the iteration would stop at once (thread._hook_stop): no call for nothing
        idx = self.pages.item(i)
        if not encl.pages.flags[idx] & ENCL_PAGE_PTE_PRESENT:
            epc = sgx.epc
            fl = epc.free_lists[epc.nodes[0]]
            if encl.secs_epc < 0 or epc.links.ends[fl.row, LEN] == 0:
                return False
            if epc.nr_free_pages - 1 < sgx.low_pages and len(sgx.lru) > 0:
                return False
        if getattr(encl.backing, "tampered", False):
            return False
        if any(r is not None and r is not thread for r in m.running):
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
        try:
            _check_regime_running(system)
        except ValueError:
            return False
        return True

    def run(self, i: int, done: int) -> tuple[int, int] | None:
        """Run the stream from index ``i`` (``done`` accesses so far) on the core; the new
        ``(i, done)``, or None if the regime does not hold now (the generator runs this
        iteration itself)."""
        if not self._ready(i):
            return None
        system = self.system
        thread = self.thread
        encl = thread.encl
        secs = system.cpu.secs_state(encl.secs_epc)
        m = system.machine
        rq = m.rq
        assert isinstance(rq, CfsRunQueue)
        idle = list(rq._idle)
        trace = encl.lock.trace is not None
        co = _core_state_running(system, thread, trace)
        ks = _kernel_state(system, encl, secs)
        kc = ks.kc
        kc[K.K_THREAD_T] = THREAD
        lp = thread.cpu
        assert lp is not None
        inside = system.cpu.inside(lp) >= 0
        kc[K.K_INSIDE] = int(inside)
        kc[K.K_TRACKING] = int(bool(secs.tracking))
        ts = _thread_state(system, thread, self.pages, self.writes, alone=True)
        tc = ts.tc
        tc[T.TC_I] = i
        tc[T.TC_DONE] = done
        tc[T.TC_HOOK] = 1
        counts: dict[str, int] = {}
        pending = THREAD
        while True:
            rc = self.owner.drive(co, ks, ts, pending)
            if rc > SERVE:
                break
            if rc == SERVE - THREAD:
                ks = _serve_thread(system, encl, ks, ts, counts)
            else:
                ks = _serve(system, encl, ks, counts)
            pending = SERVE - rc
        hb = int(co.clk[C_HB])
        code = int(ks.kc[K.K_HB]) if hb >= 100 else -1
        if rc != HANDED_BACK or code not in _RESUMABLE or co.clk[C_QLEN] != 0:
            raise RuntimeError(
                f"fast_core: the core stopped where access_stream cannot go on (rc {rc}, "
                f"hand-back {hb}, {K.KB_NAMES[code] if code >= 0 else '-'}, "
                f"{int(co.clk[C_QLEN])} events queued)"
            )
        co.tasks[THREAD, T_PC] = P_TOP
        _fold(system, thread, encl, secs, co, ks, ts)
        rq._idle = idle
        new_i = int(tc[T.TC_I])
        new_done = int(tc[T.TC_DONE])
        self.owner.entries += 1
        self.owner.accesses += new_done - done
        return new_i, new_done


def _check_regime_running(system: System) -> None:
    """``bridge._check_regime`` with the thread on its CPU: the checks it makes of the
    enclave, the lock, ksgxd, the EPCM and the backing store (the thread's own CPU and LP
    are ``CoreStream._ready``'s)."""
    m = system.machine
    saved = m.running
    m.running = [None] * len(saved)
    sec = system.cpu.secs_state(next(iter(system.sgx.enclaves.values())).secs_epc)
    inside, tracking, busy = sec.inside, sec.tracking, sec.busy_tcs
    sec.inside, sec.tracking, sec.busy_tcs = set(), set(), set()
    try:
        _check_regime(system)
    finally:
        m.running = saved
        sec.inside, sec.tracking, sec.busy_tcs = inside, tracking, busy


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
