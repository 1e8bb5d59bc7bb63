"""ADD_PAGES' page loop on the compiled core (``System(fast_core=True)``: the thread
machine's ``tstate.MODE_ADD`` on the process's ioctl task, ksgxd with it; PATHS.md "The
ADD_PAGES loop", rows A0-A4) against the fast engine without the core and the reference.

A build larger than the EPC: the image's measured pages (a TCS, code; Python's loop: the
core leaves SGX_PAGE_MEASURE to it), then the heap - unmeasured, as the seed scenario adds
it - in one or two calls, from the first page below the low watermark on with ksgxd and
the adder's own reclaim (``sgx_alloc_epc_page(reclaim=true)`` on an empty free list)
writing pages back; unmeasured TCS pages among the heap; a measured range after it (the
core's pages and Python's in one enclave's MRENCLAVE); a call over a range holding a page
already added (-EBUSY: the core stops at that page's top, Python's ``sgx_encl_add_page``
returns it). After each call every observable (``stream_core_cases.core_snap``: counters, the
free timeline, the EPC lists and owners, the EPCM, the page arrays, the VA slots, the
backing records, the tasks' and ``encl->lock``'s fields with its trace - the event order
of the lock) and the call's result must be equal on the three systems; then MRENCLAVE,
EINIT's result and the state once ksgxd has settled. The core must have added pages
(``StreamCore.adds``), and ``page_cnt`` crosses 512 with the larger heaps: the VA page
``sgx_encl_grow`` adds there is the core's too since session ``addrun``
(``test_add_va_core.py``: builds crossing several).
"""

from __future__ import annotations

import errno

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_core_cases import core_snap

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.kernel.ioctl import observe_only
from epcsim.user.thread import AccessOutcome

_OUT = AccessOutcome(0, 0, 0, 0)


def build_enclave(
    engine: str, seed, epc_pages, cpus, direct, heap_x, tcs_mid, split, hook=False, **kw
):  # type: ignore[no-untyped-def]
    """The scenario (module docstring), one snapshot per step, then the core's counts.
    ``hook``: every call gets an ``observe_only(count_only=True)`` progress hook (a
    progress bar's count, as ``epcsim run``'s build passes), whose calls are appended to
    the step's record."""
    system = epcsim.System(
        engine=engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=seed, content_mode="tag",
        direct_reclaim=direct, **kw,
    )  # fmt: skip
    heap = int(heap_x * epc_pages)
    n = 2 + heap + tcs_mid + 4
    encl = system.create_enclave(1 << ((2 * n * PAGE_SIZE - 1).bit_length()))
    encl.encl.lock.trace = []
    steps = [
        (0, 1, "", "tcs", True),  # the image: measured (Python's loop)
        (1, 1, "rx", "reg", True),
    ]
    a = 2
    first = heap // split if split > 1 else heap
    steps.append((a, first, "rw", "reg", False))
    if split > 1:
        steps.append((a + first, heap - first, "rw", "reg", False))
    a += heap
    if tcs_mid:
        steps.append((a, tcs_mid, "", "tcs", False))  # unmeasured TCS pages: the core's too
    steps.append((a + tcs_mid, 4, "r", "reg", True))  # measured after the heap: Python's
    steps.append((a - 3, 6, "rw", "reg", False))  # over added pages: -EBUSY at once
    out = []
    seen: list[int] = []
    bar = observe_only(lambda _encl, done: seen.append(done), count_only=True) if hook else None
    for off, pages, perm, ptype, measure in steps:
        r = encl.add_pages(
            off * PAGE_SIZE, pages * PAGE_SIZE, perm or "r", page_type=ptype, measure=measure,
            progress=bar,
        )  # fmt: skip
        out.append((core_snap(system, encl, _OUT), r.ret, r.count, seen[:]))
        seen.clear()
    st_ = system.cpu.secs_state(encl.encl.secs_epc)
    mr = st_.measurement_digest()
    init = encl.init()
    system.machine.env.run()  # ksgxd to its sleep
    out.append((core_snap(system, encl, _OUT), mr, init.ret, encl.encl.page_cnt))
    sc = system.sgx.stream_core
    counts = [0, 0] if sc is None else [sc.adds, sc.entries]
    return out, counts


