"""``struct mutex``: Linux's spinning/stealing/HANDOFF lock and the FIFO hand-over variant."""

from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.engine.machine import Machine, Mutex, Task

PICKUP = 150  # Costs.mutex_pickup


def _contend(mutex_kind, sched, nr_cpus, programs, trace=True):
    """Tasks each running (think, hold) steps: ``run(think)``, lock, ``run(hold)``, unlock.
    Returns the machine, the lock, the acquisition log and a check list of overlaps."""
    m = Machine(nr_cpus, sched=sched, mutex=mutex_kind)
    lock = Mutex(m, "encl->lock")
    if trace:
        lock.trace = []
    log = []
    inside = []
    overlaps = []
    done = []

    def prog(task, steps):
        for think, hold in steps:
            yield from task.run(think)
            yield from task.lock(lock)
            if inside:
                overlaps.append((m.now, task.name, list(inside)))
            inside.append(task.name)
            log.append((m.now, task.name))
            yield from task.run(hold)
            inside.remove(task.name)
            task.unlock(lock)
            yield from task.cond_resched()
        done.append(task.name)
        task.exit()

    tasks = [Task(m, f"t{i}") for i in range(len(programs))]
    for t, steps in zip(tasks, programs, strict=True):
        m.spawn(prog(t, steps))
    m.env.run()
    return m, lock, log, overlaps, done


