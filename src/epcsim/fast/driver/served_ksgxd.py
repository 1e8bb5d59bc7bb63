"""ksgxd's compiled state machine served by SimPy on a live ``System``, moved between SimPy
and the compiled core at any instant, a batch's middle included (PATHS.md, "hand the
queue back"; ``fast/cosim/served.py``, ``transfer.py``).

``run_ksgxd_switching(system, switches)`` is ``bridge.run_ksgxd`` (ksgxd alone, woken
as ``Sgx.wake_ksgxd`` does, run until it sleeps again) with the engine alternating: the
core for ``switches[0]`` events, SimPy serving the same machine for ``switches[1]``, the
core again, ... then to the end on whichever holds it. The machine's ``KState`` (its
batch, pc, counters, the kernel's arrays) stays the one object throughout: with ksgxd
alone no Python task runs between two served steps; still, the kernel's scalars are taken
from the Python objects before each served step and folded back after it
(``bridge.take_small``/``fold_kernel``, the big arrays re-read only on a layout change:
``bridge.refresh_layout``), and folded when the machine moves from the core to SimPy, so
that while served the Python objects are what the reference's generator would have left
and a Python task running between two steps (``between``) sees them and is seen.

At the end ksgxd's own Python generator - which slept on ``ksgxd_waitq`` all along, its
event put aside while the machine ran - is put back on the wait queue: the machine's
K0 sleep and the generator's are the same state (PATHS.md K0), so the ``System`` goes on
with the reference's ksgxd. ``KB_SECS`` (the SECS's last child's D step) is continued by
that generator from the page the driver stopped at (``Sgx._ksgxd(moved=...)``), run by
SimPy to ksgxd's sleep; any other driver hand-back is not continued: the result says so
and, as after ``run_ksgxd``, the ``System`` must not be run further.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Gen
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
    T_PC,
)
from epcsim.fast.cosim.transfer_to_core import _frame_locals, to_core
from epcsim.fast.cosim.transfer_to_simpy import _process, to_simpy
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
    fold_kernel,
    refresh_layout,
    take_small,
    wake,
)
from epcsim.fast.driver.engine_state import absolute_counters
from epcsim.fast.driver.ksgxd import P_NAMES, P_STORED, R_SVC, ksgxd_resume
from epcsim.kernel.main import Sgx
from epcsim.kernel.reclaim import sgx_reclaim_write_back

if TYPE_CHECKING:
    from epcsim.system import System


class _DriverHandBack(Exception):
    """The served machine stopped before a step only Python does (``kstate.KB_*``)."""


def run_ksgxd_switching(
    system: System,
    switches: Sequence[int] = (),
    *,
    trace: bool | None = None,
    between: Callable[[int], None] | None = None,
) -> KsgxdResult:
    """Wake ksgxd and run it to sleep, alternating the core and SimPy after the numbers of
    events in ``switches`` (the module docstring). The result is ``run_ksgxd``'s.

    ``between(n)``, if given, is called after the ``n``-th served step, where a Python task
    would run: the kernel's objects are then as the reference's ksgxd generator leaves them
    at that point."""
    if any(not isinstance(n, int) or n < 1 for n in switches):
        raise ValueError(f"switches: event counts >= 1, got {list(switches)}")
    encl, secs = _check_regime(system)
    if trace is None:
        trace = encl.lock.trace is not None
    co = _core_state(system, trace, [encl])
    ks = _kernel_state(system, encl, secs)
    sgx = system.sgx
    m = system.machine
    task = sgx.ksgxd_task
    mutex = encl.lock
    assert task is not None and isinstance(mutex, LinuxMutex)  # _check_regime
    # what ``_core_state`` leaves to ``_fold`` but a move to SimPy writes: absolute values
    absolute_counters(co, m.elided, mutex)
    waitq = sgx.ksgxd_waitq
    parked = list(waitq._waiters)  # the Python generator's wait, put back at the end
    # Sgx.wake_ksgxd: the waiter's event succeeds now
    wake(co, 0)
    sgx.ksgxd_sleeping = False
    ks.kc[K.K_SLEEPING] = 0
    ks.cnt[K.CN_WAKEUPS] += 1
    counts: dict[str, int] = {}
    steps = [0]
    box = [ks]
    nblk = [len(system.cpu.va.blocks)]  # the typed list's length (``refresh_layout``)
    # the compiled machine for these argument types, without numba's dispatcher, which
    # types the ~45 arrays and typed lists of ``KState`` on every call (``jit.entry_point``;
    # ``_serve`` may replace ``ks`` by one of the same types)
    machine = entry_point(ksgxd_resume, co, K.slots(ks), 0)

    def step(t: int) -> int:
        """One served step, with the kernel's scalars taken before it and folded after it
        (``bridge.take_small``/``fold_kernel``): while served, the Python objects are the
        truth between two steps, for any Python task SimPy runs there."""
        box[0], nblk[0] = refresh_layout(system, encl, box[0], nblk[0])
        take_small(system, encl, secs, box[0])
        while True:
            r = int(machine(co, K.slots(box[0]), t))
            if r != R_SVC:
                break
            box[0] = _serve(system, encl, box[0], counts)
        fold_kernel(system, encl, secs, box[0])
        steps[0] += 1
        if between is not None:
            between(steps[0])
        return r

    # -- KB_SECS: ksgxd's own generator takes over before page j's D step ---------------------
    resume: Any = parked[0].callbacks[0] if parked else None  # Process._resume, bound
    old_gen = resume.__self__._generator if resume is not None else None
    frame = _frame_locals(old_gen, Sgx._ksgxd.__code__)
    high = sgx.high_pages if frame is None else int(frame["high"])

    def python_ksgxd() -> Gen:
        """``Sgx._ksgxd`` from the D step of the batch's page ``K_I`` (the driver stopped
        before it, ``KB_SECS``): the rest of the batch, then the loop. The pages not yet
        written back keep the PCMD generation phase B pinned (``get_backing``'s record)."""
        rw = box[0].rc[0]  # ksgxd's row (reclaim.py)
        j, nk = int(rw[K.RC_I]), int(rw[K.RC_NK])
        rows = box[0].batch[0, :nk, :3].tolist()
        # at P_STORED (a child removed between two served steps): page j's EWB is done
        # and encl->lock held, the rest of its sgx_reclaimer_write follows (Session's too)
        ewbed = None
        if int(co.tasks[0, T_PC]) == P_STORED:
            ewbed = (int(rw[K.RC_RET]), int(rw[K.RC_VA]), int(rw[K.RC_SLOT]))
        for _page, index, pinned in rows[j + (ewbed is not None) :]:
            encl.backing._pinned_gen[index] = pinned
        kept = [(page, encl, index) for page, index, _ in rows]
        waitq._waiters = [ev for ev in waitq._waiters if ev not in parked]  # replaced
        rest = sgx_reclaim_write_back(sgx, task, kept, j, ewbed=ewbed)
        return sgx._ksgxd(task, (high, rest))

    taken_over = [False]

    def on_stop(t: int) -> Gen:
        """Served, the machine stopped: at ``KB_SECS`` the kernel's small arrays go back
        into the Python objects (SimPy holds the engine's state) and the same process goes
        on as ksgxd's generator; any other stop is not continued."""
        if int(co.clk[C_HB]) != 100 + K.KB_SECS:
            raise _DriverHandBack
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        fold_kernel(system, encl, secs, box[0])
        taken_over[0] = True
        return python_ksgxd()

    sv = Served(co, m, [task], [mutex], [waitq], step, mode="core", on_stop=on_stop)
    pending = -1
    rc = IDLE

    def on_core(budget: int) -> int:
        nonlocal pending
        co.clk[C_BUDGET] = budget
        while True:
            rc = drive(co, K.slots(box[0]), pending)
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

    def on_simpy(count: int) -> None:
        try:
            sv.run(count)
        except _DriverHandBack:
            raise NotImplementedError(
                "run_ksgxd_switching: a driver hand-back other than KB_SECS while served"
            ) from None

    stopped = False
    for count in switches:
        if sv.mode == "core":
            rc = on_core(int(co.clk[C_POPS]) + count)
            if rc not in (IDLE, HB_BUDGET):
                stopped = True
                break
            # served from now on: the Python objects hold the kernel's scalars
            fold_kernel(system, encl, secs, box[0])
            to_simpy(sv)
        else:
            on_simpy(count)
            if taken_over[0]:
                break
            if not to_core(sv):
                raise RuntimeError("run_ksgxd_switching: ksgxd alone left the core's regime")
            box[0], nblk[0] = refresh_layout(system, encl, box[0], nblk[0])
            take_small(system, encl, secs, box[0])
    if taken_over[0]:
        # ksgxd is the reference's generator again, on SimPy: to its sleep
        on_simpy(0)
        return KsgxdResult(K.KB_NAMES[K.KB_SECS] + ", continued in Python", "D", services=counts)
    if not stopped:
        if sv.mode == "simpy":
            on_simpy(0)
            if taken_over[0]:
                return KsgxdResult(
                    K.KB_NAMES[K.KB_SECS] + ", continued in Python", "D", services=counts
                )
            if not to_core(sv):
                raise RuntimeError("run_ksgxd_switching: ksgxd alone left the core's regime")
            rc = IDLE
            # (no take: ksgxd sleeps at K0 and the core runs nothing more)
        else:
            rc = on_core(0)
    ks = box[0]
    # the core holds the engine's state now (absolute ``elided``): fold as run_ksgxd does
    m.elided = int(co.clk[C_ELIDED])
    co.clk[C_ELIDED] = 0
    hb = int(co.clk[C_HB])
    secs_stop = rc == HANDED_BACK and hb == 100 + K.KB_SECS
    if secs_stop:
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
    _fold(system, [(encl, secs)], co, K.slots(ks))
    # ``_fold`` leaves CFS's idle list alone (``run_ksgxd`` ends with the CPUs it began
    # with); a move to SimPy rewrote it: as ``m.running`` says now
    rq = m.rq
    assert isinstance(rq, CfsRunQueue)  # _check_regime
    rq._idle = [c for c, r in enumerate(m.running) if r is None]
    pc = P_NAMES[int(co.tasks[0, T_PC])]
    if rc == IDLE:
        waitq._waiters = parked  # ksgxd asleep at K0: its generator's wait is that state
        return KsgxdResult(None, pc, services=counts)
    if secs_stop:
        # ksgxd is mid-resumption at page j's D step: its generator takes over now, as the
        # running process, and SimPy runs it to its sleep
        gen = python_ksgxd()
        ev = next(gen)
        task_proc = _process(m.env, gen, ev, True)
        sv.procs[0] = task_proc
        sv.mode = "simpy"
        sv.run()
        return KsgxdResult(K.KB_NAMES[K.KB_SECS] + ", continued in Python", pc, services=counts)
    why = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
    return KsgxdResult(why, pc, int(ks.kc[K.K_HB_PAGE]), services=counts)


__all__ = ["run_ksgxd_switching"]
