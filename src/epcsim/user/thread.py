"""Enclave threads: user code running inside an enclave on a logical processor.

An ``EnclaveThread`` is a ``Task`` that enters its enclave (EENTER through a TCS), touches
pages, and takes the asynchronous exits the real CPU takes: AEX when it loses its logical
processor or receives an IPI, AEX + #PF + ``sgx_vma_fault`` + ERESUME when a page is not
mapped. Accesses to mapped pages are batched: one NumPy pass sets the PTE Accessed bits of a
whole run of resident pages and charges its time at once, so a hot loop costs no event per
access (design: keep the event queue for the moments when interleaving matters).

Two ways to run inside: ``access_stream`` (a stream of accesses, the thread staying inside
between calls - what workloads use) and ``execute`` (one instruction of enclave code, what the
vDSO path in :mod:`epcsim.user.vdso` runs, reporting the exceptions the kernel leaves to user
space instead of stopping). ``execute`` and ``enclu_on_page`` are in ``thread_insn.py``
(``InsnExecution``, a mixin of ``EnclaveThread``, split from this file by session ``split``,
no code changed); this module keeps the entry, the fault path and ``access_stream``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.arch import EBUSY, PF_PROT, PF_SGX, PF_USER, PF_WRITE
from epcsim.engine.machine import Gen, Task
from epcsim.fast.access import resident_run, young_again
from epcsim.isa.core import GP, PF
from epcsim.kernel.encl import VM_FAULT_NOPAGE, Mm, SgxEncl
from epcsim.kernel.fault import sgx_vma_fault, sgx_vma_fault_locked
from epcsim.user.insn import X86_TRAP_GP, X86_TRAP_PF, EnclaveException
from epcsim.user.thread_insn import InsnExecution

if TYPE_CHECKING:
    from epcsim.isa import SgxCpu

#: longest run of resident accesses charged as one simulated step
ACCESS_QUANTUM_NS = 10_000
#: how a stream run on the compiled core (``epcsim.fast.driver.stream``) came back to
#: ``access_stream``: go on at the loop top, a #PF to the runtime ends the stream, or the
#: fault the core began (and Python finished) ended in SIGBUS
STREAM_ON, STREAM_PF, STREAM_SIGBUS = 0, 1, 2


class CoreTakesOver(Exception):
    """Thrown into a thread's process, suspended inside its fault (or its entry's TCS
    fault), by the compiled core's group move once it has taken that fault over at the
    point where the process waits (``epcsim.fast.driver.group_join``, session ``join``):
    its frames below ``access_stream`` unwind as a closed generator's would (the move
    closed them first), and ``access_stream`` goes on at its loop top with ``rest`` - the
    core's serving of the thread - in place of ``hook.run``. The reference never raises
    it."""

    def __init__(self, rest: Gen):
        super().__init__()
        self.rest = rest


@dataclass
class AccessOutcome:
    """How an access (or a stream of them) ended."""

    done: int = 0  # accesses completed
    pf_error: int = 0  # SGX #PF error code of the access that stopped the stream (0 = none)
    sigbus: bool = False
    fault_address: int = 0
    data: bytes = b""  # what ``Enclave.read`` read

    @property
    def ok(self) -> bool:
        return not self.pf_error and not self.sigbus


class EnclaveThread(InsnExecution, Task):
    """A user thread of the process that owns ``encl``, entering it through ``tcs``."""

    def __init__(
        self,
        encl: SgxEncl,
        name: str,
        tcs_index: int = -1,
        timeslice_ns: int = 1_000_000,
        *,
        mm: Mm | None = None,
    ):
        super().__init__(encl.sgx.m, name)
        self.encl = encl
        self.sgx = encl.sgx
        self.hw: SgxCpu = encl.sgx.cpu
        self.tcs_index = tcs_index
        self.timeslice_ns = timeslice_ns
        self.entered = False  # between EENTER and EEXIT
        #: why the last ``enter()`` failed, as the exception the vDSO would report
        self.entry_fault: EnclaveException | None = None
        self.on_switch_out = self._switch_out
        #: the process's mm (default: the first that maps the enclave, or a new one)
        if mm is None:
            mm = encl.mm_list[0] if encl.mm_list else Mm(f"{name}:mm")
            encl.mm_add(mm)
        self.mm = mm
        mm.tasks.append(self)

    @property
    def aexed(self) -> bool:
        """Asynchronously exited: the thread entered and has not left, but its logical
        processor is no longer inside an enclave, so it needs ERESUME before it runs again.

        The thread reads this from the CPU model, which is where an AEX happens - whether it
        came from losing the CPU, a fault, or the kernel's IPI (``send_ipi`` only makes the
        CPU exit; it sets no thread state)."""
        return self.entered and (self.cpu is None or self.hw.inside(self.cpu) < 0)

    # -- entering and leaving -----------------------------------------------------------------
    def _switch_out(self, task: Task, lp: int) -> None:
        """Losing the logical processor while inside the enclave is an AEX."""
        if self.entered and self.hw.inside(lp) >= 0:
            self.hw.aex(lp)

    def _lp(self) -> int:
        """The logical processor the thread runs on (it must hold one)."""
        if self.cpu is None:
            raise RuntimeError(f"{self.name}: not on a CPU")
        return self.cpu

    def _tcs_epc(self) -> int:
        return -1 if self.tcs_index < 0 else int(self.encl.epc[self.tcs_index])

    def _secs_resident(self) -> bool:
        """The SECS is a valid EPC page: not evicted, nor written back with its EREMOVE (under
        ``encl->lock``) still to come."""
        secs = self.encl.secs_epc
        return secs >= 0 and secs in self.hw.secs_at

    def _tcs_ready(self) -> bool:
        """What ``_ensure_tcs`` waits for: the TCS mapped, or with the implicit TCS the SECS
        resident. ``enter`` checks it first, so a ready entry (every ERESUME after a fault)
        costs no generator."""
        if self.tcs_index >= 0:
            return self.encl.pte_present[self.tcs_index]
        return self._secs_resident()

    def _ensure_tcs(self) -> Gen:
        """EENTER/ERESUME fault (#PF) if the TCS is not mapped; the kernel loads it (and the
        SECS first). With the implicit TCS the SECS itself is reloaded if it was evicted."""
        encl = self.encl
        while self.tcs_index >= 0 and not encl.pte_present[self.tcs_index]:
            if not (yield from self._fault_or_park(self.tcs_index, eresume=False)):
                return False
        while self.tcs_index < 0 and not self._secs_resident():
            yield from self.lock(encl.lock)
            ret = yield from encl.load_secs(self)
            self.unlock(encl.lock)
            if ret and ret != -EBUSY:
                return False
            if ret:
                yield from self.run(self.m.costs.fault_entry)
                yield from self.cond_resched()
        return True

    def enter(self) -> Gen:
        """Make sure the thread runs inside its enclave on a CPU (EENTER or ERESUME).

        On failure ``entry_fault`` says how the leaf failed: #GP, an EPCM #PF on the TCS, or
        a #PF on the TCS the kernel could not fix (SIGBUS)."""
        if self.cpu is None:
            yield from self.acquire_cpu()
        if self.entered and not self.aexed:
            return True
        costs = self.m.costs
        tcs_addr = self.encl.linaddr(self.tcs_index) if self.tcs_index >= 0 else 0
        while True:
            if not self._tcs_ready() and not (yield from self._ensure_tcs()):
                self.entry_fault = EnclaveException(X86_TRAP_PF, PF_USER, tcs_addr)
                return False
            if self.entered:  # after an AEX
                yield from self.run(costs.eresume)
                ret = self.hw.eresume(self._lp(), self._tcs_epc(), self.encl.secs_epc)
            else:
                yield from self.run(costs.eenter)
                ret = self.hw.eenter(self._lp(), self._tcs_epc(), self.encl.secs_epc)
            # ksgxd may block and unmap the TCS while the entry runs: the leaf takes a #PF,
            # the kernel maps the TCS again and the instruction is retried.
            if ret == PF and self.tcs_index >= 0 and not self.encl.pte_present[self.tcs_index]:
                continue
            # The implicit TCS stands for a TCS page, and a real TCS pins the SECS: it is a
            # resident child. The model's has no page, so ksgxd can write the SECS back
            # (after the enclave's last resident child) while the entry leaf runs. A real
            # entry would fault on the TCS there and the kernel reload it with the SECS:
            # retry through _ensure_tcs, never SIGBUS a valid access (issue 10).
            if ret and self.tcs_index < 0 and not self._secs_resident():
                continue
            break
        if ret:
            self.entered = False
            if ret == GP:
                self.entry_fault = EnclaveException(X86_TRAP_GP)
            else:  # the EPCM refuses the TCS (not a valid, settled TCS page)
                self.entry_fault = EnclaveException(
                    X86_TRAP_PF, PF_SGX | PF_USER | PF_PROT, tcs_addr
                )
            return False
        self.entry_fault = None
        self.entered = True
        self._tcs_accessed()
        return True

    def _tcs_accessed(self) -> None:
        """EENTER/ERESUME read the TCS through its linear address (RBX): the page walk sets
        the Accessed bit of its PTE (SDM Vol.3A 4.8: every paging-structure entry used for a
        translation gets A set). An AEX or EEXIT flushes the enclave's TLB entries, so each
        entry walks again: a thread that keeps entering keeps its TCS young, and
        ``sgx_reclaim_pages`` passes over it (second chance) as it would on hardware. The
        implicit TCS (``tcs_index < 0``) stands for no page."""
        if self.tcs_index >= 0:
            self.encl.pte_young[self.tcs_index] = True

    def leave(self) -> Gen:
        """EEXIT back to the untrusted runtime."""
        if self.entered and not self.aexed and self.cpu is not None:
            yield from self.run(self.m.costs.eexit)
            self.hw.eexit(self.cpu)
        self.entered = False

    def _fault(self, index: int, charged: bool = False) -> Gen:
        """AEX, #PF into ``sgx_vma_fault``, then ERESUME (or SIGBUS).

        ``charged``: the AEX and the #PF entry were charged already, with the retries of a
        NOPAGE flood (``epcsim.fast.flood``); only the handler runs."""
        costs = self.m.costs
        if charged:
            t0 = self.m.now - (costs.aex + costs.fault_entry)
        else:
            t0 = self.m.now
            if self.cpu is not None and self.entered and not self.aexed:
                self.hw.aex(self.cpu)
            yield from self.run(costs.aex + costs.fault_entry)
        res = yield from sgx_vma_fault(self, self.encl, index)
        return (yield from self._fault_return(res, t0))

    def fault_locked(self, index: int, t0: int) -> Gen:
        """``_fault`` from inside ``sgx_vma_fault`` with ``encl->lock`` just taken (the fault
        began at ``t0``): where the compiled driver stops a fault before a step it leaves to
        Python (``epcsim.fast.driver.stream``), the reference's code goes on from there."""
        res = yield from sgx_vma_fault_locked(self, self.encl, index)
        return (yield from self._fault_return(res, t0))

    def tcs_fault_locked(self, t0: int) -> Gen:
        """``_ensure_tcs``' fault on the TCS from inside ``sgx_vma_fault`` with ``encl->lock``
        just taken (the compiled driver stopped it there: ``fast/driver/vma_fault.tcs_fault``,
        session ``tcsuser``): ``fault_locked`` on the TCS, and if the kernel could not map
        it, the entry failed as ``enter()`` reports it (``entry_fault``, the TCS's address:
        the stream's SIGBUS reports it in ``si_addr``). The caller goes on at its loop top,
        where ``enter()`` is ``_ensure_tcs``' ``while`` and the entry after it."""
        ok = yield from self.fault_locked(self.tcs_index, t0)
        if not ok:
            tcs_addr = self.encl.linaddr(self.tcs_index)
            self.entry_fault = EnclaveException(X86_TRAP_PF, PF_USER, tcs_addr)
        return ok

    def _fault_return(self, res: int, t0: int) -> Gen:
        """``sgx_vma_fault`` returned ``res``: the latency, SIGBUS or the return to user."""
        self.sgx.fault_latency_ns.append(self.m.now - t0)
        if res != VM_FAULT_NOPAGE:
            self.sgx.stats.sigbus += 1
            self.encl.sigbus += 1
            return False
        yield from self.cond_resched()  # return to user: need_resched is honoured here
        return True

    # -- accesses ---------------------------------------------------------------------------
    def access_stream(self, pages: np.ndarray, write: bool | np.ndarray = False) -> Gen:
        """Touch ``pages`` (page indices) in order; stops at the first SGX #PF or SIGBUS."""
        encl = self.encl
        costs = self.m.costs
        # C-contiguous, writable int64 pages and bool writes, as the compiled thread machine
        # passes them: a read-only stream (a frozen array, ``np.broadcast_to``'s mask of a
        # scalar ``write``) would compile ``resident_run``/``young_again`` once more per
        # layout (tests/README.md, "One compiled signature per machine"); one copy per
        # stream, not per chunk
        pages = np.require(pages, dtype=np.int64, requirements=("C", "W"))
        writes = np.require(
            np.broadcast_to(np.asarray(write, dtype=np.bool_), pages.shape), requirements=("C", "W")
        )
        n = pages.size
        if n and (pages.min() < 0 or pages.max() >= encl.nr_pages):
            raise ValueError("pages: index outside the enclave")
        out = AccessOutcome()
        epcm = self.hw.epcm
        apply_tags = self.hw.content_mode != "full"
        # A run of resident accesses is charged in one step of at most ACCESS_QUANTUM_NS, so
        # the reclaimer's young checks interleave with it at that granularity.
        chunk_max = max(1, min(self.timeslice_ns, ACCESS_QUANTUM_NS) // max(1, costs.access))
        # ``System(fast_core=True)``, or "auto" (the default) where it pays: the loop runs on
        # the compiled core from its top while the regime holds (epcsim.fast.driver.stream);
        # ``stream`` returns None where it declines; no core on the reference engine
        core = self.sgx.stream_core
        hook = None if core is None else core.stream(self, pages, writes)
        i = 0
        rest: Gen | None = None  # the core took the fault over (``CoreTakesOver``)
        while i < n:
            if hook is not None:
                if rest is None:
                    moved = yield from hook.run(i, out.done)
                else:
                    moved, rest = (yield from rest), None
                if moved is not None:
                    i, out.done, end = moved
                    if end == STREAM_SIGBUS:  # a fault the core began ended in SIGBUS
                        self._sigbus_at(out, pages.item(i))
                        break
                    if end == STREAM_PF:  # the stream ends with a #PF at pages[i], as below
                        idx = pages.item(i)
                        w = bool(writes[i])
                        if encl.pte_present[idx]:  # the EPCM refuses it
                            out.pf_error = self._pf_code(idx, w)
                        else:  # access_error(): the VMA forbids it
                            out.pf_error = PF_USER | (PF_WRITE if w else 0)
                        out.fault_address = encl.linaddr(idx)
                        break
                    if i >= n:
                        break
            # the thread holds no CPU (as at every call's start: ``System._call`` released it
            # at the last one's end), which is why the core declined this loop top
            # (``core_regime._ready``); once on its CPU, the loop top is tried again (below),
            # with ksgxd asleep or its batch in flight (session ``row1b`` lifted session
            # ``row1``'s "ksgxd asleep" limit: a batch holding the last references of an
            # enclave closed meanwhile, whose ``kref_put`` only its generator can run -
            # ``KB_RELEASE`` -, is ``_ready``'s to decline, ``held_by_a_batch_only``)
            off_cpu = hook is not None and self.cpu is None
            try:
                ok = yield from self.enter()
            except CoreTakesOver as took:  # in the entry's TCS fault: the loop top's
                rest = took.rest
                continue
            if not ok:
                # the entry's fault stopped the stream: its address is the TCS's for a #PF
                # on the TCS (0 for a #GP), as the kernel's SIGBUS reports it in si_addr
                out.sigbus = True
                out.fault_address = self.entry_fault.addr if self.entry_fault else 0
                break
            if off_cpu and (n - i > chunk_max or not encl.pte_present[pages[i:]].all()):
                # Back to the loop top, now on a CPU inside the enclave, so that the core
                # runs this iteration rather than Python (session ``row1``): a call's first
                # iteration otherwise ran in Python - a resident run (whose compiled code a
                # process's first such call loads from numba's cache, ~10 ms) or, on a page
                # not resident, the whole Python fault path. Exact: ``enter()`` at the top
                # again is a no-op (CPU held, entered, no AEX: it returns without a step),
                # and the core from a loop top gives what Python's iteration gives. No loop
                # for ever: if the core declines again, the thread holds its CPU this time.
                # Not where one resident run in Python ends the stream (a short stream of
                # mapped pages, ``Enclave.access`` on one): a core entry (~1 ms of Python
                # set-up and fold) would cost more than the run it saves.
                continue
            idx = pages.item(i)
            if encl.pte_present[idx]:
                j = min(n, i + chunk_max)
                seg = pages[i:j]
                # the PTE (VMA protection) first, then the EPCM; Accessed bits and the
                # content tags of written pages (one statement: epcsim.fast.access.
                # resident_run). ``seg[0]`` is mapped, so ``k >= 1``: a stream's fault costs
                # no compiled call just to learn that its first page is not mapped.
                k, k2 = resident_run(
                    seg,
                    writes[i:j],
                    encl.pages.flags,
                    encl.pages.desc,
                    encl.pages.prot,
                    epcm.flags,
                    epcm.tag,
                    apply_tags,
                )
                cut = False
                if k2:
                    ns = k2 * costs.access
                    ran = yield from self.run_user(ns)
                    cut = ran < ns
                    if cut:  # preempted (an interrupt, AEX): the rest after ERESUME
                        k2 = ran // costs.access
                    self.sgx.stats.enclave_accesses += k2
                    # accessed during the step: still-mapped pages are young again at its end
                    young_again(seg[:k2], encl.pages.flags)
                    i += k2
                    out.done += k2
                # the EPCM refuses: an SGX #PF reported to the enclave/runtime (not a step cut
                # short by a preemption: its pages were allowed, and the loop goes on at
                # ``seg[k2]`` after the ERESUME; session ``onecpu`` found the #PF reported)
                if k2 < k and not cut:
                    idx = int(seg[k2])
                    out.pf_error = self._pf_code(idx, bool(writes[i]))
                    out.fault_address = encl.linaddr(idx)
                    break
                yield from self.cond_resched()
                continue
            if not self._vma_allows(idx, bool(writes[i])):
                # access_error(): the VMA forbids the access, so the #PF (present bit clear)
                # never reaches the driver
                out.pf_error = PF_USER | (PF_WRITE if writes[i] else 0)
                out.fault_address = encl.linaddr(idx)
                break
            # ``_fault_or_park`` is ``_fault`` unless the fast engine charges NOPAGE floods in
            # bulk: call ``_fault`` directly then, one generator less per fault
            fault = self._fault if self.sgx.flood is None else self._fault_or_park
            try:
                ok = yield from fault(idx)
            except CoreTakesOver as took:  # the loop top's (the class's docstring)
                rest = took.rest
                continue
            if not ok:
                self._sigbus_at(out, idx)
                break
        if hook is not None:
            hook.close()  # the stream is over (``StreamCore.live``)
        return out

    def _sigbus_at(self, out: AccessOutcome, idx: int) -> None:
        """The stream ends with SIGBUS from the fault on page ``idx``."""
        out.sigbus = True
        # a parked flood's last retry may have been the TCS's fault (the entry's)
        ef = self.entry_fault
        out.fault_address = self.encl.linaddr(idx) if ef is None else ef.addr

    def _fault_or_park(self, index: int, eresume: bool = True) -> Gen:
        """``_fault``; on the fast engine, a retry that failed for want of a free EPC page
        parks the thread until a retry may differ (``epcsim.fast.flood``, a named deviation),
        then runs that retry's handler. ``eresume``: each retry re-enters the enclave first
        (an access); without, it is the TCS fault of an entry (``_ensure_tcs``)."""
        ok = yield from self._fault(index)
        return (yield from self.parks(index, eresume, ok))

    def parks(self, index: int, eresume: bool, ok: bool, moved: Any = None) -> Gen:
        """``_fault_or_park``'s loop after a fault that returned ``ok``: while the next retry
        would fail alike, park, then run the decision's handler. ``moved``: a park the
        compiled core began and handed back (``fast.cosim.transfer_flood``, session
        ``uflood``): the loop goes on inside it, ``(park, decided)``."""
        flood = self.sgx.flood
        while ok and flood is not None:
            if moved is not None:
                park = flood.parked_rest(*moved)
                moved = None
            elif flood.parkable(self, index, eresume):
                park = flood.park(self, index, eresume)
            else:
                break
            if (yield from park):
                # the last ERESUME found the TCS zapped: this retry's fault is the TCS's, as
                # in enter(); the access is retried after the next entry. If the kernel
                # cannot map the TCS, the entry failed: reported as enter() reports it.
                ok = yield from self._fault(self.tcs_index, charged=True)
                if not ok:
                    tcs_addr = self.encl.linaddr(self.tcs_index)
                    self.entry_fault = EnclaveException(X86_TRAP_PF, PF_USER, tcs_addr)
                return ok
            ok = yield from self._fault(index, charged=True)
        return ok

    def _pf_code(self, index: int, write: bool) -> int:
        """A regular #PF when the PTE forbids the access (e.g. after mprotect), else the SGX
        #PF the EPCM check reports (error code with PF_SGX set)."""
        vma = int(self.encl.vma_prot[index])
        if not (vma & 1) or (write and not (vma & 2)):
            return PF_USER | PF_PROT | (PF_WRITE if write else 0)
        epc = int(self.encl.epc[index])
        code = self.hw.access(self._lp(), self.encl.linaddr(index), epc, write, False)
        if not code:  # fall back to the architectural encoding
            code = PF_SGX | PF_USER | PF_PROT | (PF_WRITE if write else 0)
        return code
