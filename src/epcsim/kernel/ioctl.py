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
from collections.abc import Callable
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
    encls_failed,
    encls_faulted,
    errno_name,
    secinfo_page_type,
)
from epcsim.engine.machine import Gen, Task
from epcsim.fast import ioctl as fast_ioctl
from epcsim.isa import PageInfo, Secs, Sigstruct
from epcsim.isa.secs import SUPPORTED_ATTRIBUTES, SUPPORTED_MISCSELECT, SUPPORTED_XFRM
from epcsim.kernel import encls
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.kernel.epc import OWNER_SECS

SGX_PAGE_MEASURE = 0x01
U64_MAX = (1 << 64) - 1

#: progress hook: called after each page an ioctl completes, with (encl, bytes done)
ProgressHook = Callable[[SgxEncl, int], None]


def observe_only(hook: ProgressHook | None = None, *, count_only: bool = False) -> Any:
    """Mark ``hook`` as one that only reports progress (a progress bar) and changes nothing
    (usable as ``@observe_only`` or ``@observe_only(count_only=True)``).

    The fast engine may then apply a run of pages at once and call the hook once per page
    afterwards, the clock set to each page's end as the reference's would be
    (``epcsim.fast.ioctl``). A hook without the mark may act - send a signal, start a task,
    change a page - and the reference would see that before the next page, so with such a
    hook the fast engine runs page by page, as the reference does.

    ``count_only``: the hook reads nothing but its byte count - not the clock, not the model
    (``epcsim run``'s build bar). ADD_PAGES' compiled loop takes only such a hook
    (``_add_core``): it calls it once per page after the core's run, when the clock and the
    model are at the run's end (the core keeps no per-page instants)."""

    def mark(h: ProgressHook) -> ProgressHook:
        h.observe_only = True  # type: ignore[attr-defined]
        h.count_only = count_only  # type: ignore[attr-defined]
        return h

    return mark if hook is None else mark(hook)


def hook_may_act(progress: ProgressHook | None) -> bool:
    """A hook is set and not marked ``observe_only``: no batched runs (see above)."""
    return progress is not None and not getattr(progress, "observe_only", False)


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
    """``sgx_ioc_enclave_create`` + ``sgx_encl_create`` (spec §10.1): the first VA page, the
    backing file, the SECS page and ECREATE.

    ``secs`` is the SECS page userspace points ``src`` at (None: the copy faults).

    Mainline's ``sgx_encl_create`` checks one SECS field itself: a size that is not a power of
    two is -EINVAL before anything is allocated (so that its size arithmetic cannot overflow;
    spec §10.1 still says the kernel checks no field - the stored sources show the check).
    Everything else (size < 8K, an unaligned base, bad XFRM/MISCSELECT/attributes, an SSA
    frame too small) is ECREATE's to reject, and any ECREATE failure is -EIO.

    The model's page arrays and backing are dense, so they are made once ECREATE has
    accepted the size; the kernel's shmem file is sparse and cannot fail for such a size, so
    nothing observable moves.

    Return:
    * 0: the enclave is CREATED.
    * -EINVAL: already created, or ``secs.size`` is not a power of two.
    * -EFAULT: the SECS could not be copied from user memory.
    * -ENOMEM: no EPC page and nothing reclaimable (SECS or first VA page).
    * -ERESTARTSYS: a signal arrived while the allocator was reclaiming.
    * -EIO: ECREATE failed.
    """
    sgx = encl.sgx
    if encl.created:
        return IoctlResult(-EINVAL)
    if secs is None:
        return IoctlResult(-EFAULT)
    if secs.size <= 0 or secs.size & (secs.size - 1):  # !is_power_of_2(secs->size)
        return IoctlResult(-EINVAL)
    va = yield from encl.grow(task, reclaim=True)
    if va < -1:
        return IoctlResult(va)
    encl.add_va_page(va)
    page = yield from sgx.alloc_epc_page(task, encl.id, OWNER_SECS, reclaim=True)
    if page < 0:
        yield from encl.shrink(task, va)
        return IoctlResult(page)
    ret = yield from encls.ecreate(sgx, task, PageInfo(contents=secs, metadata=0), page)
    if ret:
        yield from encl.free_epc_page(task, page)
        yield from encl.shrink(task, va)
        return IoctlResult(-EIO)
    encl.setup(secs.base, secs.size)
    encl.secs_epc = page
    encl.debug = bool(secs.attributes & Attribute.DEBUG)
    encl.attributes = secs.attributes
    encl.attributes_mask = int(SGX_ATTR_UNPRIV_MASK)
    encl.created = True
    return IoctlResult(0)


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
    """``sgx_encl_add_page``: allocate (with reclaim), EADD, optional EEXTEND, mark.

    Return:
    * 0: the page is added (and measured with SGX_PAGE_MEASURE).
    * -ENOMEM: no EPC page and nothing reclaimable.
    * -ERESTARTSYS: a signal arrived while the allocator was reclaiming.
    * -EBUSY: the offset already has a page (``xa_insert``).
    * -EIO: EADD or EEXTEND failed.
    """
    page = yield from encl.sgx.alloc_epc_page(task, encl.id, index, reclaim=True)
    if page < 0:
        return page
    return (yield from _add_page_rest(task, encl, index, data, secinfo, flags, page))


