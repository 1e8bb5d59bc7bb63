"""``SGX_IOC_ENCLAVE_ADD_PAGES``: ``sgx_ioc_enclave_add_pages``' page loop and
``sgx_encl_add_page`` (``sgx/ioctl.c``, spec §10.2), with the fast engine's batched runs and
the compiled core's loop it hands pages to (PATHS.md "The ADD_PAGES loop").

The loop reports partial success through ``count`` exactly as the kernel does. Split from
``ioctl.py`` by session ``tidy`` when it passed 500 lines (no code changed).
"""

from __future__ import annotations

import hashlib
from typing import Any

from epcsim.arch import (
    EBUSY,
    EFAULT,
    EINVAL,
    EIO,
    ERESTARTSYS,
    PAGE_SIZE,
    PageType,
    secinfo_page_type,
)
from epcsim.engine.machine import Gen, Task
from epcsim.fast import ioctl as fast_ioctl
from epcsim.isa import PageInfo
from epcsim.kernel import encls
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.kernel.ioctl_validate import validate_offset_length, validate_secinfo
from epcsim.kernel.progress import ProgressHook, hook_may_act
from epcsim.kernel.uapi import SGX_PAGE_MEASURE, AddPagesArgs, IoctlResult, Secinfo


def content_for(mode: str, data: bytes | None) -> bytes | int | None:
    """Page contents as the hardware model wants them: 4 KiB in ``full`` mode, else a tag."""
    if data is None:
        return None
    if mode == "full":
        return bytes(data).ljust(PAGE_SIZE, b"\0")[:PAGE_SIZE]
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


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


__all__ = ["content_for", "sgx_encl_add_page", "sgx_ioc_enclave_add_pages"]
