"""CPU hand-out: which runnable task runs on which logical processor, and when it must yield.

Two policies share one small interface (``wake``, ``yield_cpu``, ``release``, ``tick_resched``)
that :class:`epcsim.engine.machine.Task` calls:

``sched="cfs"`` (the default) - the Completely Fair Scheduler (``kernel/sched/fair.c``) as a
kernel of the v6.0 era runs it (CFS was the fair class until EEVDF replaced it in 6.6; the
-EAGAIN reports of issue 8 come from v6.0 hardware):

* every task has a virtual runtime (``vruntime``): the CPU time it has had, in ns (all tasks
  are nice 0, so the weight factor is 1);
* a waking task goes to an idle CPU at once, as ``select_idle_sibling()`` finds one (its
  previous CPU if that is idle, else the lowest-numbered idle CPU);
* otherwise it waits in the run queue, and a CPU that becomes free runs the waiting task with
  the least vruntime (``pick_next_entity``); ties go to the one queued first;
* a waking task is placed at ``max(own vruntime, min_vruntime - sched_latency / 2)``
  (``place_entity`` with GENTLE_FAIR_SLEEPERS: a sleeper gets at most half a latency period
  of credit); a new task starts one slice after ``min_vruntime`` (START_DEBIT);
* a waking task preempts a running one when the running task's vruntime exceeds its own by more
  than ``sysctl_sched_wakeup_granularity`` (``check_preempt_wakeup`` /
  ``wakeup_preempt_entity``); the victim is the running task with the largest vruntime;
* the tick (``check_preempt_tick``) sets need_resched when the current task has run longer
  than its ideal slice (``sched_slice``: ``sched_latency / nr_running``, or ``nr_running *
  min_granularity`` past ``sched_nr_latency`` tasks), or - after the minimum granularity - when
  its vruntime is ahead of the queue's leftmost by more than that slice.

Tunables scale as ``SCHED_TUNABLESCALING_LOG`` does: factor ``1 + ilog2(min(ncpus, 8))`` on
``sched_latency`` (6 ms), ``sched_min_granularity`` (0.75 ms) and
``sched_wakeup_granularity`` (1 ms): 1 ms / 2 ms / 3 ms / 4 ms of wake-up granularity on 1 / 2
/ 4 / 8+ CPUs.

Preemption model - decision: **PREEMPT_VOLUNTARY**, the configuration of the common distro
kernels (Debian, Ubuntu generic, RHEL). need_resched set on a task running *kernel* code takes
effect only at its next preemption point: ``cond_resched()``, ``might_sleep()`` (so every
``mutex_lock``), a return to user space, or going to sleep. A task running *user-mode* code (an
enclave thread's accesses, :meth:`Task.run_user`) is preempted at once: the reschedule IPI or
the timer interrupt is an AEX, taken through the thread's ``on_switch_out`` hook.

Simplifications (each a deliberate choice, named here so nobody mistakes it for Linux):

* **One global run queue** instead of per-CPU queues with load balancing: a waiting task runs
  on whichever CPU frees up first, as if the balancer were perfect and instant. There is one
  ``min_vruntime``, the minimum over the running tasks and the queue's leftmost (monotonic).
  The ``nr_running`` a slice is computed from is one CPU's share: ``1 + ceil(waiting/ncpus)``.
* The victim of a wake-up preemption is the running task with the largest vruntime (a global
  queue has no "this CPU"); ``wake_affine`` and the next/last buddies are not modelled.
* The **tick** is evaluated lazily: a task asks at its preemption points whether a tick
  (every ``TICK_NS``, HZ=250 [ASSUMED]: Debian and Ubuntu generic kernels) since it was picked
  would have set need_resched, using the run queue as it is now; once true it stays set until
  the task yields, as TIF_NEED_RESCHED does. An enclave thread reaches a preemption point after
  every access quantum (at most 10 us), a spinning mutex contender re-polls at every tick while
  anyone waits for a CPU.
* Context switches cost no simulated time here; the cost of a wake-up is charged where the
  model knows one happens (``Costs.wakeup`` for ksgxd, ``Costs.mutex_wakeup`` for a woken
  mutex waiter).
* No nice levels, no cgroup (group) scheduling, no bandwidth control, no NUMA balancing.

What this changes in the seed scenario (issue 8): on one CPU without direct reclaim, ksgxd,
woken when the free pool falls below SGX_NR_LOW_PAGES, is placed half a latency (3 ms) behind
the ioctl task - more than the 1 ms wake-up granularity - so it preempts the ioctl at its next
``mutex_lock`` and runs until the pool is back at SGX_NR_HIGH_PAGES: the trim's first call
never finds the pool empty and completes (0 -EAGAIN), where FIFO CPUs made ksgxd wait for
the ioctl's whole slice and the loop returned -EAGAIN 22 times per page (16M EPC).

``sched="fifo"`` keeps the engine's original policy for comparison: free CPUs handed out in
FIFO order, a task yields a contended CPU at ``cond_resched`` only after a fixed
``sched_slice``, and there is no wake-up preemption.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import simpy

    from epcsim.engine.machine import Machine, Task

#: the scheduling policies ``Machine(sched=...)`` accepts
SCHEDULERS = ("cfs", "fifo")

#: ``sysctl_sched_latency`` before scaling (6 ms)
SCHED_LATENCY_NS = 6_000_000
#: ``sysctl_sched_min_granularity`` before scaling (0.75 ms)
SCHED_MIN_GRANULARITY_NS = 750_000
#: ``sysctl_sched_wakeup_granularity`` before scaling (1 ms)
SCHED_WAKEUP_GRANULARITY_NS = 1_000_000
#: ``sched_nr_latency``: past this many tasks the period grows with nr_running
SCHED_NR_LATENCY = 8
#: [ASSUMED] CONFIG_HZ=250 (Debian, Ubuntu generic): one scheduler tick every 4 ms
TICK_NS = 4_000_000


def tunable_factor(nr_cpus: int) -> int:
    """``get_update_sysctl_factor()`` with SCHED_TUNABLESCALING_LOG: 1 + ilog2(min(cpus, 8))."""
    return 1 + (min(nr_cpus, 8).bit_length() - 1)


class FifoRunQueue:
    """The original policy: CPUs handed out FIFO, fixed slice, no wake-up preemption."""

    def __init__(self, machine: Machine, sched_slice_ns: int):
        self.m = machine
        self.sched_slice_ns = sched_slice_ns
        self._free_cpus: deque[int] = deque(range(machine.nr_cpus))
        self._waiters: deque[tuple[Task, simpy.Event]] = deque()

    def waiting(self) -> int:
        return len(self._waiters)

    def wake(self, task: Task) -> simpy.Event | None:
        if self._free_cpus:
            task._on_cpu(self._free_cpus.popleft())
            return None
        ev = self.m.env.event()
        self._waiters.append((task, ev))
        self.m._rq_changed()
        return ev

    def release(self, task: Task, cpu: int) -> None:
        if self._waiters:
            nxt, ev = self._waiters.popleft()
            self.m._rq_changed()
            nxt._on_cpu(cpu)
            self.m.context_switches += 1
            ev.succeed()
        else:
            self._free_cpus.append(cpu)

    def yield_cpu(self, task: Task) -> simpy.Event | None:
        cpu = task._leave_cpu()
        self.release(task, cpu)
        return self.wake(task)

    def tick_resched(self, task: Task, at: int | None = None) -> bool:
        """``at``: evaluate at that instant with the queue as it is now (default: now)."""
        now = int(self.m.env.now) if at is None else at
        return bool(self._waiters) and now - task.slice_start >= self.sched_slice_ns

    def next_tick(self, task: Task, at: int | None = None) -> int:
        """When ``tick_resched`` can next turn true for ``task`` (after ``at``)."""
        now = int(self.m.env.now) if at is None else at
        return max(now + 1, task.slice_start + self.sched_slice_ns)


class CfsRunQueue:
    """CFS over one global run queue (see the module docstring for what is simplified)."""

    def __init__(self, machine: Machine):
        self.m = machine
        factor = tunable_factor(machine.nr_cpus)
        self.latency_ns = SCHED_LATENCY_NS * factor
        self.min_granularity_ns = SCHED_MIN_GRANULARITY_NS * factor
        self.wakeup_granularity_ns = SCHED_WAKEUP_GRANULARITY_NS * factor
        self.tick_ns = TICK_NS
        self.min_vruntime = 0
        #: runnable tasks waiting for a CPU: (vruntime, seq, task, event), least vruntime first
        self._rq: list[tuple[int, int, Task, simpy.Event]] = []
        self._seq = 0
        self._idle: list[int] = list(range(machine.nr_cpus))  # sorted
        self._nonempty_since = 0
        #: wake-up preemptions decided (for tests and reports)
        self.wakeup_preemptions = 0

    def waiting(self) -> int:
        return len(self._rq)

    # -- accounting ------------------------------------------------------------------------
    def vruntime_now(self, task: Task) -> int:
        """``update_curr``: a running task's vruntime includes the time since it was picked."""
        if task.cpu is None:
            return task.vruntime
        return task.vruntime + int(self.m.env.now) - task.slice_start

    def _update_min_vruntime(self) -> int:
        best = self._rq[0][0] if self._rq else None
        for t in self.m.running:
            if t is not None:
                v = self.vruntime_now(t)
                if best is None or v < best:
                    best = v
        if best is not None and best > self.min_vruntime:
            self.min_vruntime = best
        return self.min_vruntime

    def sched_slice(self, nr_running: int) -> int:
        """``sched_slice`` for equal weights: the period shared by ``nr_running`` tasks."""
        nr = max(1, nr_running)
        period = self.latency_ns if nr <= SCHED_NR_LATENCY else nr * self.min_granularity_ns
        return period // nr

    def _nr_running_here(self, extra: int = 0) -> int:
        n = self.m.nr_cpus
        return 1 + -(-(len(self._rq) + extra) // n)

    # -- enqueue / pick -------------------------------------------------------------------
    def _enqueue(self, task: Task) -> simpy.Event:
        ev = self.m.env.event()
        if not self._rq:
            self._nonempty_since = int(self.m.env.now)
        self._seq += 1
        heapq.heappush(self._rq, (task.vruntime, self._seq, task, ev))
        self.m._rq_changed()
        return ev

    def _pick(self, cpu: int) -> None:
        if self._rq:
            _, _, nxt, ev = heapq.heappop(self._rq)
            self.m._rq_changed()
            nxt._on_cpu(cpu)
            self.m.context_switches += 1
            ev.succeed()
        else:
            bisect.insort(self._idle, cpu)

    def wake(self, task: Task) -> simpy.Event | None:
        """``try_to_wake_up`` / ``wake_up_new_task``: place, then an idle CPU or the queue."""
        min_vr = self._update_min_vruntime()
        idle = self._idle
        if not task.started:
            task.started = True
            nr = 1 if idle else self._nr_running_here(1)
            task.vruntime = max(task.vruntime, min_vr + self.sched_slice(nr))  # START_DEBIT
        else:
            task.vruntime = max(task.vruntime, min_vr - self.latency_ns // 2)
        if idle:
            cpu = task.last_cpu
            i = bisect.bisect_left(idle, cpu)
            if cpu >= 0 and i < len(idle) and idle[i] == cpu:
                del idle[i]
            else:
                cpu = idle.pop(0)
            task._on_cpu(cpu)
            return None
        ev = self._enqueue(task)
        self._check_preempt_wakeup(task)
        return ev

    def _check_preempt_wakeup(self, task: Task) -> None:
        victim: Task | None = None
        worst = 0
        for t in self.m.running:
            if t is not None:
                v = self.vruntime_now(t)
                if victim is None or v > worst:
                    victim, worst = t, v
        if victim is not None and worst - task.vruntime > self.wakeup_granularity_ns:
            self.wakeup_preemptions += 1
            self.m._resched(victim)
        elif self.m.spinning:
            self.m._poke_spinners()  # someone waits for a CPU: spinners watch the tick now

    def release(self, task: Task, cpu: int) -> None:
        """The task sleeps or exits: the CPU runs the queue's leftmost, or goes idle."""
        self._pick(cpu)

    def yield_cpu(self, task: Task) -> simpy.Event | None:
        """``schedule()`` from a preemption point: the task stays runnable, re-queued with its
        vruntime; it keeps the CPU if it is still the leftmost (a new slice starts)."""
        rq = self._rq
        vr = self.vruntime_now(task)
        if not rq or vr < rq[0][0]:
            task.vruntime = vr
            task.slice_start = int(self.m.env.now)
            task._resched = False
            return None
        cpu = task._leave_cpu()
        ev = self._enqueue(task)
        self._pick(cpu)
        return ev

    def tick_resched(self, task: Task, at: int | None = None) -> bool:
        """Would a tick since the task was picked have set need_resched (``check_preempt_tick``)?

        ``at``: evaluate at that instant with the queue as it is now (default: now).
        Every spinner and parked retrier asks at each of its re-checks, so the slice
        (``sched_slice(_nr_running_here())``) is computed inline."""
        rq = self._rq
        if not rq:
            return False
        now = int(self.m.env._now) if at is None else at
        tick = now - now % self.tick_ns
        slice_start = task.slice_start
        if tick < self._nonempty_since or tick <= slice_start:
            return False
        nr = 1 + -(-len(rq) // self.m.nr_cpus)  # _nr_running_here()
        # sched_slice(nr): latency / nr, or nr * min_granularity / nr past sched_nr_latency
        ideal = self.latency_ns // nr if nr <= SCHED_NR_LATENCY else self.min_granularity_ns
        delta = tick - slice_start
        if delta > ideal:
            return True
        if delta < self.min_granularity_ns:
            return False
        return task.vruntime + delta - rq[0][0] > ideal

    def next_tick(self, task: Task, at: int | None = None) -> int:
        """The next tick (after ``at``, default now), when ``tick_resched`` is evaluated again."""
        now = int(self.m.env.now) if at is None else at
        return now - now % self.tick_ns + self.tick_ns
