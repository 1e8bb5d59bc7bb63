"""The move of a ``GroupSession`` (``stream_group.py``): every thread row and ksgxd's from
SimPy onto the compiled core, driven from the joined thread's own process that just
stepped, until a deadline or a machine's stop, then back (issue 9 row 10, N6: sessions
``n6``, ``n6user``, ``cmany``; PATHS.md "What is built: N6 end to end").

Why a module of its own: split from ``stream_group.py`` by session ``many64`` when it
passed 500 lines; the session's life (joining, leaving, ksgxd, the served steps) is there,
the move - the checks it makes, when a session gives up, the drive and the hand-back -
here. The decisions are ``stream_group.py``'s module docstring ("The move", "Refused
moves"). No code changed but ``self`` named ``sess``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.fast.cosim.state import (
    C_HB,
    C_HB_TASK,
    HANDED_BACK,
    HB_DEADLINE,
    HB_NAMES,
    T_CPU,
    T_PC,
    T_STATE,
    TS_SLEEP,
)
from epcsim.fast.cosim.transfer_to_core import _frame_locals, to_core
from epcsim.fast.cosim.transfer_to_simpy import to_simpy
from epcsim.fast.driver import group_join, group_resident
from epcsim.fast.driver import ksgxd as KM
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver import tstate as T
from epcsim.fast.driver.bridge import lp_mask
from epcsim.fast.driver.core_regime import _static_regime
from epcsim.fast.driver.core_served import _ksgxd_asleep
from epcsim.fast.driver.slots import drive_slots, fold_slots, refresh_slots, take_slots
from epcsim.kernel.main import Sgx

if TYPE_CHECKING:
    from epcsim.fast.driver.stream_group import GroupSession

#: moves refused in a row, every thread joined, before the session dissolves
#: (``stream_group`` module docstring, "Refused moves")
REFUSED = 32
#: move attempts in a row, per thread, with a thread not joined before the session gives
#: up (``stream_group`` module docstring, "Refused moves": session ``cmany``)
UNJOINED = 8
#: the loop tops a session that gave up for an unjoined thread waits at least (each
#: formation stacks every thread's stream: ``tstate.stack``)
UNJOINED_WAIT = 1 << 16


def move(sess: GroupSession, t: int) -> tuple[Any, Any] | None:
    """``Served.move`` after a served step of thread row ``t`` (module docstring, "The
    move"): every row onto the core and driven from here until it stops, then back;
    returns what ``to_simpy(inline=t)`` gives this process, or None (nothing moved)."""
    sv = sess.sv
    owner = sess.owner
    kr = sess.kr
    if sess.left or owner.session is not sess:
        return None
    mids = None
    if any(sv.own[r] is None for r in range(kr)):
        # a thread not joined (in its generator: its events are Python's), unless it
        # waits at a point of its fault the machine has a row for (``group_join.py``)
        mids = group_join.find(sess)
        if mids is None:
            sess.unjoined += 1
            if sess.unjoined >= UNJOINED * kr:
                give_up(sess, UNJOINED_WAIT)
            return None
    system = sess.system
    sgx = system.sgx
    if not movable(sess):
        return None
    waitq = sgx.ksgxd_waitq
    parked: list[Any] = []
    kproc = sv.procs[kr]
    high = sess.high
    if kproc is None or sess.ksgxd_out:
        # ksgxd in its generator: asleep, its wait is put aside for the core's sleep
        # (``Session.begin``'s way); running a batch in Python, no move
        if not sgx.ksgxd_sleeping or len(waitq._waiters) != 1:
            return None
        parked = list(waitq._waiters)
        resume: Any = parked[0].callbacks[0]  # the generator's Process._resume
        frame = _frame_locals(resume.__self__._generator, Sgx._ksgxd.__code__)
        high = sgx.high_pages if frame is None else int(frame["high"])
        waitq._waiters = []
        sv.procs[kr] = None  # its process waits on the parked event (not the core's)
    sess.fit_trace()
    group_join.offer(sess, mids)
    if not to_core(sv):
        group_join.undo(sess, mids)
        if parked:
            waitq._waiters = parked
            sv.procs[kr] = kproc
        sess.refused += 1
        if sess.refused >= REFUSED:
            give_up(sess)
        return None
    group_join.retire(sess, mids)
    sess.refused = sess.unjoined = 0
    owner.group_backoff = 1
    sess._hook_proc = None  # closed by ``to_core`` (``CoreStream.run``'s note)
    co = sess.co
    if parked:
        sess.parked = parked
        sess.high = high
        sess.ksgxd_out = False  # its machine is the core's sleeper now (``fold_pins``)
        co.tasks[kr, T_STATE] = TS_SLEEP
        co.tasks[kr, T_PC] = KM.P_WAIT
        co.wq[0] = 1
        co.wql[0, 0] = kr
    return drive(sess, t)


def give_up(sess: GroupSession, at_least: int = 1) -> None:
    """Dissolve, and no new session for the next ``group_backoff`` loop tops (doubled
    each time, reset by a move; at least ``at_least``): module docstring, "Refused
    moves"."""
    owner = sess.owner
    owner.group_backoff = max(owner.group_backoff, at_least)
    owner.group_wait = owner.group_backoff
    owner.group_backoff = min(2 * owner.group_backoff, 1 << 16)
    sess.dissolve()


def movable(sess: GroupSession) -> bool:
    """The regime's checks ``to_core`` does not make: every task on a CPU one of the
    session's threads or ksgxd (another task dissolves the session), the enclave set
    the session's, the static regime, the SECS resident and no LP but the threads'
    inside it or tracked."""
    system = sess.system
    m = system.machine
    kt = system.sgx.ksgxd_task
    index = sess.index
    lps = 0
    for task in m.running:
        if task is None or task is kt:
            continue
        if task not in index:
            sess.dissolve()
            return False
        assert task.cpu is not None
        lps |= 1 << task.cpu
    if not sess.same_enclaves():
        sess.dissolve()
        return False
    if not _static_regime(system):
        return False
    encl = sess.encls[0]
    hw = system.cpu
    if encl.secs_epc < 0 or encl.secs_epc not in hw.secs_at:
        return False
    st = hw.secs_at[encl.secs_epc]
    if lp_mask(st.inside) & ~lps or lp_mask(st.tracking) & ~lps:
        return False
    return not any(e >= 0 and not (lps >> c) & 1 for c, e in enumerate(hw.lp_eid))


def drive(sess: GroupSession, t: int) -> tuple[Any, Any] | None:
    """The core driven from thread row ``t``'s process after ``to_core``, then the
    hand-back (module docstring) - or, at a ``run(until=)`` deadline, the group left
    resident on the core, this process parked (``group_resident.py``, session
    ``resident``)."""
    asleep = run_core(sess)
    if int(sess.co.clk[C_HB]) == HB_DEADLINE and group_resident.parks(sess, asleep):
        return group_resident.park(sess, t)
    return back(sess, asleep, t)


def run_core(sess: GroupSession) -> bool:
    """The kernel's state onto the core, ``drive_slots`` until the core hands back, the
    counts, and the folds every hand-back makes (the kernel's state, the threads' rows
    and CPUs, the pins); returns whether ksgxd is asleep on the core. A move's drive, and
    a resident group's next slice (``group_resident.run_until``)."""
    owner = sess.owner
    system = sess.system
    sv = sess.sv
    co = sess.co
    kr = sess.kr
    encl = sess.encls[0]
    secs = system.cpu.secs_state(encl.secs_epc)
    sess._secs = secs
    sess.kt, sess.nblk = refresh_slots(system, sess.encls, sess.kt, sess.nblk)
    take_slots(system, sess.encls, sess.secss, sess.kt)
    ks = sess.kt[0]
    kc = ks.kc
    ke = ks.ke
    kc[K.K_HIGH] = sess.high
    kc[K.K_HB] = kc[K.K_HB_PAGE] = kc[K.K_SVC] = 0
    ke[K.K_SECS_EPC] = encl.secs_epc
    kc[K.K_THREAD_T] = 0
    kc[K.K_NTHREADS] = kr
    kc[K.K_THREAD_SLOT] = 0
    kc[K.K_TOP_STOP] = 0
    ke[K.K_INSIDE] = sess._take_rows()
    ke[K.K_TRACKING] = lp_mask(secs.tracking)
    ke[K.K_CPUMASK] = 0  # the mm's other tasks hold no CPU (_movable); the rows' added
    done0 = sum(int(row.tc[T.TC_DONE]) for row in sess.rows)
    rc, sess.kt = drive_slots(
        owner.drive, system, sess.encls, co, sess.kt, sess.tsx, 0, -1, {}, rows=sess.rows
    )
    ks = sess.kt[0]
    owner.group_accesses += sum(int(row.tc[T.TC_DONE]) for row in sess.rows) - done0
    owner.group_moves += 1
    owner.entries += 1
    sv.inline_moves += 1
    owner.ksgxd_pages += int(ks.cnt[K.CN_PAGES])
    hb = int(co.clk[C_HB])
    if rc != HANDED_BACK:
        raise RuntimeError(f"fast_core: the group's core stopped with rc {rc}")
    if hb == HB_DEADLINE:
        owner.deadline_stops += 1
    else:  # a machine's stop (``kstate.KB_*``) or the core's regime's edge
        name = K.KB_NAMES[int(ks.kc[K.K_HB])] if hb >= 100 else HB_NAMES[hb]
        owner.group_edges[name] = owner.group_edges.get(name, 0) + 1
        if hb == 100 + K.KB_SECS and int(co.clk[C_HB_TASK]) == kr:
            owner.secs_stops += 1
    asleep = _ksgxd_asleep(co, kr)
    # each thread's CPU first: its LP state folds onto it. Only the CPU: ``to_simpy``
    # below writes every scheduler field of every task from the core (``fold_task``'s and
    # more), and nothing between reads the others (session ``many64``: 64 ``fold_task``
    # calls, ~120 us a slice)
    for th, c in zip(sess.threads, co.tasks[:kr, T_CPU].tolist(), strict=True):
        th.cpu = None if c < 0 else c
    sess._fold_rows(ks, others=False)
    fold_slots(system, sess.encls, sess.secss, sess.kt, skip=0)
    sess.fold_pins()
    return asleep


def back(sess: GroupSession, asleep: bool, inline: int) -> tuple[Any, Any] | None:
    """The move back after ``run_core``: ``to_simpy(inline=...)`` (-1 from a resident
    group's ``materialise``: every own process re-pointed), ksgxd's generator waiting
    again if it sleeps on the core, the session's slots kept for the next entry."""
    sv = sess.sv
    owner = sess.owner
    kr = sess.kr
    kept = to_simpy(sv, inline=inline)
    if asleep:
        # ksgxd asleep on the core: its generator's wait again (parked, or a generator
        # built at that point of ``Sgx._ksgxd``); row ``kr`` free for the next park
        sess.asleep_on_core()
        sess.parked = []
        sv.procs[kr] = None
        sess.ksgxd_out = False
    owner.keep(sess)
    return kept


__all__ = [
    "REFUSED",
    "UNJOINED",
    "UNJOINED_WAIT",
    "back",
    "drive",
    "give_up",
    "movable",
    "move",
    "run_core",
]
