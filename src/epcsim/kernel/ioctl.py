"""The enclave uAPI: ``sgx/ioctl.c`` (spec §10).

Each ioctl validates its arguments in the kernel's order with the kernel's errno, and the
per-page loops report partial success through ``count`` exactly as the kernel does. Handlers
return ``IoctlResult`` with ``ret`` = 0 or ``-errno`` (userspace would see -1 and errno).

Argument structs mirror ``arch/x86/include/uapi/asm/sgx.h``. User memory is not modelled
as addresses: ``src`` carries the page data itself (``bytes`` or ``None`` for zero pages),
and ``src_addr`` the user address whose alignment the kernel checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from epcsim.arch import (
    EACCES,
    EBUSY,
    EFAULT,
    EINVAL,
    EIO,
    EPERM,
    ERESTARTSYS,
    PAGE_SIZE,
    SGX_ATTR_UNPRIV_MASK,
    Attribute,
    PageType,
    SgxReturn,
    encls_faulted,
    errno_name,
    secinfo_page_type,
)
from epcsim.engine.machine import Gen, Task
from epcsim.isa import PageInfo, Secs, Sigstruct
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.kernel.epc import OWNER_SECS

SGX_PAGE_MEASURE = 0x01
U64_MAX = (1 << 64) - 1


@dataclass
class IoctlResult:
    """What userspace gets back: the return value and the copied-back struct fields."""

    ret: int = 0  # 0 or -errno
    count: int = 0  # bytes fully processed (ADD_PAGES and the SGX2 ioctls)
    result: int = 0  # SGX return code of a failing EMODPR/EMODT (SGX2 ioctls)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def errno(self) -> str | None:
        """The errno name (``"EAGAIN"``) or None on success."""
        return errno_name(-self.ret) if self.ret < 0 else None

    @property
    def ok(self) -> bool:
        return self.ret == 0

    @property
    def pages(self) -> int:
        return self.count // PAGE_SIZE


@dataclass
class Secinfo:
    """``struct sgx_secinfo``: flags and 56 reserved bytes."""

    flags: int
    reserved: bytes = bytes(56)


def validate_offset_length(encl: SgxEncl, offset: int, length: int) -> bool:
    """``sgx_validate_offset_length``."""
    if offset < 0 or length < 0 or offset % PAGE_SIZE or not length or length % PAGE_SIZE:
        return False
    if offset + length > U64_MAX:  # overflow of the u64 sum
        return False
    return offset + length - PAGE_SIZE < encl.size


def validate_secinfo(secinfo: Secinfo) -> bool:
    """``sgx_validate_secinfo``: REG or TCS, W implies R, TCS without permissions,
    no reserved bits, reserved bytes zero."""
    flags = secinfo.flags
    perm = flags & 7
    pt = secinfo_page_type(flags)
    if pt not in (PageType.REG, PageType.TCS):
        return False
    if (perm & PROT_W) and not (perm & PROT_R):
        return False
    if pt == PageType.TCS and perm:
        return False
    if flags & ~(0x7 | (0xFF << 8)) & U64_MAX:
        return False
    return not any(secinfo.reserved)


def content_for(mode: str, data: bytes | None) -> bytes | int | None:
    """Page contents as the hardware model wants them: 4 KiB in ``full`` mode, else a tag."""
    if data is None:
        return None
    if mode == "full":
        return bytes(data).ljust(PAGE_SIZE, b"\0")[:PAGE_SIZE]
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


# -- SGX_IOC_ENCLAVE_CREATE ----------------------------------------------------------------------
def sgx_ioc_enclave_create(task: Task, encl: SgxEncl, secs: Secs | None) -> Gen:
    """``sgx_ioc_enclave_create`` + ``sgx_encl_create`` (spec §10.1)."""
    sgx = encl.sgx
    if encl.created:
        return IoctlResult(-EINVAL)
    if secs is None:
        return IoctlResult(-EFAULT)
    yield from task.run(sgx.m.costs.syscall)
    va = yield from encl.grow(task, reclaim=True)
    if va < -1:
        return IoctlResult(va)
    encl.add_va_page(va)
    encl.setup(secs.base, secs.size)
    page = yield from sgx.alloc_epc_page(task, encl.id, OWNER_SECS, reclaim=True)
    if page < 0:
        _unwind_create(encl, va)
        return IoctlResult(page)
    yield from task.run(sgx.m.costs.ecreate)
    ret = sgx.cpu.ecreate(PageInfo(contents=secs, metadata=0), page)
    if encls_faulted(ret) or ret:
        sgx.free_epc_page(page)
        _unwind_create(encl, va)
        return IoctlResult(-EIO)
    encl.secs_epc = page
    encl.debug = bool(secs.attributes & Attribute.DEBUG)
    encl.attributes = secs.attributes
    encl.attributes_mask = int(SGX_ATTR_UNPRIV_MASK)
    encl.created = True
    return IoctlResult(0)


def _unwind_create(encl: SgxEncl, va: int) -> None:
    encl.shrink(va)
    encl.sgx.backing.drop(encl.id)


# -- SGX_IOC_ENCLAVE_ADD_PAGES ------------------------------------------------------------------
@dataclass
class AddPagesArgs:
    """``struct sgx_enclave_add_pages`` (plus the page data the kernel would copy from src)."""

    offset: int
    length: int
    secinfo: Secinfo | None
    flags: int = 0
    src: bytes | None = None  # page data, ``length`` bytes (None: zero pages)
    src_addr: int = 0x7F0000000000  # user address of src; must be page aligned
    count: int = 0


def sgx_encl_add_page(
    task: Task, encl: SgxEncl, index: int, data: bytes | None, secinfo: Secinfo, flags: int
) -> Gen:
    """``sgx_encl_add_page``: allocate (with reclaim), EADD, optional EEXTEND, mark."""
    sgx = encl.sgx
    costs = sgx.m.costs
    page = yield from sgx.alloc_epc_page(task, encl.id, index, reclaim=True)
    if page < 0:
        return page
    va = yield from encl.grow(task, reclaim=True)
    if va < -1:
        encl.free_epc_page(page)
        return va
    yield from task.lock(encl.lock)
    try:
        encl.add_va_page(va)
        if encl.present[index]:  # xa_insert: -EBUSY
            encl.shrink(va)
            encl.free_epc_page(page)
            return -EBUSY
        yield from task.run(costs.eadd + costs.ioctl_page)
        sgx.stats.eadd += 1
        pginfo = PageInfo(
            linaddr=encl.linaddr(index),
            secs=encl.secs_epc,
            contents=content_for(sgx.cpu.content_mode, data),
            metadata=secinfo.flags,
        )
        ret = sgx.cpu.eadd(pginfo, page)
        if ret:
            encl.shrink(va)
            encl.free_epc_page(page)
            return -EIO
        pt = secinfo_page_type(secinfo.flags)
        encl.present[index] = True
        encl.epc[index] = page
        encl.type[index] = pt
        # vm_max_prot_bits: from SECINFO; a TCS gets R|W (the CPU zeroes TCS permissions)
        encl.max_prot[index] = (PROT_R | PROT_W) if pt == PageType.TCS else secinfo.flags & 7
        # the loader mmaps each segment with its own permissions (selftest load.c)
        encl.vma_prot[index] = encl.max_prot[index]
        encl.secs_child_cnt += 1
        if flags & SGX_PAGE_MEASURE:
            for chunk in range(PAGE_SIZE // 256):
                yield from task.run(costs.eextend)
                sgx.stats.eextend += 1
                ret = sgx.cpu.eextend(encl.secs_epc, page, chunk)
                if ret:
                    # quirk (spec §10.2): secs_child_cnt stays incremented on this path
                    encl.present[index] = False
                    encl.epc[index] = -1
                    encl.shrink(va)
                    encl.free_epc_page(page)
                    return -EIO
        sgx.mark_page_reclaimable(page)
        return 0
    finally:
        task.unlock(encl.lock)


def sgx_ioc_enclave_add_pages(
    task: Task, encl: SgxEncl, arg: AddPagesArgs | None, progress=None
) -> Gen:
    """``sgx_ioc_enclave_add_pages`` (spec §10.2). ``progress(encl, bytes done)`` is called
    after each page (for progress bars; it changes nothing)."""
    if not encl.created or encl.initialized:
        return IoctlResult(-EINVAL)
    if arg is None:
        return IoctlResult(-EFAULT)
    if arg.src_addr % PAGE_SIZE:
        return IoctlResult(-EINVAL)
    if not validate_offset_length(encl, arg.offset, arg.length):
        return IoctlResult(-EINVAL)
    if arg.secinfo is None:
        return IoctlResult(-EFAULT)
    if not validate_secinfo(arg.secinfo):
        return IoctlResult(-EINVAL)
    yield from task.run(encl.sgx.m.costs.syscall)
    ret = 0
    c = 0
    while c < arg.length:
        if task_signal_pending(task):
            if c == 0:
                ret = -ERESTARTSYS
            break  # c > 0: ret keeps the previous page's 0 (partial success)
        yield from task.cond_resched()
        data = None if arg.src is None else arg.src[c : c + PAGE_SIZE]
        ret = yield from sgx_encl_add_page(
            task, encl, (arg.offset + c) // PAGE_SIZE, data, arg.secinfo, arg.flags
        )
        if ret:
            break
        c += PAGE_SIZE
        if progress is not None:
            progress(encl, c)
    return IoctlResult(ret, count=c)


def task_signal_pending(task: Task) -> bool:
    """``signal_pending(current)``: tests inject signals with ``task.signal_at``."""
    check = getattr(task, "signal_pending", None)
    return bool(check and check())


# -- SGX_IOC_ENCLAVE_INIT ----------------------------------------------------------------------
def sgx_ioc_enclave_init(task: Task, encl: SgxEncl, sigstruct: Sigstruct | None) -> Gen:
    """``sgx_ioc_enclave_init`` + ``sgx_encl_init`` (spec §10.3)."""
    if not encl.created or encl.initialized:
        return IoctlResult(-EINVAL)
    if sigstruct is None:
        return IoctlResult(-EFAULT)
    if sigstruct.vendor not in (0, 0x8086):
        return IoctlResult(-EINVAL)
    if encl.attributes & ~encl.attributes_mask:  # e.g. PROVISIONKEY without PROVISION
        return IoctlResult(-EACCES)
    yield from task.lock(encl.lock)
    try:
        ret = yield from _einit_with_secs(task, encl, sigstruct)
    finally:
        task.unlock(encl.lock)
    if encls_faulted(ret):
        return IoctlResult(-EIO)
    if ret:
        return IoctlResult(-EPERM, result=int(ret))
    encl.initialized = True
    return IoctlResult(0)


def _einit_with_secs(task: Task, encl: SgxEncl, sigstruct: Sigstruct) -> Gen:
    sgx = encl.sgx
    for _ in range(20):  # SGX_EINIT_SPIN_COUNT; only UNMASKED_EVENT is retried
        yield from task.run(sgx.m.costs.einit)
        ret = sgx.cpu.einit(sigstruct, encl.secs_epc, None)
        if ret != SgxReturn.UNMASKED_EVENT:
            return ret
    return ret


__all__ = [
    "AddPagesArgs",
    "IoctlResult",
    "Secinfo",
    "sgx_ioc_enclave_add_pages",
    "sgx_ioc_enclave_create",
    "sgx_ioc_enclave_init",
]
