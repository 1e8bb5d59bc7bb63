"""Where a fault's host time goes when the thread + ksgxd pair runs on the compiled core
(``run_pair``, ``benchmarks/driver_pair.py``'s scenario): issue 9, PATHS.md "Per fault on
the core".

One ``run_pair`` call over ``--accesses`` uniform accesses (a fresh scenario per repeat,
best of ``--repeat``), split into: the whole call; the time inside the compiled ``drive``
(the machines and the core); the rest (entry: ``KState``/``TState``/``CoState`` built from
the ``System``; the requests served in Python; the fold). Per fault: the core's events
(``C_POPS``), the machines' resumptions, the seals (EWBs) and ELDU checks the machines ran.
Then microbenchmarks of the parts inside ``drive``: ``seal`` and ``unseal`` (the ``tag``
mode's crypto, on this scenario's keys), and ``thread_resume`` called at its last pc,
where it returns at once: what a resumption pays for calling a machine with the
``CoState``/``KState``/``TState`` tuples (~60 arrays) - by value (``thread_resume``) and,
on a tree with ``cosim.borrow``, as ``drive`` calls it (``thread_run`` on the tuples
borrowed once: one pointer, no reference counting).

    PYTHONPATH=src .venv/bin/python benchmarks/pair_profile.py [--epc 4M] [--accesses 20000]
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import numpy as np
from numba import njit

from epcsim.arch import PAGE_SIZE
from epcsim.fast.cosim.state import C_POPS, T_PC
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import thread_bridge as tb
from epcsim.fast.driver.thread import thread_resume
from epcsim.fast.driver.thread_pc import P_DONE

try:  # a tree before the borrowed call (issue 9 session ``callcost``) has neither
    from epcsim.fast.cosim.borrow import borrow
    from epcsim.fast.driver.thread import thread_run
except ImportError:
    borrow = thread_run = None
from epcsim.fast.ops import tag_sealing
from epcsim.units import parse_size

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver_pair import build, scenario_args, stream


def _ns_a_call(calls, co, ks, ts, reps: int) -> float:  # type: ignore[no-untyped-def]
    """Host ns per machine call of ``calls(co, ks, ts, n)`` (``_thread_calls`` or
    ``_run_calls``): ten calls to warm up, then ``reps * 10`` timed."""
    calls(co, ks, ts, 10)
    t0 = time.process_time()
    calls(co, ks, ts, reps * 10)
    return (time.process_time() - t0) / (reps * 10) * 1e9


@njit(cache=False, nogil=True)
def _thread_calls(st, ks, ts, n):  # type: ignore[no-untyped-def]
    s = 0
    for _ in range(n):
        s += thread_resume(st, ks, ts, 0)
    return s


if thread_run is not None:

    @njit(cache=False, nogil=True)
    def _run_calls(st, ks, ts, n):  # type: ignore[no-untyped-def]
        p = borrow((st, ks, ts))
        s = 0
        for _ in range(n):
            s += thread_run(p, 0)
        return s


@njit(cache=False, nogil=True)
def _seals(keys, h, m, n):  # type: ignore[no-untyped-def]
    s = np.uint64(0)
    for i in range(n):
        ct, mac = tag_sealing.seal(
            keys, h, m, np.uint64(i), np.uint64(i + 7), np.uint64(0x203),
            np.uint64(1 << 30), np.uint64(1), np.uint64(1),
        )  # fmt: skip
        s ^= ct ^ mac
    return s


@njit(cache=False, nogil=True)
def _unseals(keys, h, m, n):  # type: ignore[no-untyped-def]
    s = np.uint64(0)
    for i in range(n):
        ok, tag = tag_sealing.unseal(
            keys, h, m, np.uint64(i), np.uint64(i), np.uint64(0), np.uint64(i + 7),
            np.uint64(0x203), np.uint64(1 << 30), np.uint64(1), np.uint64(1),
        )  # fmt: skip
        s ^= tag + np.uint64(ok)
    return s


def main() -> None:
    a = scenario_args(__doc__.split("\n\n")[0]).parse_args()
    epc_pages = parse_size(a.epc, "epc") // PAGE_SIZE
    n = int(epc_pages * a.mult)

    real_drive = tb.drive
    # the tree's own way of calling ``drive`` (``thread_bridge._entry``: the compiled entry
    # point, no dispatcher typing each call; a tree before it: the dispatcher)
    entry = getattr(tb, "_entry", None)
    inner = real_drive if entry is None else entry(real_drive)
    seen: dict[str, object] = {}
    acc = {"t": 0.0, "calls": 0}

    def timed_drive(co, ks, ts, pending):  # type: ignore[no-untyped-def]
        # ``ks``: the machines' tuple of enclave slots on a tree since session ``twoencl2``
        seen.update(co=co, ks=ks, ts=ts)
        t0 = time.process_time()
        rc = inner(co, ks, ts, pending)
        acc["t"] += time.process_time() - t0
        acc["calls"] += 1
        return rc

    def run_pair(*args):  # type: ignore[no-untyped-def]
        # ``drive`` timed only inside ``run_pair``: ``build``'s ``access_pages`` asks
        # ``auto.machines_warm`` whether ``tb.drive`` is compiled (a dispatcher's question)
        tb.drive = timed_drive
        try:
            return tb.run_pair(*args)
        finally:
            tb.drive = real_drive

    warm, wencl = build(a.seed, "fast", "1M", 600, a.cpus)
    run_pair(warm, wencl._main_thread(), *stream(a.seed, 600, 256, 500, 0.0))
    best = None
    for _ in range(a.repeat):
        drv, dencl = build(a.seed, "fast", a.epc, n, a.cpus)
        pages, w = stream(a.seed, n, epc_pages, a.accesses, 0.0)
        s0 = dict(faults=drv.sgx.stats.page_faults, ewb=drv.sgx.stats.ewb, eldu=drv.sgx.stats.eldu)
        acc.update(t=0.0, calls=0)
        t0 = time.process_time()
        res = run_pair(drv, dencl._main_thread(), pages, w)
        whole = time.process_time() - t0
        assert res.handed_back is None, res
        co = seen["co"]
        faults = drv.sgx.stats.page_faults - s0["faults"]
        row = dict(
            whole=whole,
            drive=acc["t"],
            drive_calls=acc["calls"],
            faults=faults,
            pops=int(co.clk[C_POPS]),  # type: ignore[attr-defined]
            ewb=drv.sgx.stats.ewb - s0["ewb"],
            eldu=drv.sgx.stats.eldu - s0["eldu"],
            attempts=drv.sgx.stats.ewb_attempts,
            unsealed=_unsealed(dencl.encl.backing),
        )
        if best is None or row["whole"] < best["whole"]:
            best = row
    assert best is not None
    ks, ts, co = seen["ks"], seen["ts"], seen["co"]
    f = best["faults"]
    us = 1e6 / f
    print(f"run_pair, EPC {a.epc}, {n} pages, {a.accesses} accesses: {f} faults")
    print(f"  whole call        {best['whole'] * us:7.2f} us/fault")
    print(f"  inside drive      {best['drive'] * us:7.2f} us/fault ({best['drive_calls']} calls)")
    print(f"  entry/serve/fold  {(best['whole'] - best['drive']) * us:7.2f} us/fault")
    print(f"  core events       {best['pops'] / f:7.2f} per fault")
    print(f"  EWBs              {best['ewb'] / f:7.2f} per fault, ELDUs {best['eldu'] / f:.2f}")
    reps = 200_000
    keys, (h, m) = ks.keys, tag_sealing.scratch()  # type: ignore[attr-defined]
    _seals(keys, h, m, 10)
    _unseals(keys, h, m, 10)
    t0 = time.process_time()
    _seals(keys, h, m, reps)
    seal_ns = (time.process_time() - t0) / reps * 1e9
    t0 = time.process_time()
    _unseals(keys, h, m, reps)
    unseal_ns = (time.process_time() - t0) / reps * 1e9
    print(
        f"  seal              {seal_ns:7.0f} ns (x EWBs: {seal_ns * best['ewb'] / f / 1e3:.2f} us)"
    )
    print(
        f"  unseal (verified) {unseal_ns:7.0f} ns "
        f"(x ELDUs: {unseal_ns * best['eldu'] / f / 1e3:.2f} us)"
    )
    co2 = type(co)(*(x.copy() for x in co))  # type: ignore[arg-type]
    co2.tasks[0, T_PC] = P_DONE
    resume_ns = _ns_a_call(_thread_calls, co2, ks, ts, reps)
    print(
        f"  thread_resume at its last pc (returns at once): {resume_ns:5.0f} ns a call "
        f"(x events: {resume_ns * best['pops'] / f / 1e3:.2f} us)"
    )
    if thread_run is not None:
        run_ns = _ns_a_call(_run_calls, co2, ks, ts, reps)
        print(
            f"  thread_run, borrowed as drive calls it:        {run_ns:5.0f} ns a call "
            f"(x events: {run_ns * best['pops'] / f / 1e3:.2f} us)"
        )
    col = getattr(K, "K_DEFER_LOADS", -1)  # (a tree before the deferred sealing: none)
    loads = int(ks.kc[col]) if col >= 0 else 0  # type: ignore[attr-defined]
    print(f"  ELDUs of records the core wrote (no MAC check): {loads / f:.2f} per fault")
    if best["unsealed"] >= 0:
        print(
            f"  records left unsealed by the call (sealed when Python reads the store): "
            f"{best['unsealed'] / f:.2f} per fault"
        )


def _unsealed(backing) -> int:  # type: ignore[no-untyped-def]
    """Records the core left unsealed in ``backing`` (``driver/unsealed.py``); -1 on a tree
    that seals them at the call's fold."""
    u = getattr(backing, "unsealed", None)
    if u is None:
        return -1
    from epcsim.fast.ops.seal_batch import compact_marked

    n = int(u.dn[0])
    return int(compact_marked(u.dlist.copy(), n, u.dmark.copy()))


if __name__ == "__main__":
    main()
