"""ksgxd's compiled state machine served by SimPy on a live ``System``, moved between SimPy
and the compiled core at any instant, a batch's middle included (PATHS.md, "hand the
queue back"; ``fast/cosim/served.py``, ``transfer.py``).

``run_ksgxd_switching(system, switches)`` is ``bridge.run_ksgxd`` (ksgxd alone, woken
as ``Sgx.wake_ksgxd`` does, run until it sleeps again) with the engine alternating: the
core for ``switches[0]`` events, SimPy serving the same machine for ``switches[1]``, the
core again, ... then to the end on whichever holds it. The machine's ``KState`` (its
batch, pc, counters, the kernel's arrays) stays the one object throughout: with ksgxd
alone no Python task runs between two served steps, so nothing needs synchronising until
the fold at the end (``bridge._fold``); with Python tasks in between, their effects on
``kc``/counters would have to be brought in and folded around each served step (not
built: PATHS.md, "The hand-back's mechanism").

At the end ksgxd's own Python generator - which slept on ``ksgxd_waitq`` all along, its
event put aside while the machine ran - is put back on the wait queue: the machine's
K0 sleep and the generator's are the same state (PATHS.md K0), so the ``System`` goes on
with the reference's ksgxd. A driver hand-back (``KB_SECS``, ...) is not continued:
the result says so and, as after ``run_ksgxd``, the ``System`` must not be run further.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from epcsim.engine.mutex import LinuxMutex
from epcsim.engine.sched import CfsRunQueue
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_ELIDED,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_POPS,
    HANDED_BACK,
    HB_BUDGET,
    HB_NAMES,
    IDLE,
    M_CONTENDED,
    M_HANDOFFS,
    M_SPIN_ACQUIRED,
    M_STEALS,
    M_WAIT_NS,
    R_STOP,
    T_PC,
)
from epcsim.fast.cosim.transfer import to_core, to_simpy
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver.bridge import (
    SERVE,
    KsgxdResult,
    _check_regime,
    _core_state,
    _fold,
    _kernel_state,
    _serve,
    drive,
    wake,
)
from epcsim.fast.driver.ksgxd import P_NAMES, R_SVC, ksgxd_resume

if TYPE_CHECKING:
    from epcsim.system import System


class _DriverHandBack(Exception):
    """The served machine stopped before a step only Python does (``kstate.KB_*``)."""


def run_ksgxd_switching(
    system: System, switches: Sequence[int] = (), *, trace: bool | None = None
) -> KsgxdResult:
    """Wake ksgxd and run it to sleep, alternating the core and SimPy after the numbers of
    events in ``switches`` (the module docstring). The result is ``run_ksgxd``'s."""
    if any(not isinstance(n, int) or n < 1 for n in switches):
        raise ValueError(f"switches: event counts >= 1, got {list(switches)}")
    encl, secs = _check_regime(system)
    if trace is None:
        trace = encl.lock.trace is not None
    co = _core_state(system, trace)
    ks = _kernel_state(system, encl, secs)
    sgx = system.sgx
    m = system.machine
    task = sgx.ksgxd_task
    mutex = encl.lock
    assert task is not None and isinstance(mutex, LinuxMutex)  # _check_regime
    # what ``_core_state`` leaves to ``_fold`` but a move to SimPy writes: absolute values
    co.clk[C_ELIDED] = m.elided
    for col, v in (
        (M_CONTENDED, mutex.contended),
        (M_WAIT_NS, mutex.wait_ns),
        (M_STEALS, mutex.steals),
        (M_HANDOFFS, mutex.handoffs),
        (M_SPIN_ACQUIRED, mutex.spin_acquired),
    ):
        co.mtx[0, col] = v
    waitq = sgx.ksgxd_waitq
    parked = list(waitq._waiters)  # the Python generator's wait, put back at the end
    # Sgx.wake_ksgxd: the waiter's event succeeds now
    wake(co, 0)
    sgx.ksgxd_sleeping = False
    ks.kc[K.K_SLEEPING] = 0
    ks.cnt[K.CN_WAKEUPS] += 1
    counts: dict[str, int] = {}
    box = [ks]
    # the compiled machine for these argument types, without numba's dispatcher, which
    # types the ~45 arrays and typed lists of ``KState`` on every call (``jit.entry_point``;
    # ``_serve`` may replace ``ks`` by one of the same types)
    machine = entry_point(ksgxd_resume, co, ks, 0)

    def step(t: int) -> int:
        while True:
            r = int(machine(co, box[0], t))
            if r != R_SVC:
                break
            box[0] = _serve(system, encl, box[0], counts)
        if r == R_STOP:
            raise _DriverHandBack
        return r

    sv = Served(co, m, [task], [mutex], [waitq], step, mode="core")
    pending = -1
    rc = IDLE

    def on_core(budget: int) -> int:
        nonlocal pending
        co.clk[C_BUDGET] = budget
        while True:
            rc = drive(co, box[0], pending)
            if rc != SERVE:
                break
            box[0] = _serve(system, encl, box[0], counts)
            pending = 0
        pending = -1
        co.clk[C_BUDGET] = 0
        if rc == HANDED_BACK and co.clk[C_HB] == HB_BUDGET:
            co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
            return HB_BUDGET
        return int(rc)

    stopped = False
    for count in switches:
        if sv.mode == "core":
            rc = on_core(int(co.clk[C_POPS]) + count)
            if rc not in (IDLE, HB_BUDGET):
                stopped = True
                break
            to_simpy(sv)
        else:
            try:
                sv.run(count)
            except _DriverHandBack:
                raise NotImplementedError(
                    "run_ksgxd_switching: a driver hand-back while served (KB_SECS continued "
                    "in Python is not built)"
                ) from None
            if not to_core(sv):
                raise RuntimeError("run_ksgxd_switching: ksgxd alone left the core's regime")
    if not stopped:
        if sv.mode == "simpy":
            try:
                sv.run()
            except _DriverHandBack:
                raise NotImplementedError(
                    "run_ksgxd_switching: a driver hand-back while served (KB_SECS continued "
                    "in Python is not built)"
                ) from None
            if not to_core(sv):
                raise RuntimeError("run_ksgxd_switching: ksgxd alone left the core's regime")
            rc = IDLE
        else:
            rc = on_core(0)
    ks = box[0]
    # the core holds the engine's state now (absolute ``elided``): fold as run_ksgxd does
    m.elided = int(co.clk[C_ELIDED])
    co.clk[C_ELIDED] = 0
    _fold(system, encl, secs, co, ks)
    # ``_fold`` leaves CFS's idle list alone (``run_ksgxd`` ends with the CPUs it began
    # with); a move to SimPy rewrote it: as ``m.running`` says now
    rq = m.rq
    assert isinstance(rq, CfsRunQueue)  # _check_regime
    rq._idle = [c for c, r in enumerate(m.running) if r is None]
    pc = P_NAMES[int(co.tasks[0, T_PC])]
    if rc == IDLE:
        waitq._waiters = parked  # ksgxd asleep at K0: its generator's wait is that state
        return KsgxdResult(None, pc, services=counts)
    hb = int(co.clk[C_HB])
    why = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
    return KsgxdResult(why, pc, int(ks.kc[K.K_HB_PAGE]), services=counts)


__all__ = ["run_ksgxd_switching"]