def _add_page_rest(
    task: Task, encl: SgxEncl, index: int, data: bytes | None, secinfo: Secinfo, flags: int,
    page: int,
) -> Gen:  # fmt: skip
    """``sgx_encl_add_page`` from ``sgx_encl_grow`` on, its EPC page ``page`` allocated (its
    ``Return:``). A function of its own because the compiled ADD_PAGES loop stops there
    when the grow's VA page finds the free list empty (``fast/driver/add.py`` A2, session
    ``addrun``): this is the rest, run from that point."""
    sgx = encl.sgx
    costs = sgx.m.costs
    va = yield from encl.grow(task, reclaim=True)
    if va < -1:
        yield from encl.free_epc_page(task, page)
        return va
    yield from task.lock(encl.lock)
    try:
        encl.add_va_page(va)
        if encl.present[index]:  # xa_insert: -EBUSY
            yield from encl.shrink(task, va)
            yield from encl.free_epc_page(task, page)
            return -EBUSY
        yield from task.run(costs.ioctl_page)
        pginfo = PageInfo(
            linaddr=encl.linaddr(index),
            secs=encl.secs_epc,
            contents=content_for(sgx.cpu.content_mode, data),
            metadata=secinfo.flags,
        )
        ret = yield from encls.eadd(sgx, task, pginfo, page)
        if ret:
            yield from encl.shrink(task, va)
            yield from encl.free_epc_page(task, page)
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
                ret = yield from encls.eextend(sgx, task, encl.secs_epc, page, chunk)
                if ret:
                    # quirk (spec §10.2): secs_child_cnt stays incremented on this path
                    encl.present[index] = False
                    encl.epc[index] = -1
                    yield from encl.shrink(task, va)
                    yield from encl.free_epc_page(task, page)
                    return -EIO
        sgx.mark_page_reclaimable(page)
        return 0
    finally:
        task.unlock(encl.lock)


