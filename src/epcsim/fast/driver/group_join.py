"""A group move that takes a thread not at its loop top: joined mid-fault (issue 9 row 10,
session ``join``; PATHS.md "What is built: threads joined mid-fault").

Why: a ``GroupSession`` moves only with every thread joined (``group_move.move``), and a
thread joins at its ``access_stream`` loop top (``GroupSession.join``). With Linux's mutex
and more threads than CPUs some thread is nearly always inside its Python fault - spinning
on ``encl->lock`` or waiting for a CPU at the lock's might_sleep point, mostly in its
entry's TCS fault (the probe's table in PATHS.md) -, so ``UNJOINED`` gave up and no
Linux-mutex group of row 10 ever moved.

What it does: at a move attempt, each thread not joined whose process is suspended at a
point of its fault that the thread machine has a row for is made that row - its pc, the
request it waits in (``T_RQ``, ``T_RQ_A``: what ``to_core`` reads the wait with), its
fault's page and ``t0`` (``_fault``'s frame), the stream's index and count
(``access_stream``'s ``i`` and ``out.done``) - and its process is offered to ``to_core``
with the chain below ``access_stream`` as its serving generator (``sv.own``): ``to_core``
reads the wait from those frames exactly as from a served machine's (the mutex's, the
run queue's, ``run``'s: the same reference generators), and ``detach`` closes them as it
closes a serving generator. Once the move is made (``retire``) ``CoreTakesOver`` is thrown
into the process: the closed frames unwind, ``access_stream`` goes on at its loop top with
``GroupSession.join_mid`` in place of ``hook.run`` - ``Served.serve_own`` begun parked -,
so the process is then what a joined thread's is after a move, and ``to_simpy`` re-points
it. A move refused after the rows were set gives them back (``undo``): nothing moved.

The points mapped (``KINDS``; each an access's fault from ``access_stream``, or with
``tcs_`` the entry's TCS fault, ``enter > _ensure_tcs > _fault_or_park``):

====================================  ==============  ======================================
the process's chain below             the machine's   why it is that row
``access_stream``                     pc
====================================  ==============  ======================================
``top``: ``enter > acquire_cpu`` (a   ``P_TOP``       T0's ``RQ_RUN`` of 0 ns (``Task.run(0)``
stream's start, off its CPU)          (``RQ_RUN`` 0)  is ``acquire_cpu``): the loop top,
                                                      ``hook.run`` declined there
``lock``: ``_fault > sgx_vma_fault >  ``P_LOCKED``    T3's ``RQ_LOCK``: the AEX, the entry's
Task.lock`` (any wait ``to_core``     (``RQ_LOCK``)   run and the fault counted, T2's
reads: OSQ spin, ``_sleeping``'s                      decisions taken; ``t0`` and the page
phases, a CPU wait, a FIFO sleep)                     from ``_fault``'s frame
``tcs_lock``: ``enter > _ensure_tcs   ``P_LOCKED``    ``vma_fault.tcs_fault``'s ``RQ_LOCK``
> _fault_or_park > _fault > ...``     (``RQ_LOCK``)   (``TC_TCS_RETRY`` 1: a stop under the
as ``lock``                                           lock goes on as ``_ensure_tcs``)
====================================  ==============  ======================================

Not mapped, refused: the fault's entry (``run(aex + fault_entry)``, the machine's
``P_FAULT_RUN``) and its return (``_fault_return``'s ``cond_resched``, ``P_FRESCHED``) -
rows the machine has, but no drawn shape met a thread there at a move (PATHS.md), so
they are left untested rather than mapped blind.

Refused (the thread stays unjoined; ``UNJOINED`` counts it): any other chain (under the
lock - ``sgx_vma_fault_locked`` -, a user step, ``enter``'s own waits, the implicit TCS's
SECS load), a charged fault (the parked flood's: no core then anyway), a page whose fault
would not reach the lock's rows as the machine's (not present, the VMA's protections past
``max_prot``, a dead enclave: T2's checks, which the machine takes before the AEX), a
process whose ``access_stream`` is not the session's stream's.

Exact: the machine's rows from each pc are the reference's code from that point (the
same points its served steps stop and resume at), the fault's part before it was the
reference's own, and the process's Python code after the fault - ``access_stream``'s loop
top - is what the machine returns to (``join``'s ``_served_end``). A TCS fault's rest is
the loop top's ``enter()`` as ``vma_fault.tcs_fault``'s docstring argues (``_ensure_tcs``'
``while`` is the loop top's ``_tcs_ready`` check; the thread keeps its CPU, so
``enter``'s ``acquire_cpu`` does nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.fast.cosim.frames import ACQUIRE_CPU, LOCK
from epcsim.fast.cosim.request import RQ_LOCK, RQ_RUN
from epcsim.fast.cosim.state import T_PC, T_RQ, T_RQ_A
from epcsim.fast.cosim.transfer_rq_in import RUN0_WAITS
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.thread_pc import P_LOCKED, P_TOP
from epcsim.kernel.fault import sgx_vma_fault
from epcsim.user.thread import CoreTakesOver, EnclaveThread

if TYPE_CHECKING:
    from epcsim.fast.driver.stream_group import GroupSession

_ACCESS_STREAM = EnclaveThread.access_stream.__code__
_ENTER = EnclaveThread.enter.__code__
_ENSURE_TCS = EnclaveThread._ensure_tcs.__code__
_FAULT_OR_PARK = EnclaveThread._fault_or_park.__code__
_FAULT = EnclaveThread._fault.__code__
_VMA_FAULT = sgx_vma_fault.__code__
RUN0_WAITS.add(_ENTER)  # its ``acquire_cpu`` is the machine's at ``P_TOP`` (``read``)

#: the points mapped (module docstring's table), by name: ``StreamCore.mid_joins`` counts
#: each (the tests' guard)
KINDS = ("top", "lock", "tcs_lock")

#: what ``read`` answers: ``(kind, pc, T_RQ, T_RQ_A, page index, t0, i, done)``
Mid = tuple[str, int, int, int, int, int, int, int]


def _sub(gen: Any, code: Any) -> Any:
    """``gen``'s ``yield from`` target if it runs ``code``, else None."""
    sub = gen.gi_yieldfrom
    return sub if sub is not None and getattr(sub, "gi_code", None) is code else None


