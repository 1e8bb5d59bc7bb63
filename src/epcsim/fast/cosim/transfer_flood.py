"""The parked NOPAGE flood across the user path's moves (``System(nopage_flood="bulk")``;
issue 9 session ``uflood``, PATHS.md "What is built: the parked flood on the user path").

``fast/flood.py``'s ``NopageFlood`` is the flood's state while SimPy runs the engine, the
core's ``T_FL_*`` columns, ``M_FL_HOLDS`` and its ``EV_FLOOD`` events while the core does
(``flood_park.py`` restates each method over them). A move carries it as every other part
of the engine's state:

* ``flood_in`` (``to_core``): nothing is parked in Python (``to_core`` refuses then), so
  only the counters the next hold and decision compare with move: each lock's holds
  (``_holds``) and each task's decision instant not yet asked (``_deciding``,
  ``T_FL_DECIDE``); and ``flood_row`` takes each of ``NopageFlood``'s queued timers in
  as its ``EV_FLOOD`` row (the factories tag their callbacks), with its eid - every park
  of theirs over, so a park's timer can never match a later park on the core, and a
  hold's look keeps its hold.
* ``flood_out`` (``to_simpy``): the counters charged on the core fold into ``parks`` and
  ``bulk_retries``; each parked row becomes a ``_Park`` in ``parked``, in ``T_FL_SEQ``
  order (the dict's), its ``ev`` the event ``to_simpy`` built for the row (pending, or
  triggered with its ``EV_RESUME`` queued); ``flood_event`` builds each queued
  ``EV_FLOOD`` as the SimPy timeout ``_timer``, ``_chain`` or ``_tcs_zapped`` would have
  queued, with the core's eid and the callback ``NopageFlood``'s factory makes - bound
  to the rebuilt park, or for a timer of an earlier park (its ``T_FL_GEN`` older) to a
  park that is not parked, which its callback then ignores, as Python's does.
* ``mirror_in``/``mirror_out``: ksgxd's machine served by SimPy while a thread is parked
  in Python (a stop left the thread's park to ``NopageFlood``): the compiled reclaimer
  calls the flood's hooks on the core's rows (``page_freed``, ``wake_all``,
  ``tcs_accessed``, ``page_zapped``), so before each of its served steps the parked
  thread is written into its row (``mirror_in``) and after it the row's ``forced`` and
  ``touched`` are read back and the timers the hooks queued are SimPy's, with the eids
  the core gave them from SimPy's count (``mirror_out``): the hooks run before the step's
  request, as in the reference, so their timeouts come before its events. Only the
  session's own thread can be parked then (``stream.StreamCore.stream`` takes the flood
  with one enclave thread only); anything else is a guard.
"""

from __future__ import annotations

from heapq import heappush
from itertools import count
from typing import Any

from epcsim.fast.cosim.flood_decision import FL_CHAIN, FL_ERESUME, FL_TIMER
from epcsim.fast.cosim.queue import pending
from epcsim.fast.cosim.state import (
    C_EID,
    C_FL_AEXF,
    C_FL_BULK,
    C_FL_PARKED,
    C_FL_PARKS,
    C_FLOOD,
    C_QLEN,
    EV_FLOOD,
    M_FL_HOLDS,
    SE_PENDING,
    SE_TRIGGERED,
    T_FL,
    T_FL_BASE,
    T_FL_COUNTED,
    T_FL_DECIDE,
    T_FL_ERESUME,
    T_FL_EV,
    T_FL_FORCED,
    T_FL_GEN,
    T_FL_IDX,
    T_FL_LOCK_CHECK,
    T_FL_M,
    T_FL_PERIOD,
    T_FL_SEQ,
    T_FL_TCS,
    T_FL_TCSBLK,
    T_FL_TCSFIRST,
    T_FL_TICK_AT,
    T_FL_TOUCHED,
)
from epcsim.fast.cosim.transfer_procs import _triggered
from epcsim.fast.flood_decision import _Park

#: a session's event heap with the flood on: each park leaves a tick timer up to a tick
#: ahead, stale or not (``threads_bridge``'s ``flood6`` sizing; a full heap is a void run)
FLOOD_HEAP_ROWS = 1 << 16


def flood_on(system: Any, co: Any) -> None:
    """A session's core with ``nopage_flood="bulk"``: a retrier parks (``C_FLOOD``)."""
    costs = system.machine.costs
    co.clk[C_FLOOD] = 1
    co.clk[C_FL_AEXF] = costs.aex + costs.fault_entry


