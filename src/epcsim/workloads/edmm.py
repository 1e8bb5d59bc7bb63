"""EDMM operations as a runtime performs them, at generator level for concurrent threads.

``Enclave.modify_types`` and friends block the caller until the simulation reaches the end
of the call, which is right for scripts but not for programs where several threads run at
once. These functions are the same operations as SimPy generators that an enclave thread
runs inside its own process: the ioctl is issued by the thread itself after an EEXIT (as a
real runtime such as Gramine or the SDK's EDMM support does), and EACCEPT runs from inside.

What a runtime has to do, and these functions do:

* a page-range ioctl may stop part-way with ``-EAGAIN`` and ``count`` bytes done; call again
  from ``offset + count`` (``sgx_enclave_restrict_permissions``/``modify_types``/
  ``remove_pages`` in the kernel; the selftest's loop);
* only one ioctl runs per enclave (``SGX_ENCL_IOCTL``), another gets ``-EBUSY``: back off
  briefly and retry;
* after MODIFY_TYPES(TRIM) the enclave EACCEPTs each page (TRIM|MODIFIED) before
  REMOVE_PAGES; after RESTRICT_PERMISSIONS it EACCEPTs with PR; a heap grows by EACCEPT on
  a PENDING page, which faults and lets the kernel EAUG it (``augment_via_eaccept``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from epcsim.arch import EAGAIN, EBUSY, PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags
from epcsim.engine.machine import Gen
from epcsim.fast import eaccept as fast_eaccept
from epcsim.fast import eaug as fast_eaug
from epcsim.kernel.driver import (
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    sys_ioctl,
)
from epcsim.kernel.progress import ProgressHook, observe_only
from epcsim.kernel.uapi import IoctlResult
from epcsim.kernel.uapi_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs
from epcsim.user.enclave import Enclave
from epcsim.user.thread import STREAM_SIGBUS, EnclaveThread

#: back-off before retrying an ioctl refused with -EBUSY (another ioctl on the enclave)
EBUSY_BACKOFF_NS = 10_000
#: progress points kept per operation (a long range is thinned to about this many)
PROGRESS_POINTS = 512


@dataclass
class OpRecord:
    """One EDMM operation driven to completion: what a runtime would log."""

    thread: str
    enclave: str
    kind: str  # restrict_permissions | modify_types | remove_pages | eaccept
    first_page: int
    pages: int
    start_ns: int = 0
    end_ns: int = 0
    calls: int = 0
    eagain: int = 0
    ebusy: int = 0
    pages_done: int = 0
    failures: int = 0  # EACCEPT leaves that did not return 0
    errno: str | None = None  # a non-retryable error that ended the operation
    first_call_pages: int = 0  # pages the first ioctl call completed
    first_call_errno: str | None = None  # how the first call ended (None: success)
    progress: list[tuple[int, int]] = field(default_factory=list)  # (ns, pages done)
    eagain_at: list[int] = field(default_factory=list)  # simulated ns of each -EAGAIN

    @property
    def simulated_ns(self) -> int:
        return self.end_ns - self.start_ns

    def note(self, now: int, done: int) -> None:
        step = max(1, self.pages // PROGRESS_POINTS)
        if done % step == 0 or done == self.pages:
            self.progress.append((now, done))

    def note_many(self, t0: int, period: int, first: int, last: int, at: int) -> None:
        """``note(t0 + (d - first) * period + at, d)`` for ``d`` in ``first..last``: a
        batched run (epcsim.fast) of pages ``period`` ns apart, each noted ``at`` ns in."""
        step = max(1, self.pages // PROGRESS_POINTS)
        done = list(range(first + (-first) % step, last + 1, step))
        if self.pages not in done and first <= self.pages <= last:
            done.append(self.pages)
        self.progress.extend((t0 + (d - first) * period + at, d) for d in done)

    @property
    def ok(self) -> bool:
        return self.errno is None and self.failures == 0 and self.pages_done == self.pages

    def summary(self) -> dict:
        skip = ("progress", "eagain_at")
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        d["ok"] = self.ok
        return d


@dataclass
class Ctx:
    """What an operation needs: the enclave handle, the thread running it, where to log."""

    handle: Enclave
    thread: EnclaveThread
    ops: list[OpRecord]

    @property
    def system(self):
        return self.handle.system

    def record(self, kind: str, first_page: int, pages: int) -> OpRecord:
        rec = OpRecord(
            self.thread.name, self.handle.encl.name, kind, first_page, pages, self.system.now
        )
        self.ops.append(rec)
        return rec


def ioctl(ctx: Ctx, cmd: int, arg: object, progress: ProgressHook | None = None) -> Gen:
    """One ``ioctl()`` from the thread, after an EEXIT: the syscall goes through the
    kernel's ``sgx_ioctl``, which refuses it with -EBUSY while another ioctl runs on the
    enclave (``SGX_ENCL_IOCTL``); ``drive_range`` then backs off briefly and calls again
    from ``offset + count`` (0 for a refused call)."""
    t = ctx.thread
    yield from t.leave()
    result: IoctlResult = yield from sys_ioctl(t, ctx.handle.encl, cmd, arg, progress)
    return result


#: (pages done, pages in the operation), for progress bars: it reports and changes nothing
#: (the fast engine calls it after a batched run of pages, ``kernel.progress.observe_only``)
PagesHook = Callable[[int, int], None]
#: called right after each ioctl of a range operation returns, before any simulated time
#: passes: (the result, bytes done before this call); the demo reads the kernel's state here
CallHook = Callable[[IoctlResult, int], None]


#: a ``result_only_after`` hook's record of many calls at once, all -EAGAIN, made by the
#: compiled core after call ``calls``: ``(counts, causes, names, done_before)`` - each
#: call's bytes done (an ``int64`` array), its cause code (``names[code]`` is its
#: ``IoctlResult.extra["eagain_cause"]``), and the bytes done before the first of them
EagainManyHook = Callable[[np.ndarray, np.ndarray, dict[int, str], int], None]


def result_only_after(
    calls: int, eagain_many: EagainManyHook | None = None
) -> Callable[[CallHook], CallHook]:
    """Mark an ``on_call`` hook that, from call ``calls + 1`` of an operation on, reads
    nothing but its arguments and changes nothing (a log of results): MODIFY_TYPES' loop on
    the compiled core may then end those calls with -EAGAIN and make the runtime's next
    ones itself, and ``drive_range`` calls the hook for them when the core next stops, in
    order, with the results and ``done`` the reference gives it (``fast/driver/retry.py``).
    With ``eagain_many`` it gets them in one batch instead (``EagainManyHook``; it must
    record what the hook would, call by call: the demo's ``_call_logger``), for the
    thousands of calls a trim without direct reclaim makes (session ``seed5``).
    A hook without the mark is called at each call's return, each call made in Python."""

    def mark(hook: CallHook) -> CallHook:
        hook.result_only_after = calls  # type: ignore[attr-defined]
        hook.eagain_many = eagain_many  # type: ignore[attr-defined]
        return hook

    return mark


def drive_range(
    ctx: Ctx,
    kind: str,
    first_page: int,
    pages: int,
    perm: int = 0,
    *,
    stop_after_first: bool = False,
    on_pages: PagesHook | None = None,
    on_call: CallHook | None = None,
    max_stalled: int | None = None,
) -> Gen:
    """A page-range ioctl over ``pages`` pages, called again from ``offset + count`` after
    each ``-EAGAIN`` until done or another error (or after the first call with
    ``stop_after_first``). ``on_call(result, done_before)`` sees each call's result at the
    instant it returns. With ``max_stalled`` the runtime gives up after that many calls in a
    row that made no progress (a livelock bound; ``pages_done`` then falls short). Returns
    the ``OpRecord``."""
    rec = ctx.record(kind, first_page, pages)
    offset, length = first_page * PAGE_SIZE, pages * PAGE_SIZE
    done = 0
    max_calls = 10 * pages + 100  # a runaway guard; the kernel always makes progress
    stalled = 0

    @observe_only  # records progress; on_pages only reports (PagesHook)
    def on_page(_encl, count: int) -> None:
        now_done = (done + count) // PAGE_SIZE
        rec.note(ctx.system.now, now_done)
        if on_pages is not None and now_done % 256 == 0:
            on_pages(now_done, pages)

    def account(r: IoctlResult, now: int) -> bool:
        """The runtime's record of one call that returned at ``now``; whether to call again."""
        nonlocal done, stalled
        rec.calls += 1
        if rec.calls == 1:
            rec.first_call_pages = r.count // PAGE_SIZE
            rec.first_call_errno = r.errno
        done += r.count
        stalled = stalled + 1 if r.count == 0 and r.errno in ("EAGAIN", "EBUSY") else 0
        if r.errno == "EAGAIN":
            rec.eagain += 1
            rec.eagain_at.append(now)
        if stop_after_first or (max_stalled is not None and stalled >= max_stalled):
            return False
        if r.errno in ("EAGAIN", "EBUSY"):
            return True
        if r.errno:
            rec.errno = r.errno
            return False
        return True

    # what the compiled MODIFY_TYPES loop needs to stand in for on_page (``ioctl_sgx2.
    # _trim_core``): the range, where this call starts in it, the marks, OpRecord.note's step
    step = max(1, pages // PROGRESS_POINTS)
    on_page.core_range = lambda: (first_page, pages, done // PAGE_SIZE, on_pages is not None, step)  # type: ignore[attr-defined]
    on_page.core_notes = rec.progress.extend  # type: ignore[attr-defined]

    # ... and to make this loop's next calls after -EAGAIN itself (``fast/driver/retry.py``,
    # session ``eagain``): how many more calls it may end and make (0: none - the first
    # call only, or an on_call that reads more than its result at this call's return) ...
    # and the loop's ``stalled`` and ``max_stalled`` (0: none) ...
    def core_retry() -> tuple[int, int, int]:
        left = max_calls - rec.calls - 1
        if kind != "modify_types" or stop_after_first:
            left = 0
        elif on_call is not None and rec.calls < getattr(on_call, "result_only_after", max_calls):
            left = 0  # the current call is rec.calls + 1: its hook must see the instant
        return left, stalled, max_stalled or 0

    on_page.core_retry = core_retry  # type: ignore[attr-defined]
    # ... whether no call follows the current one (the first call only): the runtime makes
    # no short calls after it, so serving ksgxd through it pays (``ksgxd_serving``) ...
    on_page.core_final = lambda: stop_after_first  # type: ignore[attr-defined]

    # ... and the record of those calls when the core next stops, each -EAGAIN (never
    # -EBUSY): ``counts`` (bytes), instants back in the runtime (``nows``), ``causes``
    # (``names[code]`` is ``extra["eagain_cause"]``): what this loop does at each call's
    # return, in bulk where the hook takes it so (``result_only_after``'s ``eagain_many``)
    def core_calls(
        counts: np.ndarray, nows: np.ndarray, causes: np.ndarray, names: dict[int, str]
    ) -> None:
        nonlocal done, stalled
        many = getattr(on_call, "eagain_many", None)
        if on_call is not None and many is None:  # the hook sees each result, in order
            rows = zip(counts.tolist(), nows.tolist(), causes.tolist(), strict=True)
            for count, now, cause in rows:
                r = IoctlResult(-EAGAIN, count)
                r.extra["eagain_cause"] = names[cause]
                on_call(r, done)
                account(r, now)
            return
        if many is not None:
            many(counts, causes, names, done)
        # ``account`` of each call, in bulk: every call -EAGAIN
        n = len(counts)
        if rec.calls == 0:
            rec.first_call_pages = int(counts[0]) // PAGE_SIZE
            rec.first_call_errno = "EAGAIN"
        rec.calls += n
        done += int(counts.sum())
        moved = np.flatnonzero(counts)  # calls that did pages end a stall
        stalled = stalled + n if len(moved) == 0 else n - 1 - int(moved[-1])
        rec.eagain += n
        rec.eagain_at.extend(nows.tolist())

    on_page.core_calls = core_calls  # type: ignore[attr-defined]

    def call() -> Gen:
        off, ln = offset + done, length - done
        if kind == "modify_types":
            args = ModifyTypesArgs(off, ln, int(PageType.TRIM))
            return (yield from ioctl(ctx, SGX_IOC_ENCLAVE_MODIFY_TYPES, args, on_page))
        if kind == "remove_pages":
            args_rm = RemovePagesArgs(off, ln)
            return (yield from ioctl(ctx, SGX_IOC_ENCLAVE_REMOVE_PAGES, args_rm, on_page))
        args_rp = RestrictPermissionsArgs(off, ln, perm)
        cmd = SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS
        return (yield from ioctl(ctx, cmd, args_rp, on_page))

    while done < length and rec.calls < max_calls:
        r = yield from call()
        if on_call is not None:
            on_call(r, done)
        if r.ret == -EBUSY:  # refused (another ioctl, or REMOVE_PAGES' isolated page)
            rec.ebusy += 1
            yield from ctx.thread.sleep(ctx.system.machine.env.timeout(EBUSY_BACKOFF_NS))
        if not account(r, ctx.system.now):
            break
    rec.pages_done = done // PAGE_SIZE
    rec.end_ns = ctx.system.now
    return rec


def eaccept_range(
    ctx: Ctx,
    first_page: int,
    pages: int,
    flags: int,
    *,
    entry_per_page: bool = False,
    on_pages: PagesHook | None = None,
) -> Gen:
    """ENCLU[EACCEPT] with ``flags`` on each page from inside, in one enclave entry (or one
    entry per page, as the kernel's removal stress test does, with ``entry_per_page``); an
    absent page faults first and, on SGX2, the kernel EAUGs it. Returns the ``OpRecord``."""
    rec = ctx.record("eaccept", first_page, pages)
    t, encl = ctx.thread, ctx.handle.encl
    system = ctx.system
    hw, stats, costs = system.cpu, system.sgx.stats, system.costs
    rec.calls = 1

    batch = system.sgx.fast
    # ``System(fast_core=...)``: the per-page loop on the compiled core while its regime
    # holds (the enclave thread's machine in its EACCEPT mode, ksgxd with it: PATHS.md
    # "The EACCEPT loop"); None on the reference engine or where the structure excludes it
    core = system.sgx.stream_core
    hook = None
    if core is not None and pages > 0:
        step = max(1, pages // PROGRESS_POINTS)
        hook = core.eaccept(t, first_page, pages, flags, entry_per_page, on_pages is not None, step)
    i = 0
    while i < pages:
        if hook is not None:
            moved = yield from hook.run(i, i)
            if moved is not None:
                # the core stopped at a page's start (or, after a fault it began, with the
                # fault finished in Python): its notes and counters are the reference's
                rec.progress.extend(hook.notes)
                if moved[0] != i:
                    i = rec.pages_done = moved[0]
                    if on_pages is not None and i % 256 == 0:
                        on_pages(i, pages)
                if moved[2] == STREAM_SIGBUS:  # the fault the core began ended in SIGBUS
                    rec.errno = "SIGBUS"
                    break
                if i >= pages:
                    break
        idx = first_page + i
        if batch:  # the fast engine: a run of pages at once (epcsim.fast.eaug, .eaccept)
            limit = pages - i
            if on_pages is not None:  # the hook runs at its own instant: end runs there
                limit = min(limit, 256 - i % 256)
            k = 0 if entry_per_page else fast_eaug.run_length(t, idx, limit, flags)
            if k:
                t0, period = fast_eaug.eaug_eaccept_run(t, idx, k)
                noted = period  # the note follows the page's EACCEPT, its last step
            else:
                k, t0, period = fast_eaccept.accept_run(t, idx, limit, flags, entry_per_page)
                noted = period - (costs.eexit if entry_per_page else 0)  # before the EEXIT
            if k:
                stats.eaccept += k
                rec.note_many(t0, period, i + 1, i + k, noted)
                i += k
                rec.pages_done = i
                if on_pages is not None and i % 256 == 0:
                    on_pages(i, pages)
                continue
        addr = encl.linaddr(idx)

        def leaf(lp: int, epc: int, addr: int = addr) -> int:
            stats.eaccept += 1
            return hw.eaccept(lp, flags, addr, epc)

        ret = yield from t.enclu_on_page(idx, leaf)
        if ret is None:  # SIGBUS: the kernel could not map the page
            rec.errno = "SIGBUS"
            break
        yield from t.run(costs.eaccept)
        if ret != 0:
            rec.failures += 1
        rec.pages_done = i + 1
        rec.note(system.now, i + 1)
        if entry_per_page:
            yield from t.leave()
        if on_pages is not None and (i + 1) % 256 == 0:
            on_pages(i + 1, pages)
        yield from t.cond_resched()
        i += 1
    if hook is not None:
        hook.close()  # the loop is over (``StreamCore.live``)
    rec.end_ns = system.now
    return rec


def grow(ctx: Ctx, first_page: int, pages: int, perm: int = 3) -> Gen:
    """Grow the heap: EACCEPT(PENDING) each page, the kernel EAUGs on the fault."""
    flags = secinfo_flags(PageType.REG, perm, int(SecinfoFlags.PENDING))
    rec = yield from eaccept_range(ctx, first_page, pages, flags)
    return [rec]


def trim(ctx: Ctx, first_page: int, pages: int) -> Gen:
    """Give pages back: MODIFY_TYPES(TRIM), EACCEPT(TRIM|MODIFIED) each, REMOVE_PAGES."""
    recs = [(yield from drive_range(ctx, "modify_types", first_page, pages))]
    if not recs[-1].ok:
        return recs
    flags = secinfo_flags(PageType.TRIM, 0, int(SecinfoFlags.MODIFIED))
    recs.append((yield from eaccept_range(ctx, first_page, pages, flags)))
    if not recs[-1].ok:
        return recs
    recs.append((yield from drive_range(ctx, "remove_pages", first_page, pages)))
    return recs


def restrict(ctx: Ctx, first_page: int, pages: int, perm: int) -> Gen:
    """Drop permissions: RESTRICT_PERMISSIONS (EMODPR), then EACCEPT(PR) each page."""
    recs = [(yield from drive_range(ctx, "restrict_permissions", first_page, pages, perm))]
    if not recs[-1].ok:
        return recs
    flags = secinfo_flags(PageType.REG, perm, int(SecinfoFlags.PR))
    recs.append((yield from eaccept_range(ctx, first_page, pages, flags)))
    return recs
