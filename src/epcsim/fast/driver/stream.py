"""``EnclaveThread.access_stream`` on the compiled core, from its loop top (issue 9; PATHS.md,
"What is built for the stream" and "The pair from the user path").

``access_stream`` asks ``StreamCore.stream(thread, pages, writes)`` once per stream (the
structural checks) and, at every loop top, ``yield from CoreStream.run(i, done)``, from
inside the thread's generator while SimPy processes the thread's own event. When the
dynamic regime holds, the thread's state machine (``thread.py``) and ksgxd's
(``ksgxd.py``) run together on the core from there - the thread at T0 with index ``i``
on its CPU, inside or AEXed as the Python thread is; ksgxd asleep on ``ksgxd_waitq`` or
wherever its machine was left - T4 waking ksgxd on the core, until the thread is at a loop
top the core leaves to Python (``hook_stop.hook_stop``: the stream's end, a mutex trace
about to fill) or at a stop the generator goes on from (the TCS fault, a #PF to the
runtime, SIGBUS, EAUG: each decided before the iteration's first step). The thread's
state is folded back and the generator goes on at the core's clock with the new index.

This module is the owner, ``StreamCore`` (one per ``System``): whether the core engages
(warmth, ``auto``), the structural checks that make a call (``stream``, ``eaccept``,
``trim``, ``add``), ksgxd's entry at K0's check and the counts; the compiled entry points
and the kernel's ``KState`` kept across entries are its mixin ``stream_entry.EntryPoints``
(split from here by session ``tidy2``). One call's continuation - the dynamic regime, the
entry, the stops and what goes on after each - is ``core_stream.CoreStream`` (its module
docstring has the pair's hand-offs and the thread's stops); ksgxd's machine between calls
is ``stream_ksgxd.Session``.

The pair (2026-11-26, issue 9 session ``upair``; the rest of its decisions are
``core_stream.py``'s):

* *ksgxd in its Python generator, awake* (2026-11-26, issue 9 session ``kmove2``): its
  generator cannot be rebuilt in the middle of ``sgx_reclaim_pages``, so it hands itself
  over where no rebuilding is needed: at K0's check (``Sgx._ksgxd``, before ``if
  sgx_should_reclaim(high)``), ``StreamCore.ksgxd_at_check`` gives it a generator that
  serves its machine from ``ksgxd.P_CHECK`` *inside ksgxd's own process* (``yield
  from``: a new process would take an eid the reference does not), when a batch is due
  and the machine's regime holds (``_served_regime``: the session's enclaves built, nobody
  waiting for a CPU; ``_static_regime``; one EPC node; the process running is ksgxd's).
  The hook then finds a session to move (``to_core``) at the thread's next loop top.
  Where the machine hands ksgxd back - asleep at K0, ``KB_TOP``, ``KB_SECS`` - that
  generator *returns* what ``Sgx._ksgxd``'s ``rest`` returns (``Session.on_stop``) and the
  loop goes on (no recursion: the generator chain stays three deep); once moved to the
  core and back, ksgxd's process is ``Served``'s and the same continuations are the
  ``moved=`` form. Its sleep is its generator's: served, the generator sleeps itself
  (the machine's K0 decision and the generator's are the same instant and state); asleep
  on the core when a call ends, a generator is built at that point of ``Sgx._ksgxd``
  (``Session.asleep_on_core``); either way the next wake-up comes back to K0's check.
  Decisions: (1) *which thread*: a session entered at K0 belongs to no thread - task 0 is
  a placeholder ``Task`` that never runs - and ``CoreStream.run`` takes any session over
  for its thread while no thread is served in it (``Session.adopt``): the thread is
  decided where it is known, at the stream's loop top, not guessed at K0; (2) *the core's
  arrays at the hand-off*: a session entered at K0 starts served, so only the machine's
  request rows and its ``KState`` (taken and folded around each step) are used until
  ``to_core``, which writes every other row from SimPy's objects wherever the thread is
  then (faulting in Python, spinning, holding ``encl->lock``: ``to_core`` refuses what
  the core's regime lacks); the mutex trace buffer is fitted at that move
  (``Session.fit_trace``: a session may predate the trace); (3) *outside any stream*
  (``System.run`` with no thread, a thread the hook refuses) the machine runs served
  until it sleeps or Python leaves its regime: exact, but a served step costs about 4x
  the generator's (it takes and folds the kernel's small arrays); so while more than one
  task besides ksgxd holds a CPU (no stream can then take the session: ``_ready``) the
  hook declines and a served machine stops at its next K0 (``_worth_serving``, a cost
  choice: with two started threads 1.3 ms of host CPU per EWB without it, 0.3 with it
  and without the option); before ``init`` (the EADDs) the hook declines too.
* *The counts* (``StreamCore``: attributes, not ``stats()`` counters, which must stay
  equal between engines): ``accesses`` (``System.fast_core_accesses``), ``ksgxd_pages``
  written back on the core, ``served_steps`` of ksgxd's machine under SimPy,
  ``secs_stops``, ``top_stops``, ``entries``.
* *The entry's state kept* (PATHS.md "Next" item 2): the ``KState`` is built once per
  enclave and SECS (``stream_entry.EntryPoints.kernel_slots``) and brought up to date at
  each entry as around a served step; the core's arrays live as long as the pair does (a
  session). With the pair there is about one entry per ``access_pages`` call, so the
  entry's cost no longer matters to rows 1 and 2.

Decisions kept from session ``integ`` (the others: ``core_stream.py``):

* *On where it pays, by default* (session ``fdefault``, 2026-11-26; was *off by default*):
  ``System(fast_core="auto")``, the default, engages the core for a stream when its
  machines are warm or the stream is long enough to repay their cold compile
  (``driver/auto.py``, which has the derivation); ``True`` always, ``False`` never (fast
  engine only). The core being exact, the choice changes the host time only.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.machine import Gen, Task
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.cosim.served import Served
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.auto import auto_engages, machines_warm
from epcsim.fast.driver.core_regime import _static_regime, flood_regime
from epcsim.fast.driver.core_stream import CoreStream
from epcsim.fast.driver.ksgxd_serving import _served_regime, _worth_serving
from epcsim.fast.driver.stream_entry import EntryPoints
from epcsim.fast.driver.stream_ksgxd import Session
from epcsim.kernel.main import Sgx
from epcsim.user.thread import EnclaveThread

if TYPE_CHECKING:
    from epcsim.system import System

#: pages of the all-false write mask ``StreamCore._writes`` keeps between calls (64 KiB)
WRITES_KEPT = 1 << 16


def _ksgxds_process(proc: Any, caller: Any) -> bool:
    """Whether ``caller`` (the frame of ``Sgx._ksgxd`` at K0's check) runs in ksgxd's own
    process ``proc``: the one ``start_ksgxd`` made, whose generator is ``Sgx._ksgxd``, or,
    once ksgxd has been moved to the core and back, the ``Served`` process serving its
    task row, whose ``serve`` goes on as ``Sgx._ksgxd(moved=...)`` (``Session.on_stop``).
    Read from the frames, not from ``gi_yieldfrom``, which a running generator does not
    show: checked that way, a ksgxd moved once never entered its machine at K0 again
    (session ``addcore``: after a build on the core, the demo's FIFO run without direct
    reclaim kept its whole trim in Python, 0.4 -> 8 s)."""
    gen = proc._generator
    if gen.gi_code is Served.serve.__code__:
        # a session's ``Served`` process of ksgxd's row (``Session.kr``, past the thread
        # rows; PATHS.md N6 item 3)
        f = gen.gi_frame
        if f is None:
            return False
        sv = f.f_locals.get("self")
        sess = getattr(getattr(sv, "step", None), "__self__", None)
        if not isinstance(sess, Session) or f.f_locals.get("t") != sess.kr:
            return False
    elif gen.gi_code is not Sgx._ksgxd.__code__:
        return False
    if caller.f_code is not Sgx._ksgxd.__code__:
        return False
    f = caller
    while f is not None:  # the caller's generator chain up to the process's
        if f is gen.gi_frame:
            return True
        f = f.f_back
    return False


def _caller_of(task: Task, encl: Any) -> bool:
    """Whether ``task`` may make an ioctl loop's call on ``encl`` on the core (``trim``,
    ``add``): one of its enclave threads, or a task of a process that maps it (the ioctl's
    task, ``Enclave.ioctl``)."""
    if isinstance(task, EnclaveThread):
        return task.encl is encl
    return any(task in mm.tasks for mm in encl.mm_list)


class StreamCore(EntryPoints):
    """One per ``System(fast_core=True or "auto")``: hands out a ``CoreStream`` per stream.
    ``auto``: engaged only where it pays (``driver/auto.py``): warm machines, or since a
    stream long enough to repay their compile; the choice changes no result."""

    def __init__(self, system: System, auto: bool = False):
        self.system = system
        #: ``fast_core="auto"``: whether to engage is decided per stream (``stream``)
        self.auto = auto
        #: the core may run (always with ``fast_core=True``; with "auto", once warm or
        #: once a stream engaged it: its compile is then paid)
        self.on = not auto
        #: streams the core accepted (``stream``) whose ``access_stream`` has not returned
        #: (``CoreStream.close``). With "auto", ksgxd goes to its machine at K0's check, and a
        #: served machine goes on, only while one is live (``ksgxd_serving._worth_serving``):
        #: a served step costs ~4x the generator's, repaid only by a stream taking the
        #: session onto the core (decision, session ``fdland``: with the cache warm, ksgxd
        #: entered at K0 with no stream made the demo's seed run ~3x slower, 11-12 s of CPU
        #: against 4 s). A stream left unclosed (its generator dropped mid-stream) only
        #: keeps that cost choice as ``fast_core=True`` makes it, never a result.
        self.live = 0
        #: the stream accesses done on the core (the module docstring, "The count")
        self.accesses = 0
        #: core calls made (entries)
        self.entries = 0
        #: pages the EACCEPT loop (``workloads.edmm.eaccept_range``) accepted on the core
        self.eaccepts = 0
        #: the EACCEPT loop's core calls, and those that stopped at their first loop top
        #: on the TCS (``KB_TCS``: ksgxd reclaimed the TCS, so the thread's ERESUME faults
        #: it back in Python's ``enter()``) having done no page. Under heavy reclaim every
        #: call can end so, and the loop then runs in Python: the same results, no core
        #: (``tests/fast/test_eaccept_core.py``'s guard allows exactly that case). Since
        #: session ``tcsuser`` the machine runs an explicit TCS's fault itself: only the
        #: implicit TCS's (and the TCS's EAUG/SIGBUS decisions) stop so
        self.eaccept_entries = 0
        self.eaccept_tcs_stops = 0
        #: ``_ensure_tcs``' faults on the TCS the thread's machine ran (``vma_fault.tcs_fault``,
        #: ``tc[TC_TCS_FAULTS]``; session ``tcsuser``: before, they handed back, ``KB_TCS``)
        self.tcs_faults = 0
        #: pages MODIFY_TYPES' loop (``kernel.ioctl_sgx2._page_loop``) changed on the core
        self.trims = 0
        #: pages REMOVE_PAGES' loop removed on the core (session ``ioctlcore``)
        self.removes = 0
        #: ``encl->lock``'s contended acquisitions on the core (a spin, or with
        #: ``FifoMutex`` a sleep on its wait list; session ``fifo``: its tests' guard)
        self.lock_contended = 0
        #: context switches on the core (``cosim/runqueue.py``: a task given the CPU another
        #: left or yielded; with one CPU the thread and ksgxd share it, session ``onecpu2``)
        self.core_switches = 0
        #: pages ADD_PAGES' loop (``kernel.ioctl_add.sgx_ioc_enclave_add_pages``) added on the
        #: core (session ``addcore``)
        self.adds = 0
        #: the ADD_PAGES loop's stops at a page's VA page whose allocation found the free
        #: list empty (``KB_GROW``: the page's rest in Python, session ``addrun``)
        self.grow_stops = 0
        #: the VA pages ADD_PAGES' loop added on the core (``sgx_encl_grow``'s EPA and
        #: ``sgx_encl_add_va_page``: ``SVC_EPA``, ``SVC_VA_ADD``; session ``addrun``)
        self.va_adds = 0
        #: the reclaim batches those VA pages' allocations ran on the core (``TC_VA_DIRECT``)
        self.va_reclaims = 0
        #: ADD_PAGES loops on the core whose ioctl has not returned: the enclave is being
        #: built, not initialized, and the core's regime takes it (``core_regime``), ksgxd's
        #: machine is served during the ioctl (``ksgxd_serving._worth_serving``)
        self.add_live = 0
        #: the ioctl loops' calls the machine itself ended with an error, by ``(ret,
        #: tstate.CAUSE_*)``: M2's -EAGAIN at the page's load, R3's -EBUSY (cause 0)
        #: (``CoreStream._take_ret``; what tests/fast/test_remove_ebusy_core.py checks)
        self.ioctl_rets: dict[tuple[int, int], int] = {}
        #: MODIFY_TYPES loops on the core whose ``_page_loop`` has not returned: ksgxd's
        #: machine is served during their ioctl (``ksgxd_serving._worth_serving``)
        self.trim_live = 0
        #: those whose machine makes the runtime's calls after -EAGAIN itself
        #: (``fast/driver/retry.py``): served through under "auto" too (session ``eagain``)
        self.retry_live = 0
        #: those the runtime calls no more after (``trim``'s ``final``: the first call
        #: only): served through under "auto" too (session ``demo6``)
        self.final_live = 0
        #: the runtime's calls the machine ended with -EAGAIN and made again itself
        self.ioctl_retries = 0
        #: the ioctl loops' range ``(first, n, page indices)`` and write mask, kept
        self._range: tuple[int, int, np.ndarray] | None = None
        self._no_writes = np.zeros(0, np.bool_)
        #: pages ksgxd wrote back on the core (its batches' ``ksgxd_pages_reclaimed`` while
        #: there; like ``accesses``, not a ``stats()`` counter)
        self.ksgxd_pages = 0
        #: records the core's calls wrote into the backing file of an enclave other than the
        #: caller's (its slot's ``K_NR_RECORDS``; the pages of the other enclave written
        #: back on the core: PATHS.md "Two enclaves in the regime", session ``twoencl3``)
        self.foreign_records = 0
        #: pair calls that ended with ksgxd before the SECS's eviction (``KB_SECS``): the
        #: thread served to its loop top, ksgxd's generator from that page
        self.secs_stops = 0
        #: pair calls that stopped (ksgxd's ``KB_SECS``, a deadline) with the thread waiting
        #: for its CPU in the core's run queue - on one CPU, having yielded to ksgxd - from
        #: where it goes on served (``to_simpy``'s ``_picked``; session ``twoone``: two
        #: enclaves on one CPU, the other's SECS evicted while the thread waits)
        self.queued_stops = 0
        #: served ksgxd machines handed to their generator between batches (Python left
        #: the regime between calls: ``ksgxd_serving._served_regime``)
        self.top_stops = 0
        #: ksgxd's machine's steps served by SimPy (between pair calls, Python tasks between)
        self.served_steps = 0
        #: ``cond_resched()`` points a served machine went on past inside its served step,
        #: the point doing nothing (``stream_ksgxd.Session._resched_passes``, session
        #: ``callcost``): the tests' guard
        self.resched_passed = 0
        #: and those it stopped at because the point gave the CPU up (``serve`` then ran it)
        self.resched_kept = 0
        #: ksgxd handed from its running generator to its machine at K0's check
        self.k0_entries = 0
        #: pair calls that stopped before a ``System.run(until=)`` deadline (``HB_DEADLINE``,
        #: session ``deadline``): the thread served to its loop top, ksgxd served or asleep
        self.deadline_stops = 0
        #: observers' events the core processed itself, the machines staying on it (the
        #: scenario runner's ``Sampler``: ``driver/observe.py``, session ``sampler``)
        self.observed_events = 0
        #: while a pair call processes an observer's event: the model as the core holds it
        #: (``observe.CoreView``), which the observer reads instead of the Python objects
        self.observed: Any = None
        #: the thread's faults the core stopped under encl->lock and Python finished
        #: (``IN_FAULT``), by ``kstate.KB_*`` code, on the core or served
        self.fault_stops: dict[int, int] = {}
        #: the parked flood (session ``uflood``): served ksgxd steps with a thread parked in
        #: Python (``transfer_flood.mirror_in``), the served thread's parks left to Python
        #: (``KB_PARK``)
        self.flood_mirrors = 0
        self.park_stops = 0
        #: served ksgxd machines whose ``kref_put`` dropped the last reference
        #: (``KB_RELEASE``): its generator from that page, ``sgx_encl_release`` there
        self.release_stops = 0
        #: loop tops the core declined while ksgxd's served batch held the last references
        #: of a closed enclave (``core_regime.held_by_a_batch_only``; session ``row1b``)
        self.release_declines = 0
        #: served ksgxd machines stopped after a page's EWB that a Python task's child
        #: removal made the last child's (``KB_SECS`` at ``P_STORED``): its generator from
        #: the child count's drop, encl->lock held (``Session._rest_of_batch``)
        self.stored_stops = 0
        #: ksgxd's machine served by SimPy between two pair calls (None: its generator), or
        #: a ``stream_group.GroupSession`` (several threads, session ``n6user``)
        self.session: Session | None = None
        #: the live streams by thread (``stream``; ``CoreStream.close``): a group session's
        #: rows are the running threads' (``group_regime.group_regime``)
        self.streams: dict[Any, CoreStream] = {}
        #: group sessions begun, their moves onto the core, the accesses those moves ran
        #: on the core (not served: the tests' guard), and their stops other than a
        #: deadline by name (``stream_group``, session ``n6user``)
        self.group_sessions = 0
        self.group_moves = 0
        self.group_accesses = 0
        self.group_edges: dict[str, int] = {}
        #: slices a group resident on the core ran from ``System.run`` (``group_resident``)
        self.resident_entries = 0
        #: threads a group move joined mid-fault, by the point (``group_join.KINDS``)
        self.mid_joins: dict[str, int] = {}
        #: loop tops at which no group session begins, after one whose moves were refused
        #: (``stream_group.REFUSED``), and the next such wait (doubled each time)
        self.group_wait = 0
        self.group_backoff = 1
        self._kstate = None
        self._kt_layout = ((), ())

    def ksgxd_at_check(self, task: Any, high: int) -> Gen | None:
        """``Sgx._ksgxd``'s hook at K0's check (module docstring, "ksgxd awake in its
        generator"): ksgxd's machine, served from ``P_CHECK`` inside ksgxd's own
        generator, when its regime holds, a batch is due and a stream could take the
        session (``_worth_serving``); None: the generator checks itself."""
        if self.session is not None:
            # a group session (several threads, ``stream_group``) takes ksgxd into its row
            take = getattr(self.session, "take_ksgxd", None)
            if take is None or len(self.system.sgx.epc.nodes) != 1:
                return None
            if not self.system.sgx.should_reclaim(high):
                return None
            proc = self.system.machine.env.active_process
            if proc is None or not _ksgxds_process(proc, sys._getframe(1)):
                return None
            return take(high)
        if self.auto and not self.live:
            return None  # "auto": no stream to take the session (``live``)
        system = self.system
        sgx = system.sgx
        if not sgx.should_reclaim(high) or len(sgx.epc.nodes) != 1:
            return None
        encls = list(sgx.enclaves.values())
        if not 1 <= len(encls) <= K.N_SLOTS:
            return None
        if not _worth_serving(system) or not _served_regime(system, encls):
            return None
        if not _static_regime(system):
            return None
        proc = system.machine.env.active_process
        if proc is None or not _ksgxds_process(proc, sys._getframe(1)):
            return None  # not run by its own process (a continuation run inline)
        sess = self.session = Session.at_check(self, encls, high)
        self.k0_entries += 1
        return sess.serve_at_check()

    def _warm(self) -> bool:
        """``"auto"``: the machines compiled or cached (``auto.machines_warm``); sticky."""
        if machines_warm():
            self.on = True
        return self.on

    def stream(self, thread: Task, pages: np.ndarray, writes: np.ndarray, encl: Any = None) -> Any:
        """A ``CoreStream`` for this stream, or None where the structure excludes the core
        (checked once: the thread, the content mode, the policy, ...). ``encl``: the
        enclave, for a task that is not an enclave thread (``trim``'s ioctl task)."""
        system = self.system
        sgx = system.sgx
        if encl is None:
            assert isinstance(thread, EnclaveThread)
            encl = thread.encl
        if pages.size == 0:
            return None
        if system.cpu.content_mode != "tag" or not flood_regime(system):
            return None
        # up to two enclaves, one slot each (PATHS.md "Two enclaves in the regime")
        if len(sgx.enclaves) > K.N_SLOTS or all(e is not encl for e in sgx.enclaves.values()):
            return None
        if len(sgx.epc.nodes) != 1 or not isinstance(system.machine.rq, CfsRunQueue | FifoRunQueue):
            return None
        if (encl.base + encl.size) >> 12 >= 0xFFFFFFFF:
            return None
        if not self.on:
            if not auto_engages(int(pages.size), self._warm()):
                return None
            self.on = True  # the compile is paid from here (or was already)
        self.live += 1
        cs = self.streams[thread] = CoreStream(self, thread, pages, writes, encl)
        return cs

    def eaccept(
        self,
        thread: EnclaveThread,
        first: int,
        n: int,
        flags: int,
        epp: bool,
        marks: bool,
        step: int,
    ) -> CoreStream | None:
        """A ``CoreStream`` for ``eaccept_range``'s per-page loop over ``n`` pages from
        ``first`` with SECINFO ``flags`` (``epp``: one entry per page; ``marks``: stop at
        each 256-page mark for ``on_pages``; ``step``: ``OpRecord.note``'s), or None where
        the structure excludes it (as ``stream``'s, and a request EACCEPT refuses with #GP
        whatever the page)."""
        from epcsim.fast.eaccept import _request_allowed

        if not _request_allowed(flags) or first + n > thread.encl.nr_pages:
            return None
        if self.system.sgx.flood is not None:
            return None  # the parked flood: access streams only (``flood_regime``)
        pages = np.arange(first, first + n, dtype=np.int64)
        cs = self.stream(thread, pages, np.zeros(n, np.bool_))
        if cs is not None:
            cs.mode = (int(flags), int(epp), int(marks), int(step))
        return cs

    def trim(
        self,
        task: Task,
        encl: Any,
        first: int,
        n: int,
        new_type: int,
        step: int,
        marks: bool,
        mode: int = T.MODE_TRIM,
        retry: tuple[int, int, int] = (0, 0, 0),
        final: bool = False,
    ) -> CoreStream | None:
        """A ``CoreStream`` for MODIFY_TYPES' page loop over the range's ``n`` pages from
        ``first`` (``_page_loop``; ``step``: ``OpRecord.note``'s, ``marks``: stop at each
        256-page mark for ``on_pages``), or None where the structure excludes it (as
        ``stream``'s). ``task`` is the ioctl's caller: the enclave's ``EnclaveThread``
        (``workloads.edmm.ioctl``), or a user task of a process that maps the enclave -
        the process's ioctl task of ``Enclave.ioctl`` - whose CPU is then in the
        enclave's cpumask while it holds one, as the machine counts it (``reclaim_run``'s
        IPI, ``trim._trim_takes``; session ``ioctlcore``). ``mode`` ``tstate.MODE_REMOVE``:
        REMOVE_PAGES' loop instead (``new_type`` 0; PATHS.md "The REMOVE_PAGES loop").
        ``retry``: how many of the runtime's calls after -EAGAIN the machine may end and
        make itself, and the runtime's ``stalled`` and ``max_stalled`` (0: none)
        (``fast/driver/retry.py``; MODIFY_TYPES from an enclave thread only). ``final``: the
        runtime makes no call after this one (``drive_range``'s first call only), so ksgxd's
        machine is served through it under "auto" too (``ksgxd_serving._worth_serving``).

        The range's page indices are built once per range, not per call (the runtime calls
        again over the same range after -EAGAIN: an ``np.arange`` of up to 383 KB at each
        of the demo's 47,836 calls, session ``demo5``); the machine only reads them."""
        if first + n > encl.nr_pages or task.kernel or self.system.sgx.flood is not None:
            return None  # (the parked flood: access streams only, ``flood_regime``)
        if not _caller_of(task, encl):
            return None
        rng = self._range
        if rng is None or rng[0] != first or rng[1] != n:
            rng = self._range = (first, n, np.arange(first, first + n, dtype=np.int64))
        cs = self.stream(task, rng[2], self._writes(n), encl)
        if cs is not None:
            cs.trim = (int(new_type), int(step), int(marks))
            cs.ioctl_mode = int(mode)
            self.trim_live += 1
            if retry[0] > 0 and mode == T.MODE_TRIM and isinstance(task, EnclaveThread):
                cs.calls_left, cs.stalled, cs.max_stalled = (int(v) for v in retry)
                cs.retrying = True
                self.retry_live += 1
            if final:
                cs.final = True
                self.final_live += 1
        return cs

    def _writes(self, n: int) -> np.ndarray:
        """An all-false write mask of ``n`` pages (the ioctl loops read none), kept for the
        next call up to ``WRITES_KEPT`` pages. Unbounded, a build's ADD_PAGES kept one byte
        per page of the heap for the ``System``'s life: row 6 at 1 GiB 31.86 -> 32.86 B a page
        in use (the lead, 2026-11-28). A larger mask is made for the call alone (``calloc``:
        untouched pages cost nothing) and freed after it."""
        w = self._no_writes
        if w.size >= n:
            return w[:n]
        w = np.zeros(n, np.bool_)
        if n <= WRITES_KEPT:
            self._no_writes = w
        return w

    def add(self, task: Task, encl: Any, first: int, n: int, flags: int) -> CoreStream | None:
        """A ``CoreStream`` for ADD_PAGES' page loop over ``n`` pages from ``first`` with
        SECINFO ``flags`` (PATHS.md "The ADD_PAGES loop"), or None where the structure
        excludes it (as ``trim``'s; the caller, ``kernel.ioctl``, excludes measured pages,
        page data and a progress hook that is not count-only). ``task`` is the ioctl's caller, as
        for ``trim``.
        With "auto", only once the machines are warm: a build never pays their cold
        compile (decision, session ``addcore``: most of a build is ``add_run``'s batch,
        ~1 us a page; only the pages past the low watermark would repay it, and their
        number is not known before the call)."""
        if first + n > encl.nr_pages or task.kernel or encl.initialized:
            return None
        if self.system.sgx.flood is not None:
            return None  # the parked flood: access streams only (``flood_regime``)
        if not self.on and not self._warm():
            return None
        if not _caller_of(task, encl):
            return None
        pages = np.arange(first, first + n, dtype=np.int64)
        cs = self.stream(task, pages, self._writes(n), encl)
        if cs is not None:
            cs.trim = (0, 1 << 40, 0)  # an ioctl loop without notes nor marks
            cs.ioctl_mode = T.MODE_ADD
            cs.add_flags = int(flags)
            self.add_live += 1
        return cs


__all__ = ["StreamCore"]
