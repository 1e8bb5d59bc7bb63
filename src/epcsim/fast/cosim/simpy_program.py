"""The task programs of ``program`` run as generators on ``engine.machine`` (SimPy).

This is the reference side of the core's differential tests and benchmark: the same ops,
the same ``Task``/``Mutex``/``WaitQueue`` calls the kernel model makes, on
``Machine(elide=...)``. It drives the environment one ``step`` at a time to count the
events processed.
"""

from __future__ import annotations

from collections.abc import Sequence

from epcsim.engine.costs import Costs
from epcsim.engine.machine import Gen, Machine, Mutex, Task, WaitQueue
from epcsim.fast.cosim.outcome import Outcome, simpy_outcome
from epcsim.fast.cosim.program import (
    OP_END,
    OP_LOCK,
    OP_LOOP,
    OP_RESCHED,
    OP_RUN,
    OP_SPAWN,
    OP_UNLOCK,
    OP_USER,
    OP_WAIT,
    OP_WAKE,
    compile_programs,
)
from epcsim.fast.cosim.request import RQ_EXIT, RQ_SLEEP
from epcsim.fast.cosim.simpy_request import perform_simpy


def run_simpy(
    programs: list[list[tuple[int, int, int]]],
    nr_cpus: int,
    *,
    starts: Sequence[bool] | None = None,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    costs: Costs | None = None,
    elide: bool = True,
    trace: bool = True,
    max_steps: int = 0,
    via_requests: bool = False,
    mutex: str = "linux",
    sched: str = "cfs",
) -> Outcome:
    """Run ``programs`` (task ``i`` starts at time 0 if ``starts[i]``, default all) to the
    end on a SimPy ``Machine``, or for ``max_steps`` events if that is > 0. The ops call
    ``Task``/``Mutex``/``WaitQueue`` directly, or with ``via_requests`` go through
    ``perform_simpy`` (a WAIT is then its loop of RQ_SLEEP requests). ``mutex`` and
    ``sched`` are ``Machine``'s."""
    code_arr, entry_arr = compile_programs(programs)
    code = [tuple(r) for r in code_arr.tolist()]
    entry = entry_arr.tolist()
    n = len(programs)
    starts = [True] * n if starts is None else list(starts)
    m = Machine(nr_cpus, costs, elide=elide, mutex=mutex, sched=sched)
    mutexes = [Mutex(m, f"m{i}") for i in range(nr_mutexes)]
    if trace:
        for mx in mutexes:
            mx.trace = []
    queues = [WaitQueue(m, f"q{i}") for i in range(nr_queues)]
    counters = [0] * nr_queues
    tasks = [Task(m, f"t{i}") for i in range(n)]
    started = [False] * n
    done: list[tuple[int, int, int]] = []

    def spawn(a: int) -> None:
        if not started[a]:
            started[a] = True
            m.spawn(program(a))

    def program(i: int) -> Gen:
        task = tasks[i]
        pc = entry[i]
        loops = 0
        while True:
            op, a, b = code[pc]
            if op == OP_LOOP:
                if loops < b:
                    loops += 1
                    done.append((i, pc, m.now))
                    pc = a
                    continue
                loops = 0
            elif via_requests:
                if op == OP_WAIT:
                    while counters[a] <= 0:
                        yield from perform_simpy(task, RQ_SLEEP, a, mutexes, queues, spawn)
                    counters[a] -= 1
                else:
                    if op == OP_WAKE:
                        counters[a] += 1
                    rq = RQ_EXIT if op == OP_END else op  # the other ops are their requests
                    yield from perform_simpy(task, rq, a, mutexes, queues, spawn)
                    if op == OP_END:
                        return
            elif op == OP_END:
                task.exit()
                return
            elif op == OP_RUN:
                yield from task.run(a)
            elif op == OP_USER:
                yield from task.run_user(a)
            elif op == OP_RESCHED:
                yield from task.cond_resched()
            elif op == OP_LOCK:
                yield from task.lock(mutexes[a])
            elif op == OP_UNLOCK:
                task.unlock(mutexes[a])
            elif op == OP_WAIT:
                yield from queues[a].wait_event(task, lambda q=a: counters[q] > 0)
                counters[a] -= 1
            elif op == OP_WAKE:
                counters[a] += 1
                queues[a].wake_up()
            elif op == OP_SPAWN:
                spawn(a)
            done.append((i, pc, m.now))
            pc += 1

    for i in range(n):
        if starts[i]:
            started[i] = True
            m.spawn(program(i))
    env = m.env
    queue = env._queue
    pops = 0
    while queue and (max_steps <= 0 or pops < max_steps):
        env.step()
        pops += 1
    return simpy_outcome(m, tasks, mutexes, pops, done, counters)
