"""The simulated machine: logical CPUs, tasks, mutexes and wait queues on SimPy.

This is the whole execution engine. SimPy supplies simulated time and processes; this module
adds only what the kernel model needs to interleave correctly:

* ``Task`` - a schedulable thread (ksgxd, an ioctl caller, an enclave thread). Work costs
  simulated time *on a CPU*: ``yield from task.run(ns)`` first takes a CPU (FIFO, like a run
  queue with equal priorities) and keeps it until the task sleeps (mutex contention, a wait
  queue) or reaches a ``cond_resched()`` point with ``need_resched`` set: another task is
  waiting for a CPU and this one has used up its slice (``sched_slice_ns``, the CFS/EEVDF
  time slice; wake-up preemption is not modelled).
  A task whose CPU is free pays one SimPy event per ``run``; uncontended locks cost none.
* ``Mutex`` - ``struct mutex`` (e.g. ``encl->lock``): a sleeping lock, FIFO hand-over.
  Spinlocks (``sgx_reclaimer_lock``, the node free-list lock) are not modelled as waits:
  their critical sections are atomic in simulated time.
* ``WaitQueue`` - ``wait_event()``/``wake_up()`` (e.g. ``ksgxd_waitq``).

The model on top decides *what* each step costs (``Costs``) and *when* state changes: a
step charges its time first and applies its effect after, so another task never sees an
effect before the instant the real operation would have completed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import simpy

from epcsim.engine.costs import Costs

Gen = Generator[Any, Any, Any]


class Machine:
    """Simulated time plus ``nr_cpus`` logical processors handed out FIFO."""

    def __init__(
        self,
        nr_cpus: int,
        costs: Costs | None = None,
        sched_slice_ns: int = 3_000_000,
        *,
        elide: bool = False,
    ):
        if not isinstance(nr_cpus, int) or isinstance(nr_cpus, bool) or nr_cpus < 1:
            raise ValueError(f"cpus: must be a positive integer, got {nr_cpus!r}")
        self.env = simpy.Environment()
        #: the fast engine's event elision (``Task.run``): exact, see ``epcsim.fast``
        self.elide = elide
        self.elided = 0
        self.costs = costs or Costs()
        #: [ASSUMED] CFS/EEVDF slice with a few runnable tasks (sched_latency 6 ms / 2)
        self.sched_slice_ns = sched_slice_ns
        self.nr_cpus = nr_cpus
        self._free_cpus: deque[int] = deque(range(nr_cpus))
        self._cpu_waiters: deque[tuple[Task, simpy.Event]] = deque()
        #: which task runs on each logical processor (None = idle)
        self.running: list[Task | None] = [None] * nr_cpus
        self.context_switches = 0

    @property
    def now(self) -> int:
        return int(self.env.now)

    def cpu_contended(self) -> bool:
        return bool(self._cpu_waiters)

    # -- CPU hand-out ---------------------------------------------------------------------
    def _get_cpu(self, task: Task) -> simpy.Event | None:
        if self._free_cpus:
            task._on_cpu(self._free_cpus.popleft())
            return None
        ev = self.env.event()
        self._cpu_waiters.append((task, ev))
        return ev

    def _put_cpu(self, cpu: int) -> None:
        self.running[cpu] = None
        if self._cpu_waiters:
            task, ev = self._cpu_waiters.popleft()
            task._on_cpu(cpu)
            self.context_switches += 1
            ev.succeed()
        else:
            self._free_cpus.append(cpu)

    def spawn(self, gen: Gen) -> simpy.Process:
        return self.env.process(gen)


class Task:
    """A simulated thread. ``on_switch_out``/``on_switch_in`` let an enclave thread AEX when
    it loses its logical processor and ERESUME when it gets one back."""

    def __init__(self, machine: Machine, name: str, kernel: bool = False):
        self.m = machine
        self.name = name
        self.kernel = kernel
        self.cpu: int | None = None
        self.on_switch_out: Callable[[Task, int], None] | None = None
        self.on_switch_in: Callable[[Task, int], None] | None = None
        self.busy_ns = 0
        self.slice_start = 0

    def _on_cpu(self, cpu: int) -> None:
        self.cpu = cpu
        self.slice_start = self.m.env.now
        self.m.running[cpu] = self
        if self.on_switch_in is not None:
            self.on_switch_in(self, cpu)

    def acquire_cpu(self) -> Gen:
        if self.cpu is None:
            ev = self.m._get_cpu(self)
            if ev is not None:
                yield ev

    def release_cpu(self) -> None:
        if self.cpu is not None:
            cpu = self.cpu
            if self.on_switch_out is not None:
                self.on_switch_out(self, cpu)
            self.cpu = None
            self.m._put_cpu(cpu)

    def run(self, ns: int) -> Gen:
        """Spend ``ns`` of CPU time (taking a CPU first if the task has none)."""
        if self.cpu is None:
            yield from self.acquire_cpu()
        if ns > 0:
            self.busy_ns += ns
            m = self.m
            if m.elide:
                # Fast engine: when no event is due up to and including now + ns, nothing
                # can run before this step ends, so advancing the clock in place is the same
                # as a timeout event (epcsim.fast.elide explains why the order is unchanged).
                env = m.env
                end = env._now + ns
                if env.peek() > end:
                    env._now = end
                    m.elided += 1
                    return
            yield m.env.timeout(ns)

    def need_resched(self) -> bool:
        """Another task waits for a CPU and this one has run for its whole slice."""
        m = self.m
        return (
            self.cpu is not None
            and m.cpu_contended()
            and m.env.now - self.slice_start >= m.sched_slice_ns
        )

    def cond_resched(self) -> Gen:
        """``cond_resched()``: give the CPU up if ``need_resched`` is set."""
        if self.need_resched():
            self.release_cpu()
            yield from self.acquire_cpu()

    def sleep(self, event: simpy.Event) -> Gen:
        """Block on ``event`` without holding a CPU; run again on a CPU afterwards."""
        self.release_cpu()
        value = yield event
        yield from self.acquire_cpu()
        return value

    def lock(self, mutex: Mutex) -> Gen:
        """``mutex_lock()``: a might_sleep point, then sleep until the mutex is handed over."""
        yield from self.cond_resched()
        ev = mutex._acquire(self)
        if ev is not None:
            t0 = self.m.env.now
            yield from self.sleep(ev)
            mutex.wait_ns += self.m.env.now - t0

    def unlock(self, mutex: Mutex) -> None:
        mutex._release(self)

    def exit(self) -> None:
        self.release_cpu()


class Mutex:
    """A sleeping lock with FIFO hand-over (``struct mutex``)."""

    def __init__(self, machine: Machine, name: str):
        self.m = machine
        self.name = name
        self.owner: Task | None = None
        self._waiters: deque[tuple[Task, simpy.Event]] = deque()
        self.contended = 0
        self.wait_ns = 0

    def _acquire(self, task: Task) -> simpy.Event | None:
        if self.owner is None:
            self.owner = task
            return None
        if self.owner is task:
            raise RuntimeError(f"{task.name}: recursive lock of {self.name}")
        self.contended += 1
        ev = self.m.env.event()
        self._waiters.append((task, ev))
        return ev

    def _release(self, task: Task) -> None:
        if self.owner is not task:
            raise RuntimeError(f"{task.name}: unlock of {self.name} held by {self.owner}")
        if self._waiters:
            nxt, ev = self._waiters.popleft()
            self.owner = nxt
            ev.succeed()
        else:
            self.owner = None

    @property
    def locked(self) -> bool:
        return self.owner is not None


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
