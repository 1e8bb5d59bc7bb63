"""The compiled co-simulation core against the SimPy engine on a lock ping-pong (issue 9).

Two tasks on two CPUs each loop ``lock; run(300); unlock; run(2 * mutex_pickup)``, so every
acquisition after the first is contended and taken by the spinner once the lock has stayed
free for a pick-up: per round, spins, pokes, a timed re-check and the run steps' timeouts.
The same program runs on the core (``epcsim.fast.cosim``) and as generators on
``engine.machine`` with ``elide=True`` (the fast engine) and ``elide=False`` (the
reference); the outcomes are checked equal, then host CPU time (``time.process_time``) is
compared, best of ``--repeat`` runs, in one process so the ratio is measured on the same
machine state. The core's first call (compilation or cache load) is not timed. Two more
rows measure served mode (``fast/cosim/served.py``): the ops performed as engine requests by
a Python generator, and the compiled interpreter served by SimPy one request at a time.

    PYTHONPATH=src .venv/bin/python benchmarks/cosim.py [--rounds 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)

import numpy as np

from epcsim.engine.costs import Costs
from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_LOOP,
    OP_RUN,
    OP_UNLOCK,
    compile_programs,
    outcome_of,
    run_core,
    run_programs,
)
from epcsim.fast.cosim.program_served import run_served
from epcsim.fast.cosim.simpy_program import run_simpy
from epcsim.fast.cosim.state import new_state


def ping_pong(rounds: int) -> list[list[tuple[int, int, int]]]:
    gap = 2 * Costs().mutex_pickup
    ping = [(OP_LOCK, 0, 0), (OP_RUN, 300, 0), (OP_UNLOCK, 0, 0), (OP_RUN, gap, 0)]
    return [
        [*ping, (OP_LOOP, 0, rounds - 1)],
        [(OP_RUN, 7, 0), *ping, (OP_LOOP, 1, rounds - 1)],
    ]


def best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    out = None
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    programs = ping_pong(args.rounds)
    cap = 4 * 5 * args.rounds + 16
    run_core(ping_pong(2), 2, trace=False)  # compile or load the cache: not timed

    code, entry = compile_programs(programs)

    def core():  # type: ignore[no-untyped-def]
        """The compiled loop alone: a new state, the run; the Outcome is built untimed."""
        st = new_state(2, 2)
        done = np.zeros((cap, 3), np.int64)
        dn = np.zeros(1, np.int64)
        counters = np.zeros(1, np.int64)
        rc = run_programs(st, code, entry, np.ones(2, np.bool_), counters, done, dn)
        return lambda: outcome_of(st, done[: dn[0]], counters, rc)

    rows = []
    for name, fn in (
        ("core (elide), compiled loop", core),
        (
            "core via run_core (+ building the Outcome)",
            lambda: run_core(programs, 2, trace=False, done_capacity=cap, max_pops=0),
        ),
        ("SimPy, elide=True (fast engine)", lambda: run_simpy(programs, 2, trace=False)),
        (
            "SimPy, elide=True, ops as requests (perform_simpy)",
            lambda: run_simpy(programs, 2, trace=False, via_requests=True),
        ),
        (
            "compiled machine served by SimPy, elide=True",
            lambda: run_served(programs, 2, trace=False, done_capacity=cap)[0],
        ),
        (
            "SimPy, elide=False (reference)",
            lambda: run_simpy(programs, 2, trace=False, elide=False),
        ),
    ):
        secs, out = best(fn, args.repeat)
        rows.append((name, secs, out() if callable(out) else out))
    base = rows[0][2].comparable()  # type: ignore[union-attr]
    for r in rows[1:5]:
        if r[2].comparable() != base:  # type: ignore[union-attr]
            raise SystemExit(f"{r[0]} disagrees with the compiled loop")
    pops = [r[2].pops for r in rows]  # type: ignore[union-attr]
    print(f"2-task lock ping-pong, {args.rounds:,} rounds, best of {args.repeat}")
    print()
    print("| engine | host s | events | host ns / event | time / compiled loop |")
    print("|---|---:|---:|---:|---:|")
    for (name, secs, _), n in zip(rows, pops, strict=True):
        ratio = secs / rows[0][1] if rows[0][1] > 0 else float("inf")
        print(f"| {name} | {secs:.4f} | {n:,} | {secs / n * 1e9:,.0f} | {ratio:,.1f}x |")
    # served mode's own cost: one machine call (a numba dispatch) per request, against the
    # same requests performed by a Python generator
    done = rows[0][2].done  # type: ignore[union-attr]
    ops = sum(1 for _, pc, _ in done if code[pc, 0] != OP_LOOP) + len(programs)  # + the exits
    extra = rows[4][1] - rows[3][1]
    print()
    print(
        f"served mode: {ops:,} requests, {extra / ops * 1e9:,.0f} ns of host time per request "
        "over the same requests made by a Python generator"
    )


if __name__ == "__main__":
    main()