def read(sess: GroupSession, r: int, proc: Any) -> Mid | None:
    """Where thread row ``r``'s process ``proc`` waits inside its fault, as the machine's
    row (module docstring's table), or None where it is not mapped."""
    gen = proc._generator
    while gen is not None and getattr(gen, "gi_code", None) is not _ACCESS_STREAM:
        gen = getattr(gen, "gi_yieldfrom", None)
    if gen is None:
        return None
    loc = gen.gi_frame.f_locals
    if loc.get("hook") is not sess.streams[r] or loc.get("rest") is not None:
        return None
    tcs = False
    fault = _sub(gen, _FAULT)
    if fault is None and (enter := _sub(gen, _ENTER)) is not None and _sub(enter, ACQUIRE_CPU):
        # ``enter()``'s ``acquire_cpu`` at the loop top (a stream's start, off its CPU)
        return "top", P_TOP, RQ_RUN, 0, -1, 0, int(loc["i"]), int(loc["out"].done)
    if fault is None:
        enter = _sub(gen, _ENTER)
        ensure = None if enter is None else _sub(enter, _ENSURE_TCS)
        fop = None if ensure is None else _sub(ensure, _FAULT_OR_PARK)
        fault = None if fop is None else _sub(fop, _FAULT)
        tcs = True
    if fault is None:
        return None
    floc = fault.gi_frame.f_locals
    if floc["charged"]:
        return None
    thread: Any = sess.threads[r]  # an EnclaveThread (``group_regime``)
    encl = thread.encl
    idx = int(floc["index"])
    if tcs and idx != thread.tcs_index:
        return None
    vma = int(encl.vma_prot[idx])
    if encl.dead or not encl.present[idx] or (int(encl.max_prot[idx]) & vma) != vma:
        return None
    vf = _sub(fault, _VMA_FAULT)
    if vf is None or _sub(vf, LOCK) is None:
        return None  # the fault's entry, under the lock, its return: not met, not mapped
    mx = vf.gi_yieldfrom.gi_frame.f_locals["mutex"]
    if mx is not encl.lock or mx not in sess.sv.mutexes:
        return None
    kind, pc, rq, rq_a = "lock", P_LOCKED, RQ_LOCK, sess.sv.mutexes.index(mx)
    return (
        ("tcs_" if tcs else "") + kind,
        pc,
        rq,
        rq_a,
        idx,
        int(floc["t0"]),
        int(loc["i"]),
        int(loc["out"].done),
    )