def flood_in(sv: Any, flood: Any) -> None:
    """``to_core``: Python's flood state into the arrays (module docstring)."""
    st = sv.st
    tasks = st.tasks
    tasks[:, T_FL] = 0
    st.clk[C_FL_PARKED] = 0
    for i, mx in enumerate(sv.mutexes):
        st.mtx[i, M_FL_HOLDS] = flood._holds.get(mx, 0)
    deciding = flood._deciding
    for t, task in enumerate(sv.tasks):
        d = deciding.pop(task, None)
        tasks[t, T_FL_DECIDE] = 0 if d is None else d + 1


def flood_out(sv: Any, flood: Any, target: dict[int, Any]) -> dict[int, _Park]:
    """``to_simpy``: the core's flood state into ``flood`` (module docstring); returns the
    rebuilt parks by task row (their events are ``target``'s)."""
    st = sv.st
    clk = st.clk
    tasks = st.tasks
    flood.bulk_retries += int(clk[C_FL_BULK])
    flood.parks += int(clk[C_FL_PARKS])
    flood.core_parks += int(clk[C_FL_PARKS])
    clk[C_FL_BULK] = clk[C_FL_PARKS] = 0
    for i, mx in enumerate(sv.mutexes):
        h = int(st.mtx[i, M_FL_HOLDS])
        if h:
            flood._holds[mx] = h
    n = len(sv.tasks)
    rows = sorted((int(tasks[t, T_FL_SEQ]), t) for t in range(n) if tasks[t, T_FL])
    parks: dict[int, _Park] = {}
    for _, t in rows:
        task = sv.tasks[t]
        if task in flood.parked:
            raise RuntimeError(f"to_simpy: task {t} parked on the core and in Python")
        parks[t] = flood.parked[task] = _park_of(sv, t, task)
        parks[t].ev = target[t]
        flood.moved += 1
    for t in range(n):
        d = int(tasks[t, T_FL_DECIDE])
        if d:
            flood._deciding[sv.tasks[t]] = d - 1
            tasks[t, T_FL_DECIDE] = 0
    # nothing parked on the core while SimPy runs: a served machine's flood hooks find no
    # row (but a park ``mirror_in`` writes for one served step)
    tasks[:n, T_FL] = 0
    clk[C_FL_PARKED] = 0
    return parks


def _park_of(sv: Any, t: int, task: Any) -> _Park:
    """Row ``t``'s ``T_FL_*`` columns as its ``_Park`` (``flood_park.py``'s mapping)."""
    r = sv.st.tasks[t].tolist()
    p = _Park(task, r[T_FL_IDX], r[T_FL_BASE], r[T_FL_PERIOD])
    p.lock = sv.mutexes[r[T_FL_M]]
    p.counted = r[T_FL_COUNTED]
    p.forced = None if r[T_FL_FORCED] < 0 else r[T_FL_FORCED]
    p.lock_check = r[T_FL_LOCK_CHECK]
    p.tick_at = r[T_FL_TICK_AT]
    p.tcs_first = bool(r[T_FL_TCSFIRST])
    p.eresume_ns = r[T_FL_ERESUME]
    p.touched = r[T_FL_TOUCHED]
    return p


def flood_event(sv: Any, flood: Any, parks: dict[int, _Park], t: int, arg: int, time: int) -> Any:
    """A queued ``EV_FLOOD`` (task field ``t``, ``arg``, due at ``time``) as the SimPy
    timeout ``NopageFlood`` queued for it: ``_timer``'s, ``_tcs_zapped``'s (row ``t``, the
    park of generation ``arg >> 2``) or a hold's ``_chain`` look (``t`` the mutex row)."""
    kind = arg & 3
    datum = arg >> 2
    ev = _triggered(sv.env)
    if kind == FL_CHAIN:
        ev.callbacks.append(flood.chain_fire(sv.mutexes[t], datum, time))
        return ev
    p = parks.get(t)
    if p is None or int(sv.st.tasks[t, T_FL_GEN]) != datum:
        # an earlier park's (or one ended): its callback finds it not parked
        p = _Park(sv.tasks[t], -1, 0, 1)
    if kind == FL_TIMER:
        ev.callbacks.append(flood.timer_fire(p))
    else:
        assert kind == FL_ERESUME
        ev.callbacks.append(flood.eresume_ends(p))
    return ev


