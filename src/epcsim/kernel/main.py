"""The SGX core: what ``arch/x86/kernel/cpu/sgx/main.c`` keeps global, and its allocator.

``Sgx`` owns the EPC pages (``EpcPages``), the reclaim list (``sgx_active_page_list``, via a
``ReclaimPolicy``), ``ksgxd_waitq``, the counters and the timeline. The reclaimer itself is in
:mod:`epcsim.kernel.reclaim`; enclaves are in :mod:`epcsim.kernel.encl`.

Kernel functions that may sleep or spend CPU time are generators run by a ``Task``
(``yield from sgx.alloc_epc_page(task, ...)``); those that cannot are plain methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.arch import EBUSY, ENOMEM, ERESTARTSYS, SGX_NR_HIGH_PAGES, SGX_NR_LOW_PAGES
from epcsim.engine.machine import Gen, Machine, Task, WaitQueue
from epcsim.fast.flood import NopageFlood
from epcsim.isa import SgxCpu
from epcsim.kernel.backing_store import BackingStore
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED, EpcPages
from epcsim.kernel.policy import ReclaimPolicy
from epcsim.kernel.reclaim import sgx_reclaim_pages
from epcsim.kernel.stats import Counters, LatencyHistogram, Timeline

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxEncl


class Sgx:
    """Global SGX driver state on one simulated machine."""

    def __init__(
        self,
        machine: Machine,
        cpu: SgxCpu,
        epc: EpcPages,
        policy: ReclaimPolicy,
        *,
        direct_reclaim: bool = True,
        sgx2: bool = True,
        nopage_flood_bulk: bool = False,
        nr_to_scan: int = 16,
        low_pages: int = SGX_NR_LOW_PAGES,
        high_pages: int = SGX_NR_HIGH_PAGES,
    ):
        self.m = machine
        #: engine="fast": take the compiled shortcuts of epcsim.fast where they apply
        self.fast = machine.elide
        #: pages the fast engine's batched paths applied at once (epcsim.fast; not a counter
        #: of the model: the reference leaves it 0)
        self.batched_pages = 0
        self.cpu = cpu
        self.epc = epc
        # the EPCM reads its entries' SECS and ENCLAVEADDRESS from the pages' owners where
        # they agree (``isa.epcm``): a page's owner changing while its entry is valid keeps
        # the CPU's view first
        cpu.epcm.bind_owner(epc)
        epc.keep_epcm = cpu.epcm.keep
        self.lru = policy
        self.direct_reclaim = direct_reclaim
        self.sgx2 = sgx2
        self.nr_to_scan = nr_to_scan
        self.low_pages = low_pages
        self.high_pages = high_pages
        self.backing = BackingStore()
        self.stats = Counters()
        self.free_timeline = Timeline()
        self.ksgxd_waitq = WaitQueue(machine, "ksgxd_waitq")
        self.enclaves: dict[int, SgxEncl] = {}
        self._next_encl_id = 0
        self.ksgxd_task: Task | None = None
        self.ksgxd_sleeping = False
        self.free_timeline.record(0, epc.nr_free_pages)
        self.warnings: list[str] = []  # what the kernel would WARN about
        self.leaked_pages = 0
        self.ewb_failures = 0
        #: simulated latency of enclave page faults (#PF to return), bounded, for reports
        self.fault_latency_ns = LatencyHistogram()
        #: nopage_flood="bulk" (fast engine only): VM_FAULT_NOPAGE floods charged in bulk
        #: (epcsim.fast.flood, a named deviation)
        self.flood: NopageFlood | None = None
        if self.fast and nopage_flood_bulk:
            self.flood = machine.flood = NopageFlood(self)
        #: ``System(fast_core=True)`` (fast engine only): ``access_stream``'s loop on the
        #: compiled core where the regime holds (``epcsim.fast.driver.stream.StreamCore``)
        self.stream_core: Any = None

    # -- sgx_should_reclaim / watermarks ------------------------------------------------------
    def should_reclaim(self, watermark: int) -> bool:
        """``sgx_should_reclaim``: free < watermark and the LRU is non-empty."""
        return self.epc.nr_free_pages < watermark and len(self.lru) > 0

    def wake_ksgxd(self) -> None:
        if self.ksgxd_waitq.wake_up():
            self.ksgxd_sleeping = False
            self.stats.ksgxd_wakeups += 1

    # -- allocation -------------------------------------------------------------------------
    def _node_of(self, task: Task) -> int:
        """numa_node_id(): CPUs are spread evenly over the EPC's nodes."""
        nodes = self.epc.nodes
        if len(nodes) == 1 or task.cpu is None:
            return nodes[0]
        return nodes[task.cpu * len(nodes) // self.m.nr_cpus]

    def alloc_epc_page(self, task: Task, encl_id: int, owner_index: int, reclaim: bool) -> Gen:
        """``sgx_alloc_epc_page(owner, reclaim)`` (spec §5.2). Returns a page or ``-errno``.

        With ``reclaim`` it runs ``sgx_reclaim_pages`` itself while the free lists are empty;
        without, it fails with -EBUSY. Callers that may hold an mm lock (the fault path, ELDU,
        EAUG) pass ``reclaim=False``. After the loop (success, -EBUSY, -ERESTARTSYS) ksgxd is
        woken if free pages are below the low watermark.

        Return:
        * an EPC page index (>= 0): the page, owned by ``encl_id``/``owner_index``.
        * -ENOMEM: the free lists are empty and the reclaimable list is empty too (returned
          at once, without waking ksgxd).
        * -EBUSY: the free lists are empty, pages are reclaimable, and ``reclaim`` is false.
        * -ERESTARTSYS: ``reclaim`` is true and a signal is pending on ``task`` when the free
          lists are found empty.
        """
        ret = 0
        while True:
            page = self.epc.alloc(self._node_of(task))
            if page >= 0:
                self.epc.owner_encl[page] = encl_id
                self.epc.owner_index[page] = owner_index
                ret = page
                break
            if len(self.lru) == 0:
                self.stats.alloc_enomem += 1
                return -ENOMEM
            if not reclaim:
                self.stats.alloc_ebusy += 1
                ret = -EBUSY
                break
            if task.signal_pending():
                ret = -ERESTARTSYS
                break
            self.stats.alloc_reclaim_batches += 1
            n = yield from sgx_reclaim_pages(self, task)
            self.stats.direct_reclaim_pages += n
            yield from task.cond_resched()
        self.free_timeline.record(self.m.now, self.epc.nr_free_pages)
        if self.should_reclaim(self.low_pages):
            self.wake_ksgxd()
        return ret

    def free_epc_page(self, page: int) -> None:
        """``sgx_free_epc_page`` (the page must already be invalid)."""
        self.epc.free(page)
        self.free_timeline.record(self.m.now, self.epc.nr_free_pages)
        if self.flood is not None and self.flood.parked:
            self.flood.page_freed()

    # -- the reclaimable list ----------------------------------------------------------------
    def mark_page_reclaimable(self, page: int) -> None:
        """``sgx_mark_page_reclaimable``: set TRACKED and add at the LRU tail."""
        self.epc.flags[page] |= SGX_EPC_PAGE_RECLAIMER_TRACKED
        self.lru.mark(page)

    def unmark_page_reclaimable(self, page: int) -> int:
        """``sgx_unmark_page_reclaimable``: take the page off the reclaimable list.

        Return:
        * 0: the page is off the list (or was never on it).
        * -EBUSY: the reclaimer has it isolated (TRACKED but off the list).
        """
        if self.epc.flags[page] & SGX_EPC_PAGE_RECLAIMER_TRACKED:
            if page not in self.lru:
                return -EBUSY
            self.lru.unmark(page)
            self.epc.flags[page] &= 0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED
            self.lru_changed()
        return 0

    def lru_changed(self) -> None:
        """Pages left the LRU: an empty one turns the fault path's -EBUSY into -ENOMEM."""
        if self.flood is not None and self.flood.parked and len(self.lru) == 0:
            self.flood.wake_all()

    # -- ksgxd ------------------------------------------------------------------------------
    def start_ksgxd(self) -> None:
        """``kthread_run(ksgxd, ...)``. Sanitization is skipped: every page starts FREE."""
        self.ksgxd_task = Task(self.m, "ksgxd", kernel=True)
        self.m.spawn(self._ksgxd(self.ksgxd_task))

    def _ksgxd(self, task: Task, moved: tuple[int, Gen] | None = None) -> Gen:
        """``ksgxd()``'s loop.

        ``moved`` = ``(high, rest)``: ksgxd handed back by the compiled driver
        (``epcsim.fast.driver``), with the watermark the first generator read when it
        started. ``rest`` runs first: the rest of a batch (``sgx_reclaim_write_back``; it
        returns the pages it wrote back and the loop goes on after the batch), or the end
        of a sleep begun on the compiled core (it returns None: ksgxd is then at K0's
        check, its wake-up run over).

        K0's check is where ``System(fast_core=True)`` (or ``"auto"``, the default, once it
        engaged) hands ksgxd, awake, to its compiled machine (``StreamCore.ksgxd_at_check``,
        ``epcsim.fast.driver.stream_ksgxd``): a generator that serves the machine from this
        check in this process and returns, as ``rest`` does, where the machine hands ksgxd
        back. Without the core (``stream_core`` None: the reference engine or
        ``fast_core=False``; or ``ksgxd_at_check`` declining) the loop is the kernel's."""
        rest: Gen | None = None
        if moved is None:
            high = self.high_pages
        else:
            high, rest = moved
        while True:
            if rest is not None:
                n = yield from rest
                rest = None
                if n is not None:  # after a batch: the loop's own tail, then its top
                    self.stats.ksgxd_pages_reclaimed += n
                    yield from task.cond_resched()
                    continue
            elif not self.should_reclaim(high):
                self.ksgxd_sleeping = True
                yield from self.ksgxd_waitq.wait_event(task, lambda: self.should_reclaim(high))
                self.ksgxd_sleeping = False
                yield from task.run(self.m.costs.wakeup)
            if self.stream_core is not None:
                rest = self.stream_core.ksgxd_at_check(task, high)
                if rest is not None:
                    continue
            if self.should_reclaim(high):
                self.stats.ksgxd_batches += 1
                n = yield from sgx_reclaim_pages(self, task)
                self.stats.ksgxd_pages_reclaimed += n
            yield from task.cond_resched()

    def new_encl_id(self) -> int:
        self._next_encl_id += 1
        self.epc.fit_owner_id(self._next_encl_id)
        return self._next_encl_id
