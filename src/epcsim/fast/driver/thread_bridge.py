"""A driver call for the enclave thread: ``run_thread(system, thread, pages)`` runs
``access_stream(pages)`` on the compiled core (PATHS.md T0-T7), ksgxd asleep.

The call is ``Enclave.access_pages``'s (``System._call``): the thread's process starts
(its Initialize event takes the next eid), the stream runs, the thread leaves its CPU (an
AEX: ``on_switch_out``), the process ends and ``env.run(until=proc)`` stops on its event
(which SimPy queues again, see ``_stopped``); on a clean end every object is as the
reference leaves it after ``access_pages(pages, write)`` - the differential test
(``tests/fast/test_driver_thread.py``) compares them all. ksgxd sleeps throughout: an
allocation that would wake it hands back before the allocation (``KB_WAKE``), as does
every step the regime excludes (``kstate.KB_*``, named in ``thread.py``). After a
hand-back the arrays are as the reference's just before the named step, but no Python
generator is there to go on: the ``System`` must not be run further (moving the queue back
into SimPy is the hand-back, PATHS.md, built separately).

The core has two tasks, the thread (0) and ksgxd (1, asleep on ``ksgxd_waitq``), so the
same arrays and ``drive`` serve the two together (row 1's regime, PATHS.md), where T4 wakes
ksgxd instead of handing back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit
from simpy.events import EventPriority

from epcsim.engine.machine import Task
from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.borrow import borrow, member
from epcsim.fast.cosim.dispatch import next_resume
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.state import (
    C_EID,
    C_HB,
    C_MIN_VR,
    C_TRACE_LEN,
    HANDED_BACK,
    HB_NAMES,
    IDLE,
    M_CONTENDED,
    M_FREE_SINCE,
    M_FREED_FROM,
    M_HANDED_AT,
    M_HANDOFFS,
    M_OWNER,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    R_STOP,
    T_PC,
    T_STATE,
    TRACE_EVENTS,
    TS_SLEEP,
    CoState,
)
from epcsim.fast.cosim.task import spawn
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import (
    _check_regime,
    _kernel_state,
    _refuse,
    _serve,
)
from epcsim.fast.driver.engine_state import fold_clock, fold_task, take_engine
from epcsim.fast.driver.ksgxd import P_WAIT, R_SVC, ksgxd_run
from epcsim.fast.driver.thread import thread_run
from epcsim.fast.driver.thread_fold import flush_latencies, fold_thread
from epcsim.fast.driver.thread_pc import P_NAMES, P_TOP
from epcsim.fast.driver.tstate import N_TC
from epcsim.user.thread import ACCESS_QUANTUM_NS, AccessOutcome, EnclaveThread

if TYPE_CHECKING:
    from epcsim.system import System

#: the core's task rows
THREAD = 0
KSGXD = 1
#: ``drive`` returned because task ``SERVE - rc`` asked Python for ``kc[K_SVC]``
SERVE = -10


@njit(cache=True, nogil=True)
def drive(st, kt, ts, pending):  # type: ignore[no-untyped-def]
    """The core's loop with the thread (task 0) and ksgxd (task 1): resume ``pending``
    (>= 0: a task that ended the last call with a request) first, then every task as its
    event comes due. Returns ``IDLE``, ``HANDED_BACK`` or ``SERVE - task``. The tuples
    are borrowed once for the loop (``cosim.borrow``): a machine's call passes a pointer.
    With several threads (``tstate.stack``: ``ts`` holds ``nt`` rows, PATHS.md N1) tasks
    0..nt-1 are the threads and ksgxd is task ``nt`` (``threads_bridge``)."""
    pt = borrow((st, kt, ts))
    pk = borrow((st, kt))
    nt = ts.tc.size // N_TC
    t = pending
    while True:
        if t < 0:
            t = next_resume(member(pk, 0))
            if t < 0:
                return t
        if t < nt:
            r = thread_run(pt, t)
        else:
            r = ksgxd_run(pk, t)
        if r == R_SVC:
            return SERVE - t
        if r == R_STOP:
            return HANDED_BACK
        t = -1


@dataclass
class ThreadResult:
    """What a call did: ``outcome`` is the stream's ``AccessOutcome`` (so far, after a
    hand-back); ``handed_back`` None after a clean end, else the reason (``kstate.KB_NAMES``
    or the core's ``HB_NAMES``), ``pc`` the thread's step before which the driver stopped
    and ``page`` the page it concerns."""

    outcome: AccessOutcome
    handed_back: str | None
    pc: str
    page: int = -1
    services: dict[str, int] = field(default_factory=dict)


def _check_thread(system: System, thread: EnclaveThread, encl: Any) -> None:
    sgx = system.sgx
    if not isinstance(thread, EnclaveThread) or thread.encl is not encl:
        _refuse("the thread does not run the enclave")
    if thread.cpu is not None or thread._user_proc is not None:
        _refuse("the thread holds a CPU")
    if thread.tcs_index < 0:
        _refuse("the thread enters through the implicit TCS")
    if len(sgx.epc.nodes) != 1:
        _refuse("the EPC has more than one node")
    if any(e >= 0 for e in system.cpu.lp_eid):
        _refuse("an LP is inside an enclave")
    if (encl.base + encl.size) >> 12 >= 0xFFFFFFFF:
        _refuse("ELRANGE's page numbers do not fit ENCLAVEADDRESS's 32 bits")


def _core_state(system: System, thread: EnclaveThread, trace: bool) -> CoState:
    """The core at the call's entry: the thread's process about to start, ksgxd asleep on
    ``ksgxd_waitq``, ``encl->lock`` free, every CPU idle."""
    kt = system.sgx.ksgxd_task
    assert kt is not None
    mutex = thread.encl.lock
    assert isinstance(mutex, LinuxMutex)  # _check_regime
    co = take_engine(system, [thread, kt], mutex, trace)
    co.tasks[KSGXD, T_STATE] = TS_SLEEP
    co.tasks[KSGXD, T_PC] = P_WAIT
    co.wq[0] = 1
    co.wql[0, 0] = KSGXD
    co.tasks[THREAD, T_PC] = P_TOP
    return co


def entered(task: Task) -> bool:
    """``EnclaveThread.entered`` of the core's thread row; False for a task that is not an
    enclave thread (the ioctl's task of ``Enclave.modify_types``: it never enters)."""
    return isinstance(task, EnclaveThread) and task.entered


def _thread_state(
    system: System,
    thread: Task,
    pages: np.ndarray,
    writes: np.ndarray,
    alone: bool,
    notes: int = 0,
    encl: Any = None,
    calls: int = 0,
) -> Any:
    """The thread's ``TState`` at a call's entry; ``notes``: rows for the EACCEPT loop's
    progress points (``tstate.MODE_EACCEPT``, set by the caller); ``calls``: rows for the
    ioctl calls MODIFY_TYPES' loop ends and makes again itself (``tstate.TC_RETRY``).
    ``thread`` may be a plain ``Task`` of the enclave's process (the ioctl's task,
    MODIFY_TYPES' loop only: ``encl`` given): no TCS (``TC_TCS`` -1), never entered, the
    access quantum as its slice (read by the stream's rows only)."""
    sgx = system.sgx
    if encl is None:
        assert isinstance(thread, EnclaveThread)
        encl = thread.encl
    costs = system.machine.costs
    tc = np.zeros(T.N_TC, np.int64)
    tc[T.TC_N] = pages.size
    ts_ns, tcs = ACCESS_QUANTUM_NS, -1
    if isinstance(thread, EnclaveThread):
        ts_ns, tcs = thread.timeslice_ns, thread.tcs_index
    tc[T.TC_CHUNK_MAX] = max(1, min(ts_ns, ACCESS_QUANTUM_NS) // max(1, costs.access))
    tc[T.TC_ENTERED] = int(entered(thread))
    tc[T.TC_TCS] = tcs
    tc[T.TC_BASE] = encl.base
    tc[T.TC_FREE_ROW] = sgx.epc.free_lists[sgx.epc.nodes[0]].row
    tc[T.TC_LOW] = sgx.low_pages
    tc[T.TC_SGX2] = int(sgx.sgx2)
    tc[T.TC_ALONE] = int(alone)
    tc[T.TC_ACCESS_NS] = costs.access
    tc[T.TC_EENTER_NS] = costs.eenter
    tc[T.TC_ERESUME_NS] = costs.eresume
    tc[T.TC_FAULT_NS] = costs.aex + costs.fault_entry
    tc[T.TC_ELDU_NS] = costs.eldu
    tc[T.TC_EACCEPT_NS] = costs.eaccept
    tc[T.TC_EEXIT_NS] = costs.eexit
    return T.TState(
        tc=tc,
        tcnt=np.zeros(len(T.TCOUNTERS), np.int64),
        pages=pages,
        writes=writes,
        prot=encl.pages.prot,
        lat=np.zeros(T.LAT_ROWS, np.int64),
        notes=np.zeros((notes, 2), np.int64),
        calls=np.zeros((calls, 3), np.int64),
    )


#: ``drive``'s compiled entry points per argument layout, for ``run_thread``/``run_pair``
#: (``_entry``). Why (measured 2026-11-26, session ``lazyseal``): a dispatcher call types
#: every array and typed list of the three tuples, ~0.9 ms a call at load 4 against ~12 us
#: for the compiled overload's entry point, and ``run_pair`` drives the core ~12 times in
#: ``pair_profile.py``'s scenario (~0.7 us a fault). The user path's ``StreamCore.drive``
#: does the same with its own table.
_ENTRIES: dict[tuple[Any, ...], Any] = {}


def _layout(*parts: Any) -> tuple[Any, ...]:
    """What a compiled overload of ``drive`` depends on: each array's dtype, dimensions and
    layout (a typed list's and an int's type is fixed by construction)."""
    return tuple(
        (a.dtype.str, a.ndim, a.flags.c_contiguous) if isinstance(a, np.ndarray) else None
        for part in parts
        for a in part
    )


def _entry(fn: Any) -> Any:
    """``fn`` (this module's ``drive``, or what a test put there: a spy is called as is)
    called through ``jit.entry_point`` for its arguments' layout, ``ks`` as the machines'
    tuple of enclave slots (``kstate.slots``: a spy receives that tuple too)."""

    def call(co: Any, ks: Any, ts: Any, pending: int) -> int:
        key = (fn, *_layout(co, ks, ts))
        ep = _ENTRIES.get(key)
        kt = K.slots(ks)
        if ep is None:
            ep = _ENTRIES[key] = entry_point(fn, co, kt, ts, pending)
        return int(ep(co, kt, ts, pending))

    return call


def drive_serving(
    drive_fn: Any,
    system: System,
    encl: Any,
    co: Any,
    ks: Any,
    ts: Any,
    pending: int,
    counts: dict[str, int],
) -> tuple[int, Any]:
    """Drive the pair until the core stops for something other than a Python service:
    each ``SERVE - t`` return is served (the thread's requests by ``_serve_thread``, the
    kernel's by ``_serve``) and task ``t`` resumed. Returns the core's code and the
    ``KState`` (a service may replace it after a layout change)."""
    while True:
        rc = drive_fn(co, ks, ts, pending)
        if rc > SERVE:
            return rc, ks
        if rc == SERVE - THREAD:
            ks = _serve_thread(system, encl, ks, ts, counts)
        else:
            ks = _serve(system, encl, ks, counts)
        pending = SERVE - rc


def _serve_thread(system: System, encl: Any, ks: Any, ts: Any, counts: dict[str, int]) -> Any:
    """The thread's requests (``kstate.SVC_UNSEAL``, ``SVC_TRUNCATE``, ``SVC_LAT_FULL``);
    the others are ``bridge._serve``'s."""
    kc = ks.kc
    code = int(kc[K.K_SVC])
    tc = ts.tc
    if code == K.SVC_LAT_FULL:
        kc[K.K_SVC] = K.SVC_NONE
        counts[str(code)] = counts.get(str(code), 0) + 1
        flush_latencies(system, ts)
        return ks
    if code == K.SVC_TRUNCATE:
        kc[K.K_SVC] = K.SVC_NONE
        counts[str(code)] = counts.get(str(code), 0) + 1
        # ``truncate`` counts the record's removal itself and the machine did not (its
        # ``SVC_TRUNCATE`` path leaves ``K_NR_RECORDS``): nothing to fold (session
        # ``twoencl3``: the count was taken back here before, as in ``bridge._serve``)
        encl.backing.truncate(int(kc[K.K_SVC_ARG]), pcmd_busy=bool(tc[T.TC_BUSY]))
        return ks
    if code == K.SVC_UNSEAL:
        kc[K.K_SVC] = K.SVC_NONE
        counts[str(code)] = counts.get(str(code), 0) + 1
        tc[T.TC_RET] = _unseal_raw(system, encl, int(kc[K.K_SVC_ARG]), tc)
        return ks
    return _serve(system, encl, ks, counts)


def _unseal_raw(system: System, encl: Any, index: int, tc: np.ndarray) -> int:
    """ELDU's checks of a record kept raw, in Python (``SgxCpu.eldu``'s, ``tag`` mode, a
    child page of the resident SECS): 0 with the tag, flags and version row in ``tc``, or
    non-zero (the call hands back, ``KB_ELDU``)."""
    from epcsim.arch import PageType
    from epcsim.isa.sealing import mac_header, unpack_pcmd

    cpu = system.cpu
    rec = encl.backing.lookup(index)
    if rec is None:
        return 1
    pcmd = unpack_pcmd(bytes(rec.pcmd))
    if pcmd is None or bytes(rec.pcmd) == bytes(128):
        return 1
    pt = (pcmd.flags >> 8) & 0xFF
    if pt not in (int(PageType.REG), int(PageType.TCS), int(PageType.TRIM)):
        return 1
    va, slot = int(tc[T.TC_VA]), int(tc[T.TC_SLOT])
    if va not in cpu.va or cpu.va.version(va, slot) == 0:
        return 1
    version = cpu.va.version(va, slot)
    st = cpu.secs_state(encl.secs_epc)
    linaddr = encl.linaddr(index)
    header = mac_header(pcmd.secinfo, linaddr, st.eid, pcmd.enclave_id, pcmd.reserved)
    plain = cpu.sealer.unseal(header, bytes(rec.contents), pcmd.mac, version, False)
    if plain is None or not isinstance(plain, int):
        return 1
    tc[T.TC_TAG] = np.uint64(plain).view(np.int64)
    tc[T.TC_FLAGS] = pcmd.flags
    tc[T.TC_VROW] = cpu.va._row[va]
    return 0


def _fold(
    system: System, thread: EnclaveThread, encl: Any, secs: Any, co: CoState, ks: Any, ts: Any
) -> None:
    """The small arrays back into the Python objects."""
    sgx = system.sgx
    m = system.machine
    kt = sgx.ksgxd_task
    assert kt is not None
    clk = co.clk
    fold_clock(m, clk)
    rq = m.rq
    assert isinstance(rq, CfsRunQueue)  # _check_regime
    rq.min_vruntime = int(clk[C_MIN_VR])
    tasks = (thread, kt)
    for t, task in enumerate(tasks):
        fold_task(task, co.tasks[t])
    for c in range(m.nr_cpus):
        r = int(co.cpus[c])
        m.running[c] = None if r < 0 else tasks[r]
    rq._idle = [c for c in range(m.nr_cpus) if co.cpus[c] < 0]
    mutex = encl.lock
    assert isinstance(mutex, LinuxMutex)  # _check_regime
    mx = co.mtx[0]
    mutex.owner = None if mx[M_OWNER] < 0 else tasks[int(mx[M_OWNER])]
    mutex._free_since = int(mx[M_FREE_SINCE])
    mutex._freed_from = int(mx[M_FREED_FROM])
    mutex._handed_at = int(mx[M_HANDED_AT])
    # the call's contention (the core's counters start at 0)
    mutex.contended += int(mx[M_CONTENDED])
    mutex.wait_ns += int(mx[M_WAIT_NS])
    mutex.steals += int(mx[M_STEALS])
    mutex.handoffs += int(mx[M_HANDOFFS])
    mutex.spin_acquired += int(mx[M_SPIN_ACQUIRED])
    if mutex.trace is not None:
        for ns, ev, t, _m in co.trace[: clk[C_TRACE_LEN]].tolist():
            mutex.trace.append((ns, TRACE_EVENTS[ev], tasks[t].name))
    fold_thread(system, thread, encl, secs, ks, ts)


def _stopped(system: System, out: AccessOutcome) -> None:
    """``env.run(until=proc)``'s end: SimPy stops inside the process event's callbacks and
    schedules the event again, first at its instant (priority -1, the next eid), with the
    callbacks that were left (none): an event whose pop does nothing. The driver leaves
    the same one in the queue, so the next ``env.run`` pops it as the reference's."""
    env = system.machine.env
    ev = env.event()
    ev._ok = True
    ev._value = out
    env.schedule(ev, EventPriority(-1))


def run_thread(
    system: System,
    thread: EnclaveThread,
    pages: Any,
    write: bool | np.ndarray = False,
    *,
    trace: bool | None = None,
) -> ThreadResult:
    """``Enclave.access_pages(pages, write)`` for ``thread`` on the compiled driver, ksgxd
    asleep (module docstring). ``system`` must be in the regime (ValueError otherwise)."""
    return _run(system, thread, pages, write, trace, alone=True)


def run_pair(
    system: System,
    thread: EnclaveThread,
    pages: Any,
    write: bool | np.ndarray = False,
    *,
    trace: bool | None = None,
) -> ThreadResult:
    """``Enclave.access_pages(pages, write)`` then ``env.run()``: the thread's stream and
    ksgxd together on the compiled core (row 1's regime, PATHS.md), until the stream is
    done, the thread's process has ended and ksgxd sleeps again with nothing queued. The
    entry is the same as ``run_thread``'s (ksgxd asleep, the queue empty); T4 wakes ksgxd
    as ``wake_ksgxd`` does, and from then on the two interleave in SimPy's order."""
    return _run(system, thread, pages, write, trace, alone=False)


def _run(
    system: System,
    thread: EnclaveThread,
    pages: Any,
    write: bool | np.ndarray,
    trace: bool | None,
    alone: bool,
) -> ThreadResult:
    encl, secs = _check_regime(system)
    _check_thread(system, thread, encl)
    # copies, writable and contiguous whatever was passed (a read-only view, e.g. what
    # ``np.broadcast_to`` gives, is another numba type: a second compile of the machine)
    pages = np.array(pages, dtype=np.int64, order="C")
    if pages.ndim != 1:
        raise ValueError(f"pages: one dimension of page indices, got shape {pages.shape}")
    writes = np.array(np.broadcast_to(np.asarray(write, dtype=np.bool_), pages.shape), order="C")
    if pages.size and (pages.min() < 0 or pages.max() >= encl.nr_pages):
        raise ValueError("pages: index outside the enclave")
    if trace is None:
        trace = encl.lock.trace is not None
    co = _core_state(system, thread, trace)
    ks = _kernel_state(system, encl, secs)
    ks.kc[K.K_THREAD_T] = THREAD
    ts = _thread_state(system, thread, pages, writes, alone=alone)
    spawn(co, THREAD)  # System._call: the thread's process starts
    counts: dict[str, int] = {}
    rc, ks = drive_serving(_entry(drive), system, encl, co, ks, ts, -1, counts)
    clean = rc == IDLE
    if clean and not alone:
        # env.run(until=proc) stopped on the process's event and queued it again (the next
        # eid, see ``_stopped``); the env.run() after it popped it first, doing nothing
        co.clk[C_EID] += 1
    _fold(system, thread, encl, secs, co, ks, ts)
    tc = ts.tc
    out = AccessOutcome(done=int(tc[T.TC_DONE]))
    pc = P_NAMES[int(co.tasks[THREAD, T_PC])]
    if clean:
        assert tc[T.TC_FINISHED]
        if alone:
            _stopped(system, out)
        return ThreadResult(out, None, pc, services=counts)
    assert rc == HANDED_BACK
    hb = int(co.clk[C_HB])
    why = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
    return ThreadResult(out, why, pc, int(ks.kc[K.K_HB_PAGE]), services=counts)


__all__ = ["ThreadResult", "run_pair", "run_thread"]
