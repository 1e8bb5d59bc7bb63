"""One instruction of enclave code run by an ``EnclaveThread``: ``execute`` (the vDSO path of
:mod:`epcsim.user.vdso`, which reports the exceptions the kernel leaves to user space instead
of stopping) and ``enclu_on_page`` (an ENCLU leaf on a page from inside, what
``Enclave.eaccept``/``emodpe``/``eacceptcopy`` run).

Why a module of its own: ``user/thread.py`` holds the thread's entry, its fault path and
``access_stream`` (the paths the compiled driver restates step by step, ``fast/driver/
thread.py``); running single instructions is the other way to be inside, on the same entry
and fault path. ``InsnExecution`` is a mixin of ``EnclaveThread`` (split from
``user/thread.py`` by session ``split``, no code changed): the attributes and methods it
uses are ``EnclaveThread``'s and ``Task``'s, declared below for the type checker only.
"""

from typing import TYPE_CHECKING

from epcsim.arch import PAGE_SIZE, PF_PROT, PF_SGX, PF_USER, PF_WRITE
from epcsim.engine.machine import Gen
from epcsim.isa.core import GP, PF
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.user.insn import (
    ENCLU_LEAVES,
    X86_TRAP_GP,
    X86_TRAP_PF,
    X86_TRAP_UD,
    Eaccept,
    Eacceptcopy,
    Emodpe,
    EnclaveException,
    Illegal,
    Instruction,
    Load,
    Store,
)

if TYPE_CHECKING:
    from epcsim.engine.machine import Machine
    from epcsim.isa import SgxCpu
    from epcsim.kernel.main import Sgx


