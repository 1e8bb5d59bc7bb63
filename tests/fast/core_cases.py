"""What the tests of the EDMM loops on the compiled core share (``test_eaccept_core.py``,
``test_trim_core.py``, ``test_trim_retry_core.py``, ``test_auto_trim.py``,
``test_add_core.py``, ``test_remove_ebusy_core.py``, ``test_fifo_core.py``).

- ``selftest_enclave``: the selftest enclave (``IMAGE`` pages of TCS and code, measured)
  with a heap, initialized; ``pow2``, ``op_record`` (an ``OpRecord`` as a plain tuple).
- ``agree``: a scenario on the reference, the fast engine without the core and with it,
  equal step by step; the core's counts.
- The scenarios, each a generator of snapshots (``stream_core_cases.core_snap``) and then
  the core's counts: ``eaccept_scenario`` (the removal stress test's trim, EACCEPT and
  REMOVE_PAGES), ``trim_scenario`` (MODIFY_TYPES(TRIM) over TCS pages, a hole, pages
  already trimmed), ``retry_scenario`` (the runtime's -EAGAIN retry without direct
  reclaim). Their tests and what they check: the test files' docstrings.

A helper module, not a test file (tests/README.md, "Rules for a new test"): moved from
``test_eaccept_core.py``, ``test_trim_core.py`` and ``test_trim_retry_core.py`` by session
``tidy``, no code changed.
"""

from __future__ import annotations

import dataclasses
import errno

from stream_core_cases import ENGINE_KEYS, core_snap

import epcsim
from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags, secinfo_flags
from epcsim.demo import _call_logger
from epcsim.seed_run import CallLog
from epcsim.user.thread import AccessOutcome
from epcsim.workloads.edmm import Ctx, drive_range, eaccept_range, result_only_after

IMAGE = 4  #: the selftest enclave's TCS and code pages (benchmarks/rows.py's row 3)


def pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def selftest_enclave(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, direct: bool, heap: int, settle: bool,
    add_heap, name: str, **kw,
):  # fmt: skip
    """The selftest enclave (a TCS and ``IMAGE - 1`` code pages, measured) with a heap of
    ``heap`` pages that ``add_heap(encl)`` adds, initialized (ksgxd settled when ``settle``),
    the lock's trace started and a thread ``name``: the system, the enclave and the thread."""
    system = epcsim.System(
        engine=engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=seed, content_mode="tag",
        direct_reclaim=direct, **kw,
    )  # fmt: skip
    encl = system.create_enclave(pow2((IMAGE + heap) * PAGE_SIZE))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(PAGE_SIZE, (IMAGE - 1) * PAGE_SIZE, "rx", measure=True).ok
    add_heap(encl)
    assert encl.init().ok
    if settle:
        system.machine.env.run()
    encl.encl.lock.trace = []
    return system, encl, encl.new_thread(name)


def op_record(rec) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    return (*dataclasses.astuple(rec),)


def agree(scenario, args, kw) -> list[int]:  # type: ignore[no-untyped-def]
    """Runs ``scenario`` on the reference, the fast engine without the core (not the default
    "auto") and with it; each yields ``(snapshot, *rest)`` per step, then the core's counts.
    Every step must be equal on the three (the reference's snapshot but its ``ENGINE_KEYS``);
    the engines without the core count 0. Returns the core's counts."""
    ref = scenario("reference", *args, **kw)
    fast = scenario("fast", *args, **kw, fast_core=False)
    core = scenario("fast", *args, **kw, fast_core=True)
    for k, (a, f, b) in enumerate(zip(ref, fast, core, strict=True)):
        if isinstance(a, tuple):
            assert [key for key in f[0] if f[0][key] != b[0][key]] == [], f"step {k}"
            assert f[1:] == b[1:], f"step {k}"
            assert [key for key in a[0] if a[0][key] != f[0][key] and key not in ENGINE_KEYS] == []
            assert a[1:] == f[1:], f"step {k}"
        else:
            assert a == f == [0] * len(b)
            return list(b)
    raise AssertionError("no count")


