"""``struct mutex`` (``kernel/locking/mutex.c``), e.g. ``encl->lock``.

``mutex="linux"`` (the default) models what decides *who gets the lock next* in Linux:

* **fast path**: a free lock is taken at once (the ``owner`` cmpxchg) - no SimPy event; a
  free lock whose wait list is not empty is taken the same way by the slow path's first
  trylock, which is what makes stealing possible;
* **optimistic spinning** (``mutex_optimistic_spin``, CONFIG_MUTEX_SPIN_ON_OWNER): a contender
  whose owner is running on a CPU keeps its own CPU and polls, queued on the OSQ (only the
  OSQ head watches the owner); it neither joins the wait list nor sets WAITERS. It stops when
  the owner leaves its CPU (``owner_on_cpu``) or it needs to reschedule, noticing either at
  its next poll (``Costs.mutex_spin_poll`` later). A spinner takes a released lock only if
  the lock stays free for ``Costs.mutex_pickup`` - the releaser re-locking sooner keeps it;
* **sleeping**: otherwise the contender joins the FIFO wait list (WAITERS) and sleeps;
* **unlock** releases the lock - no hand-over - and wakes the first waiter, which pays
  ``Costs.mutex_wakeup`` before it runs; the releasing task or a spinner can take the lock
  meanwhile (**stealing**);
* **HANDOFF**: a woken first waiter that finds the lock taken again sets HANDOFF
  (``__mutex_trylock_or_handoff``) and spins on the owner if it is running, else sleeps; the
  next unlock passes ownership straight to it (``__mutex_handoff``, PICKUP), so after setting
  HANDOFF it waits for at most one more critical section.

Not modelled: ``ww_mutex``, ``vcpu_is_preempted``, lockdep, interruptible/killable waits
(``encl->lock`` is taken with plain ``mutex_lock``), and the spin on ``wait_lock`` (a spinlock,
atomic in simulated time here). A non-head OSQ spinner waits for the head, then re-checks.

``mutex="fifo"`` keeps the engine's original lock for comparison: no spinning, the unlock
hands the lock to the first sleeping waiter, so contenders strictly alternate.

What this changes in the seed scenario (issue 8): a task that releases the lock and takes it
again sooner than ``mutex_pickup`` keeps it against any spinner, however long the spinner has
waited - HANDOFF protects only a waiter that slept. Without direct reclaim, the -EAGAIN retry
loop does exactly that when its round trip (return to user space, a new ioctl, up to
``mutex_lock``) is shorter than the pick-up: ksgxd, spinning on another CPU because the ioctl
task is always running, never gets ``encl->lock``, never frees a page, and every call
returns -EAGAIN at once - a livelock (the demo's runtime gives up after
``demo.MAX_STALLED_CALLS`` calls without progress; ``tests/engine/test_livelock.py``). It
needs a round trip under 150 ns, shorter than a real one with today's syscall mitigations;
with a longer one ksgxd picks the lock up at each -EAGAIN (and at its own gaps of more than
150 ns: the age check, the PTE zap, the batch start), and the loop completes. Inside ksgxd's
EWB phase the gap between its unlock and its next lock is zero, so a spinning fault or ioctl
waits for the whole phase.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import simpy

    from epcsim.engine.machine import Gen, Machine, Task

#: the mutex flavours ``Machine(mutex=...)`` accepts
MUTEXES = ("linux", "fifo")


class Mutex:
    """A sleeping lock. ``Mutex(machine, name)`` builds the machine's flavour
    (``LinuxMutex`` or ``FifoMutex``). Counters: ``contended`` (acquisitions that found the
    lock taken), ``wait_ns`` (time from contention to acquisition, spinning included),
    ``steals`` (a free lock taken while another task was on the wait list), ``handoffs``,
    ``spin_acquired``. ``trace`` (``None`` = off) collects ``(ns, event, task name)``."""

    def __new__(cls, machine: Machine, name: str) -> Any:
        if cls is Mutex:
            cls = LinuxMutex if machine.mutex == "linux" else FifoMutex
        return object.__new__(cls)

    def __init__(self, machine: Machine, name: str):
        self.m = machine
        self.name = name
        self.owner: Task | None = None
        self._waiters: deque[Any] = deque()
        self.contended = 0
        self.wait_ns = 0
        self.steals = 0
        self.handoffs = 0
        self.spin_acquired = 0
        self.trace: list[tuple[int, str, str]] | None = None

    @property
    def locked(self) -> bool:
        return self.owner is not None

    def _log(self, event: str, task: Task) -> None:
        if self.trace is not None:
            self.trace.append((int(self.m.env.now), event, task.name))

    def _fast_taken(self, task: Task) -> None:
        """The fast path (``Task.lock``) took a free lock that has sleepers: a steal."""
        self.steals += 1
        self._log("steal", task)

    def _lock_slow(self, task: Task) -> Gen:
        raise NotImplementedError

    def _unlock(self, task: Task) -> None:
        raise NotImplementedError

    def _poke(self, task: Task, delay: int) -> None:
        """A spinner re-checks the lock ``delay`` ns from now (engine.machine calls this)."""

    def idle(self) -> bool:
        """Free, nobody waiting or spinning, not traced: ``Task.lock`` takes it on the fast
        path and ``unlock`` only frees it. The fast engine's batched paths run a whole run of
        lock/unlock pairs at once only then (see ``released``)."""
        return self.owner is None and not self._waiters and self.trace is None

    def released(self, now: int) -> None:
        """The state a fast-path lock then ``_unlock`` at ``now`` leaves on an idle lock."""

    def _check_owner(self, task: Task) -> None:
        if self.owner is task:
            raise RuntimeError(f"{task.name}: recursive lock of {self.name}")


class FifoMutex(Mutex):
    """The original lock: sleep at once when taken; the unlock hands it to the first waiter."""

    def _lock_slow(self, task: Task, moved: tuple[int, simpy.Event | None] | None = None) -> Gen:
        """``moved`` = ``(t0, ev)``: a sleep on the wait list begun at ``t0`` on the compiled
        core and moved here (``epcsim.fast.cosim.transfer``), queued (or handed the lock
        already) and waiting on ``ev``; ``ev`` None: that event was processed and the task
        is taking a CPU. The acquisition goes on from there as ``task.sleep``'s tail."""
        if moved is None:
            self._check_owner(task)
            self.contended += 1
            ev = self.m.env.event()
            self._waiters.append((task, ev))
            self._log("sleep", task)
            t0 = self.m.env.now
            yield from task.sleep(ev)
        else:
            t0, pending = moved
            if pending is not None:
                yield pending
            yield from task.acquire_cpu()
        self.wait_ns += int(self.m.env.now - t0)
        self._log("handoff", task)

    def _unlock(self, task: Task) -> None:
        if self.owner is not task:
            raise RuntimeError(f"{task.name}: unlock of {self.name} held by {self.owner}")
        self._log("unlock", task)
        if self._waiters:
            nxt, ev = self._waiters.popleft()
            self.owner = nxt
            self.handoffs += 1
            ev.succeed()
        else:
            self.owner = None