steps = st.lists(st.tuples(st.integers(0, 3_000), st.integers(0, 3_000)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    programs=st.lists(steps, min_size=2, max_size=5),
    nr_cpus=st.integers(1, 4),
    kind=st.sampled_from(["linux", "fifo"]),
    sched=st.sampled_from(["cfs", "fifo"]),
)
def test_mutual_exclusion_and_no_lost_wakeups(programs, nr_cpus, kind, sched):
    m, lock, log, overlaps, done = _contend(kind, sched, nr_cpus, programs)
    assert overlaps == []
    # every task finished every step: nobody was left asleep on the lock
    assert sorted(done) == sorted(f"t{i}" for i in range(len(programs)))
    assert len(log) == sum(len(p) for p in programs)
    assert not lock.locked and not lock._waiters and not m.spinning
    assert all(t is None for t in m.running)


@settings(max_examples=40, deadline=None)
@given(
    programs=st.lists(steps, min_size=2, max_size=4),
    nr_cpus=st.integers(1, 4),
    kind=st.sampled_from(["linux", "fifo"]),
    sched=st.sampled_from(["cfs", "fifo"]),
)
def test_deterministic(programs, nr_cpus, kind, sched):
    a = _contend(kind, sched, nr_cpus, programs)
    b = _contend(kind, sched, nr_cpus, programs)
    assert a[2] == b[2] and a[1].trace == b[1].trace and a[0].now == b[0].now


def _hog(task, lock, n, hold, gap, log):
    for _ in range(n):
        yield from task.lock(lock)
        log.append(task.name)
        yield from task.run(hold)
        task.unlock(lock)
        yield from task.run(gap)
    task.exit()


def test_fifo_mutex_alternates_strictly():
    m = Machine(2, sched="fifo", mutex="fifo")
    lock = Mutex(m, "l")
    log = []
    m.spawn(_hog(Task(m, "a"), lock, 5, 1_000, 0, log))
    m.spawn(_hog(Task(m, "b"), lock, 5, 1_000, 0, log))
    m.env.run()
    assert log == ["a", "b"] * 5
    assert lock.handoffs == 9 and lock.steals == 0


def test_linux_releaser_keeps_the_lock_while_a_spinner_waits_for_a_pickup():
    # Two CPUs: the releaser re-locks sooner than a spinner can pick the lock up, so it keeps
    # it for as long as it loops; the spinner never sleeps (its owner is always running).
    m = Machine(2, mutex="linux")
    lock = Mutex(m, "l")
    log = []
    m.spawn(_hog(Task(m, "a"), lock, 5, 1_000, PICKUP - 1, log))
    m.spawn(_hog(Task(m, "b"), lock, 5, 1_000, 0, log))
    m.env.run()
    assert log == ["a"] * 5 + ["b"] * 5
    assert lock.spin_acquired == 1 and lock.steals == 0 and lock.handoffs == 0


def test_linux_spinner_takes_a_lock_left_free_for_a_pickup():
    m = Machine(2, mutex="linux")
    lock = Mutex(m, "l")
    log = []
    m.spawn(_hog(Task(m, "a"), lock, 3, 1_000, PICKUP + 1, log))
    m.spawn(_hog(Task(m, "b"), lock, 3, 1_000, PICKUP + 1, log))
    m.env.run()
    assert log == ["a", "b"] * 3
    assert lock.spin_acquired == 5


def test_linux_contender_of_an_off_cpu_owner_sleeps_then_handoff_follows():
    # The owner sleeps holding the lock: the contender cannot spin, it sleeps on the wait
    # list. The owner's unlock only wakes it, and the owner steals the lock straight back
    # (the woken waiter needs mutex_wakeup before its trylock). The waiter then sets HANDOFF,
    # spins on the running owner, and the next unlock hands the lock to it.
    m = Machine(2, mutex="linux")
    lock = Mutex(m, "l")
    lock.trace = []
    log = []
    a, b = Task(m, "a"), Task(m, "b")

    def holder():
        yield from a.lock(lock)
        yield from a.sleep(m.env.timeout(10_000))  # off CPU holding the lock
        a.unlock(lock)
        for _ in range(4):
            yield from a.lock(lock)
            log.append("a")
            yield from a.run(1_500)
            a.unlock(lock)
        a.exit()

    def waiter():
        yield from b.run(100)
        yield from b.lock(lock)
        log.append("b")
        b.unlock(lock)
        b.exit()

    m.spawn(holder())
    m.spawn(waiter())
    m.env.run()
    events = [(e, n) for _, e, n in lock.trace]
    assert events[:4] == [("sleep", "b"), ("unlock", "a"), ("wake", "b"), ("steal", "a")]
    flag = events.index(("handoff_flag", "b"))
    # a re-locks at once and finds the lock already b's (PICKUP): a spins on b in turn
    assert events[flag + 1 :][:4] == [
        ("spin", "b"),
        ("unlock", "a"),
        ("spin", "a"),
        ("handoff", "b"),
    ]
    assert lock.handoffs == 1 and lock.steals == 2
    assert log == ["a", "a", "b", "a", "a"]


@settings(max_examples=60, deadline=None)
@given(
    programs=st.lists(steps, min_size=2, max_size=5),
    nr_cpus=st.integers(1, 4),
    sched=st.sampled_from(["cfs", "fifo"]),
)
def test_linux_steals_only_by_running_tasks_and_handoff_bounds_starvation(programs, nr_cpus, sched):
    m = Machine(nr_cpus, sched=sched, mutex="linux")
    lock = Mutex(m, "l")
    lock.trace = []
    running_at_steal = []
    orig = lock._log

    def log(event, task):
        if event in ("steal", "spin_acquire"):
            queued = [w.task for w in lock._waiters]
            running_at_steal.append((task.cpu is not None, task in queued[:1]))
        orig(event, task)

    lock._log = log

    def prog(task, steps):
        for think, hold in steps:
            yield from task.run(think)
            yield from task.lock(lock)
            yield from task.run(hold)
            task.unlock(lock)
        task.exit()

    for i, s in enumerate(programs):
        m.spawn(prog(Task(m, f"t{i}"), s))
    m.env.run()
    # a steal (or a spinner's pick-up) is made by a task running on a CPU, never by the
    # first waiter, whose turn it would have been
    assert all(on_cpu and not first for on_cpu, first in running_at_steal)
    # a waiter that set HANDOFF gets the lock at the next unlock: at most one critical
    # section (the current owner's) separates its flag from its acquisition
    ev = [(e, n) for _, e, n in lock.trace]
    for i, (e, n) in enumerate(ev):
        if e == "handoff_flag":
            j = ev.index(("handoff", n), i)
            others = [x for x in ev[i:j] if x[0] == "unlock" and x[1] != n]
            assert len(others) <= 1


def test_uncontended_lock_costs_no_event():
    m = Machine(1)
    lock = Mutex(m, "l")
    scheduled = []
    orig = m.env.schedule

    def schedule(event, priority=1, delay=0):
        scheduled.append(event)
        return orig(event, priority, delay)

    m.env.schedule = schedule
    t = Task(m, "t")

    def prog():
        yield from t.run(10)
        n = len(scheduled)
        for _ in range(100):
            yield from t.lock(lock)
            t.unlock(lock)
        assert len(scheduled) == n
        t.exit()

    m.spawn(prog())
    m.env.run()
    assert lock.contended == 0
