"""Several enclave threads of one enclave on the compiled core from the user path:
``Enclave.start``'s threads under ``System.run()`` and ``run(until=)`` slices, each thread
on its own CPU (threads + ksgxd <= CPUs; issue 9 row 10, PATHS.md "Several threads on the
core", N6; session ``n6user``).

What it is: ``GroupSession``, a ``stream_ksgxd.Session`` whose thread rows are every
running thread of the enclave whose stream the core accepted (``StreamCore.streams``),
sized at its begin (``group_regime``, at a thread's loop top) and fixed while it lives
(``tstate.stack``: one ``TState`` the machines take, each row's views for Python), ksgxd at
row ``kr`` past them. The session begins served (``mode="simpy"``): nothing moves at its
begin. Each thread *joins* at its own loop top (``join``, from ``CoreStream.run``): its row
set at ``P_TOP`` (``TC_I``, ``TC_DONE``, ``TC_HOOK`` 1), then ``Served.serve_own`` - its own
process drives its serving generator, one request at a time, no process and no eid of its
own (session ``nthreads2``). ksgxd is taken into row ``kr`` at K0's check (``take_ksgxd``,
from ``StreamCore.ksgxd_at_check``), or, asleep in its generator at a move, its wait is put
aside for the core's sleep (``parked``, as ``Session.begin`` does for one thread).

The move (``move``, ``Served.move``, session ``n6``; ``group_move.py`` since session
``many64``): tried where a served step of a joined
thread ends, inside that thread's trampoline - every thread joined, ksgxd served or asleep,
the regime's checks - ``to_core`` moves every row, and that process drives the core inline
(the others parked) until it stops: a ``run(until=)`` deadline (the common case: the
session stays, every machine goes on served and the next slice's first served step moves
them back - ``deadline``'s "Left" item 1, without serving the threads to their loop tops),
or a machine's stop. Then ``to_simpy(inline=driver)``: the driver goes on with its serving
generator, every other thread's process is re-pointed (``transfer_to_simpy._repoint``),
and the hand-back's task's resumption goes on now - a thread's machine stopping again at
the same point, served (``GroupSession.step``), where ``on_stop`` (``_thread_stopped``)
runs a fault's rest in Python or records the loop-top stop, and its serving generator
returns: its own process's Python code (``access_stream``'s loop) goes on at once
(``transfer_to_simpy._stopped_now``, N6 item 2's last part); ksgxd's as for one thread
(``Session.on_stop``: its generator from the page). A thread whose stream ends (or stops
with a #PF or SIGBUS) leaves for good: the session *dissolves* (``dissolve``) - no more
moves, every other joined thread served to its next loop top (``TC_HOOK`` 2) and back to
its generator, ksgxd's machine stopping at its next K0 (``_worth_serving`` no longer
counts the threads as the session's) - and a new session forms from the threads still
running at a later loop top.

Decisions (session ``n6user``, 2026-11-27):

* *Where it begins*: ``CoreStream.run`` of a plain stream whose one-thread regime
  (``_ready``) fails, no session live, and every task holding a CPU - or asleep on a
  ``FifoMutex``'s wait list, or with that mutex waiting for a CPU - is ksgxd or a thread of
  the enclave with a live plain stream on the core (at least two, each with its own CPU
  and ksgxd one more, or more with the FIFO mutex: ``group_regime.py``). While two such
  streams are live, ksgxd's machine is not served for a one-thread session
  (``ksgxd_serving._worth_serving``): it goes back to its generator at K0 and the group
  takes it there. A thread not running at that instant is not in
  the session; while it holds a CPU later the moves are refused and the session dissolves.
* *Refused moves*: a move refused ``REFUSED`` times in a row with every thread joined
  (an observer's event in SimPy's queue, the scenario runner's sampler: ``to_core``
  refuses any event it does not know) dissolves the session and no new one begins for the
  next ``StreamCore.group_backoff`` loop tops (doubled at each such dissolution, reset by
  a move): a served step costs ~4x a generator's (``ksgxd_serving._worth_serving``), so a
  session the core never takes must not live long. A cost choice; results are exact
  either way. So too (session ``cmany``) ``UNJOINED`` x threads attempts in a row with a
  thread not joined: with more threads than CPUs in a NOPAGE flood a thread reaches its
  loop top only once its fault is done, and row 10's shape with the FIFO mutex (64
  threads on 16 CPUs) served its joined threads for whole slices with no move (12 slices
  in 8 s of CPU against 228 in Python); such a session waits ``UNJOINED_WAIT`` loop tops
  at least before the next (a formation stacks every thread's stream).
* *The served thread steps* take every row's ``TC_ENTERED`` and every thread's LP bit
  (``K_INSIDE``) from Python before each step and fold every row after it
  (``thread_fold.fold_threads``), since the other threads run between two steps; the
  thread's services get its row's views (``SVC_UNSEAL``/``SVC_TRUNCATE`` read its ``tc``),
  a full latency buffer row 0's (the shared count).
* *One enclave* (``len(sgx.enclaves) == 1``): two enclaves with several threads are left.
* *More threads than CPUs* (threads + ksgxd > CPUs, session ``cmany``; Linux's mutex
  since session ``linuxmx``): ``clk[C_MANY]`` set. The moves carry what such a run has
  with it - the tasks waiting for a CPU (``cosim/transfer_rq_in.py``), an interrupted
  user step (``cosim/transfer_intr.py``; served, ``run_user``'s answer tells the machine:
  ``served.user_ran``), the FIFO mutex's sleepers (session ``fifo``), and Linux's mutex's
  sleeping half at each phase the core's ``C_MANY`` reaches (asleep on the wait list,
  woken, ``mutex_wakeup``'s run, the first waiter's spin, after either ``_schedule``:
  ``cosim/transfer_lsleep.py``), so ``to_simpy`` moves them back at any deadline and
  the CPU bound is gone for both mutexes (PATHS.md, "What is built: ... (session
  ``linuxmx``)").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.engine.machine import Gen
from epcsim.fast.cosim.state import (
    C_HB,
    C_HB_NOW,
    C_HB_TASK,
    C_MANY,
    T_PC,
    T_RQ,
)
from epcsim.fast.driver import group_move
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import lp_mask
from epcsim.fast.driver.core_regime import _static_regime
from epcsim.fast.driver.engine_state import take_engine
from epcsim.fast.driver.group_move import REFUSED, UNJOINED
from epcsim.fast.driver.ksgxd_serving import _served_regime, _worth_serving
from epcsim.fast.driver.slots import (
    refresh_slots,
    serve_thread_slots,
    take_slots,
)
from epcsim.fast.driver.stream_ksgxd import Session
from epcsim.fast.driver.stream_stops import IN_FAULT, _fault_rest, resumable
from epcsim.fast.driver.thread import thread_resume
from epcsim.fast.driver.thread_bridge import _thread_state, entered
from epcsim.fast.driver.thread_fold import fold_threads
from epcsim.fast.driver.thread_pc import P_LOCKED, P_NAMES, P_TOP
from epcsim.user.thread import STREAM_ON, STREAM_PF, STREAM_SIGBUS

if TYPE_CHECKING:
    from epcsim.fast.driver.core_stream import CoreStream
    from epcsim.fast.driver.stream import StreamCore

#: the event heap's rows: each task's own event, the until event, a spinner's pokes
HEAP_ROWS = 1024
#: ... with more threads than CPUs: every spinner's re-check while a task waits for a CPU
#: arms a poke at the next tick, which stays queued until due (``threads_bridge.HEAP_ROWS``
#: says why; a full heap is a void run)
HEAP_ROWS_MANY = 1 << 18


class GroupSession(Session):
    """Several threads of one enclave and ksgxd, served and moved onto the core together
    (module docstring)."""

    def __init__(self, owner: StreamCore, encl: Any, streams: list[CoreStream]):
        system = owner.system
        sgx = system.sgx
        kt_ = sgx.ksgxd_task
        assert kt_ is not None
        threads = [s.thread for s in streams]
        trace = encl.lock.trace is not None
        #: more threads than CPUs (threads + ksgxd > CPUs: module docstring "More threads
        #: than CPUs")
        self.many = len(threads) + 1 > system.machine.nr_cpus
        rows = HEAP_ROWS_MANY if self.many else HEAP_ROWS
        co = take_engine(system, [*threads, kt_], encl.lock, trace, runq=True, heap_capacity=rows)
        co.tasks[len(threads), T_PC] = KM.P_CHECK  # ksgxd's row, until K0 or a park
        co.clk[C_MANY] = int(self.many)
        kt = owner.kernel_slots([encl])
        super().__init__(owner, [encl], threads, co, kt, sgx.high_pages, [], mode="simpy")
        #: the session's threads (rows ``0 .. kr - 1``) and their streams
        self.threads = threads
        self.streams = list(streams)
        self.index = {th: r for r, th in enumerate(threads)}
        #: the threads the session counts as its own (``_worth_serving``); empty once
        #: dissolved
        self.members: frozenset[Any] = frozenset(threads)
        self.tsx, self.rows = T.stack(
            [_thread_state(system, s.thread, s.pages, s.writes, False, encl=encl) for s in streams]
        )
        self.ts = self.tsx
        #: each row's stop ``(kstate.KB_* code, user.thread.STREAM_*)`` (``_thread_stopped``)
        self.ends: list[tuple[int, int] | None] = [None] * self.kr
        #: a thread left for good, or the session gave up: no more moves (``dissolve``)
        self.left = False
        #: moves refused in a row with every thread joined
        self.refused = 0
        #: move attempts in a row with a thread not joined (``UNJOINED``)
        self.unjoined = 0
        self.sv.move = self.move
        owner.group_sessions += 1

    # -- joining and leaving ------------------------------------------------------------------
    def join(self, cs: CoreStream, i: int, done: int) -> Gen:
        """``CoreStream.run`` of a thread of the session at its loop top: its row from
        ``P_TOP`` with index ``i`` (``done`` accesses), served in its own process until its
        machine stops where the generator goes on (``_thread_stopped``); returns ``run``'s
        ``(i, done, end)``, or None (not the session's: the generator runs the iteration)."""
        r = self.index.get(cs.thread)
        sv = self.sv
        if r is None or self.left or sv.own[r] is not None or self.streams[r] is not cs:
            return None
        tc = self.rows[r].tc
        tc[T.TC_I] = tc[T.TC_I0] = i
        tc[T.TC_DONE] = done
        tc[T.TC_HOOK] = 1
        self.co.tasks[r, T_PC] = P_TOP
        self.co.tasks[r, T_RQ] = 0
        self.ends[r] = None
        yield from sv.serve_own(r)
        return self._joined_end(cs, r, done)

    def join_mid(self, cs: CoreStream, r: int, done: int, proc: Any) -> Gen:
        """``join`` for thread row ``r`` taken onto the core mid-fault by a group move
        (``group_join.py``): its process, ``proc``, goes on parked in ``serve_own`` as a
        joined thread's after a move, from its ``access_stream`` loop top (``CoreTakesOver``),
        ``done`` its accesses then; returns ``run``'s ``(i, done, end)``."""
        yield from self.sv.serve_own(r, parked=proc)
        return self._joined_end(cs, r, done)

    def _joined_end(self, cs: CoreStream, r: int, done: int) -> tuple[int, int, int]:
        """A joined thread's serving generator returned (its machine stopped where its
        Python code goes on): its row freed, ``run``'s ``(i, done, end)``."""
        sv = self.sv
        tc = self.rows[r].tc
        sv.procs[r] = None
        sv.begun[r] = False
        stop = self.ends[r]
        self.ends[r] = None
        new_i, new_done, end = cs._served_end(stop, tc, done, "a thread of the group")
        if end != STREAM_ON or new_i >= int(tc[T.TC_N]):
            self.dissolve()  # its stream is over: the session's rows are not all live
        return new_i, new_done, end

    def dissolve(self) -> None:
        """No more moves (module docstring): each joined thread served to its next loop top,
        ksgxd's machine to its next K0; the owner's session from then on ksgxd's alone
        (None once its machine has gone back to its generator)."""
        if self.left:
            return
        self.left = True
        self.members = frozenset()
        for row in self.rows:
            row.tc[T.TC_HOOK] = 2
        ksgxd_gone = self.sv.procs[self.kr] is None or self.ksgxd_out
        if ksgxd_gone and self.owner.session is self:
            self.owner.session = None

    def adopt(self, thread: Any, encl: Any) -> bool:
        """Never taken over by one stream (``join`` is the way in)."""
        return False

    # -- ksgxd ----------------------------------------------------------------------------------
    def take_ksgxd(self, high: int) -> Gen | None:
        """``StreamCore.ksgxd_at_check`` with this session live: ksgxd's machine into row
        ``kr`` from K0's check, served inside ksgxd's own process, when no machine of it
        is served here already and a batch is due (the caller checked its process)."""
        sv = self.sv
        if self.left or sv.mode != "simpy":
            return None
        if sv.procs[self.kr] is not None and not self.ksgxd_out:
            return None
        system = self.system
        if not _served_regime(system, self.encls) or not _static_regime(system):
            return None
        if not _worth_serving(system):
            # a task not the session's on a CPU: the machine would stop at its first K0
            # check (``K_TOP_STOP``) and its generator come back here at the same instant,
            # for ever (found by row 10's shape with 16 threads on 16 CPUs: a session of
            # the 14 threads running at its begin)
            return None
        self.high = high
        self.ksgxd_out = False
        self.parked = []
        self.co.tasks[self.kr, T_PC] = KM.P_CHECK
        self.co.tasks[self.kr, T_RQ] = 0
        self.owner.k0_entries += 1
        return self.serve_at_check()

    def on_stop(self, t: int) -> Gen:
        """``Session.on_stop``, the session kept as the owner's while it lives (ksgxd's
        machine back to its generator leaves row ``kr`` for a later K0 or park)."""
        rest = super().on_stop(t)
        if t == self.kr and not self.left:
            self.owner.session = self
        return rest

    def _asleep(self) -> Gen:
        """ksgxd's served machine asleep at K0, entered from its generator asleep (a park):
        that generator's wait back on ``ksgxd_waitq``, the CPU released, this process
        waiting for ever; row ``kr`` free for the next park or K0."""
        sgx = self.system.sgx
        task = sgx.ksgxd_task
        assert task is not None
        sgx.ksgxd_waitq._waiters.extend(self.parked)
        self.parked = []
        task.release_cpu()
        self.sv.procs[self.kr] = None
        if self.left and self.owner.session is self:
            self.owner.session = None
        yield self.system.machine.env.event()  # never triggered

    # -- served steps ---------------------------------------------------------------------------
    def step(self, t: int) -> int:
        """One served step of row ``t``: ksgxd's as ``Session.step``; a thread's with every
        row's entry state and LP bit taken from Python before it and every row folded after
        it (module docstring, "The served thread steps")."""
        if t == self.kr:
            return super().step(t)
        system = self.system
        encls = self.encls
        hw = system.cpu
        encl = encls[0]
        if encl.secs_epc >= 0 and encl.secs_epc in hw.secs_at:
            self.secss[0] = hw.secs_at[encl.secs_epc]
        self.kt, self.nblk = refresh_slots(system, encls, self.kt, self.nblk)
        take_slots(system, encls, self.secss, self.kt)
        ks = self.kt[0]
        kc = ks.kc
        kc[K.K_HIGH] = self.high
        kc[K.K_THREAD_T] = 0
        kc[K.K_NTHREADS] = self.kr
        kc[K.K_THREAD_SLOT] = 0
        ks.ke[K.K_INSIDE] = self._take_rows()
        tsx = self.tsx
        rows = self.rows
        co = self.co
        if self._tmachine is None:
            self._tmachine = self.owner.machine(thread_resume, co, self.kt, tsx, t)
        counts: dict[str, int] = {}
        while True:
            r = int(self._tmachine(co, self.kt, tsx, t))
            if r != KM.R_SVC:
                break
            row = rows[0] if int(self.kt[0].kc[K.K_SVC]) == K.SVC_LAT_FULL else rows[t]
            self.kt = serve_thread_slots(system, encls, self.kt, row, 0, counts)
        self._fold_rows(self.kt[0])
        self.fold_pins()
        return r

    def _take_rows(self) -> int:
        """Every row's ``TC_ENTERED`` from its thread, and ``K_INSIDE``: the LPs inside the
        enclave (``take_small``'s; ETRACK copies them all into the tracking set)."""
        # the stacked rows' column at once (``tstate.stack``: views of ``tsx.tc``)
        self.tsx.tc.reshape(self.kr, T.N_TC)[:, T.TC_ENTERED] = [entered(th) for th in self.threads]
        secs = self.secss[0]
        assert secs is not None
        return lp_mask(secs.inside)

    def _fold_rows(self, ks: Any, others: bool = True) -> None:
        """``fold_threads`` of the session's rows, the LPs of threads that are not the
        session's kept as they are: ``fold_threads`` rebuilds the enclave's inside set
        from the rows' threads alone, and a thread outside the session may be inside
        while the session's threads are served (a dissolved session's, served to their
        loop tops while a new one runs: found by the drawn programs, FIFO mutex, a thread
        ERESUMEd for nothing). ``others`` False after a move's drive: the move wanted no LP
        but the session's threads' (``_movable``) and the core ran only theirs, so every LP
        is the rows' - a thread that left its CPU on the core (``C_MANY``) is not another's
        (session ``cmany``: its LP was kept, inside, with no thread on it)."""
        system = self.system
        hw = system.cpu
        encl = self.encls[0]
        secs = self.secss[0]
        assert secs is not None
        mine = {th.cpu for th in self.threads if th.cpu is not None}
        keep = [
            (c, hw.lp_tcs[c])
            for c in range(len(hw.lp_eid))
            if others and hw.lp_eid[c] == secs.eid and c not in mine
        ]
        fold_threads(system, self.threads, encl, secs, ks, self.rows, self.tsx)
        for c, tcs in keep:
            hw.lp_eid[c] = secs.eid
            hw.lp_tcs[c] = tcs
            secs.inside.add(c)
            if tcs >= 0:
                secs.busy_tcs.add(tcs)

    def _thread_stopped(self, t: int) -> Gen:
        """Row ``t``'s machine stopped, served (or stopped on the core and served again to
        the same stop, ``to_simpy``'s resumption of the hand-back's task): in a fault under
        ``encl->lock`` the fault's rest in Python, here, in the thread's process; else a
        stop at its loop top the generator goes on from. Recorded in ``ends[t]``."""
        co = self.co
        code = int(self.kt[0].kc[K.K_HB]) if int(co.clk[C_HB]) >= 100 else -1
        pc = int(co.tasks[t, T_PC])
        co.clk[C_HB] = co.clk[C_HB_TASK] = co.clk[C_HB_NOW] = 0
        ts = self.rows[t]
        if code in IN_FAULT and pc == P_LOCKED:
            owner = self.owner
            owner.fault_stops[code] = owner.fault_stops.get(code, 0) + 1
            # an access's rest, or the entry's TCS fault's (``tc[TC_TCS_RETRY]``: its SIGBUS
            # is the entry's, at the TCS's address), as the one-thread session's (session
            # ``tidy``: the group's went on as an access's, SIGBUS at the access's page)
            ok = yield from _fault_rest(self.threads[t], ts.tc)
            self.ends[t] = (code, STREAM_ON if ok else STREAM_SIGBUS)
            return
        if not resumable(code, pc):
            raise RuntimeError(
                f"fast_core: a thread of the group stopped at {K.KB_NAMES[max(code, 0)]} "
                f"({P_NAMES[pc]})"
            )
        self.ends[t] = (code, STREAM_PF if code == K.KB_PF else STREAM_ON)

    # -- the move (``group_move.py``) -------------------------------------------------------
    def move(self, t: int) -> tuple[Any, Any] | None:
        """``Served.move`` after a served step of thread row ``t``: ``group_move.move``."""
        return group_move.move(self, t)


__all__ = ["REFUSED", "UNJOINED", "GroupSession"]
