"""``__vdso_sgx_enter_enclave`` and ``struct sgx_enclave_run`` (uapi ``asm/sgx.h``).

How Linux user space runs enclave code: the caller fills a ``struct sgx_enclave_run`` (the
TCS to enter through, an optional exit handler) and calls the vDSO with the ENCLU leaf to
use, EENTER or ERESUME. The vDSO executes it and returns 0 when the enclave leaves:

* by EEXIT: ``function`` is set to EEXIT (4);
* by an exception the kernel did not fix (an EPCM #PF, a #PF the page tables forbid, #GP,
  #UD): the kernel's ``fixup_vdso_exception`` writes ``exception_vector``,
  ``exception_error_code`` and ``exception_addr`` and ``function`` is the leaf to resume
  with, ERESUME (3) - the value AEX leaves in RAX. If the ENCLU itself faulted (e.g. EENTER
  through a busy TCS: #GP) ``function`` keeps the leaf that faulted.

The exception fields are written only when an exception is reported, never cleared (the
selftests zero them by hand between calls). Faults the kernel fixes (a missing PTE: ELDU, or
EAUG on SGX2; an interrupt) are invisible: the CPU re-enters at the AEP with ERESUME.

With ``user_handler`` set, the vDSO calls it after every exit, and its return value decides
what happens next: 0 or negative is returned to the caller, EENTER or ERESUME re-enters the
enclave with that leaf (any other positive value is -EINVAL, like a bad ``function``). The
handler here is a Python callable taking the run struct (the registers the real handler
also receives are not modelled). ``function`` other than EENTER/ERESUME, or a non-zero
``reserved`` area, is -EINVAL.

Enclave code is what the caller passes as ``op`` (the selftest's ``rdi``): an object with a
``code()`` method returning a generator of :mod:`~epcsim.user.insn` instructions, e.g. the
selftest enclave's operations in :mod:`epcsim.user.encl_ops`, or a generator object itself
(usable for one entry only).

SSA frames (named decision; the ISA model keeps no CSSA/NSSA): each TCS has one SSA frame,
as the selftest enclave's TCSs do (NSSA = 1). After a reported exception the TCS holds the
interrupted context (CSSA = 1) and remembers the suspended code at its faulting
instruction; ERESUME re-executes that instruction and continues the code. EENTER on such a
TCS, or ERESUME on one without an interrupted context, is a #GP of the ENCLU - which is why
the selftests enter through the second TCS to repair a fault taken on the first.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from epcsim.arch import EINVAL, PAGE_SIZE, PF_USER
from epcsim.engine.machine import Gen
from epcsim.user.insn import X86_TRAP_GP, X86_TRAP_PF, EnclaveException, Instruction

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxEncl
    from epcsim.user.thread import EnclaveThread

#: ENCLU leaf numbers (``enum sgx_enclu_function``)
EENTER = 2
ERESUME = 3
EEXIT = 4

SGX_ENCLAVE_RUN_RESERVED = 216  # bytes of reserved[] after the used fields (256 in all)


@dataclass
class SgxEnclaveRun:
    """``struct sgx_enclave_run``: ``tcs`` is the linear address of the TCS to enter."""

    tcs: int = 0
    function: int = 0
    exception_vector: int = 0
    exception_error_code: int = 0
    exception_addr: int = 0
    user_handler: Callable[[SgxEnclaveRun], int] | None = None
    user_data: int = 0
    reserved: bytes = bytes(SGX_ENCLAVE_RUN_RESERVED)

    def clear_exception(self) -> None:
        """What the selftests do after checking an exception: zero the three fields."""
        self.exception_vector = self.exception_error_code = self.exception_addr = 0


@dataclass
class _SsaFrame:
    """The interrupted context of a TCS (its one SSA frame in use)."""

    code: Generator[Instruction, Any, Any]
    insn: Instruction
    exception: EnclaveException = field(default_factory=lambda: EnclaveException(0))


#: id(encl) -> its TCSs' interrupted contexts; an entry goes with its enclave object
_frames: dict[int, dict[int, _SsaFrame]] = {}


def ssa_frames(encl: SgxEncl) -> dict[int, _SsaFrame]:
    """TCS page index -> its interrupted context, for the TCSs that have one (CSSA = 1)."""
    key = id(encl)
    frames = _frames.get(key)
    if frames is None:
        frames = _frames[key] = {}
        weakref.finalize(encl, _frames.pop, key, None)
    return frames


def _code_of(op: Any) -> Generator[Instruction, Any, Any]:
    code = op.code() if hasattr(op, "code") else op
    if not isinstance(code, Generator):
        raise ValueError(f"op: enclave code (an object with code() or a generator), got {op!r}")
    return code


def _report(run: SgxEnclaveRun, function: int, exc: EnclaveException | None) -> None:
    run.function = function
    if exc is not None:
        run.exception_vector = exc.vector
        run.exception_error_code = exc.error_code
        run.exception_addr = exc.addr


def _enclu(thread: EnclaveThread, op: Any, leaf: int, run: SgxEnclaveRun) -> Gen:
    """One ENCLU[EENTER/ERESUME] and what runs until the enclave exits."""
    encl = thread.encl
    costs = thread.m.costs
    frames = ssa_frames(encl)
    tcs = int(run.tcs)
    index = (tcs - encl.base) >> 12
    if tcs % PAGE_SIZE or not 0 <= tcs - encl.base < encl.size:
        # an unaligned TCS operand is a #GP; an address outside the enclave maps nothing
        exc = EnclaveException(X86_TRAP_GP) if tcs % PAGE_SIZE else None
        _report(run, leaf, exc or EnclaveException(X86_TRAP_PF, PF_USER, tcs))
        return
    frame = frames.get(index)
    if (leaf == EENTER) == (frame is not None):  # CSSA == NSSA, or nothing to resume
        yield from thread.run(costs.eenter if leaf == EENTER else costs.eresume)
        _report(run, leaf, EnclaveException(X86_TRAP_GP))
        return
    code = frame.code if frame is not None else _code_of(op)  # ERESUME ignores op
    thread.tcs_index = index
    thread.entered = leaf == ERESUME  # ERESUME: entered, and its CPU is not inside (AEXed)
    if not (yield from thread.enter()):
        _report(run, leaf, thread.entry_fault)
        return
    insn: Instruction | None
    if frame is not None:
        del frames[index]
        insn = frame.insn
    else:
        try:
            insn = next(code)
        except StopIteration:
            insn = None
    while insn is not None:
        result, exc = yield from thread.execute(insn)
        if exc is not None:
            # AEX: the context goes to the SSA frame; RAX holds ERESUME for the AEP
            if thread.entered and not thread.aexed and thread.cpu is not None:
                thread.hw.aex(thread.cpu)
            thread.entered = False
            yield from thread.run(costs.aex + costs.fault_entry)  # exception entry, fixup
            frames[index] = _SsaFrame(code, insn, exc)
            _report(run, ERESUME, exc)
            return
        try:
            insn = code.send(result)
        except StopIteration:
            insn = None
    yield from thread.leave()
    _report(run, EEXIT, None)


def vdso_sgx_enter_enclave(
    thread: EnclaveThread, op: Any, function: int, run: SgxEnclaveRun
) -> Gen:
    """``__vdso_sgx_enter_enclave(rdi=op, ..., function, run)`` run by ``thread``.

    Returns what the vDSO returns: 0, ``-EINVAL``, or a negative value from the handler.
    """
    if not isinstance(run, SgxEnclaveRun):
        raise ValueError(f"run: an SgxEnclaveRun, got {run!r}")
    if any(run.reserved):
        return -EINVAL
    leaf = function
    while True:
        if leaf not in (EENTER, ERESUME):
            return -EINVAL
        yield from _enclu(thread, op, leaf, run)
        if run.user_handler is None:
            return 0
        ret = int(run.user_handler(run))
        if ret <= 0:
            return ret
        leaf = ret


__all__ = [
    "EENTER",
    "EEXIT",
    "ERESUME",
    "SgxEnclaveRun",
    "ssa_frames",
    "vdso_sgx_enter_enclave",
]