#: ``LinuxMutex._sleeping``'s phases (its local ``at``; the compiled core's ``LS_*`` map
#: onto them, ``epcsim.fast.cosim.transfer_lsleep``)
AFTER_SPIN = 1  #: after the OSQ spin: ``_schedule`` if need_resched
SCHED1 = 2  #: after that ``_schedule``: the trylock, else onto the wait list
ASLEEP = 3  #: asleep on ``w.ev`` (``Task.sleep``: the wait, then its CPU again)
WOKEN = 4  #: woken, on a CPU: ``run(mutex_wakeup)`` next
WAKEUP = 5  #: in ``run(mutex_wakeup)``, then handed? free? HANDOFF, the waiter's spin?
WSPIN = 6  #: the first waiter's spin (``_spin(task, w)``)
AFTER_WSPIN = 7  #: after it: ``_schedule`` if need_resched
SCHED2 = 8  #: after that ``_schedule``: handed? free? else asleep again


class _Waiter:
    """An entry of ``lock->wait_list``: stays queued from the first sleep to the acquisition."""

    __slots__ = ("ev", "task")

    def __init__(self, task: Task):
        self.task = task
        self.ev: simpy.Event | None = None  # pending while the waiter sleeps


class _Spinner:
    """A spinner's wait: the event it waits on, which wait that is (``gen``), OSQ or not."""

    __slots__ = ("ev", "gen", "osq")

    def __init__(self, osq: bool):
        self.ev: simpy.Event | None = None
        self.gen = 0
        self.osq = osq