def eaccept_scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool,
    epp: bool, settle: bool, short: int, marks: bool = False, via: str = "thread", **kw,
):  # fmt: skip
    """Yields a snapshot after each step (the module docstring), then the core's count."""
    heap = max(8, int(heap_x * epc_pages))

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        assert encl.add_pages(IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok

    system, encl, t = selftest_enclave(
        engine, seed, epc_pages, cpus, direct, heap, settle, add_heap, "eaccept", **kw
    )
    ops: list[object] = []
    ctx = Ctx(encl, t, ops)  # type: ignore[arg-type]
    trimmed = heap - short  # the last ``short`` pages stay REG: their EACCEPT fails
    rec = system._call(t, drive_range(ctx, "modify_types", IMAGE, trimmed))
    yield core_snap(system, encl, AccessOutcome()), op_record(rec)
    flags = secinfo_flags(PageType.TRIM, 0, int(SecinfoFlags.MODIFIED))
    seen: list[tuple[int, int, int, int]] = []

    def on_pages(done: int, total: int) -> None:  # what a progress bar sees, and when
        seen.append((done, total, system.now, int(system.stats()["eaccept"])))

    hook = on_pages if marks else None
    rec = system._call(t, eaccept_range(ctx, IMAGE, heap, flags, entry_per_page=epp, on_pages=hook))
    yield (
        core_snap(system, encl, AccessOutcome()),
        op_record(rec),
        (t.busy_ns, t.entered, t.cpu),
        seen,
    )
    # over the whole heap: the untrimmed pages stop it (-EPERM: the core leaves the page to
    # Python's per_page, KB_PAGE); from the thread (drive_range) or from the process's ioctl
    # task (Enclave.remove_pages, called again from offset + count after -EAGAIN/-EBUSY)
    if via == "thread":
        seen_by = op_record(system._call(t, drive_range(ctx, "remove_pages", IMAGE, heap)))
    else:
        off, length, c, calls = IMAGE * PAGE_SIZE, heap * PAGE_SIZE, 0, []
        while len(calls) < 10 * heap + 100:  # a runaway guard, as drive_range's
            r = encl.remove_pages(off + c, length - c)
            calls.append((r.ret, r.count, sorted(r.extra.items()), system.now))
            c += r.count
            if r.ret not in (-errno.EAGAIN, -errno.EBUSY) or c >= length:
                break
        seen_by = calls
    yield core_snap(system, encl, AccessOutcome()), seen_by
    sc = system.sgx.stream_core
    yield (
        [0] * 6
        if sc is None
        else [
            sc.eaccepts, sc.trims, sc.removes, sc.eaccept_entries, sc.eaccept_tcs_stops,
            sc.lock_contended,
        ]
    )  # fmt: skip


def _modify_types(system, encl, ctx, via: str, first: int, pages: int, hook=None):  # type: ignore[no-untyped-def]
    """MODIFY_TYPES(TRIM) over ``pages`` pages from ``first``, as the caller sees it: through
    ``drive_range`` in the enclave thread's process (``via="thread"``: the ``OpRecord``), or
    ``Enclave.modify_types`` from the process's ioctl task (``via="ioctl"``: every call's
    result, again from ``offset + count`` after -EAGAIN, and the task's scheduler fields)."""
    if via == "thread":
        rec = system._call(
            ctx.thread, drive_range(ctx, "modify_types", first, pages, on_pages=hook)
        )
        return op_record(rec)
    off, length, c = first * PAGE_SIZE, pages * PAGE_SIZE, 0
    calls = []
    while len(calls) < 10 * pages + 100:  # a runaway guard, as drive_range's
        r = encl.modify_types(off + c, length - c, "trim")
        calls.append((r.ret, r.count, r.result, sorted(r.extra.items()), system.now))
        c += r.count
        if r.ret != -errno.EAGAIN or c >= length:
            break
    t = encl.task
    fields = (t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime)
    return calls, fields


def trim_scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, heap_x: float, direct: bool,
    settle: bool, tcs: int, hole: bool, marks: bool, via: str = "thread", **kw,
):  # fmt: skip
    """Yields a snapshot after each call (module docstring), then the core's trimmed pages."""
    heap = max(16, int(heap_x * epc_pages))

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        if tcs:  # TCS pages as the heap's first ones: TCS -> TRIM
            assert encl.add_pages(IMAGE * PAGE_SIZE, tcs * PAGE_SIZE, page_type="tcs").ok
        gap = (heap * 3 // 4, heap * 3 // 4 + 2) if hole else (heap, heap)  # never added
        for lo, hi in ((tcs, gap[0]), (gap[1], heap)):
            if hi > lo:
                assert encl.add_pages((IMAGE + lo) * PAGE_SIZE, (hi - lo) * PAGE_SIZE, "rw").ok

    system, encl, t = selftest_enclave(
        engine, seed, epc_pages, cpus, direct, heap, settle, add_heap, "trim", **kw
    )
    ctx = Ctx(encl, t, [])  # type: ignore[arg-type]
    seen: list[tuple[int, int, int, int]] = []

    def on_pages(done: int, total: int) -> None:  # what a progress bar sees, and when
        seen.append((done, total, system.now, int(system.stats()["emodt"])))

    hook = on_pages if marks else None
    seen_by = _modify_types(system, encl, ctx, via, IMAGE, heap, hook)
    yield core_snap(system, encl, AccessOutcome()), seen_by, seen
    # again over the range's second half: its first page is TRIM already (-EINVAL)
    seen_by = _modify_types(system, encl, ctx, via, IMAGE + heap // 2, heap // 2)
    yield core_snap(system, encl, AccessOutcome()), seen_by
    sc = system.sgx.stream_core
    yield [0] if sc is None else [sc.trims]


def retry_scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, heap_x: float, settle: bool,
    hook: str, marks: bool, max_stalled: int | None, **kw,
):  # fmt: skip
    """The selftest's trim without direct reclaim, called again after -EAGAIN; yields the
    snapshot with the ``OpRecord``, the hooks' views and the thread's fields, then the
    core's retried calls and trimmed pages."""
    heap = max(16, int(heap_x * epc_pages))

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        assert encl.add_pages(IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok

    system, encl, t = selftest_enclave(
        engine, seed, epc_pages, cpus, False, heap, settle, add_heap, "trim", **kw
    )
    calls: list[tuple[object, ...]] = []
    seen: list[tuple[int, int, int, int]] = []

    def log(r, done: int) -> None:  # type: ignore[no-untyped-def]
        calls.append((r.ret, r.count, r.result, sorted(r.extra.items()), done))
        if len(calls) == 1:  # what only the instant shows: the demo's first-call snapshot
            calls.append((system.now, int(system.stats()["ewb"]), int(system.stats()["eldu"])))

    def log_many(counts, causes, names, done: int) -> None:  # type: ignore[no-untyped-def]
        # ``result_only_after``'s ``eagain_many``: the calls the core made, in one batch,
        # logged as ``log`` would log each (session ``seed5``)
        for count, cause in zip(counts.tolist(), causes.tolist(), strict=True):
            calls.append((-errno.EAGAIN, count, 0, [("eagain_cause", names[cause])], done))
            done += count

    demo_log = CallLog()
    if hook == "demo":  # the demo's own hook (``demo._call_logger``), bulk where it can
        on_call = _call_logger(system, encl.encl, IMAGE, demo_log)
    elif hook == "many":
        on_call = result_only_after(1, eagain_many=log_many)(log)
    else:
        on_call = None if hook == "none" else log if hook == "plain" else result_only_after(1)(log)

    def on_pages(done: int, total: int) -> None:
        seen.append((done, total, system.now, int(system.stats()["emodt"])))

    rec = system._call(
        t,
        drive_range(
            Ctx(encl, t, []),  # type: ignore[arg-type]
            "modify_types",
            IMAGE,
            heap,
            on_pages=on_pages if marks else None,
            on_call=on_call,
            max_stalled=max_stalled,
        ),
    )
    fields = (t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime)
    yield (
        core_snap(system, encl, AccessOutcome()), op_record(rec), calls, seen, fields, t.entered,
        list(demo_log.eagain_causes.items()), demo_log.first_stop_cause,
        demo_log.first_end and dataclasses.asdict(demo_log.first_end),
    )  # fmt: skip
    sc = system.sgx.stream_core
    yield [0, 0] if sc is None else [sc.ioctl_retries, sc.trims]
