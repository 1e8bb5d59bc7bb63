"""A flood of VM_FAULT_NOPAGE retries charged in bulk (fast engine only; a named deviation).

When the EPC is full, ``sgx_vma_fault`` cannot load a page: ``sgx_alloc_epc_page(reclaim=
false)`` fails with -EBUSY, the handler returns VM_FAULT_NOPAGE, and the thread ERESUMEs,
re-executes the access and faults again - until ksgxd frees a page. The reference engine
simulates every such retry (ERESUME, AEX, #PF entry, ``mutex_lock(&encl->lock)``, the failed
allocation, the unlock, ``cond_resched``). With 64 threads on 16 CPUs that is hundreds of
retries per access that completes (issue 9, row 10).

The outcome of one retry is fixed by a few facts: the free lists are empty, the LRU is not
(else the allocation returns -ENOMEM), the page is still not resident, the enclave's state
(TCS mapped, no ioctl running, alive), and whether the thread must reschedule. While they
hold, every retry of the thread (``EnclaveThread.access_stream``, the only caller that
parks) takes exactly ``eresume + aex + fault_entry`` ns and changes nothing but counters.
So the thread *parks*: it keeps its CPU (the retries keep it busy, and CFS sees it running),
and sleeps until the first **decision instant** - the end of one of its retry cycles, where
the reference would take ``encl->lock`` and try to allocate - at which one of those facts
may have changed:

* a page was freed (``sgx_free_epc_page``): the parked thread whose next decision instant
  comes first resumes there, as it would be the first to try to allocate (one per freed
  page); a thread that then loses the page to another task parks again;
* another task took ``encl->lock`` (``Task.lock``): a parked thread looks at the lock at its
  next decision instant and, if it is still held, resumes - its retry would wait for the
  lock there, spinning or sleeping, and that wait is the reference's own mutex code;
* the LRU became empty, an ioctl started on the enclave, an mprotect, a PTE of the thread's
  TCS was zapped, or its page was loaded by another task: the threads concerned resume;
* need_resched: a wake-up preemption (``Machine._resched``), or a tick; ``tick_resched`` is
  evaluated at the first decision instant after every tick and again whenever the run
  queue changes, with the queue as it is then - what the reference evaluates at each retry.

The skipped retries are counted where the reference counts them: ``page_faults``,
``alloc_ebusy``, ``fault_retries`` and one fault latency (``aex + fault_entry``) each, and the
thread's CPU time. Their ERESUMEs' one effect on state, the Accessed bit they set on the TCS's
PTE, is applied when the reclaimer tests that bit and when the thread resumes
(``tcs_accessed``). At the decision instant the thread runs the retry's second half for real
(``EnclaveThread._fault(charged=True)``: lock, allocation, unlock, ``cond_resched``), so the
allocation, a contended lock and a reschedule are the reference's own code.

The compiled core restates this module (from ``threads_bridge.run_threads``: session
``flood6`` with each thread on its own CPU, session ``floodq`` with more threads than CPUs,
the run queue's hooks and the TCS fault's parks; from the user path's one-thread session,
the parks moving both ways at its stops - ``cosim/transfer_flood.py``, session ``uflood``,
hence ``parked_rest`` and the timer factories): ``cosim/flood_park.py`` (the parking,
the mutex and run-queue hooks), ``cosim/flood_decision.py`` (``flood_decision.py``'s
decision instants and timers) and ``driver/flood_rows.py`` (``parkable`` and
the hooks in the enclave's state), a function per method, named after it. A change here changes them
in the same commit; ``tests/fast/test_threads_flood_core.py`` holds the two equal.

What is not the same as the reference (named deviation, bounded and tested in
``tests/fast/test_flood.py``; see ``epcsim/fast/README.md``):

1. A parked thread does not take ``encl->lock`` at its skipped retries. In the reference each
   retry takes and releases the free lock at once (no time passes under it). That instant
   matters to a task spinning on the lock: a spinner takes a released lock only after
   ``mutex_pickup`` ns of it staying free, and a retry's take restarts that wait - so
   ``LinuxMutex._spin`` asks ``free_since`` here, which counts the skipped retries'
   instants. The take is not an acquisition, so ``Mutex.steals`` and the mutex trace miss
   it. A lock that is *held* at a decision instant is seen (above), so the retriers wait
   for ksgxd's critical sections as in the reference. A lock *taken* at the very instant
   of a decision is ordered as SimPy orders the two timeouts in the reference
   (``lock_taken``): the retry first - it took and released the lock, and stays a skipped
   retry - unless the locker's last step began before the retry's (``aex + fault_entry``).
2. A TCS zapped while the thread is parked is handled as the reference's ERESUME handles it
   (``_tcs_zapped``): if the TCS is blocked or gone when that cycle's ERESUME completes,
   the fault handled at the decision instant is the TCS's; else the page's, then the TCS's
   at the next entry. A page mapped by another thread is noticed at the next decision
   instant: at most one more retry.
3. The failed allocations' samples of the free-page timeline (the value does not change) are
   not recorded, and the skipped retries' latencies are appended when the thread resumes,
   not interleaved with other threads' latencies.
4. A release of ``encl->lock`` at the very instant of a decision is ordered the same way
   (``_released_after_retry``, ``came_first``): if the retry ran first in the reference it
   found the lock held and spun, so the retrier resumes and spins on the free lock, taking
   it ``mutex_pickup`` later (``LinuxMutex._lock_slow`` called on a free lock). Other ties
   at one nanosecond stay as they fall: retriers resumed at the same instant run in the
   order they parked (the reference's order follows the history of their timeouts), and
   two steps begun at the same instant are ordered as locker (or releaser) first. Each
   such tie can change which retrier gets the next free page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from epcsim.fast.flood_decision import DecisionInstants, _Park

if TYPE_CHECKING:
    from epcsim.engine.machine import Gen, Task
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.main import Sgx


class NopageFlood(DecisionInstants):
    """The parked retriers of one ``Sgx`` (``machine.flood``; fast engine only). Its decision
    instants and timers, and ``_Park``, are ``flood_decision.py``'s."""

    def __init__(self, sgx: Sgx):
        self.sgx = sgx
        self.m = sgx.m
        self.parked: dict[Task, _Park] = {}
        #: acquisitions of each encl->lock seen while retriers were parked (``lock_taken``)
        self._holds: dict[Any, int] = {}
        #: threads resumed at a decision instant, until their handler's mutex_lock
        self._deciding: dict[Task, int] = {}
        #: retries charged in bulk, and how many times a thread parked (benchmarks, tests)
        self.bulk_retries = 0
        self.parks = 0
        #: of ``parks``, those the compiled core ran on the user path, and the parks it
        #: handed back under way (``cosim/transfer_flood.py``; the tests' guard)
        self.core_parks = 0
        self.moved = 0
        #: its timers a move onto the core took in as ``EV_FLOOD`` rows (``flood_row``)
        self.timers_in = 0

    # -- when a thread may park -----------------------------------------------------------
    def parkable(self, thread: Any, index: int, eresume: bool = True) -> bool:
        """Would the thread's next retries fail exactly as the last one did?

        ``eresume``: an access's retries (ERESUME, AEX, #PF); else the retries of the TCS
        fault before an entry (AEX... #PF only: ``_ensure_tcs``)."""
        sgx = self.sgx
        encl: SgxEncl = thread.encl
        tcs = thread.tcs_index
        return (
            sgx.epc.nr_free_pages == 0
            and len(sgx.lru) > 0
            and tcs >= 0
            and thread.cpu is not None
            and not thread._resched
            and (not eresume or (thread.entered and thread.aexed))
            and (eresume or index == tcs)
            and not encl.dead
            and not encl.ioctl_busy
            and bool(encl.present[index])
            and int(encl.epc[index]) < 0
            and not encl.pte_present[index]
            and (not eresume or bool(encl.pte_present[tcs]))
            and encl.secs_epc >= 0
        )

    # -- parking ---------------------------------------------------------------------------
    def park(self, thread: Any, index: int, eresume: bool = True) -> Gen:
        """Hold the CPU until a decision instant where a retry may differ. On return the
        retry cycle ending now has its ERESUME (``eresume``), AEX and #PF entry charged; the
        caller runs its decision (``_fault(charged=True)``): of the TCS if this returns True
        (the cycle's ERESUME found the TCS zapped and blocked, ``_tcs_zapped``), else of
        the page."""
        m = self.m
        costs = m.costs
        period = costs.aex + costs.fault_entry + (costs.eresume if eresume else 0)
        p = _Park(thread, index, m.now, period)
        p.lock = thread.encl.lock
        if eresume:
            p.eresume_ns = costs.eresume
        self.parked[thread] = p
        self.parks += 1
        self._plan_tick(p)
        if thread.encl.lock.owner is not None:  # parking inside another task's hold
            p.lock_check = self._next_decision(p, m.now)
            self._timer(p, p.lock_check)
        return (yield from self.parked_rest(p))

    def parked_rest(self, p: _Park, decided: bool = False) -> Gen:
        """``park`` from its wait on ``p.ev`` (pending, or triggered and queued), ``p`` in
        ``parked``: the rest of the park of a retrier the compiled core parked and handed
        back (``cosim/transfer_flood.py``, session ``uflood``), or ``park``'s own loop.
        ``decided``: the loop has broken already (the core stopped at the decision, its
        ``tcs_first`` set): only the park's end."""
        m = self.m
        costs = m.costs
        thread = p.thread
        moved = p.ev  # the core's move back: the first wait is on the event it built
        try:
            lock = thread.encl.lock
            while not decided:
                # Timers due at the same instant may find the event already triggered by
                # another: every reason is decided from the park's state, not the value.
                if moved is None:
                    p.ev = m.env.event()
                moved = None
                yield p.ev
                now = m.now
                if p.forced is not None and p.forced <= now:
                    break
                if p.lock_check == now and (
                    lock.owner is not None or self._released_after_retry(lock, now)
                ):
                    break  # taken since, held when the retry looks: it would wait for it
                if p.tick_at <= now:
                    if self._resched_due(p, now):
                        break
                    self._plan_tick(p)
        finally:
            del self.parked[thread]
        # (a failed ERESUME, ``tcs_first``, sets no Accessed bit)
        self._touch(p, m.now - (costs.aex + costs.fault_entry + 1 if p.tcs_first else 0))
        self._deciding[thread] = m.now
        j = (m.now - p.base) // p.period
        self._count(p, j - 1)
        thread.busy_ns += j * p.period
        # The ERESUME of the cycle that ends now found the TCS zapped and blocked: the
        # fault handled now is the TCS's (the caller runs it), not the page's.
        return p.tcs_first

    def _count(self, p: _Park, total: int) -> None:
        """Count the skipped retries up to ``total`` (those not counted yet)."""
        n = total - p.counted
        if n <= 0:
            return
        p.counted = total
        st = self.sgx.stats
        st.page_faults += n
        st.alloc_ebusy += n
        st.fault_retries += n
        costs = self.m.costs
        self.sgx.fault_latency_ns.append_many(costs.aex + costs.fault_entry, n)
        self.bulk_retries += n

    def settle(self) -> None:
        """Count the retries whose decision instant has passed (``System.stats``)."""
        now = self.m.now
        for p in self.parked.values():
            self._count(p, (now - p.base - 1) // p.period)

    # -- what can change a retry's outcome (hooks in the kernel model) ---------------------
    def wake(self, thread: Task) -> None:
        """``thread`` must resume at its next decision instant (e.g. need_resched)."""
        p = self.parked.get(thread)
        if p is not None:
            self._force(p)

    def page_freed(self) -> None:
        """A page went back to the free lists: the retrier that would try first resumes."""
        now = self.m.now
        best: _Park | None = None
        best_at = 0
        for p in self.parked.values():
            c = self._next_decision(p, now)
            if p.forced is not None and p.forced <= c:
                continue  # already resuming there
            if best is None or c < best_at:
                best, best_at = p, c
        if best is not None:
            self._force(best)

    def wake_all(self, encl: SgxEncl | None = None) -> None:
        """Every parked retrier (of ``encl``) resumes: the LRU emptied, an ioctl, mprotect."""
        for p in list(self.parked.values()):
            if encl is None or p.thread.encl is encl:
                self._force(p)

    def page_changed(self, encl: SgxEncl, index: int) -> None:
        """A page of ``encl`` was loaded or its PTE zapped: retriers on it, or whose TCS it
        is, resume."""
        for p in list(self.parked.values()):
            t = p.thread
            if t.encl is encl and (p.index == index or t.tcs_index == index):
                if t.tcs_index == index and not encl.pte_present[index]:
                    self._tcs_zapped(p)
                self._force(p)

    def tcs_accessed(self, encl: SgxEncl, index: int) -> None:
        """The reclaimer is about to test (and clear) the Accessed bit of page ``index``: if it
        is the TCS of a retrier parked on access retries, each skipped retry's ERESUME set
        that bit (``EnclaveThread._tcs_accessed``), so set it if one completed since the bit
        was last brought up to date. An ERESUME at the very instant of the check counts as
        before it (deviation 4 above)."""
        now = self.m.now
        for p in self.parked.values():
            t = p.thread
            if p.eresume_ns and t.encl is encl and t.tcs_index == index:
                self._touch(p, now)

    def _touch(self, p: _Park, now: int) -> None:
        """Apply the skipped ERESUMEs' Accessed bit on the TCS up to ``now``: the cycles
        start at ``base + k * period`` (k >= 0), their ERESUME completes ``eresume_ns``
        later."""
        if p.eresume_ns:
            first = p.base + p.eresume_ns
            if now >= first:
                last = first + (now - first) // p.period * p.period
                if last > p.touched:
                    p.thread._tcs_accessed()
            p.touched = now

    def _tcs_zapped(self, p: _Park) -> None:
        """The PTE of a parked thread's TCS was zapped (ksgxd's ``sgx_zap_enclave_ptes``,
        before EBLOCK). In the reference the thread's next ERESUME - the step that ends
        ``aex + fault_entry`` before its next decision instant - fails with a #PF if the
        TCS is blocked or gone by then (``eenter``'s checks), and the fault handled at that
        decision is the TCS's; else the page's fault is handled first and the TCS's after,
        at the next entry's ``_ensure_tcs``. So the TCS's EPCM state is looked at then."""
        if not p.eresume_ns:
            return  # the retries of the TCS fault itself: no ERESUME in the cycle
        costs = self.m.costs
        at = self._next_decision(p, self.m.now) - (costs.aex + costs.fault_entry)
        if at <= self.m.now:
            return  # that ERESUME has completed (the TCS was not blocked before its zap)
        self.m.env.timeout(at - self.m.now).callbacks.append(self.eresume_ends(p))

    def eresume_ends(self, p: _Park) -> Callable[[object], None]:
        """``_tcs_zapped``'s callback as the cycle's ERESUME ends: ``tcs_first`` if the TCS
        (unmapped) is blocked or gone by then (a factory, as ``timer_fire``)."""
        thread = p.thread

        def eresume_ends(_e: object) -> None:
            if self.parked.get(thread) is not p:
                return
            encl = thread.encl
            tcs = thread.tcs_index
            epc = int(encl.epc[tcs])
            epcm = thread.hw.epcm
            p.tcs_first = not encl.pte_present[tcs] and (
                epc < 0 or not epcm.valid[epc] or bool(epcm.blocked[epc])
            )

        eresume_ends.flood = ("eresume", p)  # type: ignore[attr-defined]
        return eresume_ends

    def came_first(self, task: Task, mutex: Any) -> bool:
        """``task`` resumed from a park at this decision instant and finds ``mutex`` free:
        was it released at this very instant *after* the reference's retry found it held?

        In the reference the retry is the timeout of the cycle's last step (``aex +
        fault_entry``); the release came from the releaser's last step. SimPy ran the one
        begun first first. If the retry did, it found the lock held and spun, and it takes
        the lock ``mutex_pickup`` after the release if it stays free (``LinuxMutex._lock_slow``
        does that when called on a free lock). Asked once, at the handler's ``mutex_lock``."""
        at = self._deciding.pop(task, None)
        return at == self.m.now and mutex.owner is None and self._released_after_retry(mutex, at)

    def _released_after_retry(self, mutex: Any, at: int) -> bool:
        """``mutex`` was released at ``at``, by a step begun after a retry deciding at
        ``at`` began its last one (``aex + fault_entry``): in the reference that retry ran
        first and found the lock held."""
        costs = self.m.costs
        return bool(
            hasattr(mutex, "_freed_from")
            and mutex._free_since == at
            and mutex._freed_from > at - (costs.aex + costs.fault_entry)
        )

    def lock_taken(self, mutex: Any) -> None:
        """Another task took ``mutex``: a retrier of that enclave whose next decision comes
        while it is still held would wait for it there, so it resumes there.

        One timer per hold, not per retrier: it fires at the earliest decision instant of
        the enclave's parked retriers, resumes those deciding then if the hold goes on, and
        moves on to the next earliest; a release (or a new hold) ends the chain.

        A retrier whose decision instant is *now* (a tie): in the reference its retry is
        the timeout of its last step (``aex + fault_entry``), which SimPy runs before the
        locker's if it was scheduled first. The locker was resumed by the timeout of its own
        last step (``Task.step_end``/``step_ns``), or else by an event of this instant. So
        the retry came first - it took and released the free lock and stays a skipped
        retry - unless the locker's step began earlier than the retry's last step; when
        both began at the same instant, the locker is taken as first."""
        hold = self._holds.get(mutex, 0) + 1
        self._holds[mutex] = hold
        now = self.m.now
        locker = mutex.owner
        costs = self.m.costs
        if locker is not None and locker.step_end == now:
            locker_from = now - locker.step_ns
        else:
            locker_from = now  # resumed by an event of this instant
        retry_from = now - (costs.aex + costs.fault_entry)
        self._chain(mutex, hold, now if locker_from <= retry_from else now + 1)

    def _chain(self, mutex: Any, hold: int, after: int) -> None:
        """Schedule the hold's next look: the first decision instant at or after ``after``."""
        first: int | None = None
        for p in self.parked.values():
            if p.lock is mutex:
                # _next_decision(p, after), inline: this runs at every hold of encl->lock
                base = p.base
                period = p.period
                j = -((base - after) // period)
                c = base + (j if j > 1 else 1) * period
                if first is None or c < first:
                    first = c
        if first is None:
            return
        self.m.env.timeout(first - self.m.now).callbacks.append(self.chain_fire(mutex, hold, first))

    def chain_fire(self, mutex: Any, hold: int, at: int) -> Callable[[object], None]:
        """``_chain``'s callback at ``at`` (a factory, as ``timer_fire``): if the hold goes
        on, the retriers deciding at ``at`` look at the lock, and the chain goes on."""

        def fire(_e: object) -> None:
            if self._holds.get(mutex) != hold:
                return  # held anew (that hold has its own chain)
            if mutex.owner is None and not self._released_after_retry(mutex, at):
                return  # released before the retries due now
            for p in list(self.parked.values()):
                # those whose decision instant is ``at`` (_next_decision(p, at) == at)
                if p.lock is mutex and at > p.base and (at - p.base) % p.period == 0:
                    p.lock_check = at
                    if p.ev is not None and not p.ev.triggered:
                        p.ev.succeed()
            self._chain(mutex, hold, at + 1)

        fire.flood = ("chain", mutex, hold)  # type: ignore[attr-defined]
        return fire

    def free_since(self, mutex: Any, free_since: int, now: int) -> int:
        """When ``mutex`` was last released, counting the take-and-release of each skipped
        retry (at its decision instant, the lock being free): a spinner takes a released
        lock only after ``mutex_pickup`` ns of it staying free (``LinuxMutex._spin``), and
        in the reference every retry restarts that wait."""
        last = free_since
        for p in self.parked.values():
            if p.lock is mutex:
                j = (now - p.base) // p.period
                if j >= 1:
                    d = p.base + j * p.period
                    if d > last:
                        last = d
        return last

    def rq_changed(self) -> None:
        """The run queue changed: a tick check may now answer yes sooner."""
        now = self.m.now
        for p in list(self.parked.values()):
            c = self._next_decision(p, now)
            if (p.forced is None or c < p.forced) and self._resched_due(p, c):
                self._force(p)


__all__ = ["NopageFlood"]