def _three(*args, hook=False) -> list[int]:  # type: ignore[no-untyped-def]
    from stream_core_cases import ENGINE_KEYS

    ref, _ = build_enclave("reference", *args, hook=hook)
    fast, zero = build_enclave("fast", *args, hook=hook, fast_core=False)
    core, counts = build_enclave("fast", *args, hook=hook, fast_core=True)
    assert zero == [0, 0]
    for k, (a, f, c) in enumerate(zip(ref, fast, core, strict=True)):
        assert [key for key in f[0] if f[0][key] != c[0][key]] == [], f"step {k}"
        assert f[1:] == c[1:], f"step {k}"
        assert [key for key in a[0] if a[0][key] != f[0][key] and key not in ENGINE_KEYS] == []
        assert a[1:] == f[1:], f"step {k}"
    assert ref[-2][1] == -errno.EBUSY  # the call over added pages
    return counts


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([64, 96, 128]),
    cpus=st.integers(2, 4),
    direct=st.booleans(),
    heap_x=st.sampled_from([4.5, 6.0, 8.5]),
    tcs_mid=st.sampled_from([0, 3]),
    split=st.sampled_from([1, 2]),
)
def test_the_add_loop_on_the_core_matches_the_reference(  # type: ignore[no-untyped-def]
    seed, epc_pages, cpus, direct, heap_x, tcs_mid, split
) -> None:
    adds, entries = _three(seed, epc_pages, cpus, direct, heap_x, tcs_mid, split)
    assert adds > 0 and entries > 0, "the core added no page"


def test_the_seed_shaped_build_runs_on_the_core() -> None:
    """One build of the seed's shape (the heap 2x the EPC in one call, 4 CPUs): most of the
    pages past the EPC's size are the core's - all but the VA pages' (1 in 512) and those
    before the backing store's first record (ksgxd's first batch lays it out)."""
    adds, entries = _three(7, 256, 4, False, 2.0, 0, 1)
    assert adds > 200 and entries > 0


def test_a_build_with_a_progress_bar_runs_on_the_core() -> None:
    """A count-only progress hook (``epcsim run``'s build bar) no longer keeps the
    build off the core (``kernel.ioctl_add._add_core``): the same pages are the core's as
    without it, and the hook is called once per page with the same byte counts in the same
    order on the three systems (each step's record holds its calls)."""
    adds, entries = _three(7, 256, 4, False, 2.0, 0, 1, hook=True)
    assert adds > 200 and entries > 0
    ref, _ = build_enclave("reference", 7, 256, 4, False, 2.0, 0, 1, hook=True)
    heap = ref[2]  # the heap's call: one hook call per page, in order
    assert heap[3] == [PAGE_SIZE * (j + 1) for j in range(heap[2] // PAGE_SIZE)]


def _build_then_trim(mutex: str, **kw):  # type: ignore[no-untyped-def]
    """The demo's FIFO run's shape, small: a heap 3x the EPC built (on the core with it:
    ksgxd moved there and back, its process then a ``Served`` one), then MODIFY_TYPES
    without direct reclaim from an enclave thread, called again after -EAGAIN, the first
    call's result read by the runtime (``result_only_after(1)``, as the demo's ``on_call``)."""
    from core_cases import IMAGE, op_record, selftest_enclave
    from stream_core_cases import core_snap as snap_of

    from epcsim.workloads.edmm import Ctx, drive_range, result_only_after

    heap = 3 * 64

    def add_heap(encl) -> None:  # type: ignore[no-untyped-def]
        assert encl.add_pages(IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok

    system, encl, t = selftest_enclave(
        "fast", 5, 64, 2, False, heap, False, add_heap, "trim", mutex=mutex, sched=mutex, **kw
    )

    @result_only_after(1)
    def on_call(r, done: int) -> None:  # type: ignore[no-untyped-def]
        pass

    sc = system.sgx.stream_core
    built = 0 if sc is None else sc.k0_entries  # ksgxd's K0 entries during the build
    ctx = Ctx(encl, t, [])  # type: ignore[arg-type]
    rec = system._call(t, drive_range(ctx, "modify_types", IMAGE, heap, on_call=on_call))
    return snap_of(system, encl, _OUT), op_record(rec), rec, sc, built


def test_ksgxd_moved_during_the_build_enters_its_machine_at_k0_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After a build on the core ksgxd runs in a ``Served`` process; K0's hook must still
    take it (``stream._ksgxds_process``), so that the trim's calls after the first, which
    the machine may make itself (the runtime's retry), run on the core with "auto". With
    the hook reading ``gi_yieldfrom`` (a running generator shows none) it never did: the
    demo's FIFO run without direct reclaim then trimmed in Python, 8.2 s against 0.4.
    A cost only: the observables equal ``fast_core=False``'s."""
    from epcsim.fast.driver import stream as stream_mod

    monkeypatch.setattr(stream_mod, "machines_warm", lambda: True)
    off_snap, off_rec, _, _, _ = _build_then_trim("fifo", fast_core=False)
    snap, rec_t, rec, auto, built = _build_then_trim("fifo")
    assert [key for key in off_snap if off_snap[key] != snap[key]] == []
    assert rec_t == off_rec
    assert auto.adds > 0 and rec.calls > 10 and rec.eagain > 0
    # (since session ``twoencl3`` the build's first core call may begin the session itself,
    # from ksgxd asleep: a file without a record yet is in the regime; so count the entries
    # after the build, not all of them)
    assert auto.k0_entries > built, "ksgxd never entered its machine at K0 after the build"
    assert auto.ioctl_retries > rec.calls // 2
