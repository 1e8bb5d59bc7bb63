"""What enclave code can do, one instruction at a time, and how an instruction can fail.

Enclave code in the model is a Python generator that yields these instructions to the thread
running it (``EnclaveThread.execute``) and receives each one's result: ``Load`` gives the
bytes read (``content_mode="full"``; ``None`` otherwise), ``Store`` gives ``None``, an
ENCLU leaf gives the SGX return code it leaves in RAX. Suspending the generator at a
faulting instruction is what lets ERESUME re-execute exactly that instruction, as the CPU
does from the SSA frame (SDM Vol.3D "ERESUME").

An instruction the kernel cannot fix ends the enclave call with an ``EnclaveException``:
the exception vector, error code and faulting address the vDSO's fixup writes into
``struct sgx_enclave_run`` (``fixup_vdso_exception``; see :mod:`epcsim.user.vdso`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: exception vectors the vDSO reports (``exception_vector``)
X86_TRAP_UD = 6
X86_TRAP_GP = 13
X86_TRAP_PF = 14


@dataclass(frozen=True)
class EnclaveException:
    """An exception in the enclave that the kernel did not fix: ``vector`` (6 #UD, 13 #GP,
    14 #PF), the page-fault ``error_code`` (``PF_SGX`` set when the EPCM refused, not the
    page tables) and the faulting linear address ``addr`` (0 for #GP and #UD)."""

    vector: int
    error_code: int = 0
    addr: int = 0


@dataclass(frozen=True)
class Load:
    """Read ``n`` bytes at linear address ``addr`` (one page at most)."""

    addr: int
    n: int = 8


@dataclass(frozen=True)
class Store:
    """Write ``data`` at linear address ``addr`` (one page at most)."""

    addr: int
    data: bytes


@dataclass(frozen=True)
class Eaccept:
    """ENCLU[EACCEPT] of the page at ``addr`` with SECINFO flags ``flags``."""

    addr: int
    flags: int


@dataclass(frozen=True)
class Emodpe:
    """ENCLU[EMODPE] of the page at ``addr``: extend its EPCM permissions to ``flags``."""

    addr: int
    flags: int


@dataclass(frozen=True)
class Eacceptcopy:
    """ENCLU[EACCEPTCOPY]: fill the PENDING page at ``addr`` from ``src`` and accept it."""

    addr: int
    src: int
    flags: int


@dataclass(frozen=True)
class Illegal:
    """An instruction enclave mode forbids (CPUID, SYSCALL, INT ...): #UD (SDM Vol.3D
    "Instructions that cause #UD inside an enclave")."""

    name: str = "cpuid"


Instruction = Load | Store | Eaccept | Emodpe | Eacceptcopy | Illegal
ENCLU_LEAVES = (Eaccept, Emodpe, Eacceptcopy)

__all__ = [
    "ENCLU_LEAVES",
    "X86_TRAP_GP",
    "X86_TRAP_PF",
    "X86_TRAP_UD",
    "Eaccept",
    "Eacceptcopy",
    "Emodpe",
    "EnclaveException",
    "Illegal",
    "Instruction",
    "Load",
    "Store",
]
