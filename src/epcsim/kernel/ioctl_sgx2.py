"""The SGX2 page-range ioctls of ``sgx/ioctl.c`` (spec §10.5-§10.9).

RESTRICT_PERMISSIONS, MODIFY_TYPES and REMOVE_PAGES share one shape: validate in the kernel's
order, then per page ``sgx_reclaim_direct()`` without the enclave lock, take ``encl->lock``,
load the page if it was evicted (allocation without reclaim: -EBUSY becomes -EAGAIN), run the
leaf, and report ``count`` = bytes fully done before the page that stopped the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from epcsim.arch import (
    EAGAIN,
    EBUSY,
    EFAULT,
    EINVAL,
    ENODEV,
    EPERM,
    PAGE_SIZE,
    X86_TRAP_PF,
    PageType,
    encls_faulted,
    encls_trapnr,
    secinfo_flags,
)
from epcsim.engine.machine import Gen, Task
from epcsim.fast import ioctl as fast_ioctl
from epcsim.fast.driver.tstate import MODE_REMOVE, MODE_TRIM
from epcsim.kernel import encls
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.kernel.ioctl_validate import validate_offset_length
from epcsim.kernel.progress import ProgressHook, hook_may_act
from epcsim.kernel.reclaim import etrack, send_ipi, sgx_reclaim_direct
from epcsim.kernel.uapi import IoctlResult
from epcsim.kernel.uapi_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs


def sgx_ioc_sgx2_ready(encl: SgxEncl) -> int:
    """``sgx_ioc_sgx2_ready``.

    Return:
    * 0: the CPU has SGX2 and the enclave is INITIALIZED.
    * -ENODEV: no SGX2.
    * -EINVAL: not INITIALIZED.
    """
    if not encl.sgx.sgx2:
        return -ENODEV
    if not encl.initialized:
        return -EINVAL
    return 0


def sgx_enclave_etrack(task: Task, encl: SgxEncl) -> Gen:
    """``sgx_enclave_etrack`` (caller holds ``encl->lock``): ETRACK, on failure IPI and ETRACK
    again (-EFAULT if that fails too), then always IPI the enclave's CPUs."""
    ret = yield from etrack(encl.sgx, task, encl, warn=False)  # pr_err_once, not WARN
    if ret:
        yield from send_ipi(encl.sgx, task, encl)
        ret = yield from etrack(encl.sgx, task, encl, warn=False)
        if ret:
            return -EFAULT
    yield from send_ipi(encl.sgx, task, encl)
    return 0


def _load(task: Task, encl: SgxEncl, index: int) -> Gen:
    """``sgx_encl_load_page`` in an ioctl: -EBUSY → -EAGAIN, any other error → -EFAULT."""
    if not encl.present[index]:
        return -EFAULT
    ret = yield from encl.load_page(task, index)
    if ret == -EBUSY:
        return -EAGAIN
    if ret:
        return -EFAULT
    return 0


#: ``IoctlResult.extra["eagain_cause"]``: why the page load gave -EAGAIN, noted at the instant
#: the kernel decided it (the caller sees the result only after the return to user space,
#: when ksgxd may already have finished with the page). Model diagnostics, not uAPI.
EAGAIN_BEING_RECLAIMED = "being_reclaimed"  # resident and BEING_RECLAIMED
EAGAIN_NO_FREE_PAGE = "no_free_page"  # ELDU's sgx_alloc_epc_page(reclaim=false): -EBUSY


#: ``IoctlResult.extra["eagain_cause"]`` of the compiled loop's ``tstate.CAUSE_*`` codes
_CAUSES = {1: EAGAIN_BEING_RECLAIMED, 2: EAGAIN_NO_FREE_PAGE}


def _page_locked(
    task: Task,
    encl: SgxEncl,
    index: int,
    per_page: Callable[[int], Gen],
    out: IoctlResult,
    charge: bool = True,
) -> Gen:
    """The loop's page with ``encl->lock`` just taken, to its unlock: ``run(ioctl_page)``
    (``charge``), ``_load`` and the -EAGAIN cause, ``per_page``. Returns its ``ret``. Its
    own generator function so that the compiled loop, stopped under the lock after
    ``run(ioctl_page)`` with nothing of the page applied, goes on here (``charge=False``;
    PATHS.md "The MODIFY_TYPES loop"); ``yield from`` adds no event."""
    sgx = encl.sgx
    try:
        if charge:
            yield from task.run(sgx.m.costs.ioctl_page)
        ret = yield from _load(task, encl, index)
        if ret == -EAGAIN:
            held = encl.epc[index] >= 0 and encl.reclaiming[index]
            out.extra["eagain_cause"] = EAGAIN_BEING_RECLAIMED if held else EAGAIN_NO_FREE_PAGE
        elif not ret:
            ret = yield from per_page(index)
    finally:
        if encl.lock.owner is task:
            task.unlock(encl.lock)
    return ret


