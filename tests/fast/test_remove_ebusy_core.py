"""REMOVE_PAGES' -EBUSY branch (and MODIFY_TYPES' -EAGAIN on a held page) on the compiled
core (PATHS.md "The REMOVE_PAGES loop", R3; ``fast/driver/remove.py``) against the fast
engine without the core and the reference.

``sgx_unmark_page_reclaimable`` finds the page TRACKED but off the LRU - a reclaimer took
it in ``sgx_reclaim_pages``' phase A (no ``encl->lock``) and has not written it back - and
the ioctl returns -EBUSY, not turned into -EAGAIN, with ``count`` the pages done. The
generated scenarios of ``test_eaccept_core`` never get there (the reclaimers' victims are
long written back when the ioctl arrives), so the scenario is built, as
``tests/test_demo.py``'s -EAGAIN with direct reclaim: a heap that fits, trimmed and accepted
(TRIM pages stay on the LRU as reclaimable, in range order), then something outside the
enclaves (a KVM guest's virtual EPC, never on the LRU) takes the free pool below
SGX_NR_LOW_PAGES and ksgxd is woken. Twice: the first round writes pages back and so lays
the backing store out (ksgxd's first batch of an enclave whose backing has no layout yet is
outside the core's regime, ``core_regime._static_regime``, and would run in its Python
generator, the ioctl with it); after the second wake-up ksgxd enters its machine at K0 and
the ioctl, started a few microseconds later at a page a little past the LRU head, meets a
page of ksgxd's first batch that phase B has not yet marked BEING_RECLAIMED: -EBUSY. The
runtime calls again from ``offset + count`` (``workloads.edmm.drive_range``, or the
process's ioctl task), and later calls meet BEING_RECLAIMED pages (-EAGAIN at the load)
until ksgxd's batch is written back.

The -EBUSY must be the core's: ``StreamCore.ioctl_rets`` counts the calls the machine ended
itself, by ``(ret, cause)``, and only R3 sets -EBUSY (Python's ``per_page`` never touches
it); the core's removal count in that call must equal the call's ``count`` (it stopped at
the -EBUSY page), and the core must have removed pages in the whole drive.

The same scenario reaches MODIFY_TYPES' -EAGAIN on a BEING_RECLAIMED page on the core
(PATHS.md "The MODIFY_TYPES loop", M2; ``eagain_cause`` being_reclaimed), which no core
test reached: the heap left untrimmed, MODIFY_TYPES(TRIM) from the LRU head's batch once
phase B has marked its pages (12-16 us after the wake-up). Its key in ``ioctl_rets`` is
``(-EAGAIN, CAUSE_BEING_RECLAIMED)``; REMOVE_PAGES' later calls meet it too.
"""

from __future__ import annotations

import errno
import os
import random

import pytest
from core_cases import IMAGE, agree, op_record, pow2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import core_snap

import epcsim
from epcsim.arch import PAGE_SIZE, SGX_NR_LOW_PAGES, PageType, SecinfoFlags, secinfo_flags
from epcsim.fast.driver.tstate import CAUSE_BEING_RECLAIMED
from epcsim.kernel.ioctl_sgx2 import EAGAIN_BEING_RECLAIMED
from epcsim.user.thread import AccessOutcome
from epcsim.workloads.edmm import Ctx, drive_range, eaccept_range

LONG = bool(os.environ.get("EPCSIM_LONG"))
HEAP = 64  #: heap pages: fits in the 256-page EPC
EPC = 256 * PAGE_SIZE
_EBUSY = (-errno.EBUSY, 0)  #: ``StreamCore.ioctl_rets``' key of R3's -EBUSY (no cause)
_HELD = (-errno.EAGAIN, CAUSE_BEING_RECLAIMED)  #: its key of M2's -EAGAIN on a held page
#: the scenario's last step, the core's counts (0 on the systems without it): the pages
#: the core removed (or trimmed), then for -EBUSY and for -EAGAIN on a BEING_RECLAIMED
#: page the calls the machine ended (``ioctl_rets``) and the calls seen, and the sum over
#: those calls of |the core's pages in the call - its count| (0: the core stopped there)
_COUNTS = ("pages", "core_ebusy", "ebusy", "core_held", "held", "off")


def _squeeze(system: epcsim.System) -> None:
    """A guest takes the free pool below SGX_NR_LOW_PAGES and ksgxd is woken, as
    ``sgx_alloc_epc_page()`` does (the guest's pages are never on the LRU, spec §13)."""
    sgx = system.sgx
    while sgx.epc.nr_free_pages >= SGX_NR_LOW_PAGES:
        assert sgx.epc.alloc(0) >= 0
    sgx.wake_ksgxd()


