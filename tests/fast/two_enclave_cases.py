"""What the two-enclave tests of the compiled core share (``test_two_enclaves_core.py``;
PATHS.md "Two enclaves in the regime", "The cost"): ``build_two`` (ksgxd asleep over an
LRU holding the pages of two enclaves, both backing files laid out) and ``snapshot_two``
(``ksgxd_cases.snapshot`` - everything ksgxd's batch may change, the first enclave's
part included - plus the second enclave's own part).

A helper module, not a test file (tests/README.md, "Rules for a new test").
"""

from __future__ import annotations

import numpy as np
from ksgxd_cases import snapshot

import epcsim
from epcsim.arch import PAGE_SIZE


def build_two(seed: int, engine: str, n0: int, n1: int, keep_free: int) -> epcsim.System:
    """Enclave A (``n0`` pages) built and swept, then B (``n1``) built and swept - A's
    pages written back for it - then a third of A's pages accessed again, which writes some
    of B's back: the LRU holds both enclaves' pages, both files (mostly: ``laid_out``)
    records. Then ``keep_free`` pages left free, as ``ksgxd_cases.build`` does, with ksgxd
    asleep and the queue empty."""
    system = epcsim.System(epc="1M", cpus=2, seed=seed, content_mode="tag", engine=engine)
    rng = np.random.default_rng(seed)
    a = system.create_enclave("4M")
    assert a.add_pages(0, n0 * PAGE_SIZE).ok and a.init().ok
    a.access_pages(rng.permutation(n0).tolist(), write=True)
    b = system.create_enclave("4M")
    assert b.add_pages(0, n1 * PAGE_SIZE).ok and b.init().ok
    b.access_pages(rng.permutation(n1).tolist(), write=True)
    a.access_pages(rng.permutation(n0)[: n0 // 3].tolist(), write=True)
    system.run()
    system.machine.env.run()  # the finished calls' process events: the queue is empty
    for e in (a, b):
        e.encl.lock.trace = []
    epc_pages = system.sgx.epc
    while epc_pages.nr_free_pages > keep_free:
        epc_pages.alloc(epc_pages.nodes[0])
    return system


def snapshot_two(system: epcsim.System) -> dict[str, object]:
    """``snapshot`` (the global state and enclave A's) and enclave B's own part."""
    out = snapshot(system)
    b = list(system.sgx.enclaves.values())[1]
    out["b"] = enclave_part(system, b, by_name=False)
    return out


def enclave_part(system: epcsim.System, b, by_name: bool = True) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """An enclave's own state (``snapshot`` holds the first enclave's): its lock's fields
    and trace (the owner by name with ``by_name``: a task of another ``System`` is never
    equal), pages, VA list, SECS state, counts, records byte for byte, backing rows."""
    secs = system.cpu.secs_state(b.secs_epc) if b.secs_epc >= 0 else None
    back = b.backing
    records = {}
    for i in range(b.nr_pages + 1):
        rec = back.lookup(i)
        if rec is not None:
            records[i] = (bytes(rec.contents), bytes(rec.pcmd))
    lock = b.lock
    owner = lock.owner.name if by_name and lock.owner is not None else lock.owner
    return {
        "lock": (
            owner,
            getattr(lock, "_free_since", None),
            getattr(lock, "_freed_from", None),
            getattr(lock, "_handed_at", None),
            lock.contended,
            lock.wait_ns,
            lock.steals,
            lock.handoffs,
            list(lock.trace or []),
        ),
        "pages": [b.pages.flags.tobytes(), b.pages.desc.tobytes(), b.pages.prot.tobytes()],
        "va": [b.va.used.tobytes(), b.va_pages, b.va.links.ends.tobytes()],
        "secs": None
        if secs is None
        else (secs.epoch, sorted(secs.tracking), sorted(secs.inside), secs.child_count),
        "encl": (b.secs_child_cnt, b.refcount, b.secs_epc, b.page_cnt, b.initialized),
        "records": records,
        "backing": (
            back.nr_records,
            back.pcmd_lost,
            back._width,
            back._eid,
            back.chunk_row.tobytes(),
            back.pcmd_live.tobytes(),
            back.pcmd_kept.tobytes(),
            back.pcmd_gen.tobytes(),
            dict(back._pinned_gen),
        ),
    }


def resident(system: epcsim.System) -> list[int]:
    """Each enclave's pages in the EPC (children, its SECS not counted), in slot order."""
    return [int(e.secs_child_cnt) for e in system.sgx.enclaves.values()]


def laid_out(system: epcsim.System) -> bool:
    """Both backing files hold a record (a file without one stores its first record through
    the machines' ``SVC_STORE``: PATHS.md, item 5, built by session ``twoencl3``)."""
    return all(e.backing._width == 8 for e in system.sgx.enclaves.values())


def two_user_scenario(  # type: ignore[no-untyped-def]
    engine: str, seed: int, epc_pages: int, cpus: int, heap_x: float, nb_x: float,
    direct: bool, again: int, hot: int = 0, **kw,
):  # fmt: skip
    """The demo's "idle neighbour" layout on the user path (PATHS.md "Two enclaves in the
    regime", session ``twoencl3``): the selftest enclave A (``heap_x`` EPCs of heap) built
    and initialized; B (``nb_x`` EPCs, unmeasured) built after it - its ADD_PAGES on the
    core reclaims A's pages, A's SECS goes with its last child, B's file gets its first
    record in the middle of the build -; A's thread's MODIFY_TYPES(TRIM) over the heap
    with the runtime's retry (its ELDUs take what ksgxd frees of B); B's thread accessing
    ``again`` of its pages (A's written back for it), then, with ``hot``, a hot set of 32
    of them ``hot`` times over (user steps long enough for the tick to take the CPU from
    B's thread inside B on one CPU: its switch-out's AEX on slot 1, session ``twoone``).
    Yields after each step the snapshot (``core_snap`` of A, B's ``enclave_part``) with the
    step's result, then the core's counts ``[adds, trims, accesses, foreign_records,
    core_switches, queued_stops]``."""
    from core_cases import IMAGE, op_record, pow2
    from stream_core_cases import core_snap

    from epcsim.user.thread import AccessOutcome
    from epcsim.workloads.edmm import Ctx, drive_range

    system = epcsim.System(
        engine=engine, epc=epc_pages * PAGE_SIZE, cpus=cpus, seed=seed, content_mode="tag",
        direct_reclaim=direct, **kw,
    )  # fmt: skip
    heap = max(16, int(heap_x * epc_pages))
    a = system.create_enclave(pow2((IMAGE + heap) * PAGE_SIZE))
    assert a.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert a.add_pages(PAGE_SIZE, (IMAGE - 1) * PAGE_SIZE, "rx", measure=True).ok
    assert a.add_pages(IMAGE * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok
    assert a.init().ok
    a.encl.lock.trace = []

    def snap():  # type: ignore[no-untyped-def]
        out = core_snap(system, a, AccessOutcome())
        out["b"] = enclave_part(system, nb.encl) if nb is not None else None
        return out

    nb = None
    n = max(8, int(nb_x * epc_pages))
    nb = system.create_enclave(pow2(n * PAGE_SIZE))
    nb.encl.lock.trace = []
    r = nb.add_pages(0, n * PAGE_SIZE)
    yield snap(), r.ret, r.count
    r = nb.init()
    yield snap(), r.ret
    t = a.new_thread("trim")
    rec = system._call(t, drive_range(Ctx(a, t, []), "modify_types", IMAGE, heap))  # type: ignore[arg-type]
    yield snap(), op_record(rec)
    if again or hot:
        rng = np.random.default_rng(seed)
        stream = np.concatenate(
            [rng.permutation(n)[:again], rng.integers(0, n, 300 if hot else 0),
             np.tile(np.arange(32) % n, hot)]
        )  # fmt: skip
        out = nb.access_pages(stream.tolist(), write=True)
        yield snap(), out
    system.run()
    yield snap(), system.now
    sc = system.sgx.stream_core
    counts = ("adds", "trims", "accesses", "foreign_records", "core_switches", "queued_stops")
    yield [0 if sc is None else getattr(sc, c) for c in counts]