def find(sess: GroupSession) -> dict[int, tuple[Any, Mid]] | None:
    """Every thread row not joined, read where its process waits (``read``): each one's
    ``(process, Mid)``, or None if one is not mapped. Changes nothing."""
    sv = sess.sv
    mids: dict[int, tuple[Any, Mid]] = {}
    for r in range(sess.kr):
        if sv.own[r] is not None:
            continue
        proc = sess.streams[r].proc
        if proc is None or not proc.is_alive or proc._target is None:
            return None
        mid = read(sess, r, proc)
        if mid is None:
            return None
        mids[r] = (proc, mid)
    return mids


def offer(sess: GroupSession, mids: dict[int, tuple[Any, Mid]] | None) -> None:
    """``find``'s rows set as the machine's, their processes offered to ``to_core`` with
    the chain below ``access_stream`` as their serving generators (module docstring)."""
    if not mids:
        return
    sv = sess.sv
    co = sess.co
    for r, (proc, (kind, pc, rq, rq_a, idx, t0, i, done)) in mids.items():
        tc = sess.rows[r].tc
        tc[T.TC_I] = tc[T.TC_I0] = i
        tc[T.TC_DONE] = done
        tc[T.TC_HOOK] = 1
        tc[T.TC_IDX] = idx
        tc[T.TC_T0] = t0
        tc[T.TC_TCS_RETRY] = int(kind.startswith("tcs_"))
        co.tasks[r, T_PC] = pc
        co.tasks[r, T_RQ] = rq
        co.tasks[r, T_RQ_A] = rq_a
        sess.ends[r] = None
        sv.procs[r] = proc
        sv.begun[r] = True
        # ``to_core`` reads its wait in this chain, ``detach`` closes it (module docstring)
        gen = proc._generator
        while gen.gi_code is not _ACCESS_STREAM:
            gen = gen.gi_yieldfrom
        sv.own[r] = gen.gi_yieldfrom


def undo(sess: GroupSession, mids: dict[int, tuple[Any, Mid]] | None) -> None:
    """``to_core`` refused after ``offer``: the rows given back, unjoined (nothing moved)."""
    if not mids:
        return
    sv = sess.sv
    for r in mids:
        sv.own[r] = None
        sv.procs[r] = None
        sv.begun[r] = False


def retire(sess: GroupSession, mids: dict[int, tuple[Any, Mid]] | None) -> None:
    """After ``to_core`` took the rows: each process's closed frames unwound by
    ``CoreTakesOver``, its ``access_stream`` parked in ``join_mid`` (module docstring)."""
    if not mids:
        return
    counts = sess.owner.mid_joins
    for r, (proc, mid) in mids.items():
        rest = sess.join_mid(sess.streams[r], r, mid[7], proc)
        if proc._generator.throw(CoreTakesOver(rest)) is not None:
            raise RuntimeError(f"thread row {r}: its process did not park at its loop top")
        counts[mid[0]] = counts.get(mid[0], 0) + 1


__all__ = ["KINDS", "find", "offer", "read", "retire", "undo"]