class LinuxMutex(Mutex):
    """Linux's mutex: spinning, stealing, HANDOFF (see the module docstring)."""

    def __init__(self, machine: Machine, name: str):
        super().__init__(machine, name)
        self.handoff = False  # MUTEX_FLAG_HANDOFF
        self._free_since = 0  # when the lock was last released (not handed off)
        self._handed_at = 0  # when it was last handed to a waiter (PICKUP)
        self._freed_from: int | float = 0  # when the last releaser's last step began
        self._osq: list[Task] = []  # optimistic spinners, head first
        self._spin_ev: dict[Task, _Spinner] = {}

    # -- acquisition ---------------------------------------------------------------------
    def _take(self, task: Task) -> None:
        """Trylock of a free lock."""
        self.owner = task
        ws = self._waiters
        if ws and ws[0].task is not task:
            self.steals += 1
            self._log("steal", task)

    def _can_spin(self, task: Task) -> bool:
        """``mutex_can_spin_on_owner``: the owner runs on a CPU and we need not reschedule."""
        owner = self.owner
        return owner is not None and owner.cpu is not None and not task.need_resched()

    def _lock_slow(self, task: Task, moved: tuple[int, _Spinner, int] | None = None) -> Gen:
        """``moved`` = ``(t0, rec, spin_t0)``: an OSQ spin moved in from the compiled core
        (``epcsim.fast.cosim.transfer``), already registered and waiting on ``rec.ev``; the
        acquisition goes on from there as if it had begun here at ``t0``. After a spin that
        did not get the lock, the sleeping half (``_sleeping``)."""
        m = self.m
        env = m.env
        if moved is None:
            self._check_owner(task)
            self.contended += 1
            t0 = env.now
            # ``_can_spin``, or the lock released at this very instant after this task found
            # it held (a parked NOPAGE retrier's decision, epcsim.fast.flood.came_first): it
            # spins, and takes the lock ``mutex_pickup`` after the release if it stays free
            late = self.owner is None
            can_spin = not task.need_resched() if late else self._can_spin(task)
            spun = can_spin and (yield from self._spin(task, None))
        else:
            t0, rec, spin_t0 = moved
            spun = yield from self._spin(task, None, (rec, spin_t0))
        if spun:
            self.wait_ns += int(env.now - t0)
            return
        yield from self._sleeping(task, t0)

    def _sleeping(
        self, task: Task, t0: int | float, at: int = AFTER_SPIN, w: _Waiter | None = None,
        moved: Any = None,
    ) -> Gen:  # fmt: skip
        """``_lock_slow`` after the OSQ spin: ``_schedule`` if need_resched, the trylock,
        the wait list and the wait loop, to the acquisition (``wait_ns`` from ``t0``).

        ``at`` is the phase the generator is in (``AFTER_SPIN`` ... ``SCHED2``, this module's
        constants), kept in the local ``at`` as it goes: the compiled core's moves read it
        (``epcsim.fast.cosim.transfer_lsleep``) and enter here at a phase with ``w`` (the
        task's entry of the wait list, past ``SCHED1``) and ``moved`` - ``ASLEEP``: asleep
        on ``w.ev`` (pending, or triggered and its wake-up queued); ``WOKEN``: woken, a CPU
        taken; ``WAKEUP``: ``run(mutex_wakeup)`` under way, ``moved`` its timeout;
        ``WSPIN``: the first waiter's spin, ``moved`` = ``(rec, spin t0)`` as ``_spin``'s;
        ``SCHED1``/``SCHED2``: after the ``_schedule`` before the wait list or the loop's.
        The steps and their events are the same whichever way in."""
        m = self.m
        env = m.env
        if at == AFTER_SPIN:
            at = SCHED1
            if task.need_resched():  # fell out of the spin to reschedule: do it before sleeping
                yield from task._schedule()
        if at == SCHED1:
            if self.owner is None:  # the trylock under wait_lock
                self._take(task)
                self.wait_ns += int(env.now - t0)
                return
            w = _Waiter(task)
            self._waiters.append(w)
            at = ASLEEP
        assert w is not None
        costs = m.costs
        while True:
            if at == ASLEEP:
                if w.ev is None:  # a new sleep (moved in: asleep on ``w.ev`` already)
                    w.ev = env.event()
                    self._log("sleep", task)
                yield from task.sleep(w.ev)
                at = WOKEN
            if at == WOKEN:
                w.ev = None
                at = WAKEUP
                yield from task.run(costs.mutex_wakeup)
            elif at == WAKEUP:  # moved in with its step under way
                yield moved
            if at == WAKEUP:
                if self.owner is task:  # handed off while asleep
                    self._log("handoff", task)
                    break
                first = self._waiters[0] is w
                if self.owner is None:
                    self._take(task)
                    break
                if first and not self.handoff:
                    self.handoff = True
                    self._log("handoff_flag", task)
                at = WSPIN if first and self._can_spin(task) else AFTER_WSPIN
                moved = None
            if at == WSPIN:
                if (yield from self._spin(task, w, moved)):
                    break
                at = AFTER_WSPIN
            if at == AFTER_WSPIN:
                at = SCHED2
                if task.need_resched():
                    yield from task._schedule()
            if self.owner is task:
                self._log("handoff", task)
                break
            if self.owner is None:
                self._take(task)
                break
            at = ASLEEP
        self._waiters.remove(w)
        self.wait_ns += int(env.now - t0)

    def _spin(
        self, task: Task, waiter: _Waiter | None, moved: tuple[_Spinner, int] | None = None
    ) -> Gen:
        """Spin with the CPU held until the lock is ours (True) or spinning must stop (False).

        Event-driven: the spinner waits for a poke (a release, its owner leaving the CPU, its
        own need_resched, a tick while some task waits for a CPU) and then re-checks; a
        timed poke that would find nothing new is answered without resuming it
        (``_fire``). ``moved`` = ``(rec, t0)``: a spin begun at ``t0`` on the compiled core
        and moved here (``epcsim.fast.cosim.transfer``), registered in ``spinning``,
        ``_spin_ev`` and the OSQ already; it goes on from its wait on ``rec.ev``."""
        m = self.m
        env = m.env
        osq = waiter is None
        if moved is None:
            if osq:
                self._osq.append(task)
            m.spinning[task] = self
            rec = _Spinner(osq)
            self._spin_ev[task] = rec
            self._log("spin", task)
            t0 = int(env.now)
        else:
            rec, t0 = moved
        got = False
        try:
            if moved is not None:
                yield rec.ev
            while True:
                now = int(env.now)
                wake_at: int | None = None
                owner = self.owner
                if task.need_resched():
                    return False
                if osq and self._osq[0] is not task:
                    pass  # queued on the OSQ behind another spinner
                elif owner is task:  # handed to this waiter: pick it up
                    pickup = m.costs.mutex_pickup
                    if now - self._handed_at >= pickup:
                        self._log("handoff", task)
                        got = True
                        return True
                    wake_at = self._handed_at + pickup
                elif owner is None:
                    pickup = m.costs.mutex_pickup
                    free_since = self._free_since
                    if m.flood is not None and m.flood.parked:
                        # the fast engine's parked NOPAGE retriers take and release the
                        # lock at their retries' instants too (epcsim.fast.flood)
                        free_since = m.flood.free_since(self, free_since, now)
                    if now - free_since >= pickup:
                        self._take(task)
                        self.spin_acquired += 1
                        self._log("spin_acquire", task)
                        got = True
                        return True
                    wake_at = free_since + pickup
                elif owner.cpu is None:
                    return False
                if m.rq.waiting():  # m.cpu_contended()
                    tick = m.rq.next_tick(task)
                    wake_at = tick if wake_at is None else min(wake_at, tick)
                ev = rec.ev = env.event()
                rec.gen += 1
                if wake_at is not None:
                    self._poke(task, wake_at - now)
                yield ev
        finally:
            del m.spinning[task]
            del self._spin_ev[task]
            task.busy_ns += int(env.now) - t0
            if osq:
                head = self._osq[0] is task
                self._osq.remove(task)
                if head and self._osq:
                    self._poke(self._osq[0], 0)
            if not got:
                self._log("spin_fail", task)

    def _poke(self, task: Task, delay: int) -> None:
        rec = self._spin_ev.get(task)
        if rec is None:
            return
        ev = rec.ev
        if ev is None or ev.triggered:
            return
        if delay <= 0:
            ev.succeed()
            return
        # a ``partial``, not a lambda: a hand-back to the compiled core reads which spin and
        # which wait a queued poke is for (``epcsim.fast.cosim.transfer``)
        self.m.env.timeout(delay).callbacks.append(partial(self._fire, task, rec, rec.gen))

    def _fire(self, task: Task, rec: _Spinner, gen: int, _ev: Any = None) -> None:
        """A timed poke is due. Only the last wait's pokes count (``gen``): in the loop
        each wait is a new event and a poke of an earlier one finds it triggered.

        When nothing else is due at this instant and the re-check would only wait again
        (the lock held by a running task, or this spinner not the OSQ head; no
        need_resched), the wait is re-armed here instead of resuming the spinner: the
        spinner would run next, do exactly that and nothing else, so the remaining events
        keep their order (the next tick's poke is scheduled at the same point in the
        queue). This saves a resumption per release inside ksgxd's EWB phase, whose gap
        before the next lock is zero (issue 9, row 10)."""
        ev = rec.ev
        if rec.gen != gen or ev is None or ev.triggered:
            return
        m = self.m
        env = m.env
        if env.peek() > env.now and not task.need_resched():
            owner = self.owner
            if (rec.osq and self._osq[0] is not task) or (
                owner is not None and owner is not task and owner.cpu is not None
            ):
                rec.gen += 1
                if m.rq.waiting():
                    self._poke(task, m.rq.next_tick(task) - int(env.now))
                return
        ev.succeed()

    # -- release -------------------------------------------------------------------------
    def _unlock(self, task: Task) -> None:
        if self.owner is not task:
            raise RuntimeError(f"{task.name}: unlock of {self.name} held by {self.owner}")
        self._log("unlock", task)
        now = int(self.m.env.now)
        ws = self._waiters
        pickup = self.m.costs.mutex_pickup
        if self.handoff and ws:  # __mutex_handoff: straight to the first waiter
            w = ws[0]
            self.owner = w.task
            self.handoff = False
            self.handoffs += 1
            self._handed_at = now
            self._wake(w, pickup)
            if self._osq and w.task.cpu is None:  # the new owner is not running
                self._poke(self._osq[0], self.m.costs.mutex_spin_poll)
            return
        self.owner = None
        self.handoff = False
        self._free_since = now
        # when the releaser's last step began: at a tie with a parked NOPAGE retrier's
        # decision, SimPy ran the one begun first first (epcsim.fast.flood.came_first)
        self._freed_from = task.step_end - task.step_ns if task.step_end == now else now
        if ws:
            self._wake(ws[0], pickup)
        if self._osq:
            self._poke(self._osq[0], pickup)

    def idle(self) -> bool:
        return super().idle() and not self._osq

    def released(self, now: int) -> None:
        """``_unlock`` with no waiter: HANDOFF cleared, the lock free since ``now``."""
        self.handoff = False
        self._free_since = now

    def _wake(self, w: _Waiter, pickup: int) -> None:
        """``wake_up_q`` for the first waiter, or a poke if it is spinning."""
        if w.ev is not None:
            if not w.ev.triggered:
                self._log("wake", w.task)
                w.ev.succeed()
        elif w.task in self._spin_ev:
            self._poke(w.task, pickup)