def _page_loop(
    task: Task,
    encl: SgxEncl,
    offset: int,
    length: int,
    per_page: Callable[[int], Gen],
    progress: ProgressHook | None,
    out: IoctlResult,
    batch: Callable[..., int] | None = None,
    core: Any = None,
) -> Gen:
    """The shared per-page loop. ``per_page(index)`` runs with ``encl->lock`` held and returns
    0 or ``-errno`` (it may drop and retake the lock itself). Sets ``out.ret`` and
    ``out.count`` (bytes fully done). ``batch`` (the fast engine, ``epcsim.fast.ioctl``)
    applies a run of pages at once where nothing can interleave and returns how many; the
    page it stops at runs here. ``core`` (``System(fast_core=...)``: a
    ``fast.driver.core_stream.CoreStream`` of MODIFY_TYPES(TRIM), ``_trim_core``) runs pages on
    the compiled core from a page top while its regime holds, ksgxd with it; where it
    stops, the page runs here (PATHS.md "The MODIFY_TYPES loop")."""
    sgx = encl.sgx
    ret = 0
    c = 0
    if not sgx.fast or hook_may_act(progress):  # a hook that may act sees each page
        batch = None
    while c < length:
        if core is not None:
            from epcsim.fast.driver.stream_stops import END_DIRECT, END_LOCKED, direct_rest

            i0 = core.base + c // PAGE_SIZE
            moved = yield from core.run(i0, i0)
            if moved is not None:
                if core.notes and progress is not None:
                    progress.core_notes(core.notes)  # type: ignore[attr-defined]
                if len(core.calls):  # the runtime's calls the core ended with -EAGAIN and made
                    # again (fast/driver/retry.py): the runtime records them, and this
                    # loop goes on as the last one's, from where it started in the range
                    shift = _calls_made(core, progress) * PAGE_SIZE
                    offset, length, c = offset + shift, length - shift, c - shift
                k = moved[0] - i0
                if k:
                    ret = 0
                    c += k * PAGE_SIZE
                    if core.trim[2] and moved[0] % 256 == 0 and progress is not None:
                        progress(encl, c)  # on_pages' mark: the machine left it to Python
                if core.mret:  # -EAGAIN at the page's load (or REMOVE's -EBUSY), on the core
                    ret = core.mret
                    if core.cause:
                        out.extra["eagain_cause"] = _CAUSES[core.cause]
                    break
                if moved[2] in (END_LOCKED, END_DIRECT):
                    if moved[2] == END_DIRECT:  # the direct batch's rest, then the lock
                        n = yield from direct_rest(sgx, task, core.direct)
                        sgx.stats.direct_reclaim_pages += n
                        yield from task.lock(encl.lock)
                    index = (offset + c) // PAGE_SIZE  # under the lock: the page from _load
                    charge = moved[2] == END_DIRECT
                    ret = yield from _page_locked(task, encl, index, per_page, out, charge)
                    if ret:
                        break
                    c += PAGE_SIZE
                    if progress is not None:
                        progress(encl, c)
                    continue
                if c >= length:
                    break
        if batch is not None:
            k = batch(task, encl, (offset + c) // PAGE_SIZE, (length - c) // PAGE_SIZE, progress, c)
            if k:
                ret = 0
                c += k * PAGE_SIZE
                continue
        yield from sgx_reclaim_direct(sgx, task)
        yield from task.lock(encl.lock)
        index = (offset + c) // PAGE_SIZE
        ret = yield from _page_locked(task, encl, index, per_page, out)
        if ret:
            break
        c += PAGE_SIZE
        if progress is not None:
            progress(encl, c)
    out.ret, out.count = ret, c
    return out


def _calls_made(core: Any, progress: ProgressHook | None) -> int:
    """The calls the compiled loop ended with -EAGAIN and made again itself (``core.calls``:
    one row each, where it stopped in the range, its instant back in the runtime, its
    cause), as the runtime gets them - handed to ``drive_range`` (``core_calls``) in one
    batch, each call's bytes, instant and cause name (its ``IoctlResult``: -EAGAIN, that
    count, ``extra["eagain_cause"]``) - and the pages they did: the current call starts
    that much further (``core.base``). In one batch, not one ``IoctlResult`` a call: the
    demo's trim without direct reclaim makes ~47,830 such calls, and building and reading
    them one by one cost ~0.1-0.25 s of the run's CPU (session ``seed5``)."""
    base = core.base
    calls = core.calls
    ends = calls[:, 0]
    counts = np.diff(ends, prepend=base) * PAGE_SIZE
    progress.core_calls(counts, calls[:, 1], calls[:, 2], _CAUSES)  # type: ignore[union-attr]
    start = int(ends[-1])
    core.base = start
    core.calls = calls[:0]
    return start - base


# -- SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS -------------------------------------------------------
def sgx_ioc_enclave_restrict_permissions(
    task: Task,
    encl: SgxEncl,
    arg: RestrictPermissionsArgs | None,
    progress: ProgressHook | None = None,
) -> Gen:
    """RESTRICT_PERMISSIONS: EMODPR + ETRACK per page (spec §10.5). ``count`` is the bytes
    whose EMODPR and ETRACK completed; the enclave must then EACCEPT each page with PR.

    Return:
    * 0: every page restricted.
    * -ENODEV: the CPU has no SGX2.
    * -EINVAL: not INITIALIZED; bad offset or length; permissions beyond RWX or W without R;
      ``result`` or ``count`` not zero on input; a page that is not REG.
    * -EFAULT: the argument could not be copied; a page absent or not loadable; EMODPR
      faulted or returned an SGX code (in ``result``); ETRACK failed twice.
    * -EAGAIN: a page is being reclaimed, or no EPC page to load it into without reclaim
      (retry from ``offset + count``).
    """
    # What every SGX2 page ioctl checks first, in the kernel's order: SGX2 and EINIT
    # (sgx_ioc_sgx2_ready), the copy from user (-EFAULT), then offset and length.
    ret = sgx_ioc_sgx2_ready(encl)
    if ret:
        return IoctlResult(ret)
    if arg is None:
        return IoctlResult(-EFAULT)
    if not validate_offset_length(encl, arg.offset, arg.length):
        return IoctlResult(-EINVAL)
    if arg.permissions & ~7:
        return IoctlResult(-EINVAL)
    if (arg.permissions & PROT_W) and not (arg.permissions & PROT_R):
        return IoctlResult(-EINVAL)
    if arg.result or arg.count:
        return IoctlResult(-EINVAL)
    sgx = encl.sgx
    out = IoctlResult()

    def per_page(index: int) -> Gen:
        if encl.type[index] != PageType.REG:
            return -EINVAL
        flags = secinfo_flags(PageType.REG, arg.permissions)
        r = yield from encls.emodpr(sgx, task, flags, int(encl.epc[index]))
        if encls_faulted(r):
            return -EFAULT
        if r:
            out.result = int(r)
            return -EFAULT
        if (yield from sgx_enclave_etrack(task, encl)):
            return -EFAULT
        return 0

    def batch(task: Task, encl: SgxEncl, index: int, limit: int, progress, count0: int) -> int:
        return fast_ioctl.restrict_run(task, encl, index, limit, arg.permissions, progress, count0)

    return (
        yield from _page_loop(task, encl, arg.offset, arg.length, per_page, progress, out, batch)
    )


# -- SGX_IOC_ENCLAVE_MODIFY_TYPES --------------------------------------------------------------
def sgx_ioc_enclave_modify_types(
    task: Task, encl: SgxEncl, arg: ModifyTypesArgs | None, progress: ProgressHook | None = None
) -> Gen:
    """MODIFY_TYPES: REG→TCS, REG→TRIM, TCS→TRIM via EMODT + ETRACK (spec §10.6). ``count``
    is the bytes whose type change completed.

    Return:
    * 0: every page changed.
    * -ENODEV: the CPU has no SGX2.
    * -EINVAL: not INITIALIZED; bad offset or length; ``page_type`` beyond 8 bits or not TCS
      or TRIM; ``result`` or ``count`` not zero on input; a transition other than REG→TCS,
      REG→TRIM, TCS→TRIM.
    * -EPERM: REG→TCS of a page whose maximum protection lacks R or W.
    * -EFAULT: the argument could not be copied; a page absent or not loadable; EMODT
      faulted or returned an SGX code (in ``result``); ETRACK failed twice.
    * -EAGAIN: a page is being reclaimed (also when REG→TCS finds it isolated), or no EPC
      page to load it into without reclaim (retry from ``offset + count``).
    """
    # What every SGX2 page ioctl checks first, in the kernel's order: SGX2 and EINIT
    # (sgx_ioc_sgx2_ready), the copy from user (-EFAULT), then offset and length.
    ret = sgx_ioc_sgx2_ready(encl)
    if ret:
        return IoctlResult(ret)
    if arg is None:
        return IoctlResult(-EFAULT)
    if not validate_offset_length(encl, arg.offset, arg.length):
        return IoctlResult(-EINVAL)
    if arg.page_type & ~0xFF:
        return IoctlResult(-EINVAL)
    if arg.result or arg.count:
        return IoctlResult(-EINVAL)
    if arg.page_type not in (int(PageType.TCS), int(PageType.TRIM)):
        return IoctlResult(-EINVAL)
    sgx = encl.sgx
    new_type = arg.page_type
    out = IoctlResult()

    def per_page(index: int) -> Gen:
        old = int(encl.type[index])
        if not (
            (old == PageType.REG and new_type in (PageType.TCS, PageType.TRIM))
            or (old == PageType.TCS and new_type == PageType.TRIM)
        ):
            return -EINVAL
        max_prot_restore = int(encl.max_prot[index])
        epc = int(encl.epc[index])
        if new_type == PageType.TCS:
            if (max_prot_restore & (PROT_R | PROT_W)) != (PROT_R | PROT_W):
                return -EPERM
            encl.max_prot[index] = PROT_R | PROT_W
            # The page leaves the LRU while its PTEs are zapped (EPCM-permission change).
            if sgx.unmark_page_reclaimable(epc):
                encl.max_prot[index] = max_prot_restore
                return -EAGAIN
            task.unlock(encl.lock)
            yield from task.run(sgx.m.costs.zap_ptes)
            encl.zap_ptes(index)
            yield from task.lock(encl.lock)
            sgx.mark_page_reclaimable(epc)
        r = yield from encls.emodt(sgx, task, secinfo_flags(new_type), epc)
        if encls_faulted(r) or r:
            if not encls_faulted(r):
                out.result = int(r)
            encl.max_prot[index] = max_prot_restore
            return -EFAULT
        if (yield from sgx_enclave_etrack(task, encl)):
            return -EFAULT
        encl.type[index] = new_type
        return 0

    batch = fast_ioctl.modify_trim_run if new_type == PageType.TRIM else None
    core = _trim_core(task, encl, arg.offset, arg.length, progress, new_type, False)
    try:
        return (
            yield from _page_loop(
                task, encl, arg.offset, arg.length, per_page, progress, out, batch, core
            )
        )
    finally:
        if core is not None:
            core.close()


def _trim_core(
    task: Task,
    encl: SgxEncl,
    offset: int,
    length: int,
    progress: ProgressHook | None,
    new: int,
    remove: bool,
) -> Any:
    """The compiled loop for a MODIFY_TYPES(TRIM) call (``StreamCore.trim``), or with
    ``remove`` a REMOVE_PAGES call (session ``ioctlcore``), or None: the reference engine,
    no core, another type, or a progress hook the core cannot stand in for. The core's
    loop indexes the whole range ``drive_range`` runs (its notes and 256-page marks are
    the range's), so a hook must say where the call starts in it
    (``core_range()``: first page, pages, pages done before this call, marks, the note
    step) and take the notes (``core_notes``); without a hook the call is the range. A
    hook with ``core_retry()`` and ``core_calls`` (``drive_range``'s) lets the core make
    the runtime's next calls after -EAGAIN itself (session ``eagain``: ``_calls_made``)."""
    sc = encl.sgx.stream_core
    if sc is None or (new != PageType.TRIM and not remove) or length <= 0:
        return None
    if progress is None:
        first, pages, base, marks, step = (
            offset // PAGE_SIZE,
            length // PAGE_SIZE,
            0,
            False,
            1 << 40,
        )
    elif hasattr(progress, "core_range") and not hook_may_act(progress):
        first, pages, base, marks, step = progress.core_range()
    else:
        return None
    mode = MODE_REMOVE if remove else MODE_TRIM
    # the runtime's calls after -EAGAIN the core may make itself (``drive_range``'s
    # ``core_retry``: MODIFY_TYPES only, fast/driver/retry.py; 0: each call is Python's)
    retry = (0, 0, 0)
    if progress is not None and not remove and hasattr(progress, "core_retry"):
        retry = progress.core_retry()
    # no call after this one (``drive_range``'s ``core_final``: the first call only): a
    # cost choice of the core's (``ksgxd_serving._worth_serving``), never a result
    final = False
    if progress is not None and hasattr(progress, "core_final"):
        final = bool(progress.core_final())
    cs = sc.trim(task, encl, first, pages, new, step, marks, mode, retry, final)
    if cs is not None:
        cs.base = base
    return cs


# -- SGX_IOC_ENCLAVE_REMOVE_PAGES --------------------------------------------------------------
def erase_page(task: Task, encl: SgxEncl, index: int, epc: int) -> Gen:
    """The end of ``sgx_enclave_remove_pages``' page step, after EREMOVE's probe and the
    PTE zap: the EPC page freed, ``secs_child_cnt--``, the entry erased from the page
    array, ``sgx_encl_shrink`` (page_cnt--; VA pages are kept). The caller holds
    ``encl->lock`` (a test may drive it without)."""
    yield from encl.free_epc_page(task, epc)
    encl.secs_child_cnt -= 1
    encl.epc[index] = -1
    encl.present[index] = False
    encl.type[index] = 0
    encl.max_prot[index] = 0
    yield from encl.shrink(task, -1)


def sgx_ioc_enclave_remove_pages(
    task: Task, encl: SgxEncl, arg: RemovePagesArgs | None, progress: ProgressHook | None = None
) -> Gen:
    """REMOVE_PAGES: EREMOVE of accepted TRIM pages (spec §10.7). ``count`` is the bytes
    removed.

    Return:
    * 0: every page removed.
    * -ENODEV: the CPU has no SGX2.
    * -EINVAL: not INITIALIZED; bad offset or length; ``count`` not zero on input.
    * -EPERM: a page that is not TRIM, or a TRIM page the enclave has not EACCEPTed.
    * -EFAULT: the argument could not be copied; a page absent or not loadable.
    * -EAGAIN: a page is being reclaimed, or no EPC page to load it into without reclaim.
    * -EBUSY: the reclaimer has the page isolated (not turned into -EAGAIN).
    """
    # What every SGX2 page ioctl checks first, in the kernel's order: SGX2 and EINIT
    # (sgx_ioc_sgx2_ready), the copy from user (-EFAULT), then offset and length.
    ret = sgx_ioc_sgx2_ready(encl)
    if ret:
        return IoctlResult(ret)
    if arg is None:
        return IoctlResult(-EFAULT)
    if not validate_offset_length(encl, arg.offset, arg.length):
        return IoctlResult(-EINVAL)
    if arg.count:
        return IoctlResult(-EINVAL)
    sgx = encl.sgx

    def per_page(index: int) -> Gen:
        if encl.type[index] != PageType.TRIM:
            return -EPERM
        epc = int(encl.epc[index])
        # EMODPR as a probe: #PF means the TRIM was EACCEPTed; anything else means it was not.
        r = yield from encls.emodpr(sgx, task, secinfo_flags(PageType.REG, 7), epc)
        if not encls_faulted(r) or encls_trapnr(r) != X86_TRAP_PF:
            return -EPERM
        if sgx.unmark_page_reclaimable(epc):
            return -EBUSY  # not converted to -EAGAIN (spec §10.7)
        task.unlock(encl.lock)
        yield from task.run(sgx.m.costs.zap_ptes)
        encl.zap_ptes(index)
        yield from task.lock(encl.lock)
        yield from erase_page(task, encl, index, epc)
        return 0

    out = IoctlResult()
    batch = fast_ioctl.remove_run
    core = _trim_core(task, encl, arg.offset, arg.length, progress, 0, True)
    try:
        return (
            yield from _page_loop(
                task, encl, arg.offset, arg.length, per_page, progress, out, batch, core
            )
        )
    finally:
        if core is not None:
            core.close()