def flood_row(sv: Any, flood: Any, ev: Any, tix: dict[Any, int], mix: dict[Any, int]) -> Any:
    """``to_core``: a queued event that is one of ``NopageFlood``'s timers (its one callback
    tagged by the factory that made it, ``flood.py``) as its ``EV_FLOOD`` row's ``(kind,
    task field, arg)``, or None (not one, or not the session's). Nothing is parked in
    Python then (``_in_regime``), so a park's timer is an earlier park's: its row's
    current ``T_FL_GEN``, which the row's next park passes (``park_begin``), so it never
    matches, as Python's callback never does; a hold's look keeps its hold
    (``M_FL_HOLDS`` moves in with ``_holds``: ``flood_in``)."""
    cbs = ev.callbacks
    if flood is None or cbs is None or len(cbs) != 1:
        return None
    tag = getattr(cbs[0], "flood", None)
    if tag is None:
        return None
    if tag[0] == "chain":
        m = mix.get(tag[1])
        if m is None:
            return None
        flood.timers_in += 1
        return (EV_FLOOD, m, FL_CHAIN | (tag[2] << 2))
    p = tag[1]
    t = tix.get(p.thread)
    if t is None or p.thread in flood.parked:
        return None
    flood.timers_in += 1
    kind = FL_TIMER if tag[0] == "timer" else FL_ERESUME
    return (EV_FLOOD, t, kind | (int(sv.st.tasks[t, T_FL_GEN]) << 2))


def is_flood_timer(flood: Any, thread: Any, lock: Any) -> Any:
    """``only_stops``' ``also`` for a session about to begin with ``thread`` and ``lock``
    (``encl->lock``): whether a queued event is one of ``flood``'s timers that
    ``flood_row`` takes in (nothing parked in Python: ``flood_regime``'s one thread is at
    its loop top)."""

    def also(ev: Any) -> bool:
        cbs = ev.callbacks
        if flood is None or flood.parked or cbs is None or len(cbs) != 1:
            return False
        tag = getattr(cbs[0], "flood", None)
        if tag is None:
            return False
        return tag[1] is lock if tag[0] == "chain" else tag[1].thread is thread

    return also


def mirror_in(sv: Any, flood: Any, row: int) -> _Park | None:
    """Before a served step of ksgxd's machine: the thread parked in Python (task row
    ``row``, the session's) into its row for the compiled hooks; None if none is."""
    if not flood.parked:
        return None
    task = sv.tasks[row]
    p = flood.parked.get(task)
    if p is None or len(flood.parked) != 1:
        raise RuntimeError("fast_core: a thread parked in Python that is not the session's")
    st = sv.st
    r = st.tasks[row]
    r[T_FL] = 1
    r[T_FL_BASE] = p.base
    r[T_FL_PERIOD] = p.period
    r[T_FL_COUNTED] = p.counted
    r[T_FL_FORCED] = -1 if p.forced is None else p.forced
    r[T_FL_LOCK_CHECK] = p.lock_check
    r[T_FL_TICK_AT] = p.tick_at
    r[T_FL_EV] = SE_TRIGGERED if p.ev is not None and p.ev.triggered else SE_PENDING
    r[T_FL_SEQ] = 0
    r[T_FL_ERESUME] = p.eresume_ns
    r[T_FL_TOUCHED] = p.touched
    r[T_FL_M] = sv.mutexes.index(p.lock)
    r[T_FL_TCS] = task.tcs_index
    r[T_FL_IDX] = p.index
    r[T_FL_TCSBLK] = 0
    r[T_FL_TCSFIRST] = int(p.tcs_first)
    clk = st.clk
    clk[C_FL_PARKED] = 1
    clk[C_QLEN] = 0
    eid = next(sv.env._eid)
    sv.env._eid = count(eid)
    clk[C_EID] = eid
    return p


def mirror_out(sv: Any, flood: Any, row: int, p: _Park) -> None:
    """After that step: what its hooks changed in the row back into ``p``, and the timers
    they queued into SimPy's queue with the core's eids (``mirror_in``)."""
    st = sv.st
    r = st.tasks[row]
    f = int(r[T_FL_FORCED])
    p.forced = None if f < 0 else f
    p.touched = int(r[T_FL_TOUCHED])
    parks = {row: p}
    gen = int(r[T_FL_GEN])
    heap = sv.env._queue
    for time, prio, eid, kind, t, arg in pending(st):
        # the hooks' ``_force`` and ``_tcs_zapped`` only (a served step's mutex, run queue
        # and wake-ups are SimPy's requests, not the core's)
        if kind != EV_FLOOD or arg & 3 == FL_CHAIN or t != row or arg >> 2 != gen:
            raise RuntimeError("fast_core: a served reclaimer step queued an event of its own")
        heappush(heap, (time, prio, eid, flood_event(sv, flood, parks, t, arg, time)))
    clk = st.clk
    sv.env._eid = count(int(clk[C_EID]))
    clk[C_QLEN] = 0
    r[T_FL] = 0
    clk[C_FL_PARKED] = 0


__all__ = [
    "FLOOD_HEAP_ROWS",
    "flood_event",
    "flood_in",
    "flood_on",
    "flood_out",
    "flood_row",
    "is_flood_timer",
    "mirror_in",
    "mirror_out",
]
