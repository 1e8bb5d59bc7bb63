"""What the compiled ksgxd's tests share (``test_driver_ksgxd.py``, ``test_served_ksgxd.py``,
and through ``thread_cases``/``stream_core_cases`` the thread's and the core's): ``build`` (the
entry instant: a swept enclave, ksgxd asleep, ``keep_free`` pages left free), ``snapshot``
(everything ksgxd's batch may change, as plain values) and ``differ`` (the keys that differ).

A helper module, not a test file (tests/README.md, "Rules for a new test"): moved from
``test_driver_ksgxd.py`` by session ``tidy``, no code changed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE


def build(seed: int, engine: str, epc: str, n: int, keep_free: int) -> epcsim.System:
    """The entry instant: the thread done, ksgxd asleep, then ``keep_free`` pages left free
    (the rest taken off the free list by a consumer outside the model)."""
    system = epcsim.System(epc=epc, cpus=2, seed=seed, content_mode="tag", engine=engine)
    encl = system.create_enclave("4M")
    assert encl.add_pages(0, n * PAGE_SIZE).ok and encl.init().ok
    rng = np.random.default_rng(seed)
    encl.access_pages(rng.permutation(n).tolist(), write=True)
    system.run()
    system.machine.env.run()  # the finished call's process event: the queue is empty
    encl.encl.lock.trace = []
    epc_pages = system.sgx.epc
    while epc_pages.nr_free_pages > keep_free:
        epc_pages.alloc(epc_pages.nodes[0])
    return system


def snapshot(system: epcsim.System) -> dict[str, object]:
    """Everything ksgxd's batch may change, as plain values."""
    sgx, cpu, m = system.sgx, system.cpu, system.machine
    encl = next(iter(sgx.enclaves.values()))
    epc, e, vp, b = sgx.epc, cpu.epcm, cpu.va, encl.backing
    task = sgx.ksgxd_task
    assert task is not None
    secs = cpu.secs_by_eid[next(iter(cpu.secs_by_eid))]
    eid = next(m.env._eid)
    import itertools

    m.env._eid = itertools.count(eid)
    rows = {k: vp[k].tolist() for k in vp}
    records = {}
    for i in range(encl.nr_pages + 1):
        rec = b.lookup(i)
        if rec is not None:
            records[i] = (bytes(rec.contents), bytes(rec.pcmd))
    return {
        "now": m.env.now,
        "eid": eid,
        "elided": m.elided,
        "min_vruntime": getattr(m.rq, "min_vruntime", None),  # CFS's (FIFO: none)
        "running": [None if r is None else r.name for r in m.running],
        "task": (
            task.cpu,
            task.last_cpu,
            task.busy_ns,
            task.step_end,
            task.step_ns,
            task.slice_start,
            task.vruntime,
            task.started,
        ),
        "sleeping": sgx.ksgxd_sleeping,
        "lock": (
            encl.lock.owner,
            # LinuxMutex's pick-up times (a FifoMutex has none)
            getattr(encl.lock, "_free_since", None),
            getattr(encl.lock, "_freed_from", None),
            getattr(encl.lock, "_handed_at", None),
            encl.lock.contended,
            list(encl.lock.trace or []),
        ),
        "stats": dataclasses.asdict(sgx.stats),
        "timeline": (list(sgx.free_timeline.t), list(sgx.free_timeline.v)),
        "warnings": list(sgx.warnings),
        "ewb_failures": sgx.ewb_failures,
        "nr_free": epc.nr_free_pages,
        "epc": [
            a.tobytes()
            for a in (
                epc.flags,
                epc.owner_encl,
                epc.owner_index,
                epc.links.prev,
                epc.links.next,
                epc.links.ends,
            )
        ],
        "epcm": [np.asarray(a).tobytes() for a in (e.flags, e.secs, e.linaddr, e.bepoch, e.tag)],
        "pages": [encl.pages.flags.tobytes(), encl.pages.desc.tobytes()],
        "va": [encl.va.used.tobytes(), encl.va_pages, encl.va.links.ends.tobytes()],
        "versions": (rows, vp.va_epc.tolist(), vp.va_row.tolist(), list(vp._free_rows)),
        "next_version": cpu._next_version,
        "secs": (secs.epoch, sorted(secs.tracking), sorted(secs.inside), secs.child_count),
        "encl": (encl.secs_child_cnt, encl.refcount, encl.secs_epc),
        "records": records,
        "backing": (
            b.nr_records,
            b.pcmd_lost,
            b.chunk_row.tobytes(),
            b.pcmd_live.tobytes(),
            b.pcmd_kept.tobytes(),
            b.pcmd_gen.tobytes(),
            dict(b._pinned_gen),
        ),
    }


def differ(a: dict[str, object], b: dict[str, object]) -> list[str]:
    return [k for k in a if a[k] != b[k]]
