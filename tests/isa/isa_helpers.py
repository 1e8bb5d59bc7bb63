"""Shared builders for the hardware-model tests: one enclave at EPC 0, a VA page at 1."""

from epcsim.arch import (
    PAGE_SIZE,
    X86_TRAP_GP,
    X86_TRAP_PF,
    PageType,
    encls_fault,
    secinfo_flags,
)
from epcsim.isa import PageInfo, Secs, SgxCpu, Sigstruct

GP = encls_fault(X86_TRAP_GP)
PF = encls_fault(X86_TRAP_PF)
BASE, SIZE = 0x10000, 0x10000
REG_RW = secinfo_flags(PageType.REG, 3)
SECS_FLAGS = secinfo_flags(PageType.SECS)
MODULUS = bytes(range(256)) + bytes(128)
SECS_EPC, VA_EPC = 0, 1
MODES = ("full", "mac", "tag")


def page_content(mode: str, i: int):
    """Distinct contents for page ``i``: bytes in ``full`` mode, a tag otherwise."""
    return bytes([i + 1]) * PAGE_SIZE if mode == "full" else 0x1000 + i


def snapshot(cpu: SgxCpu, epc: int):
    """What a page holds: bytes in ``full`` mode, its tag otherwise."""
    return cpu.read(epc, 0, PAGE_SIZE) if cpu.content_mode == "full" else cpu.content_tag(epc)


def create(cpu: SgxCpu, epc: int, base: int = BASE, size: int = SIZE) -> int:
    return cpu.ecreate(PageInfo(contents=Secs(size=size, base=base), metadata=SECS_FLAGS), epc)


def init(cpu: SgxCpu, secs: int = SECS_EPC, **fields) -> int:
    mr = cpu.secs_state(secs).measurement_digest()
    return cpu.einit(Sigstruct.sign(mr, MODULUS, **fields), secs)


def enclave(mode="tag", pages=4, init_=True, lps=2, nr_pages=32, seed=7, measure=False):
    """ECREATE at EPC 0, EPA at 1, EADD pages at 2.. (linear address BASE + i*4K)."""
    cpu = SgxCpu(nr_pages, nr_lps=lps, content_mode=mode, seed=seed)
    assert create(cpu, SECS_EPC) == 0
    assert cpu.epa(VA_EPC) == 0
    for i in range(pages):
        pi = PageInfo(
            linaddr=BASE + i * PAGE_SIZE,
            secs=SECS_EPC,
            contents=page_content(mode, i),
            metadata=REG_RW,
        )
        assert cpu.eadd(pi, 2 + i) == 0
        if measure:
            for c in range(16):
                assert cpu.eextend(SECS_EPC, 2 + i, c) == 0
    if init_:
        assert init(cpu) == 0
    return cpu


def evict(cpu: SgxCpu, epc: int, slot: int = 0, secs: int = SECS_EPC, va: int = VA_EPC):
    """EBLOCK, ETRACK, EWB (nobody inside): the sealed record."""
    assert cpu.eblock(epc) == 0
    assert cpu.etrack(secs) == 0
    ret, sealed = cpu.ewb(PageInfo(), epc, va, slot)
    assert ret == 0 and sealed is not None
    return sealed


def reload(cpu, sealed, epc, linaddr, slot=0, secs=SECS_EPC, va=VA_EPC, blocked=False):
    pi = PageInfo(linaddr=linaddr, secs=secs, contents=sealed.contents, metadata=sealed.pcmd)
    return cpu.eldu(pi, epc, va, slot, blocked=blocked)
