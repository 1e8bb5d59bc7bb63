"""The engine: CPU hand-out, mutex hand-over, wait queues, determinism of interleaving."""

import pytest

from epcsim.engine.costs import Costs
from epcsim.engine.machine import Machine, Mutex, Task, WaitQueue


def test_tasks_share_one_cpu_fifo():
    m = Machine(1, sched_slice_ns=10, sched="fifo", mutex="fifo")
    log = []

    def prog(task, n):
        for i in range(n):
            yield from task.run(10)
            log.append((task.name, i, m.now))
            yield from task.cond_resched()
        task.exit()

    a, b = Task(m, "a"), Task(m, "b")
    m.spawn(prog(a, 2))
    m.spawn(prog(b, 2))
    m.env.run()
    # one CPU, a 10 ns slice: the two tasks alternate at each cond_resched
    assert log == [("a", 0, 10), ("b", 0, 20), ("a", 1, 30), ("b", 1, 40)]


def test_cond_resched_keeps_the_cpu_until_the_slice_is_used():
    m = Machine(1, sched_slice_ns=25, sched="fifo", mutex="fifo")
    log = []

    def prog(task, n):
        for i in range(n):
            yield from task.run(10)
            log.append((task.name, i))
            yield from task.cond_resched()
        task.exit()

    m.spawn(prog(Task(m, "a"), 4))
    m.spawn(prog(Task(m, "b"), 1))
    m.env.run()
    # a runs 30 ns (three steps) before need_resched lets b in
    assert log == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("a", 3)]


def test_two_cpus_run_in_parallel():
    m = Machine(2)
    done = []

    def prog(task):
        yield from task.run(100)
        done.append(m.now)
        task.exit()

    for name in "ab":
        m.spawn(prog(Task(m, name)))
    m.env.run()
    assert done == [100, 100]


def test_mutex_hands_over_fifo_and_sleeper_gives_up_cpu():
    m = Machine(2, sched="fifo", mutex="fifo")
    lock = Mutex(m, "encl->lock")
    order = []

    def holder(task):
        yield from task.lock(lock)
        yield from task.run(50)
        order.append(("holder", m.now))
        task.unlock(lock)
        task.exit()

    def waiter(task):
        yield from task.run(1)
        yield from task.lock(lock)
        order.append(("waiter", m.now))
        task.unlock(lock)
        task.exit()

    m.spawn(holder(Task(m, "h")))
    m.spawn(waiter(Task(m, "w")))
    m.env.run()
    assert order == [("holder", 50), ("waiter", 50)]
    assert lock.contended == 1 and lock.wait_ns == 49 and not lock.locked


def test_unlock_by_non_owner_is_an_error():
    m = Machine(1)
    lock = Mutex(m, "l")
    a, b = Task(m, "a"), Task(m, "b")

    def prog():
        yield from a.lock(lock)
        b.unlock(lock)

    m.spawn(prog())
    with pytest.raises(RuntimeError, match="unlock"):
        m.env.run()


def test_wait_queue_wakes_when_condition_holds():
    m = Machine(2)
    wq = WaitQueue(m, "ksgxd_waitq")
    state = {"go": False, "woken_at": None}

    def sleeper(task):
        yield from wq.wait_event(task, lambda: state["go"])
        state["woken_at"] = m.now
        task.exit()

    def waker(task):
        yield from task.run(10)
        wq.wake_up()  # condition still false: sleeps again
        yield from task.run(10)
        state["go"] = True
        wq.wake_up()
        task.exit()

    m.spawn(sleeper(Task(m, "s")))
    m.spawn(waker(Task(m, "k")))
    m.env.run()
    assert state["woken_at"] == 20


def test_bad_cpu_count_and_costs_are_rejected():
    with pytest.raises(ValueError, match="cpus"):
        Machine(0)
    with pytest.raises(ValueError, match="costs: unknown cost 'ewbb'"):
        Costs.from_dict({"ewbb": 1})
    with pytest.raises(ValueError, match="costs.ewb"):
        Costs.from_dict({"ewb": -1})
    assert Costs.from_dict({"ewb": 5}).ewb == 5
