"""The co-simulation core's state: a few NumPy arrays, their columns, and the result codes.

Why arrays and not objects: the core is compiled (numba) and runs one event per few
nanoseconds of host time; a task, a mutex or a queued event is a *row*, and its fields are
columns named below. Tasks and mutexes are a handful of rows, so their columns are
``int64`` (one type for every field keeps the rows simple; narrow types matter for the
per-page state, which lives elsewhere). The arrays travel together as ``CoState``, a named
tuple numba passes by reference.

Everything here mirrors an object of ``epcsim.engine``: ``clk`` is SimPy's ``Environment``
(``now``, the ``eid`` counter) plus the ``Machine``'s knobs and ``CfsRunQueue``'s
``min_vruntime``; ``heap`` is ``Environment._queue``; a ``tasks`` row is a ``Task``; a
``mtx`` row is a ``LinuxMutex`` (or, with ``M_FIFO``, a ``FifoMutex``) and its ``osq`` row
the OSQ, its ``wl`` row the wait list; a ``wq`` row is a ``WaitQueue``; ``cpus`` is
``Machine.running``; ``cpuq`` is ``FifoRunQueue._free_cpus`` (with ``C_FIFO_SCHED``);
``trace`` is every mutex's ``trace``.

The FIFO variants (``Machine(mutex="fifo", sched="fifo")``, the model's simplified
comparison, session ``fifo``): each decision is next to its Linux counterpart in the
primitive that makes it - ``task.acquire_cpu``/``release_cpu`` (``FifoRunQueue.wake``/
``release``: CPUs handed out in FIFO order, no vruntime placement), ``task.run_user`` (no
preemption: the step counts as busy time when it starts), ``mutex.lock``/``unlock``
(``FifoMutex``: sleep at once on the wait list; the unlock hands the lock to the first
waiter) and ``dispatch.next_resume`` (the woken waiter's tail of ``_lock_slow``).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from epcsim.engine.costs import Costs
from epcsim.engine.sched import (
    SCHED_LATENCY_NS,
    SCHED_MIN_GRANULARITY_NS,
    SCHED_WAKEUP_GRANULARITY_NS,
    tunable_factor,
)

# -- clk: the environment's scalars ---------------------------------------------------------
C_NOW = 0  #: ``env.now`` (ns)
C_EID = 1  #: the next ``eid`` (SimPy counts one per ``schedule`` call)
C_QLEN = 2  #: events in the heap
C_POPS = 3  #: events processed (``env.step`` calls)
C_ELIDE = 4  #: ``Machine.elide``: 1 = the fast engine's ``Task.run`` elision
C_ELIDED = 5  #: ``Machine.elided``
C_MIN_VR = 6  #: ``CfsRunQueue.min_vruntime``
C_TRACE_LEN = 7  #: rows used in ``trace``
C_PICKUP = 8  #: ``Costs.mutex_pickup``
C_SPIN_POLL = 9  #: ``Costs.mutex_spin_poll``
C_LATENCY = 10  #: ``CfsRunQueue.latency_ns`` (scaled ``sched_latency``)
C_HB = 11  #: the hand-back code once the core stopped (``HB_*``), 0 while it runs
C_HB_TASK = 12  #: the task that met it
C_HB_NOW = 13  #: when
C_SPIN_SEQ = 14  #: spin starts so far (orders ``Machine.spinning`` as its dict does)
C_BUDGET = 15  #: stop after this many pops (0: no limit): a guard against a runaway loop
#: 1 while the machines are *served* by SimPy (``served``): ``request.perform`` records a
#: request in the task's row (``T_RQ``) instead of performing it, and the machine returns
C_SERVED = 16
#: 1: the CPUs are ``FifoRunQueue``'s (``Machine(sched="fifo")``), 0: ``CfsRunQueue``'s
C_FIFO_SCHED = 17
#: ``len(FifoRunQueue._free_cpus)``: the idle CPUs in ``cpuq[:n]``, hand-out order
C_CPUQ_LEN = 18
#: 1: a task that finds no idle CPU waits in the compiled run queue (``runqueue.py``,
#: session ``onecpu``); 0: the core hands back (``HB_NO_CPU``) as before
C_RUNQ = 19
C_RQ_LEN = 20  #: tasks waiting for a CPU (``T_RQ_SEQ`` > 0)
C_RQ_SEQ = 21  #: ``CfsRunQueue._seq`` (FIFO: the waiters' arrival order)
C_NONEMPTY_SINCE = 22  #: ``CfsRunQueue._nonempty_since``
C_CSW = 23  #: ``Machine.context_switches``
C_WAKEUP_PREEMPT = 24  #: ``CfsRunQueue.wakeup_preemptions``
C_MIN_GRAN = 25  #: ``CfsRunQueue.min_granularity_ns`` (scaled)
C_WAKEUP_GRAN = 26  #: ``CfsRunQueue.wakeup_granularity_ns`` (scaled)
C_FIFO_SLICE = 27  #: ``FifoRunQueue.sched_slice_ns``
C_INTERRUPTS = 28  #: user steps interrupted (``runqueue.interrupt``; for tests)
#: spinners' wake-ups popped as soon as their poke fired, without the heap
#: (``spin.resume_now``; for tests and ``benchmarks/row_profile.py``): counted in ``C_POPS``
C_RESUMED_NOW = 29
#: 1: the many-task regime (session ``runq64``, PATHS.md "Several threads on the core",
#: step 2; ``threads_bridge`` sets it): a spinner beside the run queue watches the tick and
#: leaves the spin on need_resched, a ``LinuxMutex`` contender that cannot spin sleeps on
#: the wait list (``mutex_sleep.py``: HANDOFF, the waiter's wake-up), and a machine takes
#: its interrupted user step (``T_INTR``) instead of ``next_resume`` yielding for it. 0:
#: the core hands back before each (``HB_SPIN_RQ``, ``HB_MUTEX_SLEEP``) as before, for the
#: callers whose moves (``transfer``) do not carry these states
C_MANY = 30
C_WAKEUP_NS = 31  #: ``Costs.mutex_wakeup``: a woken ``LinuxMutex`` waiter's run (``C_MANY``)
# The parked NOPAGE flood (``System(nopage_flood="bulk")``; ``cosim/flood_park.py``, the
# restatement of ``fast/flood.py``; session ``flood6``)
C_FLOOD = 32  #: 1: a retrier whose allocation finds no free page parks (``flood_park``)
C_FL_PARKED = 33  #: rows parked now (``len(NopageFlood.parked)``)
C_FL_SEQ = 34  #: parks so far, in order (``NopageFlood.parked``'s insertion order)
C_FL_AEXF = 35  #: ``Costs.aex + Costs.fault_entry`` (a retry's last step)
C_FL_BULK = 36  #: ``NopageFlood.bulk_retries`` not folded yet
C_FL_PARKS = 37  #: ``NopageFlood.parks`` not folded yet
# ... with more threads than CPUs (session ``floodq``): counts for the tests' guard, not
# ``NopageFlood``'s (``ThreadsResult.core``)
C_FL_WOKEN = 38  #: parked rows a wake-up preemption resched (``NopageFlood.wake``)
C_FL_RESCHED = 39  #: parks ended at a decision instant with need_resched due
C_FL_TCS_PARKS = 40  #: parks of the TCS fault's retries (``_ensure_tcs``: ``eresume=False``)
C_FL_TCS_ZAPPED = 41  #: ERESUME checks ``_tcs_zapped`` scheduled (a parked row's TCS zapped)
#: ``run`` steps whose timeout was popped in place after the spinners' pokes before it
#: (``run_over.over_pokes``, session ``row1keep``; for tests and ``row_profile.py``):
#: counted in ``C_POPS``
C_RAN_OVER = 42
N_CLK = 43

# -- heap: SimPy's queue, one row per scheduled event -----------------------------------------
# SimPy orders ``(time, priority, eid)``; priority and eid are packed into one column
# (``priority << KEY_SHIFT | eid``), so two columns order a row. The payload says what the
# event does when popped (``EV_*`` | task << 4 | arg << 16).
H_TIME = 0
H_KEY = 1
H_PAYLOAD = 2
N_HEAP = 3
KEY_SHIFT = 56
URGENT = 0  #: ``simpy.core.URGENT``: a Process's Initialize
NORMAL = 1  #: ``simpy.core.NORMAL``: timeouts and ``succeed``

EV_INIT = 0  #: a process starts (its Initialize event): the task runs its program from pc
EV_RESUME = 1  #: the event a task waits on is processed: the task resumes (``_resume``)
EV_POKE = 2  #: a spinner's timed poke (``LinuxMutex._fire``); arg = the wait's ``gen``
EV_END = 3  #: a process ended (SimPy schedules the Process event itself): nothing runs
#: an ``EV_END`` row's argument for an interrupted user step's timeout (``runqueue.interrupt``):
#: nobody waits on it, it is no process's end (``to_simpy`` moves it as such)
DEAD = 1
#: a ``System.run(until=)`` deadline (SimPy's until event, ``cosim/deadline.py``): the core
#: never pops it; with it at the head of the queue the core hands back (``HB_DEADLINE``),
#: arg = its index in ``Served.stops``
EV_STOP = 4
#: a parked retrier's timer (``cosim/flood_decision.py``: ``NopageFlood._timer``'s and
#: ``_chain``'s timeouts, whose callbacks run no process); arg = ``FL_*`` | its datum << 2
EV_FLOOD = 6
#: ``Process.interrupt``'s Interruption (URGENT, now): a user step preempted at once
#: (``Machine._resched`` -> ``run_user``'s ``except simpy.Interrupt``); the step's own
#: timeout stays queued as an ``EV_END`` (its callback removed, still popped)
EV_INTR = 5

# -- tasks: one row per ``Task`` --------------------------------------------------------------
T_STATE = 0  #: ``TS_*``
T_PC = 1  #: where the task's state machine resumes
T_CPU = 2  #: ``Task.cpu`` (-1 = None)
T_LAST_CPU = 3  #: ``Task.last_cpu``
T_BUSY = 4  #: ``Task.busy_ns``
T_STEP_END = 5  #: ``Task.step_end``
T_STEP_NS = 6  #: ``Task.step_ns``
T_SLICE_START = 7  #: ``Task.slice_start``
T_VRUNTIME = 8  #: ``Task.vruntime``
T_STARTED = 9  #: ``Task.started`` (CFS's START_DEBIT placement done)
T_SPIN_M = 10  #: the mutex this task spins on (-1: not spinning; ``Machine.spinning``)
T_SPIN_T0 = 11  #: when the spin began (``_spin``'s ``t0``: busy time)
T_SPIN_GEN = 12  #: ``_Spinner.gen``, never reset (so a poke of an earlier spin never matches)
T_SPIN_EV = 13  #: the spinner's wait event: ``SE_*``
T_LOCK_T0 = 14  #: when the contended acquisition began (``_lock_slow``'s ``t0``: wait_ns)
T_LOOP = 15  #: the task program's loop counter (``program``)
T_L0 = 16  #: locals for the state machine built on the core
T_L1 = 17
T_L2 = 18
T_L3 = 19
T_SPIN_SEQ = 20  #: when the spin began, in spin starts (``Machine.spinning``'s dict order)
T_USER_NS = 21  #: the ``run_user`` step the task waits for (0: none): busy time once it ends
T_RQ = 22  #: served mode: the request the machine asked for (``request.RQ_*``), 0 = none
T_RQ_A = 23  #: its argument
T_RQ_RET = 24  #: the answer of the task's last request the machine reads (RQ_WAKE: anyone woken)
T_WAIT_M = 25  #: the ``FifoMutex`` whose wait list the task sleeps on (``TS_MSLEEP``), else -1
T_RESCHED = 26  #: ``Task._resched`` (TIF_NEED_RESCHED)
T_USER_T0 = 27  #: when the ``run_user`` step now waited for began (``run_user``'s ``t0``)
T_RQ_SEQ = 28  #: > 0 while waiting in the run queue: its ``_seq`` (the key's tie-break)
#: what the task does once the run queue gives it a CPU (``K_*``), and its argument
T_CONT = 29
T_CONT_A = 30
#: ``LinuxMutex._lock_slow``'s phase for a contender (``LS_*``, ``mutex_sleep.py``; 0: not
#: in it, or spinning on the OSQ from the core's old regime) and its mutex
T_LS = 31
T_LS_M = 32
#: the waiter's ``w.ev``: 0 None, ``SE_PENDING`` asleep, ``SE_TRIGGERED`` woken (no CPU yet)
T_WEV = 33
#: 1: the user step was interrupted and the machine has yet to take it (``C_MANY``);
#: ``INTR_SERVED``: served, ``run_user`` cut short (its ``_schedule`` done by SimPy,
#: ``T_RQ_RET`` the ns run: ``served.user_ran``)
T_INTR = 34
INTR_SERVED = 2
# a parked NOPAGE retrier (``fast/flood.py``'s ``_Park``; ``cosim/flood_park.py``)
T_FL = 35  #: 1 while parked (``thread in NopageFlood.parked``)
T_FL_BASE = 36  #: ``_Park.base``: its retry cycles end at ``base + j * period`` (j >= 1)
T_FL_PERIOD = 37  #: ``_Park.period``
T_FL_COUNTED = 38  #: ``_Park.counted``: skipped retries already counted
T_FL_FORCED = 39  #: ``_Park.forced`` (-1: None)
T_FL_LOCK_CHECK = 40  #: ``_Park.lock_check`` (-1)
T_FL_TICK_AT = 41  #: ``_Park.tick_at``
T_FL_EV = 42  #: ``_Park.ev``: ``SE_NONE``/``SE_PENDING``/``SE_TRIGGERED``
T_FL_GEN = 43  #: parks of this row so far (a timer of an earlier park never matches)
T_FL_SEQ = 44  #: its place in ``NopageFlood.parked``'s order (``C_FL_SEQ`` at the park)
T_FL_ERESUME = 45  #: ``_Park.eresume_ns``
T_FL_TOUCHED = 46  #: ``_Park.touched``
T_FL_M = 47  #: ``_Park.lock``: the mutex row its retries take
T_FL_TCS = 48  #: the thread's TCS page index (``tcs_accessed``, ``page_changed``)
T_FL_DECIDE = 49  #: ``NopageFlood._deciding[thread] + 1`` (0: none; ``came_first``)
T_FL_LEFT = 50  #: skipped retries' latencies still to write (a full buffer's service)
T_FL_IDX = 51  #: ``_Park.index``: the page its retries fault on
#: its TCS zapped while parked (``_tcs_zapped``, session ``floodq``): 1 once the
#: reclaimer's EBLOCK of that TCS applied (``flood_rows.tcs_blocked``), and
#: ``_Park.tcs_first``, that flag as the cycle's ERESUME ends (``flood_park.fire``)
T_FL_TCSBLK = 52
T_FL_TCSFIRST = 53
N_TASK = 54

TS_NEW = 0  #: not started
TS_STARTING = 1  #: its Initialize is queued
TS_READY = 2  #: running its program (between events)
TS_RUN = 3  #: waiting for its ``run`` (or ``run_user``) step's timeout
TS_SPIN = 4  #: optimistic spinning on ``T_SPIN_M``
TS_SLEEP = 5  #: asleep on a wait queue
TS_DONE = 6  #: exited
#: asleep on a ``FifoMutex``'s wait list (``T_WAIT_M``; ``T_LOCK_T0`` when it went to sleep)
TS_MSLEEP = 7
#: runnable, waiting in the run queue for a CPU (``T_CONT`` says what follows)
TS_RUNQ = 8
#: its user step interrupted: the Interruption (``EV_INTR``) is queued
TS_INTR = 9
#: asleep on a ``LinuxMutex``'s wait list (``T_LS_M``; ``mutex_sleep.py``, ``C_MANY``)
TS_LSLEEP = 10
#: a parked NOPAGE retrier holding its CPU (``flood_park``), waiting on ``_Park.ev``
TS_PARK = 11

# -- what a task waiting in the run queue goes on with once picked (``T_CONT``) ---------------
#: no continuation: the task is not waiting in the run queue, or its continuation ran to its
#: end or its next wait (``dispatch.cont_after_pick`` clears ``T_CONT`` once it has taken
#: it). A hand-back met *inside* a continuation leaves it set (session ``spinfix``): the
#: hand-back's task then resumes in the middle of that request, which ``to_simpy`` finishes
#: on SimPy before its machine goes on (the machine's pc is past the request already)
K_NONE = -1
K_DONE = 0  #: nothing: its request is complete (a sleep's tail, ``cond_resched``, a user step)
K_RUN = 1  #: ``Task.run``'s step of ``T_CONT_A`` ns
K_USER = 2  #: ``Task.run_user``'s step of ``T_CONT_A`` ns
K_LOCK = 3  #: ``Task.lock`` of mutex ``T_CONT_A`` from its might_sleep point
K_LOCK_TAKE = 4  #: ``Task.lock`` of mutex ``T_CONT_A`` after its might_sleep point
K_MSLEEP = 5  #: ``FifoMutex._lock_slow``'s tail: the handed lock is the task's
K_LSLOW = 6  #: ``LinuxMutex._lock_slow`` from its phase ``T_LS`` (``mutex_sleep.go``)

# -- ``LinuxMutex._lock_slow``'s phases (``T_LS``; ``mutex_sleep.py``, ``C_MANY`` only) -------
LS_SPIN = 1  #: the first spin, on the OSQ (``_spin(task, None)``)
LS_AFTER_SPIN = 2  #: no spin or a failed one: ``need_resched`` -> ``_schedule``
LS_SCHED1 = 3  #: after that ``_schedule`` (its CPU back): the trylock, else the wait list
LS_SLEEP = 4  #: asleep on the wait list (``TS_LSLEEP``), or its wake-up popped
LS_WCPU = 5  #: woken, the CPU taken: ``run(mutex_wakeup)``
LS_WRUN = 6  #: after ``mutex_wakeup``: handed? free? HANDOFF flag, the waiter's spin
LS_WSPIN = 7  #: spinning as the first waiter (``_spin(task, w)``, not on the OSQ)
LS_AFTER_WSPIN = 8  #: the loop's ``need_resched`` -> ``_schedule``
LS_SCHED2 = 9  #: after it: handed? free? else asleep again

SE_NONE = 0  #: no wait yet (``rec.ev is None``)
SE_PENDING = 1  #: waiting, not triggered
SE_TRIGGERED = 2  #: succeeded (scheduled or processed)

# -- mtx: one row per ``LinuxMutex`` or ``FifoMutex`` (``M_FIFO``) -----------------------------
M_OWNER = 0  #: owning task (-1 = free)
M_HANDOFF = 1  #: MUTEX_FLAG_HANDOFF (never set inside the regime)
M_FREE_SINCE = 2  #: ``_free_since``
M_FREED_FROM = 3  #: ``_freed_from``
M_HANDED_AT = 4  #: ``_handed_at``
M_OSQ_LEN = 5  #: spinners queued on the OSQ (their tasks: the ``osq`` row, head first)
#: wait-list length, its tasks in ``wl[m, :n]``, first first (a ``LinuxMutex``'s stays 0
#: inside the regime; a ``FifoMutex``'s contenders all sleep there)
M_WAITERS = 6
M_CONTENDED = 7
M_WAIT_NS = 8
M_STEALS = 9
M_HANDOFFS = 10
M_SPIN_ACQUIRED = 11
M_FIFO = 12  #: 1: a ``FifoMutex`` (``Machine(mutex="fifo")``), 0: a ``LinuxMutex``
M_FL_HOLDS = 13  #: ``NopageFlood._holds[mutex]``: holds seen while retriers were parked
N_MUTEX = 14

# -- trace: ``(ns, event, task, mutex)`` rows; ``TR_*`` names the event as ``Mutex._log`` ----
TRACE_EVENTS = (
    "spin", "spin_acquire", "unlock", "steal", "spin_fail", "sleep", "handoff", "wake",
    "handoff_flag",
)  # fmt: skip
TR_SPIN = 0
TR_SPIN_ACQUIRE = 1
TR_UNLOCK = 2
TR_STEAL = 3
TR_SPIN_FAIL = 4
TR_SLEEP = 5  #: ``FifoMutex._lock_slow``: the contender sleeps on the wait list
TR_HANDOFF = 6  #: the woken waiter owns the lock (handed over; both mutexes)
TR_WAKE = 7  #: ``LinuxMutex._wake``: the first waiter's wake-up (``C_MANY``)
TR_HANDOFF_FLAG = 8  #: ``LinuxMutex._lock_slow``: the first waiter sets HANDOFF

# -- what the core returns ------------------------------------------------------------------
# A primitive that may block (``run``, ``lock``, ``sleep_on``, ``acquire_cpu``) returns:
R_OK = 0  #: done now, the task goes on in the same resumption (no event, or elided)
R_BLOCKED = 1  #: the task waits for an event; ``next_resume`` returns it when it is due
R_STOP = 2  #: outside the regime: the core handed back (``clk[C_HB]``), nothing was done
#: ``spin.spin_check``: the spin stopped without the lock (``_spin`` returned False: its
#: owner left its CPU or need_resched; ``C_MANY``) - the slow path goes on
R_FAIL = 3
# ``next_resume`` returns a task number (>= 0) whose state machine continues now, or one of:
IDLE = -1  #: the queue is empty: nothing will ever run again (``env.run()`` returns)
HANDED_BACK = -2  #: the core stopped at a situation outside its regime: ``clk[C_HB]`` says which

# Hand-back codes (``clk[C_HB]``). The core models the regime where every runnable task has
# its own CPU and a lock owner never leaves its CPU while someone spins on the lock. Outside
# it the reference does something the core does not restate (a run queue, the mutex wait
# list and HANDOFF, need_resched): rather than guess, the core stops *before* that step,
# with every array as the reference's objects would be just before it.
HB_NONE = 0
HB_NO_CPU = 1  #: a task needs a CPU and none is idle (CFS would queue it)
HB_MUTEX_SLEEP = 2  #: a contender would sleep on the wait list (owner off its CPU)
HB_QUEUE_FULL = 3  #: the event heap is full (its capacity is the caller's)
HB_TRACE_FULL = 4  #: the trace buffer is full
HB_BAD_UNLOCK = 5  #: unlock by a task that does not own the lock (the reference raises)
HB_RECURSIVE = 6  #: a task locks a mutex it owns (the reference raises)
HB_BUDGET = 7  #: ``clk[C_BUDGET]`` events were processed (the caller's limit)
#: the next event is a ``System.run(until=)`` deadline (``EV_STOP``): SimPy processes it
HB_DEADLINE = 8
#: a task would wait for a CPU while another spins on a mutex (spinners then watch the
#: tick, ``LinuxMutex._spin``; not restated), or start spinning while one waits
HB_SPIN_RQ = 9
HB_NAMES = (
    "none",
    "no idle CPU",
    "mutex wait list",
    "event heap full",
    "trace full",
    "unlock by non-owner",
    "recursive lock",
    "event budget spent",
    "run(until=) deadline",
    "spin with a task waiting for a CPU",
)

CoState = namedtuple("CoState", "clk heap tasks cpus mtx osq wq wql trace cpuq wl")
CoState.__doc__ = "The core's arrays (see the module docstring); numba takes it as one argument."


def new_state(
    nr_cpus: int,
    nr_tasks: int,
    nr_mutexes: int = 1,
    nr_queues: int = 1,
    *,
    costs: Costs | None = None,
    elide: bool = True,
    heap_capacity: int = 1024,
    trace_capacity: int = 0,
    max_pops: int = 0,
    mutex: str = "linux",
    sched: str = "cfs",
    runq: bool = False,
    sched_slice_ns: int = 3_000_000,
) -> CoState:
    """A machine at time 0: ``nr_cpus`` idle CPUs, ``nr_tasks`` tasks not started, free
    mutexes, empty wait queues. ``elide`` is ``Machine(elide=...)``; ``trace_capacity`` 0
    leaves the trace off (``Mutex.trace is None``); ``max_pops`` > 0 stops the core
    (``HB_BUDGET``) after that many events; ``mutex`` and ``sched`` are
    ``Machine(mutex=..., sched=...)``: every mutex of the flavour, the CPUs' policy.
    ``runq``: a task finding no idle CPU waits in the run queue (``runqueue.py``) instead
    of handing back; ``sched_slice_ns`` is ``Machine``'s (the FIFO policy's slice)."""
    if mutex not in ("linux", "fifo") or sched not in ("cfs", "fifo"):
        raise ValueError(f"mutex/sched: linux|fifo and cfs|fifo, got {mutex!r}/{sched!r}")
    for name, v, low in (
        ("nr_cpus", nr_cpus, 1),
        ("nr_tasks", nr_tasks, 1),
        ("nr_mutexes", nr_mutexes, 0),
        ("nr_queues", nr_queues, 0),
        ("heap_capacity", heap_capacity, 1),
        ("trace_capacity", trace_capacity, 0),
        ("max_pops", max_pops, 0),
    ):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name}: an integer >= {low}, got {v!r}")
    if nr_tasks >= 1 << 12:
        raise ValueError(f"nr_tasks: at most {(1 << 12) - 1}, got {nr_tasks}")
    costs = costs or Costs()
    clk = np.zeros(N_CLK, np.int64)
    clk[C_ELIDE] = int(bool(elide))
    clk[C_BUDGET] = max_pops
    clk[C_PICKUP] = costs.mutex_pickup
    clk[C_SPIN_POLL] = costs.mutex_spin_poll
    clk[C_WAKEUP_NS] = costs.mutex_wakeup
    factor = tunable_factor(nr_cpus)
    clk[C_LATENCY] = SCHED_LATENCY_NS * factor
    clk[C_MIN_GRAN] = SCHED_MIN_GRANULARITY_NS * factor
    clk[C_WAKEUP_GRAN] = SCHED_WAKEUP_GRANULARITY_NS * factor
    clk[C_FIFO_SLICE] = sched_slice_ns
    clk[C_RUNQ] = int(bool(runq))
    clk[C_FIFO_SCHED] = int(sched == "fifo")
    clk[C_CPUQ_LEN] = nr_cpus  # FifoRunQueue: deque(range(nr_cpus))
    tasks = np.zeros((nr_tasks, N_TASK), np.int64)
    tasks[:, T_CPU] = -1
    tasks[:, T_LAST_CPU] = -1
    tasks[:, T_STEP_END] = -1
    tasks[:, T_SPIN_M] = -1
    tasks[:, T_WAIT_M] = -1
    tasks[:, T_CONT] = K_NONE
    tasks[:, T_LS_M] = -1
    mtx = np.zeros((nr_mutexes, N_MUTEX), np.int64)
    mtx[:, M_OWNER] = -1
    mtx[:, M_FIFO] = int(mutex == "fifo")
    return CoState(
        clk=clk,
        heap=np.zeros((heap_capacity, N_HEAP), np.int64),
        tasks=tasks,
        cpus=np.full(nr_cpus, -1, np.int64),
        mtx=mtx,
        osq=np.full((nr_mutexes, nr_tasks), -1, np.int64),
        wq=np.zeros(nr_queues, np.int64),
        wql=np.full((nr_queues, nr_tasks), -1, np.int64),
        trace=np.zeros((trace_capacity, 4), np.int64),
        cpuq=np.arange(nr_cpus, dtype=np.int64),
        wl=np.full((nr_mutexes, nr_tasks), -1, np.int64),
    )
