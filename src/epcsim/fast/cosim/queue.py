"""SimPy's event queue (``Environment.schedule`` / ``step``), compiled.

SimPy keeps a heap of ``(time, priority, eid, event)`` and pops the least: the earliest
time, then URGENT (a process's Initialize) before NORMAL (timeouts, ``succeed``), then the
event scheduled first, since every ``schedule`` call takes the next ``eid``. A Timeout is
scheduled when it is *created*, an Event when it *succeeds*, a Process's end when its
generator returns. Because ``eid`` is unique the order is total, so any heap with the same
key pops in the same order; the core only has to take an ``eid`` exactly where SimPy does.

A row of ``heap`` is ``(time, priority << KEY_SHIFT | eid, payload)``; the payload says what
the event does when popped (``state.EV_*``, the task, one argument).
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.state import (
    C_EID,
    C_NOW,
    C_POPS,
    C_QLEN,
    H_KEY,
    H_PAYLOAD,
    H_TIME,
    HB_QUEUE_FULL,
    KEY_SHIFT,
)


@core_jit(inline="always")
def _less(heap, i, j):  # type: ignore[no-untyped-def]
    ti = heap[i, H_TIME]
    tj = heap[j, H_TIME]
    if ti != tj:
        return ti < tj
    return heap[i, H_KEY] < heap[j, H_KEY]


@core_jit(inline="always")
def _swap(heap, i, j):  # type: ignore[no-untyped-def]
    for c in range(3):
        v = heap[i, c]
        heap[i, c] = heap[j, c]
        heap[j, c] = v


@core_jit(inline="always")
def push(st, time, key, payload):  # type: ignore[no-untyped-def]
    """The heap's insert of one row whose key (its eid) is taken already: ``schedule``'s,
    and a timeout queued after the events it let pass (``run_over.over_pokes``). The
    caller checked there is room."""
    clk = st.clk
    heap = st.heap
    n = clk[C_QLEN]
    heap[n, H_TIME] = time
    heap[n, H_KEY] = key
    heap[n, H_PAYLOAD] = payload
    clk[C_QLEN] = n + 1
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if not _less(heap, i, p):
            break
        _swap(heap, i, p)
        i = p


@core_jit
def schedule(st, delay, priority, kind, task, arg):  # type: ignore[no-untyped-def]
    """``Environment.schedule``: queue an event ``delay`` ns from now with the next eid.
    Returns False (and records ``HB_QUEUE_FULL``) when the heap is full."""
    clk = st.clk
    if clk[C_QLEN] >= st.heap.shape[0]:
        hand_back(st, np.int64(HB_QUEUE_FULL), task)
        return False
    eid = clk[C_EID]
    clk[C_EID] = eid + 1
    push(st, clk[C_NOW] + delay, (priority << KEY_SHIFT) | eid, kind | (task << 4) | (arg << 16))
    return True


@core_jit
def peek(st):  # type: ignore[no-untyped-def]
    """``Environment.peek``: the time of the next event, or -1 if there is none."""
    if st.clk[C_QLEN] == 0:
        return -1
    return st.heap[0, H_TIME]


@core_jit
def due_by(st, t):  # type: ignore[no-untyped-def]
    """Some event is queued at or before ``t`` (``queue and queue[0][0] <= t``)."""
    return st.clk[C_QLEN] > 0 and st.heap[0, H_TIME] <= t


@core_jit
def pop(st):  # type: ignore[no-untyped-def]
    """``Environment.step``'s pop: advance the clock to the least event and return its
    payload (the caller checks the queue is not empty)."""
    clk = st.clk
    heap = st.heap
    clk[C_NOW] = heap[0, H_TIME]
    payload = heap[0, H_PAYLOAD]
    clk[C_POPS] += 1
    n = clk[C_QLEN] - 1
    clk[C_QLEN] = n
    if n > 0:
        for c in range(3):
            heap[0, c] = heap[n, c]
        i = 0
        while True:
            left = 2 * i + 1
            if left >= n:
                break
            m = left
            if left + 1 < n and _less(heap, left + 1, left):
                m = left + 1
            if not _less(heap, m, i):
                break
            _swap(heap, i, m)
            i = m
    return payload


def pending(st) -> list[tuple[int, int, int, int, int, int]]:  # type: ignore[no-untyped-def]
    """The queued events in the order they would pop, as ``(time, priority, eid, kind,
    task, arg)``, without popping them: what a hand-back moves into SimPy's queue
    (``PATHS.md``, "hand the queue back"); ``eid`` is SimPy's own for the same event."""
    n = int(st.clk[C_QLEN])
    rows = st.heap[:n]
    order = np.lexsort((rows[:, H_KEY], rows[:, H_TIME]))
    out = []
    for time, key, payload in rows[order].tolist():
        out.append(
            (
                time,
                key >> KEY_SHIFT,
                key & ((1 << KEY_SHIFT) - 1),
                payload & 15,
                (payload >> 4) & 4095,
                payload >> 16,
            )
        )
    return out
