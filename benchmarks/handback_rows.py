"""What the engine's part of a hand-back costs with N task rows (issue 9 session ``n6``;
PATHS.md "Several threads on the core", N6): one ``to_core`` and one ``to_simpy`` of a
``Served`` whose tasks run in processes of their own (``Served.serve_own``, as N6's
enclave threads would: parked by the move to the core, re-pointed by the move back).

Why: under row 10's 200 us ``run(until=)`` slices a slice holds few accesses, so the
per-slice cost of the hand-back decides the ratio against one thread (BENCHMARKS.md
``deadline``, ``slice``). With N threads on the core a slice's hand-back moves N + 1 task
rows each way; this measures how that part grows with N, on ``cosim``'s test programs
(``program.py``: each task a loop of a run step, ``encl->lock``'s stand-in taken and
released - the driver's machines are not needed for the engine's part, which reads only
the core's rows and SimPy's objects). Each task on its own CPU, as N6 step 1.

    PYTHONPATH=src:benchmarks python benchmarks/handback_rows.py [ROUNDS] [N ...]

Prints, per N (task rows, ksgxd's included), the mean host CPU (``time.process_time`` over
all rounds, summed per call) of ``to_core`` and of ``to_simpy``, and the
moves the core refused (none expected). The threads' fold (``thread_fold.fold_threads``,
the other per-row part of a hand-back) is timed by ``fold`` below on a real ``System``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from epcsim.engine.machine import Machine, Mutex, Task, WaitQueue
from epcsim.fast.cosim.jit import entry_point
from epcsim.fast.cosim.program import (
    OP_LOCK,
    OP_LOOP,
    OP_RUN,
    OP_UNLOCK,
    compile_programs,
    drive_programs,
    resume_programs,
)
from epcsim.fast.cosim.program_served import _own_process
from epcsim.fast.cosim.served import Served
from epcsim.fast.cosim.state import C_BUDGET, C_POPS, T_PC, new_state
from epcsim.fast.cosim.transfer_to_core import to_core
from epcsim.fast.cosim.transfer_to_simpy import to_simpy


def moves(n: int, rounds: int) -> dict[str, Any]:
    """``rounds`` move pairs of ``n`` task rows: SimPy runs 3 events, ``to_core``, the core
    runs 20 events, ``to_simpy``."""
    programs = [
        [
            (OP_RUN, 1_000 + 7 * i, 0),
            (OP_LOCK, 0, 0),
            (OP_RUN, 200, 0),
            (OP_UNLOCK, 0, 0),
            (OP_LOOP, 0, 1 << 40),
        ]
        for i in range(n)
    ]
    code, entry = compile_programs(programs)
    st = new_state(n, n, 1, 1, heap_capacity=1024, trace_capacity=0)
    st.tasks[:, T_PC] = entry
    counters = np.zeros(1, np.int64)
    done = np.zeros((1 << 16, 3), np.int64)
    dn = np.zeros(1, np.int64)
    m = Machine(n, None, elide=True)
    mutexes = [Mutex(m, "m0")]
    queues = [WaitQueue(m, "q0")]
    tasks = [Task(m, f"t{i}") for i in range(n)]
    machine = entry_point(resume_programs, st, 0, code, counters, done, dn)

    def step(t: int) -> int:
        dn[0] = 0  # the log is not read here
        return int(machine(st, t, code, counters, done, dn))

    sv = Served(st, m, tasks, mutexes, queues, step)
    for t in range(n):
        sv.procs[t] = m.env.process(_own_process(sv, t))
    sv.run(4 * n)
    t_core = t_simpy = 0.0
    refused = 0
    c0 = time.process_time()
    for _ in range(rounds):
        sv.run(3)
        a = time.process_time()
        ok = to_core(sv)
        b = time.process_time()
        t_core += b - a
        if not ok:
            refused += 1
            continue
        st.clk[C_BUDGET] = int(st.clk[C_POPS]) + 20
        dn[0] = 0
        drive_programs(st, code, counters, done, dn)
        st.clk[C_BUDGET] = 0
        a = time.process_time()
        to_simpy(sv)
        t_simpy += time.process_time() - a
    cpu = time.process_time() - c0
    ok_n = max(1, rounds - refused)
    return {
        "rows": n,
        "rounds": rounds,
        "refused": refused,
        "to_core_us": round(t_core / rounds * 1e6, 1),
        "to_simpy_us": round(t_simpy / ok_n * 1e6, 1),
        "round_cpu_us": round(cpu / rounds * 1e6, 1),
        "repointed": sv.repointed,
    }


def fold(nthreads: int, rounds: int) -> dict[str, Any]:
    """``thread_fold.fold_threads`` of ``nthreads`` stacked rows (``tstate.stack``) after
    a call of ``threads_bridge.run_threads`` on row 10's shape: the threads' per-row part
    of a hand-back (their counters, the shared latency buffer, every LP's state)."""
    from epcsim.fast.driver import tstate as T
    from epcsim.fast.driver.bridge import _kernel_state
    from epcsim.fast.driver.slots import check_slots
    from epcsim.fast.driver.thread_bridge import _thread_state
    from epcsim.fast.driver.thread_fold import fold_threads
    from threads_core import build

    system, threads, _ = build(nthreads)
    encl, secs = check_slots(system, 1, fifo=True)[0]
    ks = _kernel_state(system, encl, secs)
    pages = np.arange(nthreads, nthreads + 64, dtype=np.int64)
    writes = np.zeros(pages.size, np.bool_)
    _, rows = T.stack([_thread_state(system, th, pages, writes, False) for th in threads])
    c0 = time.process_time()
    for _ in range(rounds):
        for r in rows:
            r.tcnt[0] = 1  # a counter to fold, as after a slice
        fold_threads(system, list(threads), encl, secs, ks, rows)
    cpu = time.process_time() - c0
    return {"threads": nthreads, "fold_us": round(cpu / rounds * 1e6, 1)}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    ns = [int(a) for a in sys.argv[2:]] or [2, 9]
    moves(2, 50)  # warm-up: the programs' machine loaded or compiled
    for n in ns:
        print(moves(n, rounds))
    for n in ns:
        print(fold(n - 1, rounds))


if __name__ == "__main__":
    main()