class InsnExecution:
    """``execute`` and ``enclu_on_page`` of ``EnclaveThread`` (module docstring)."""

    if TYPE_CHECKING:
        encl: SgxEncl
        sgx: Sgx
        hw: SgxCpu
        m: Machine
        cpu: int | None
        entry_fault: EnclaveException | None

        def enter(self) -> Gen: ...

        def _fault(self, index: int, charged: bool = False) -> Gen: ...

        def _lp(self) -> int: ...

        def run(self, ns: int) -> Gen: ...

    def enclu_on_page(self, index: int, leaf, src: int = -1) -> Gen:
        """Run an ENCLU leaf on a page from inside; #PF on an unmapped page goes to the
        kernel (which EAUGs an absent page on SGX2 - the ``augment_via_eaccept`` flow).

        ``src`` is a second page the leaf reads (EACCEPTCOPY's source): the CPU reaches it
        through the enclave's mapping too, so an evicted source faults, ``sgx_vma_fault``
        loads it (ELDU) and the leaf is retried with both pages mapped."""
        encl = self.encl
        while True:
            if not (yield from self.enter()):
                return None
            missing = self._first_unmapped(index, src)
            if missing < 0:
                return leaf(self.cpu, int(encl.epc[index]))
            if not (yield from self._fault(missing)):
                return None

    def _first_unmapped(self, index: int, src: int = -1) -> int:
        """The first of the pages an instruction needs whose PTE is missing, or -1."""
        pte = self.encl.pte_present
        if not pte[index]:
            return index
        if 0 <= src < self.encl.nr_pages and not pte[src]:
            return src
        return -1

    # -- one instruction of enclave code (the vDSO path) --------------------------------------
    def _vma_allows(self, index: int, write: bool) -> bool:
        vma = int(self.encl.vma_prot[index])
        return bool(vma & PROT_R) and (not write or bool(vma & PROT_W))

    def execute(self, insn: Instruction) -> Gen:
        """Execute one instruction of enclave code; returns ``(result, exception)``.

        Faults the kernel fixes stay invisible, as on the CPU: a missing PTE is an AEX into
        ``sgx_vma_fault`` (ELDU, or EAUG of an absent page on SGX2) and the AEP's ERESUME
        re-executes the instruction. Anything else comes back as an ``EnclaveException``
        with the thread still inside the enclave (the vDSO then takes the AEX):

        * the VMA forbids the access: #PF without ``PF_SGX``, with ``PF_PROT`` only when the
          PTE is present (mprotect keeps PTEs and write-protects them: error 0x7);
        * the kernel cannot map the page (SIGBUS, e.g. a failed ELDU): #PF, present clear -
          ``do_sigbus`` hands it to the vDSO fixup;
        * the EPCM refuses: SGX #PF (0x8005 read, 0x8007 write);
        * an ENCLU leaf raises #GP or #PF; an instruction illegal in enclave mode is #UD.

        An access's effect (bytes written, Accessed bit) is applied at the instant its checks
        pass and its time is charged after: the reclaimer cannot EWB the page in between,
        because on the CPU it must first block it and force this LP out (ETRACK, IPI).
        ENCLU leaves do not check the VMA (their operand is the EPC page itself); the #PF
        error code of a leaf refused by the EPCM is taken as a read's (0x8005), an
        assumption: the SDM gives no error code for it.
        """
        encl = self.encl
        costs = self.m.costs
        if isinstance(insn, Illegal):
            if not (yield from self.enter()):
                return None, self.entry_fault
            return None, EnclaveException(X86_TRAP_UD)
        addr = int(insn.addr)
        idx = (addr - encl.base) >> 12
        write = isinstance(insn, Store)
        leaf = isinstance(insn, ENCLU_LEAVES)
        miss = PF_USER | (PF_WRITE if write else 0)
        if not 0 <= addr - encl.base < encl.size:
            # the model maps no untrusted memory: outside ELRANGE nothing is mapped
            return None, EnclaveException(X86_TRAP_PF, miss, addr)
        if isinstance(insn, (Load, Store)):
            n = insn.n if isinstance(insn, Load) else len(insn.data)
            if n < 0 or addr % PAGE_SIZE + n > PAGE_SIZE:
                raise ValueError(f"insn: an access must stay inside one page, got {insn!r}")
        # EACCEPTCOPY also reads its source page: an evicted source faults and is loaded
        src_idx = (int(insn.src) - encl.base) >> 12 if isinstance(insn, Eacceptcopy) else -1
        while True:
            if not (yield from self.enter()):
                return None, self.entry_fault
            missing = self._first_unmapped(idx, src_idx)
            if missing < 0:
                break
            if not leaf and not self._vma_allows(idx, write):
                return None, EnclaveException(X86_TRAP_PF, miss, addr)
            if not (yield from self._fault(missing)):
                fault_addr = addr if missing == idx else encl.linaddr(missing)
                return None, EnclaveException(X86_TRAP_PF, miss, fault_addr)
        lp = self._lp()
        epc = int(encl.epc[idx])
        hw = self.hw
        page_addr = addr - addr % PAGE_SIZE
        if leaf:
            stats = self.sgx.stats
            if isinstance(insn, Eaccept):
                ret = hw.eaccept(lp, insn.flags, addr, epc)
                stats.eaccept += 1
                cost = costs.eaccept
            elif isinstance(insn, Emodpe):
                ret = hw.emodpe(lp, insn.flags, addr, epc)
                stats.emodpe += 1
                cost = costs.emodpe
            else:
                assert isinstance(insn, Eacceptcopy)
                src = (int(insn.src) - encl.base) >> 12
                src_epc = int(encl.epc[src]) if 0 <= src < encl.nr_pages else -1
                ret = hw.eacceptcopy(lp, insn.flags, addr, epc, src_epc)
                stats.eaccept += 1
                cost = costs.eaccept
            yield from self.run(cost)
            if ret == GP:
                return None, EnclaveException(X86_TRAP_GP)
            if ret == PF:
                return None, EnclaveException(X86_TRAP_PF, PF_SGX | PF_USER | PF_PROT, page_addr)
            return int(ret), None
        if not self._vma_allows(idx, write):
            return None, EnclaveException(X86_TRAP_PF, miss | PF_PROT, addr)
        code = hw.access(lp, page_addr, epc, write)
        if code:
            return None, EnclaveException(X86_TRAP_PF, code, addr)
        value = None
        if isinstance(insn, Store):
            hw.write(epc, addr % PAGE_SIZE, insn.data)
        elif isinstance(insn, Load) and hw.content_mode == "full":
            value = hw.read(epc, addr % PAGE_SIZE, insn.n)
        encl.pte_young[idx] = True
        self.sgx.stats.enclave_accesses += 1
        yield from self.run(costs.access)
        return value, None


__all__ = ["InsnExecution"]