def sgx_ioc_enclave_add_pages(
    task: Task, encl: SgxEncl, arg: AddPagesArgs | None, progress: ProgressHook | None = None
) -> Gen:
    """``sgx_ioc_enclave_add_pages`` (spec §10.2). ``progress(encl, bytes done)`` is called
    after each page (for progress bars; it changes nothing).

    ``count`` is the bytes fully added. A signal pending at the top of the loop stops it:
    -ERESTARTSYS before the first page, but after one or more pages the call returns 0 with
    ``count < length`` (the kernel keeps the previous page's 0) - partial success.

    Return:
    * 0: every page added, or some pages added before a signal.
    * -EINVAL: not CREATED or already INITIALIZED; ``src`` not page aligned; bad offset or
      length; a SECINFO that is not REG/TCS, W without R, a TCS with permissions, reserved
      bits or bytes set.
    * -EFAULT: the argument or the SECINFO could not be copied.
    * -ERESTARTSYS: a signal was pending before the first page (or arrived while the
      allocator was reclaiming for it).
    * -ENOMEM: no EPC page and nothing reclaimable.
    * -EBUSY: a page already exists at an offset in the range.
    * -EIO: EADD or EEXTEND failed.
    """
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
    ret = 0
    c = 0
    core = _add_core(task, encl, arg, progress)
    try:
        while c < arg.length:
            if task.signal_pending():
                if c == 0:
                    ret = -ERESTARTSYS
                break  # c > 0: ret keeps the previous page's 0 (partial success)
            if encl.sgx.fast and not hook_may_act(progress):  # a run where nothing interleaves
                k = fast_ioctl.add_run(
                    task, encl, (arg.offset + c) // PAGE_SIZE, (arg.length - c) // PAGE_SIZE,
                    arg.src, c, arg.secinfo.flags, bool(arg.flags & SGX_PAGE_MEASURE), progress,
                    c,
                )  # fmt: skip
                if k:
                    ret = 0
                    c += k * PAGE_SIZE
                    continue
            if core is not None:  # the pages from here on the compiled core, ksgxd with it
                moved = yield from core.run(c // PAGE_SIZE, c // PAGE_SIZE)
                k = 0 if moved is None else moved[0] - c // PAGE_SIZE
                if k:  # MRENCLAVE's blocks of the core's pages, before any page of ours
                    fast_ioctl.measure_added(
                        encl, (arg.offset + c) // PAGE_SIZE, k, arg.secinfo.flags
                    )
                    ret = 0
                    if progress is not None:  # observe-only (``_add_core``): once per page
                        for j in range(1, k + 1):
                            progress(encl, c + j * PAGE_SIZE)
                    c += k * PAGE_SIZE
                if moved is not None and moved[2] in (_END_DIRECT, _END_GROW):
                    if moved[2] == _END_DIRECT:
                        # the core stopped in the page's allocation batch before another
                        # enclave's SECS eviction (``KB_SECS``): the batch's rest, then
                        # ``sgx_alloc_epc_page``'s loop from its top, which is the page's
                        # ``sgx_encl_add_page`` from its start (nothing of it applied yet)
                        ret = yield from _add_after_direct(task, encl, core, arg, c)
                    else:
                        # the core stopped at the page's ``sgx_encl_grow``, whose VA page
                        # found the free list empty (``KB_GROW``): the page from there
                        assert arg.secinfo is not None  # (``_add_core`` takes none without)
                        ret = yield from _add_page_rest(
                            task, encl, (arg.offset + c) // PAGE_SIZE, None, arg.secinfo,
                            arg.flags, core.grow_page,
                        )  # fmt: skip
                    if ret:
                        break
                    c += PAGE_SIZE
                    if progress is not None:  # as after Python's page, below
                        progress(encl, c)
                    continue
                if k:
                    continue
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
    finally:
        if core is not None:
            core.close()
    return IoctlResult(ret, count=c)


#: ``fast.driver.stream_stops.END_DIRECT`` (not imported: the reference does not import the
#: compiled driver at module level)
_END_DIRECT = -101
#: ``fast.driver.stream_stops.END_GROW``
_END_GROW = -102


def _add_after_direct(task: Task, encl: SgxEncl, core: Any, arg: AddPagesArgs, c: int) -> Gen:
    """ADD_PAGES' page at offset ``c`` after the core stopped in its allocation's reclaim
    batch (``sgx_alloc_epc_page(reclaim=true)``, row A1) before a SECS's eviction: the
    batch's rest in Python (``stream_stops.direct_rest``), counted as the allocator counts
    it, the loop's ``cond_resched()``, then the allocation loop from its top - the page's
    ``sgx_encl_add_page`` (PATHS.md "Two enclaves in the regime", session ``twoencl3``), or,
    the batch its VA page's (A2), the page's rest from ``sgx_encl_grow``."""
    from epcsim.fast.driver.stream_stops import direct_rest

    sgx = encl.sgx
    assert arg.secinfo is not None  # the core takes no call without one (``_add_core``)
    n = yield from direct_rest(sgx, task, core.direct)
    sgx.stats.direct_reclaim_pages += n
    yield from task.cond_resched()
    index = (arg.offset + c) // PAGE_SIZE
    if core.grow_page >= 0:
        # the batch was the page's VA page's (``sgx_encl_grow``, session ``addrun``): its
        # allocation loop from the top is the grow from its start, the page's own EPC page
        # allocated
        page = core.grow_page
        return (yield from _add_page_rest(task, encl, index, None, arg.secinfo, arg.flags, page))
    return (yield from sgx_encl_add_page(task, encl, index, None, arg.secinfo, arg.flags))


def _add_core(task: Task, encl: SgxEncl, arg: AddPagesArgs, progress: ProgressHook | None) -> Any:
    """The compiled loop for this ADD_PAGES call (``StreamCore.add``; PATHS.md "The
    ADD_PAGES loop"), or None: the reference engine, no core, or what the core leaves to
    this loop - measured pages (EEXTEND hashes the page's bytes), page data, a progress
    hook that may act (it would see each page before the next).

    A hook marked ``observe_only(count_only=True)`` (``epcsim run``'s build bar) is taken:
    the loop calls it once per page after the core's run, with each page's byte count in
    order. Decision (2026-11-27, lead): a batch (``fast.ioctl.batch``) sets the clock to
    each page's end before the call, as the reference's hook sees it; the core keeps no
    per-page instants, so a hook that may read the clock or the model keeps the call here
    (``test_batched``'s hook records the clock and is compared with the reference's)."""
    sc = encl.sgx.stream_core
    if sc is None or arg.src is not None:
        return None
    if progress is not None and not getattr(progress, "count_only", False):
        return None
    if arg.flags & SGX_PAGE_MEASURE or arg.secinfo is None or arg.length <= 0:
        return None
    return sc.add(task, encl, arg.offset // PAGE_SIZE, arg.length // PAGE_SIZE, arg.secinfo.flags)


# -- SGX_IOC_ENCLAVE_INIT ----------------------------------------------------------------------
#: ``sgx_drv_init`` derives these from CPUID leaf 0x12 (the model's CPU: ``epcsim.isa.secs``)
#: and the architecturally reserved bits (``SGX_ATTR_RESERVED_MASK``: bits 3, 6, 8, 9, 11-63;
#: ``SGX_MISC_RESERVED_MASK``: bits 1-63). OSXSAVE is assumed, so XFRM is checked against
#: what the CPU reports rather than against x87|SSE only.
SGX_ATTR_RESERVED_MASK = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 9) | (U64_MAX & ~((1 << 11) - 1))
SGX_MISC_RESERVED_MASK = U64_MAX & ~1
sgx_attributes_reserved_mask = (~SUPPORTED_ATTRIBUTES & U64_MAX) | SGX_ATTR_RESERVED_MASK
sgx_misc_reserved_mask = ((~SUPPORTED_MISCSELECT) | SGX_MISC_RESERVED_MASK) & 0xFFFFFFFF
sgx_xfrm_reserved_mask = ~SUPPORTED_XFRM & U64_MAX

SGX_EINIT_SPIN_COUNT = 20
SGX_EINIT_SLEEP_COUNT = 50
SGX_EINIT_SLEEP_TIME_NS = 20_000_000  # msleep_interruptible(20)


def sgx_ioc_enclave_init(task: Task, encl: SgxEncl, sigstruct: Sigstruct | None) -> Gen:
    """``sgx_ioc_enclave_init`` + ``sgx_encl_init`` (spec §10.3).

    Return:
    * 0: the enclave is INITIALIZED.
    * -EINVAL: not CREATED or already INITIALIZED; SIGSTRUCT vendor not 0 or 0x8086; a bit
      set in both a SIGSTRUCT value and its mask (attributes, miscselect, xfrm) that the
      platform reserves.
    * -EFAULT: the SIGSTRUCT could not be copied.
    * -EACCES: the SECS asks for attributes not allowed to this enclave (PROVISIONKEY
      without SGX_IOC_ENCLAVE_PROVISION).
    * -ERESTARTSYS: EINIT kept reporting SGX_UNMASKED_EVENT and a signal arrived while
      waiting between rounds.
    * -EPERM: EINIT returned an SGX error code (``result`` holds it).
    * -EIO: EINIT faulted.
    """
    if not encl.created or encl.initialized:
        return IoctlResult(-EINVAL)
    if sigstruct is None:
        return IoctlResult(-EFAULT)
    if sigstruct.vendor not in (0, 0x8086):
        return IoctlResult(-EINVAL)
    ret = yield from sgx_encl_init(task, encl, sigstruct)
    if ret < 0:
        return IoctlResult(ret)
    if ret:
        return IoctlResult(-EPERM, result=int(ret))
    return IoctlResult(0)


def sgx_encl_init(task: Task, encl: SgxEncl, sigstruct: Sigstruct) -> Gen:
    """``sgx_encl_init``: the attribute checks, then EINIT under ``encl->lock``.

    EINIT is interruptible: SGX_UNMASKED_EVENT is retried up to ``SGX_EINIT_SPIN_COUNT``
    times, then the task sleeps 20 ms and tries another round, up to ``SGX_EINIT_SLEEP_COUNT``
    rounds, giving up with -ERESTARTSYS if a signal is pending after a sleep.

    Return:
    * 0: success.
    * -EACCES, -EINVAL, -ERESTARTSYS, -EIO: as ``sgx_ioc_enclave_init``.
    * a positive SGX return code: EINIT refused the SIGSTRUCT (the ioctl makes it -EPERM).
    """
    if encl.attributes & ~encl.attributes_mask:
        return -EACCES
    if sigstruct.attributes & sigstruct.attribute_mask & sgx_attributes_reserved_mask:
        return -EINVAL
    if sigstruct.miscselect & sigstruct.miscmask & sgx_misc_reserved_mask:
        return -EINVAL
    if sigstruct.xfrm & sigstruct.xfrm_mask & sgx_xfrm_reserved_mask:
        return -EINVAL
    sgx = encl.sgx
    yield from task.lock(encl.lock)
    try:
        ret = 0
        for _ in range(SGX_EINIT_SLEEP_COUNT):
            for _ in range(SGX_EINIT_SPIN_COUNT):
                ret = yield from encls.einit(sgx, task, sigstruct, encl.secs_epc, None)
                if ret != SgxReturn.UNMASKED_EVENT:
                    break
            if ret != SgxReturn.UNMASKED_EVENT:
                break
            yield from task.sleep(sgx.m.env.timeout(SGX_EINIT_SLEEP_TIME_NS))
            if task.signal_pending():
                return -ERESTARTSYS
        if encls_faulted(ret):
            if encls_failed(ret):
                encls.encls_warn(sgx, ret, "EINIT")
            return -EIO
        if ret == 0:
            encl.initialized = True
        return int(ret)
    finally:
        task.unlock(encl.lock)


__all__ = [
    "AddPagesArgs",
    "IoctlResult",
    "Secinfo",
    "sgx_ioc_enclave_add_pages",
    "sgx_ioc_enclave_create",
    "sgx_ioc_enclave_init",
]
