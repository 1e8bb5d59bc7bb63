"""The selftest enclave's operations (tools/testing/selftests/sgx ``test_encl.c``, spec §15).

Each class is one ``encl_op_*`` struct: the caller fills the inputs, passes it to the vDSO
(``Enclave.vdso_call``) and reads the outputs back after EEXIT, as the selftests do through
``rdi``. ``code()`` is what the enclave executes for it, as instructions of
:mod:`epcsim.user.insn`: if one faults, ERESUME continues from that instruction.

``encl_buffer`` is a link-time constant of the real enclave; here the buffer operations carry
its linear address (``buffer``). Values are 64-bit, little endian, as on x86. Reading a value
back needs ``content_mode="full"`` (other modes keep only a content tag per page).
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from epcsim.user.insn import Eaccept, Emodpe, Instruction, Load, Store

Code = Generator[Instruction, Any, None]


def _u64(raw: bytes | None) -> int | None:
    return None if raw is None else int.from_bytes(raw, "little")


@dataclass
class PutToBuffer:
    """ENCL_OP_PUT_TO_BUFFER: copy ``value`` into the first 8 bytes of ``encl_buffer``."""

    value: int
    buffer: int

    def code(self) -> Code:
        yield Store(self.buffer, self.value.to_bytes(8, "little"))


@dataclass
class GetFromBuffer:
    """ENCL_OP_GET_FROM_BUFFER: ``value`` = the first 8 bytes of ``encl_buffer``."""

    buffer: int
    value: int | None = None

    def code(self) -> Code:
        self.value = _u64((yield Load(self.buffer, 8)))


@dataclass
class PutToAddress:
    """ENCL_OP_PUT_TO_ADDRESS: write ``value`` at ``addr``."""

    value: int
    addr: int

    def code(self) -> Code:
        yield Store(self.addr, self.value.to_bytes(8, "little"))


@dataclass
class GetFromAddress:
    """ENCL_OP_GET_FROM_ADDRESS: ``value`` = the 8 bytes at ``addr``."""

    addr: int
    value: int | None = None

    def code(self) -> Code:
        self.value = _u64((yield Load(self.addr, 8)))


@dataclass
class Nop:
    """ENCL_OP_NOP: enter and leave."""

    def code(self) -> Code:
        return
        yield  # a generator with no instruction


@dataclass
class EacceptOp:
    """ENCL_OP_EACCEPT: ENCLU[EACCEPT] of ``epc_addr`` with SECINFO ``flags``; ``ret`` is
    what the leaf left in RAX (0 or an SGX error code). A #GP/#PF is an exception instead."""

    epc_addr: int
    flags: int
    ret: int | None = None

    def code(self) -> Code:
        self.ret = yield Eaccept(self.epc_addr, self.flags)


@dataclass
class EmodpeOp:
    """ENCL_OP_EMODPE: ENCLU[EMODPE] of ``epc_addr`` to extend its permissions to ``flags``."""

    epc_addr: int
    flags: int

    def code(self) -> Code:
        yield Emodpe(self.epc_addr, self.flags)


@dataclass
class InitTcsPage:
    """ENCL_OP_INIT_TCS_PAGE: write a TCS into a (still REG) page before it is converted:
    ``ssa`` and ``entry`` are offsets from the enclave base, one SSA frame (NSSA = 1),
    FS/GS limits 0xFFFFFFFF. Layout of SDM Vol.3D "Thread Control Structure". The model's
    EENTER does not read these fields; writing them is the enclave's part of ``tcs_create``."""

    tcs_page: int
    ssa: int
    entry: int

    def code(self) -> Code:
        tcs = struct.pack(
            "<QQQIIQQQQII",
            0,  # STATE
            0,  # FLAGS
            self.ssa,  # OSSA
            0,  # CSSA
            1,  # NSSA
            self.entry,  # OENTRY
            0,  # AEP
            0,  # OFSBASE
            0,  # OGSBASE
            0xFFFFFFFF,  # FSLIMIT
            0xFFFFFFFF,  # GSLIMIT
        )
        yield Store(self.tcs_page, tcs)


__all__ = [
    "EacceptOp",
    "EmodpeOp",
    "GetFromAddress",
    "GetFromBuffer",
    "InitTcsPage",
    "Nop",
    "PutToAddress",
    "PutToBuffer",
]
