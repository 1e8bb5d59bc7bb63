"""A ``run`` step whose timeout only spinners' pokes come before: the task goes on without
leaving its machine (issue 9 session ``row1keep``, PATHS.md "Row 1: a step over the pokes").

Where it comes from. On row 1 (one enclave thread and ksgxd on 2 CPUs) the thread spins on
``encl->lock`` while ksgxd holds it: ksgxd's unlock after EBLOCK pokes the spinner at
``mutex_pickup`` (``LinuxMutex._poke``), ksgxd takes the lock again at once for EWB, and its
EWB step (``P_EWB1_RUN``) cannot be elided because the poke is due before the step ends. In
SimPy the step is a timeout (eid E); the poke pops, ``_fire`` finds the owner running and
re-arms the wait (nothing resumed); then the timeout pops and ksgxd goes on. Counted on row
1 (scratch instrumentation of ``thread_bridge.drive``, PATHS.md): 0.885 of the ~4.8
machine resumptions a fault are this "ksgxd again, only a poke between" case.

What is done instead (``over_pokes``): the step's eid is taken where ``schedule`` takes it,
then the queue's events that SimPy pops before the timeout - the ones earlier than its
``(end, NORMAL, E)`` - are popped here while each is a spinner's poke strictly before
``end`` that resumes nobody: stale, or re-armed (``spin.rearm``, the decision and the
re-arm of ``fire``, which ``dispatch.next_resume`` calls for the same event). A poke whose
wait succeeds would resume the spinner's machine, which cannot run from inside this one:
it is put back as it was (its pop undone - ``rearm`` wrote nothing for it) and the loop
ends, so ``next_resume`` pops it next and takes ``resume_now`` as before. Then, if the
timeout is the queue's least event, it is popped in place: the pop counted, the clock at
``end``, the task ready (``step_over``, the ``EV_RESUME`` branch's tail) - and ``run``
answers R_OK, so the machine goes on at the next step with no ``schedule``/``pop`` of its
own timeout, no ``next_resume`` and no machine exit and entry. Otherwise (another kind of
event, or one at ``end`` itself, is before it; a poke that resumes its spinner; the budget
spent) the timeout is queued with its eid E (``queue.push``) and ``run`` answers
R_BLOCKED, as before: the queue then holds what SimPy's holds.

Why exact: the events are popped in SimPy's order (the least key each time; the timeout's
key is fixed by E), each with the same code, at its own instant, so every write is
SimPy's; the timeout's absence from the heap is seen by nothing: ``fire`` asks only
whether an event is due at the poke's instant, which is before ``end`` (a poke at ``end``
itself is not taken: there it would see the timeout), and the heap has room for the
timeout plus a re-armed poke (``schedule`` never refuses inside, as SimPy never does).
The R_OK goes to ``run``'s caller where the queued timeout would have resumed the task's
own code at the same point: a machine past its request, a program past its op, and
``mutex_sleep.go``'s ``mutex_wakeup`` step (``LS_WCPU``), whose timeout ``next_resume``
hands to ``go`` at ``LS_WRUN`` - the branch the R_OK continues to (an equivalence: a
``T_LS`` exclusion tried as a mutation changed nothing). ``C_ELIDE`` clear
(``Machine(elide=False)``) keeps every step a queued timeout, as that mode means.
``tests/fast/test_run_over.py`` holds it to SimPy: generated programs, a stop at every
event of a lock steal under a spin, and a guard that both are taken.
"""

from __future__ import annotations

import numpy as np

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.cosim.queue import pop, push
from epcsim.fast.cosim.spin import FIRE_NOW, rearm
from epcsim.fast.cosim.state import (
    C_BUDGET,
    C_EID,
    C_ELIDE,
    C_HB,
    C_NOW,
    C_POPS,
    C_QLEN,
    C_RAN_OVER,
    EV_POKE,
    EV_RESUME,
    H_KEY,
    H_PAYLOAD,
    H_TIME,
    KEY_SHIFT,
    NORMAL,
    R_BLOCKED,
    R_OK,
    T_BUSY,
    T_STATE,
    T_USER_NS,
    TS_READY,
    TS_RUN,
)


@core_jit(inline="always")
def step_over(st, t):  # type: ignore[no-untyped-def]
    """A task's own wait is over (its timeout or wake-up popped, the CPU held): a
    ``run_user`` step's busy time, and the task ready. ``dispatch.next_resume``'s
    ``EV_RESUME`` tail, and ``over_pokes``' popped timeout."""
    tasks = st.tasks
    if tasks[t, T_USER_NS] != 0:  # ``run_user``'s step is over: busy time
        tasks[t, T_BUSY] += tasks[t, T_USER_NS]
        tasks[t, T_USER_NS] = 0
    tasks[t, T_STATE] = TS_READY


@core_jit(inline="always")
def pokes_first(st, t, end):  # type: ignore[no-untyped-def]
    """``run``'s test before its timeout is queued: the least event is a spinner's poke
    before ``end``, the heap has room for the timeout and one re-armed poke, and elision
    is on (module docstring)."""
    clk = st.clk
    n = clk[C_QLEN]
    return (
        n > 0
        and st.heap[0, H_TIME] < end
        and (st.heap[0, H_PAYLOAD] & 15) == EV_POKE
        and n + 2 <= st.heap.shape[0]
        and clk[C_ELIDE] != 0
    )


@core_jit
def over_pokes(st, t, end):  # type: ignore[no-untyped-def]
    """``run``'s timeout at ``end`` for task ``t`` (its busy time and step written), after
    ``pokes_first``: the pokes before it popped and fired here, then the timeout popped in
    place (R_OK: the task goes on now) or queued with its eid (R_BLOCKED)."""
    clk = st.clk
    heap = st.heap
    eid = clk[C_EID]
    clk[C_EID] = eid + 1
    key = (NORMAL << KEY_SHIFT) | eid
    st.tasks[t, T_STATE] = TS_RUN
    while clk[C_HB] == 0 and not (clk[C_BUDGET] > 0 and clk[C_POPS] >= clk[C_BUDGET]):
        if clk[C_QLEN] > 0:
            at = heap[0, H_TIME]
            first = heap[0, H_KEY]
            if at < end or (at == end and first < key):
                payload = heap[0, H_PAYLOAD]
                if at == end or (payload & 15) != EV_POKE:
                    break  # SimPy pops something else first: the timeout is queued
                now = clk[C_NOW]
                pop(st)
                if rearm(st, (payload >> 4) & 4095, payload >> 16) >= FIRE_NOW:
                    # the spinner's wait succeeds: it is resumed from ``next_resume``,
                    # which pops this poke next - it goes back, nothing of it written
                    clk[C_NOW] = now
                    clk[C_POPS] -= 1
                    push(st, at, first, payload)
                    break
                continue
        # the timeout is the least event: SimPy's next pop, done in place
        clk[C_POPS] += 1
        clk[C_NOW] = end
        clk[C_RAN_OVER] += 1
        step_over(st, t)
        return R_OK
    push(st, end, key, np.int64(EV_RESUME) | (t << 4))
    return R_BLOCKED


__all__ = ["over_pokes", "pokes_first", "step_over"]