def _scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, cpus: int, direct: bool, start: int, wait_ns: int, via: str,
    kind: str = "remove_pages", **kw,
):  # fmt: skip
    """Yields a snapshot after each step (the module docstring), then the core's counts
    (``_COUNTS``). ``kind`` "modify_types": the heap is not trimmed before, the ioctl
    trims it (its -EAGAIN on a BEING_RECLAIMED page, M2)."""
    system = epcsim.System(
        engine=engine, epc=EPC, cpus=cpus, seed=seed, content_mode="tag",
        direct_reclaim=direct, **kw,
    )  # fmt: skip
    encl = system.create_enclave(pow2((IMAGE + HEAP) * PAGE_SIZE))
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(PAGE_SIZE, (IMAGE - 1) * PAGE_SIZE, "rx", measure=True).ok
    assert encl.add_pages(IMAGE * PAGE_SIZE, HEAP * PAGE_SIZE, "rw").ok
    assert encl.init().ok
    system.machine.env.run()
    encl.encl.lock.trace = []
    t = encl.new_thread("runtime")
    ctx = Ctx(encl, t, [])  # type: ignore[arg-type]
    if kind == "remove_pages":
        rec = system._call(t, drive_range(ctx, "modify_types", IMAGE, HEAP))
        assert rec.ok
        flags = secinfo_flags(PageType.TRIM, 0, int(SecinfoFlags.MODIFIED))
        rec = system._call(t, eaccept_range(ctx, IMAGE, HEAP, flags, entry_per_page=False))
        assert rec.ok
    sgx = system.sgx
    _squeeze(system)  # round 1: pages written back, the backing store laid out
    system.machine.env.run()
    head = int(sgx.epc.owner_index[sgx.lru.order()[0]])  # the LRU head: ksgxd's next victim
    yield core_snap(system, encl, AccessOutcome()), head
    _squeeze(system)  # round 2: ksgxd enters its machine at K0 and isolates a batch
    system.run(until=wait_ns)
    yield (core_snap(system, encl, AccessOutcome()),)
    first = head + start
    n = IMAGE + HEAP - first
    sc = sgx.stream_core
    counts = [0] * len(_COUNTS)
    mark: list[object] = [0, {}]  # the core's pages and ``ioctl_rets`` before the call

    def core_pages() -> int:
        assert sc is not None
        return int(sc.removes if kind == "remove_pages" else sc.trims)

    def on_call(r, done_before: int) -> None:  # type: ignore[no-untyped-def]
        if sc is None:
            return
        pages = core_pages() - mark[0]  # type: ignore[operator]
        before: dict[tuple[int, int], int] = mark[1]  # type: ignore[assignment]
        stops = {k: v - before.get(k, 0) for k, v in sc.ioctl_rets.items()}
        if r.errno == "EBUSY":
            counts[2] += 1
            counts[1] += stops.get(_EBUSY, 0)
        if r.extra.get("eagain_cause") == EAGAIN_BEING_RECLAIMED:
            counts[4] += 1
            counts[3] += stops.get(_HELD, 0)
        if r.errno in ("EBUSY", "EAGAIN"):
            counts[5] += abs(pages - r.count // PAGE_SIZE)
        mark[:] = [core_pages(), dict(sc.ioctl_rets)]

    if sc is not None:
        mark[:] = [core_pages(), dict(sc.ioctl_rets)]
    if via == "thread":
        seen: object = op_record(system._call(t, drive_range(ctx, kind, first, n, on_call=on_call)))
    else:  # the process's ioctl task, from offset + count after -EAGAIN/-EBUSY
        off, length, c, calls = first * PAGE_SIZE, n * PAGE_SIZE, 0, []
        while len(calls) < 10 * n + 100:  # a runaway guard, as drive_range's
            if kind == "remove_pages":
                r = encl.remove_pages(off + c, length - c)
            else:
                r = encl.modify_types(off + c, length - c, page_type="trim")
            on_call(r, c)
            calls.append((r.ret, r.count, sorted(r.extra.items()), system.now))
            c += r.count
            if r.ret not in (-errno.EAGAIN, -errno.EBUSY) or c >= length:
                break
        seen = calls
    yield core_snap(system, encl, AccessOutcome()), seen
    if sc is not None:
        counts[0] = core_pages()
    yield counts


#: what varies while the branch stays reachable: the seed, the CPUs, direct reclaim, the
#: range's start past the LRU head, the time the ioctl starts after the wake-up and the
#: caller. REMOVE_PAGES' -EBUSY: a start inside ksgxd's first batch, ahead of its phase B,
#: 2-4 us after the wake-up (phase A or B); MODIFY_TYPES' -EAGAIN on a BEING_RECLAIMED
#: page: any start in the batch, 12-16 us after (phase B has marked pages, their EWB not
#: done; at 24 us the batch is often written back)
SPACE = {
    "seed": st.integers(0, 2**16),
    "cpus": st.integers(2, 4),
    "direct": st.booleans(),
    "via": st.sampled_from(["thread", "ioctl"]),
}
STARTS = {"remove_pages": (11, 15), "modify_types": (0, 15)}
WAITS = {"remove_pages": [2000, 3000, 4000], "modify_types": [12000, 16000]}
_SETTINGS = settings(
    max_examples=40 if LONG else 6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    derandomize=True,
)


@_SETTINGS
@given(
    start=st.integers(*STARTS["remove_pages"]),
    wait_ns=st.sampled_from(WAITS["remove_pages"]),
    **SPACE,
)
def test_remove_pages_ebusy_on_the_core_matches_the_reference(
    seed: int, cpus: int, direct: bool, start: int, wait_ns: int, via: str
) -> None:
    """Equal on the three systems after every step (the calls' ``ret``, ``count`` and
    extras, the counters, the LRU, the EPCM, the lock's trace, ...). Every -EBUSY and every
    -EAGAIN on a BEING_RECLAIMED page came from the core (``ioctl_rets``), its removals
    stopped at that page."""
    pages, core_ebusy, ebusy, core_held, held, off = agree(
        _scenario, (seed, cpus, direct, start, wait_ns, via), {}
    )
    assert pages > 0, "the core removed no page"
    assert core_ebusy == ebusy, "an -EBUSY came from Python's per_page, not the core's R3"
    assert core_held == held, "an -EAGAIN on a held page came from Python's _load"
    assert off == 0, "the core's removals in a stopped call differ from its count"


@_SETTINGS
@given(
    start=st.integers(*STARTS["modify_types"]),
    wait_ns=st.sampled_from(WAITS["modify_types"]),
    **SPACE,
)
def test_modify_types_eagain_on_a_held_page_on_the_core_matches_the_reference(
    seed: int, cpus: int, direct: bool, start: int, wait_ns: int, via: str
) -> None:
    """MODIFY_TYPES(TRIM) over the untrimmed heap in the same scenario: its -EAGAIN at a
    page ksgxd holds BEING_RECLAIMED (M2, ``eagain_cause`` being_reclaimed) on the core,
    equal on the three systems at every step, every such -EAGAIN the core's."""
    pages, core_ebusy, ebusy, core_held, held, off = agree(
        _scenario, (seed, cpus, direct, start, wait_ns, via), {"kind": "modify_types"}
    )
    assert pages > 0, "the core trimmed no page"
    assert core_held == held, "an -EAGAIN on a held page came from Python's _load"
    assert ebusy == core_ebusy == 0 and off == 0


def _core_hit(kind: str, *point: object) -> bool:
    """The scenario on the core alone: whether the core ended a call with the branch's
    ret (REMOVE_PAGES: -EBUSY; MODIFY_TYPES: -EAGAIN on a BEING_RECLAIMED page), and only
    the core."""
    steps = list(_scenario("fast", *point, kind=kind, fast_core=True))  # type: ignore[arg-type]
    pages, core_ebusy, ebusy, core_held, held, _ = steps[-1]
    if kind == "remove_pages":
        return bool(pages > 0 and core_ebusy > 0 and core_ebusy == ebusy)
    return bool(pages > 0 and core_held > 0 and core_held == held)


@pytest.mark.parametrize("kind", ["remove_pages", "modify_types"])
def test_the_generator_reaches_the_cores_branch(kind: str) -> None:
    """The guard (tests/README.md): over points drawn from each test's space (a fixed
    sample), the core's branch is reached in most. Measured (session ``ebusy``):
    REMOVE_PAGES' -EBUSY at 29 of 30 points (a start nearer the head misses more with
    direct reclaim: 27 of 30 over starts 8-15, the ioctl's direct batch delays it and
    phase B marks the page first); MODIFY_TYPES' held-page -EAGAIN at 23 of 23 points
    waiting 12-16 us (0 of 7 at 24 us)."""
    rng = random.Random(9)
    points = [
        (rng.randint(0, 2**16), rng.randint(2, 4), rng.random() < 0.5,
         rng.randint(*STARTS[kind]), rng.choice(WAITS[kind]), rng.choice(["thread", "ioctl"]))
        for _ in range(12)
    ]  # fmt: skip
    hits = sum(_core_hit(kind, *p) for p in points)
    assert hits >= 10, f"the core's branch in {hits} of {len(points)}"
