"""The simulated machine: logical CPUs, tasks, mutexes and wait queues on SimPy.

This is the whole execution engine. SimPy supplies simulated time and processes; this module
adds only what the kernel model needs to interleave correctly:

* ``Task`` - a schedulable thread (ksgxd, an ioctl caller, an enclave thread). Work costs
  simulated time *on a CPU*: ``yield from task.run(ns)`` first takes a CPU and keeps it until
  the task sleeps (a contended mutex, a wait queue) or is preempted. Which task gets a CPU and
  when a running one must yield is the scheduler's (:mod:`epcsim.engine.sched`: CFS by
  default, ``sched="fifo"`` for the original FIFO hand-out). Kernel code yields only at its
  preemption points (``cond_resched``, ``mutex_lock``'s might_sleep: PREEMPT_VOLUNTARY);
  ``run_user`` is user-mode time, which an interrupt preempts at once.
  A task whose CPU is free pays one SimPy event per ``run``; uncontended locks cost none.
* ``Mutex`` - ``struct mutex`` (e.g. ``encl->lock``), :mod:`epcsim.engine.mutex`: Linux's
  optimistic spinning, stealing and HANDOFF by default, ``mutex="fifo"`` for FIFO hand-over.
  Spinlocks (``sgx_reclaimer_lock``, the node free-list lock) are not modelled as waits:
  their critical sections are atomic in simulated time.
* ``WaitQueue`` - ``wait_event()``/``wake_up()`` (e.g. ``ksgxd_waitq``).

The model on top decides *what* each step costs (``Costs``) and *when* state changes: a
step charges its time first and applies its effect after, so another task never sees an
effect before the instant the real operation would have completed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from epcsim.engine.costs import Costs
from epcsim.engine.mutex import MUTEXES, Mutex
from epcsim.engine.sched import SCHEDULERS, CfsRunQueue, FifoRunQueue

Gen = Generator[Any, Any, Any]

__all__ = ["MUTEXES", "SCHEDULERS", "Gen", "Machine", "Mutex", "Task", "WaitQueue"]


class Machine:
    """Simulated time plus ``nr_cpus`` logical processors shared by a scheduler.

    ``sched`` is ``"cfs"`` (Linux's fair scheduler, the default) or ``"fifo"``;
    ``sched_slice_ns`` is the fixed slice of the ``"fifo"`` policy (CFS computes its own).
    ``mutex`` picks the ``Mutex`` flavour built on this machine: ``"linux"`` or ``"fifo"``.
    """

    def __init__(
        self,
        nr_cpus: int,
        costs: Costs | None = None,
        sched_slice_ns: int = 3_000_000,
        *,
        elide: bool = False,
        sched: str = "cfs",
        mutex: str = "linux",
    ):
        if not isinstance(nr_cpus, int) or isinstance(nr_cpus, bool) or nr_cpus < 1:
            raise ValueError(f"cpus: must be a positive integer, got {nr_cpus!r}")
        if sched not in SCHEDULERS:
            raise ValueError(f"sched: one of {', '.join(SCHEDULERS)}, got {sched!r}")
        if mutex not in MUTEXES:
            raise ValueError(f"mutex: one of {', '.join(MUTEXES)}, got {mutex!r}")
        self.env = simpy.Environment()
        #: the fast engine's event elision (``Task.run``): exact, see ``epcsim.fast``
        self.elide = elide
        self.elided = 0
        self.costs = costs or Costs()
        #: [ASSUMED] the fifo policy's slice: CFS's with a few runnable tasks (6 ms / 2)
        self.sched_slice_ns = sched_slice_ns
        self.nr_cpus = nr_cpus
        self.sched = sched
        self.mutex = mutex
        self.rq: CfsRunQueue | FifoRunQueue = (
            CfsRunQueue(self) if sched == "cfs" else FifoRunQueue(self, sched_slice_ns)
        )
        #: which task runs on each logical processor (None = idle)
        self.running: list[Task | None] = [None] * nr_cpus
        self.context_switches = 0
        #: tasks optimistically spinning on a mutex, and the mutex (engine.mutex)
        self.spinning: dict[Task, Mutex] = {}
        #: the fast engine's NOPAGE flood charger (``epcsim.fast.flood``); None otherwise
        self.flood: Any = None

    @property
    def now(self) -> int:
        return int(self.env._now)  # ``env.now`` without its property call (read per fault)

    def cpu_contended(self) -> bool:
        """Some runnable task waits for a CPU."""
        return self.rq.waiting() > 0

    def spawn(self, gen: Gen) -> simpy.Process:
        return self.env.process(gen)

    # -- preemption -----------------------------------------------------------------------
    def _resched(self, task: Task) -> None:
        """``resched_curr``: set need_resched; a user-mode task takes the interrupt now."""
        task._resched = True
        proc = task._user_proc
        if proc is not None:
            task._user_proc = None
            proc.interrupt("resched")
        elif task in self.spinning:
            self.spinning[task]._poke(task, self.costs.mutex_spin_poll)
        elif self.flood is not None and task in self.flood.parked:
            self.flood.wake(task)  # it notices at its next retry's mutex_lock

    def _rq_changed(self) -> None:
        """The run queue changed: a parked retrier's tick check may answer differently."""
        if self.flood is not None and self.flood.parked:
            self.flood.rq_changed()

    def _poke_spinners(self) -> None:
        """Every spinner re-checks its state (e.g. to start watching the tick)."""
        for task, mutex in list(self.spinning.items()):
            mutex._poke(task, 0)

    def _owner_off_cpu(self, task: Task) -> None:
        """``owner_on_cpu()`` turned false: spinners on a lock ``task`` owns notice it at
        their next poll."""
        for spinner, mutex in list(self.spinning.items()):
            if mutex.owner is task:
                mutex._poke(spinner, self.costs.mutex_spin_poll)


class Task:
    """A simulated thread. ``on_switch_out``/``on_switch_in`` let an enclave thread AEX when
    it loses its logical processor and ERESUME when it gets one back."""

    def __init__(self, machine: Machine, name: str, kernel: bool = False):
        self.m = machine
        self.name = name
        self.kernel = kernel
        self.cpu: int | None = None
        self.last_cpu = -1
        self.on_switch_out: Callable[[Task, int], None] | None = None
        self.on_switch_in: Callable[[Task, int], None] | None = None
        self.busy_ns = 0
        #: the last ``run`` step: when it ends and how long it is
        self.step_end: int | float = -1
        self.step_ns = 0
        #: when the scheduler last picked this task (start of its slice)
        self.slice_start = 0
        #: CFS virtual runtime, ns (CPU time received; all tasks are nice 0)
        self.vruntime = 0
        self.started = False
        self._resched = False  # TIF_NEED_RESCHED
        self._user_proc: simpy.Process | None = None  # set while in user mode (run_user)
        #: a signal sent to the task and not yet delivered (0: none); see ``send_signal``
        self.pending_signal = 0

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def send_signal(self, sig: int = 2) -> None:
        """Make a signal (default SIGINT) pending: ``signal_pending()`` is true until the task
        returns to user space, where it is delivered (``deliver_signal``)."""
        self.pending_signal = sig

    def signal_pending(self) -> bool:
        """``signal_pending(current)``: what interruptible kernel loops poll."""
        return self.pending_signal != 0

    def deliver_signal(self) -> int:
        """On the way back to user space: take the pending signal (0 if none)."""
        sig, self.pending_signal = self.pending_signal, 0
        return sig

    def _on_cpu(self, cpu: int) -> None:
        self.cpu = cpu
        self.slice_start = int(self.m.env.now)
        self.m.running[cpu] = self
        if self.on_switch_in is not None:
            self.on_switch_in(self, cpu)

    def _leave_cpu(self) -> int:
        """Leave the CPU: the AEX hook, vruntime accounting; returns the CPU left."""
        cpu = self.cpu
        assert cpu is not None
        m = self.m
        if self.on_switch_out is not None:
            self.on_switch_out(self, cpu)
        self.vruntime += int(m.env.now) - self.slice_start
        self.cpu = None
        self.last_cpu = cpu
        self._resched = False
        m.running[cpu] = None
        if m.spinning:
            m._owner_off_cpu(self)
        return cpu

    def acquire_cpu(self) -> Gen:
        """Become runnable (a wake-up) and wait until the scheduler gives this task a CPU."""
        if self.cpu is None:
            ev = self.m.rq.wake(self)
            if ev is not None:
                yield ev

    def release_cpu(self) -> None:
        """Stop being runnable (sleep or exit): the CPU goes to the next task."""
        if self.cpu is not None:
            cpu = self._leave_cpu()
            self.m.rq.release(self, cpu)

    def run(self, ns: int) -> Gen:
        """Spend ``ns`` of CPU time in kernel mode (taking a CPU first if the task has none).
        Kernel code is not preempted here: need_resched waits for a preemption point."""
        if self.cpu is None:
            yield from self.acquire_cpu()
        if ns > 0:
            self.busy_ns += ns
            m = self.m
            env = m.env
            end = env._now + ns
            # the last step, whose timeout a SimPy queue orders by when it began (a tie at
            # a parked NOPAGE retrier's decision instant: epcsim.fast.flood.lock_taken)
            self.step_end = end
            self.step_ns = ns
            if m.elide:
                # Fast engine: when no event is due up to and including now + ns, nothing
                # can run before this step ends, so advancing the clock in place is the same
                # as a timeout event (epcsim/fast/README.md says why the order is unchanged).
                # ``env.peek()`` inlined: this runs ~13 times per simulated fault.
                queue = env._queue
                if not queue or queue[0][0] > end:
                    env._now = end
                    m.elided += 1
                    return
            yield env.timeout(ns)

    def run_user(self, ns: int, moved: tuple[simpy.Event, int] | None = None) -> Gen:
        """Spend up to ``ns`` of CPU time in user mode, where an interrupt preempts the task at
        once (CFS wake-up preemption): the task leaves its CPU (``on_switch_out``: an enclave
        thread AEXes), waits to be picked again, and the call returns the ns actually run.
        ``moved`` = ``(timeout, t0)``: a user step begun at ``t0`` on the compiled core and
        moved here (``epcsim.fast.cosim.transfer``, which sets ``_user_proc``); it goes on
        from its wait on the step's timeout."""
        env = self.m.env
        if moved is None:
            if self.cpu is None:
                yield from self.acquire_cpu()
            if ns <= 0:
                return 0
            if self.m.elide:
                # Fast engine, as in ``run``: with no event due up to and including the
                # step's end, no task runs before it, so nothing can interrupt it either.
                end = env._now + ns
                if env.peek() > end:
                    env._now = end
                    self.busy_ns += ns
                    self.m.elided += 1
                    return ns
            if self.m.sched != "cfs":
                self.busy_ns += ns
                yield env.timeout(ns)
                return ns
            t0 = int(env.now)
            self._user_proc = env.active_process
            step: simpy.Event = env.timeout(ns)
        else:
            step, t0 = moved
        try:
            yield step
        except simpy.Interrupt:
            ran = int(env.now) - t0
            self.busy_ns += ran
            yield from self._schedule()
            return ran
        self._user_proc = None
        self.busy_ns += ns
        return ns

    def need_resched(self) -> bool:
        """TIF_NEED_RESCHED: set by a wake-up preemption, or by a tick once the task has run
        its slice while another task waits for a CPU."""
        if self.cpu is None:
            return False
        if self._resched:
            return True
        if self.m.rq.tick_resched(self):
            self._resched = True
            return True
        return False

    def _schedule(self) -> Gen:
        """``schedule()`` while runnable: the scheduler may give the CPU to another task."""
        ev = self.m.rq.yield_cpu(self)
        if ev is not None:
            yield ev

    def resched_due(self) -> bool:
        """Whether ``cond_resched()`` gives the CPU up now: ``need_resched`` without its
        side effect (setting the flag). ``False`` means ``cond_resched`` does nothing at
        all - no event, no state changed - which is what lets the compiled core's served
        machines go on past such a point inside one served step
        (``fast/driver/stream_ksgxd.Session.step``, session ``callcost``)."""
        return self.cpu is not None and (self._resched or self.m.rq.tick_resched(self))

    def cond_resched(self) -> Gen:
        """``cond_resched()``: give the CPU up if ``need_resched`` is set (``need_resched``
        inlined: a preemption point runs several times per simulated fault)."""
        if self.resched_due():
            self._resched = True
            yield from self._schedule()

    def sleep(self, event: simpy.Event) -> Gen:
        """Block on ``event`` without holding a CPU; run again on a CPU afterwards."""
        self.release_cpu()
        value = yield event
        yield from self.acquire_cpu()
        return value

    def lock(self, mutex: Mutex, moved: bool = False) -> Gen:
        """``mutex_lock()``: a might_sleep point, then the lock (see ``engine.mutex``).
        ``moved``: the task yielded its CPU at the might_sleep point on the compiled core
        and has a CPU again (``epcsim.fast.cosim.transfer_to_simpy``): the lock from after
        that point."""
        if not moved:
            if self.cpu is None:
                yield from self.acquire_cpu()
            if self.need_resched():  # cond_resched(), without its generator
                yield from self._schedule()
        flood = self.m.flood
        if mutex.owner is None and (flood is None or not flood.came_first(self, mutex)):
            mutex.owner = self  # the fast path: no event
            if mutex._waiters:
                mutex._fast_taken(self)
        else:
            yield from mutex._lock_slow(self)
        if flood is not None and flood.parked:
            flood.lock_taken(mutex)

    def unlock(self, mutex: Mutex) -> None:
        mutex._unlock(self)

    def exit(self) -> None:
        self.release_cpu()


class WaitQueue:
    """``wait_queue_head_t``: ``wait_event(cond)`` sleeps until ``wake_up()`` and cond holds."""

    def __init__(self, machine: Machine, name: str):
        self.m = machine
        self.name = name
        self._waiters: list[simpy.Event] = []

    def wait_event(self, task: Task, cond: Callable[[], bool]) -> Gen:
        while not cond():
            ev = self.m.env.event()
            self._waiters.append(ev)
            yield from task.sleep(ev)

    def wake_up(self) -> bool:
        """Wake every sleeper; returns whether anyone was sleeping."""
        if not self._waiters:
            return False
        waiters, self._waiters = self._waiters, []
        for ev in waiters:
            ev.succeed()
        return True
