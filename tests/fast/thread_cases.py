"""What the compiled thread's tests share (``test_driver_thread.py``, ``test_driver_pair.py``):
``thread_snapshot``, ``ksgxd_cases.snapshot`` and what the thread's rows add (its CPU
accounting, the LPs, the run queue, the mutex's counters, the outcome, the latencies, the
queue).

A helper module, not a test file (tests/README.md, "Rules for a new test"): moved from
``test_driver_thread.py`` by session ``tidy``, no code changed.
"""

from __future__ import annotations

import dataclasses

from ksgxd_cases import snapshot

import epcsim


def thread_snapshot(system: epcsim.System, encl, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """``snapshot`` and what the thread's rows add."""
    snap = snapshot(system)
    t = encl._main_thread()
    cpu = system.cpu
    secs = cpu.secs_state(encl.encl.secs_epc)
    lat = system.sgx.fault_latency_ns
    snap["thread"] = (
        t.cpu,
        t.last_cpu,
        t.busy_ns,
        t.step_end,
        t.step_ns,
        t.slice_start,
        t.vruntime,
        t.started,
        t.entered,
        t.aexed,
        t.entry_fault,
    )
    snap["lp"] = (list(cpu.lp_eid), list(cpu.lp_tcs), sorted(secs.busy_tcs))
    rq = system.machine.rq  # CFS's idle CPUs, or the FIFO run queue's free-CPU deque
    snap["rq"] = (
        list(getattr(rq, "_idle", [])),
        list(getattr(rq, "_free_cpus", [])),
        system.machine.context_switches,
    )
    lock = encl.encl.lock
    snap["mutex"] = (lock.wait_ns, lock.steals, lock.handoffs, lock.spin_acquired)
    snap["outcome"] = dataclasses.astuple(result)
    snap["latency"] = (lat.count, lat.counts.tobytes(), list(lat._buf))
    snap["queue"] = sorted((t, p, e) for t, p, e, _ in system.machine.env._queue)  # pop order
    return snap
