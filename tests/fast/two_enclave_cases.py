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
    secs = system.cpu.secs_state(b.secs_epc) if b.secs_epc >= 0 else None
    back = b.backing
    records = {}
    for i in range(b.nr_pages + 1):
        rec = back.lookup(i)
        if rec is not None:
            records[i] = (bytes(rec.contents), bytes(rec.pcmd))
    lock = b.lock
    out["b"] = {
        "lock": (
            lock.owner,
            getattr(lock, "_free_since", None),
            getattr(lock, "_freed_from", None),
            getattr(lock, "_handed_at", None),
            lock.contended,
            list(lock.trace or []),
        ),
        "pages": [b.pages.flags.tobytes(), b.pages.desc.tobytes()],
        "va": [b.va.used.tobytes(), b.va_pages, b.va.links.ends.tobytes()],
        "secs": None
        if secs is None
        else (secs.epoch, sorted(secs.tracking), sorted(secs.inside), secs.child_count),
        "encl": (b.secs_child_cnt, b.refcount, b.secs_epc),
        "records": records,
        "backing": (
            back.nr_records,
            back.pcmd_lost,
            back.chunk_row.tobytes(),
            back.pcmd_live.tobytes(),
            back.pcmd_kept.tobytes(),
            back.pcmd_gen.tobytes(),
            dict(back._pinned_gen),
        ),
    }
    return out


def resident(system: epcsim.System) -> list[int]:
    """Each enclave's pages in the EPC (children, its SECS not counted), in slot order."""
    return [int(e.secs_child_cnt) for e in system.sgx.enclaves.values()]


def laid_out(system: epcsim.System) -> bool:
    """Both backing files hold a record (the regime's: a file's first record is
    ``EnclaveBacking.store``'s, Python's - PATHS.md, item 5, not built)."""
    return all(e.backing._width == 8 for e in system.sgx.enclaves.values())
