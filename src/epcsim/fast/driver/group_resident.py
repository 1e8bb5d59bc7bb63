"""A group left *resident* on the compiled core between ``System.run(until=)`` slices (issue 9
row 10, session ``resident``; PATHS.md "The group resident on the core between slices").

**What.** A group move (``group_move.drive``) whose core hands back only because of the
``until`` deadline (``HB_DEADLINE``) does not move back to SimPy: it folds what every
hand-back folds (``group_move.run_core``: the kernel's state, the threads' rows, CPUs and
pins) and writes the scheduler's plain data (``cosim/transfer_plain.write_plain``: every
task's fields, the CPUs, the run queue's scalars, the mutexes' owners, counters and trace),
but builds no process, event or wait list (``park``). Every own process stays parked as
``to_core`` left it, the driving one too (it yields an event nobody triggers), the core's
heap keeps every pending event but the until event, which goes back into SimPy's queue
with its key: SimPy pops it and ``Environment.run`` returns at the deadline, as it would.
The next ``System.run(until=T)`` re-enters the core from ``System.run`` itself
(``run_until``): the until event made as ``Environment.run`` makes it (its eid, ``URGENT``,
``StopSimulation.callback``), the last one's second pop done as ``Environment.step`` does
it, the pokes set aside at or before the new deadline into the heap (``transfer_pokes``),
and ``group_move.run_core`` again - no ``to_core``, no served steps. Each such slice that
ends at its deadline parks again (``Environment.run`` pops the until event itself); any
other hand-back *materialises* (``materialise``: ``to_simpy(inline=-1)`` re-points every
parked own process, the driving one's park undone first) and SimPy runs the rest of the
slice.

**Why it is exact.** A move changes no result (the differential tests): the core and the
served steps both give the reference's. Residency only skips a move back and the next
move in: at ``HB_DEADLINE`` every task waits on an event and none is in a resumption, so
the core's arrays are the whole state - SimPy's objects would be rebuilt from them by
``to_simpy`` and read back by ``to_core``. What differs is only SimPy's own book-keeping,
done here as SimPy does it: ``env.now`` the deadline (the pop), the eids (``env._eid``
continues the core's count ``C_EID``; the until event's pop and its re-queue by
``Environment.step``'s ``StopSimulation`` branch take theirs), ``C_POPS`` (SimPy's pops
under ``System.run`` are not ``Served.pops``': unchanged, as after a move back),
``C_NOW`` (``to_core`` would write ``env.now``, the deadline).

**The guard.** While resident, ``env.schedule``, ``env.step`` and ``env.peek`` are the
instance's own functions (``_guard``): anything that would schedule, process or peek at
a SimPy event - a new process (``Enclave.start``, every ioctl and access through
``System._call``), the scenario runner's observer and sampler, ``env.run`` with any
``until``, a user's own SimPy code - materialises first, and then runs on a SimPy that is
exactly the one without residency. Two calls are let through: ``Environment.run``'s pop of
the until event (``step`` with it, still unprocessed, at the queue's head) and
``Environment.step``'s re-queue of it (``schedule`` of it with priority -1).
``System.run()`` without ``until`` and ``Enclave.start`` call ``System._materialise``
first as well (``run()``'s ``all_of`` schedules nothing), and so does ``System.machine``
(a property now: the SimPy engine, whose scheduler, mutexes and queue tests and the
scenario runner read - ``System`` itself and ``Sgx`` hold the ``Machine`` directly).

**What is read without materialising** (row 10 reads these between slices): ``System.now``
(``env.now``: the deadline, popped), ``System.stats()`` (the kernel's counters and pages,
folded by ``run_core``; the bulk flood's ``settle`` never, as no group with
``nopage_flood="bulk"`` parks), a thread's ``is_alive`` (its process is pending: parked,
and no thread's machine ends on the core, N6 - a ``TS_DONE`` row is not parked, ``parks``)
and the invariant checker (``encl->lock``'s owner: plain data). Decided, not asked: a
user reading SimPy's internals (``env._queue``, a run queue's entries, a mutex's
waiters) between slices sees them stale; none of the API does, and the first SimPy call
makes them right.

``RESIDENT``: the private switch (the differential tests turn it off); with it False no
group parks and everything is as before.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.core import Environment, StopSimulation
from simpy.events import NORMAL, URGENT, Event

from epcsim.fast.cosim import transfer_pokes as pokes
from epcsim.fast.cosim.deadline import stop_row
from epcsim.fast.cosim.served import _placeholder
from epcsim.fast.cosim.state import (
    C_EID,
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_NOW,
    C_QLEN,
    EV_STOP,
    H_KEY,
    H_PAYLOAD,
    H_TIME,
    HB_DEADLINE,
    KEY_SHIFT,
    T_STATE,
    TS_DONE,
    TS_PARK,
)
from epcsim.fast.cosim.transfer_plain import write_plain
from epcsim.fast.driver import group_move

if TYPE_CHECKING:
    from epcsim.fast.driver.stream_group import GroupSession

#: the private switch (module docstring): False, no group parks
RESIDENT = True


class Resident:
    """A parked group's SimPy side: the until event SimPy holds (``until``), the event the
    driving process waits on (``park_ev``, never triggered) and its row (``driver``),
    ``idle`` between slices (False while ``run_until`` drives the core)."""

    def __init__(self, sess: GroupSession, until: Any, driver: int) -> None:
        self.sess = sess
        self.until = until
        self.park_ev = Event(sess.sv.env)
        self.driver = driver
        self.idle = True


def parks(sess: GroupSession, asleep: bool) -> bool:
    """The group may stay resident at this ``HB_DEADLINE``: the switch on, ksgxd not
    asleep on the core (``asleep``, ``run_core``'s: ``_ksgxd_asleep`` has reset its row
    for its generator's own sleep, which only ``group_move.back`` rebuilds - parked with
    it, ksgxd would be lost: the hang the landing's suite found), the session live, no
    bulk flood, the core's heap holding one until row - at its head, a plain
    ``run(until=)``'s (its only callback ``StopSimulation.callback``, URGENT; not an
    observer's or a condition) - and no row parked in a flood or ended (``to_simpy`` moves
    those only with the driver's own process, or ends a process: ``is_alive``)."""
    if not RESIDENT or asleep or sess.left or sess.system.sgx.flood is not None:
        return False
    sv = sess.sv
    st = sv.st
    n = int(st.clk[C_QLEN])
    if n == 0 or len(sv.stops) != 1:
        return False
    head = st.heap[0]
    if int(head[H_PAYLOAD]) & 15 != EV_STOP or int(head[H_KEY]) >> KEY_SHIFT != int(URGENT):
        return False
    if int(np.count_nonzero((st.heap[:n, H_PAYLOAD] & 15) == EV_STOP)) != 1:
        return False
    ev = sv.stops[int(head[H_PAYLOAD]) >> 16]
    if ev.callbacks != [StopSimulation.callback]:
        return False
    states = st.tasks[: len(sv.tasks), T_STATE]
    return not bool(np.any((states == TS_PARK) | (states == TS_DONE)))


def _off_heap(sess: GroupSession) -> tuple[int, int, Any]:
    """The until row (the heap's head, ``parks``) out of the core's heap: its time, eid
    and event; the rest stays a valid heap (sorted)."""
    sv = sess.sv
    st = sv.st
    clk = st.clk
    n = int(clk[C_QLEN])
    time, key, payload = (int(x) for x in st.heap[0])
    ev = sv.stops[payload >> 16]
    rest = st.heap[1:n]
    st.heap[: n - 1] = rest[np.lexsort((rest[:, H_KEY], rest[:, H_TIME]))]
    clk[C_QLEN] = n - 1
    sv.stops = []
    clk[C_NOW] = time  # ``to_core``'s ``env.now`` at the next entry: the deadline, popped
    return time, key & ((1 << KEY_SHIFT) - 1), ev


def park(sess: GroupSession, t: int) -> tuple[Any, Any]:
    """``group_move.drive`` at a deadline the group stays resident at (``parks``), from
    thread row ``t``'s process inside ``env.step``: the plain data written, the until
    event back in SimPy's queue (``Environment.run`` pops it next and returns), the guard
    set; returns what that process's trampoline goes on with (``Served.serve_own``): a
    placeholder serving generator and an event nobody triggers."""
    sv = sess.sv
    env = sv.env
    write_plain(sv)
    time, eid, ev = _off_heap(sess)
    heappush(env._queue, (time, URGENT, eid, ev))
    res = Resident(sess, ev, t)
    sess.owner.keep(sess)
    sess.system._resident = res
    _guard(res)
    return _placeholder(), res.park_ev


def _as_left(res: Resident) -> bool:
    """SimPy as the last park left it: its queue the until event alone, popped and queued
    again by ``Environment.step`` with the eid ``C_EID`` the core's count gave it, the next
    eid the one after (``repr`` of ``itertools.count``: its next value, not taken)."""
    env = res.sess.sv.env
    q = env._queue
    eid = int(res.sess.sv.st.clk[C_EID])
    return (
        res.idle
        and len(q) == 1
        and q[0][3] is res.until
        and q[0][2] == eid
        and res.until.callbacks == []
        and repr(env._eid) == f"count({eid + 1})"
    )


def run_until(res: Resident, at: float) -> bool:
    """``System.run(until=)`` to ``at`` (> now) with the group resident (module docstring):
    the slice on the core; False (nothing run, the group materialised) when the core's
    heap could not take the until row and the pokes due by it."""
    sess = res.sess
    sv = sess.sv
    st = sv.st
    clk = st.clk
    env = sv.env
    owner = sess.owner
    if not _as_left(res):
        materialise(res)  # raises: SimPy ran without the guard
        return False
    if int(clk[C_QLEN]) + 1 + len(sv.aside) > st.heap.shape[0]:
        materialise(res)
        return False
    _unguard(env)
    sess.system._resident = None  # the drive reads ``System.machine``: not resident now
    # ``Environment.run(until=at)``: the until event, scheduled with the next eid ...
    until = Event(env)
    until._ok = True
    until._value = None
    eid = next(env._eid)
    until.callbacks.append(StopSimulation.callback)
    # ... then its first ``step``: the last until event, queued again, popped (no callbacks)
    last = heappop(env._queue)[3]
    last.callbacks = None  # type: ignore[assignment]
    clk[C_EID] = eid + 1
    rows = [stop_row(sv, at, URGENT, eid, until)]
    kept, _ = pokes.set_aside(sv.aside, [], (at, URGENT, eid), rows, _tix(sess))
    pokes.keep(sv, kept, [])
    n = int(clk[C_QLEN])
    heap = np.vstack([st.heap[:n], np.array(rows, np.int64)])
    st.heap[: len(heap)] = heap[np.lexsort((heap[:, H_KEY], heap[:, H_TIME]))]
    clk[C_QLEN] = len(heap)
    clk[C_HB] = clk[C_HB_TASK] = clk[C_HB_NOW] = 0
    sess.fit_trace()
    res.idle = False
    owner.resident_entries += 1
    asleep = group_move.run_core(sess)
    if int(sess.co.clk[C_HB]) == HB_DEADLINE and parks(sess, asleep):
        write_plain(sv)
        time, eid, ev = _off_heap(sess)
        heappush(env._queue, (time, URGENT, eid, ev))
        owner.keep(sess)
        res.until = ev
        res.idle = True
        # SimPy pops it: ``env.now`` the deadline, the event queued again (``_as_left``)
        Environment.run(env)
        sess.system._resident = res
        _guard(res)
        return True
    _materialise(res, asleep)
    Environment.run(env)  # on to the until event, in SimPy's queue again (``to_simpy``)
    return True


def materialise(res: Resident) -> None:
    """SimPy's state built from the resident group, as a move back at the last deadline
    would have left it (``to_simpy(inline=-1)``); raises if SimPy ran while resident
    without the guard (its eids and the core's would collide)."""
    env = res.sess.sv.env
    _unguard(env)
    if not _as_left(res):
        raise RuntimeError("fast_core: SimPy ran while the group was resident on the core")
    st = res.sess.sv.st
    st.clk[C_EID] += 1  # the until event's re-queue took one (``_as_left``)
    st.clk[C_NOW] = env._now
    _materialise(res, False)  # never parked with ksgxd asleep (``parks``)


def _materialise(res: Resident, asleep: bool) -> None:
    """The driving process's park undone (its wait on ``park_ev``, its placeholder), then
    ``group_move.back`` with no inline process: every own process re-pointed."""
    sess = res.sess
    sv = sess.sv
    if sess.system._resident is res:
        sess.system._resident = None
    proc = sv.procs[res.driver]
    cbs = res.park_ev.callbacks
    if cbs is not None and proc._resume in cbs:
        cbs.remove(proc._resume)
    proc._target = None
    own = sv.own[res.driver]
    if own is not None:
        own.close()
    kept = group_move.back(sess, asleep, -1)
    if kept is not None:
        raise RuntimeError("fast_core: a resident group's move back kept a process inline")


def _tix(sess: GroupSession) -> dict[Any, int]:
    return {task: i for i, task in enumerate(sess.sv.tasks)}


def _guard(res: Resident) -> None:
    """The guard (module docstring) on the group's SimPy environment."""
    env = res.sess.sv.env
    until = res.until

    def schedule(event: Any, priority: Any = NORMAL, delay: Any = 0) -> None:
        if not (event is until and priority == -1):
            materialise(res)
        Environment.schedule(env, event, priority, delay)

    def step() -> None:
        q = env._queue
        if not (q and q[0][3] is until and until.callbacks):
            materialise(res)
        Environment.step(env)

    def peek() -> Any:
        materialise(res)
        return Environment.peek(env)

    env.schedule = schedule  # type: ignore[method-assign]
    env.step = step  # type: ignore[method-assign]
    env.peek = peek  # type: ignore[method-assign]


def _unguard(env: Any) -> None:
    for name in ("schedule", "step", "peek"):
        env.__dict__.pop(name, None)


__all__ = ["RESIDENT", "Resident", "materialise", "park", "parks", "run_until"]
