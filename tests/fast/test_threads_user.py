"""Several enclave threads on the compiled core from the user path (issue 9 row 10, N6;
``fast/driver/stream_group.py``, PATHS.md "Several threads on the core", session
``n6user``).

``Enclave.start``'s threads, each its own stream and TCS, each on its own CPU (threads +
ksgxd <= CPUs), run by ``System.run(until=)`` slices at drawn instants and then
``System.run()``: after every slice fast with the core equals fast without it in every
observable (every thread's CPU accounting, entry state and outcome, the LPs and the
SECS's inside/tracking sets, the lock's trace, the latencies in order, the counters, the
event queue and the next eid), and both equal the reference in all but the engine's own
``ENGINE_KEYS``. Linux's and the FIFO mutex, CFS and FIFO CPUs, direct reclaim on and off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from threads_user_cases import agree

from epcsim.fast.driver import group_move

LONG = bool(os.environ.get("EPCSIM_LONG"))

#: the drawn shapes with threads + ksgxd > CPUs (``clk[C_MANY]``), for both properties of
#: that regime below: the groups' moves with ``UNJOINED`` out of reach, and the mid-fault joins
MANY_SHAPES = dict(
    seed=st.integers(0, 2**16),
    epc=st.sampled_from(["256K", "512K"]),
    mult=st.sampled_from([2, 3, 4]),
    nthreads=st.integers(3, 6),
    cpus=st.integers(1, 3),
    hot=st.sampled_from([0.0, 0.5, 1.0]),
    fifo=st.sampled_from(["", "sched", "mutex", "mutex+sched"]),
    direct=st.booleans(),
    deadlines=st.lists(st.integers(1, 3_000_000), max_size=12).map(sorted),
)


@settings(
    max_examples=40 if LONG else 6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc=st.sampled_from(["256K", "512K"]),
    mult=st.sampled_from([2, 3, 4]),
    nthreads=st.integers(2, 4),
    idle=st.integers(0, 1),
    hot=st.sampled_from([0.0, 0.5, 1.0]),
    fifo=st.sampled_from(["", "mutex", "sched", "mutex+sched"]),
    direct=st.booleans(),
    deadlines=st.lists(st.integers(1, 3_000_000), max_size=16).map(sorted),
)
def test_started_threads_on_the_core_match_the_reference(
    seed: int, epc: str, mult: int, nthreads: int, idle: int, hot: float, fifo: str,
    direct: bool, deadlines: list[int],
) -> None:  # fmt: skip
    """After every slice (module docstring): reference == fast == fast with the core."""
    agree(seed, epc, mult, nthreads + 1 + idle, nthreads, 200, hot, fifo, direct, deadlines)


def test_several_threads_ran_on_the_core_from_the_user_path() -> None:
    """The guard: row 10's shape, small (3 threads each on its own CPU, ksgxd on a fourth,
    uniform over 4x the EPC, 200 us slices, then ``run()``), each mutex: the threads'
    group moved onto the core at the slices' first events and ran most of the accesses
    there, every slice equal to the fast engine's and the reference's."""
    _group_ran_most(cpus=4, nthreads=3, variants=("", "mutex+sched"))


def _group_ran_most(cpus: int, nthreads: int, variants: tuple[str, ...]) -> None:
    """Row 10's shape, small (uniform over 4x a 256K EPC, 200 us slices then ``run()``):
    for each mutex/CPU variant a group moved onto the core and ran most of the accesses,
    every slice equal to the fast engine's and the reference's (``agree``)."""
    deadlines = [200_000 * k for k in range(1, 9)]
    for fifo in variants:
        sc = agree(5, "256K", 4, cpus, nthreads, 600, 0.0, fifo, False, deadlines)
        assert sc.group_sessions > 0 and sc.group_moves > 0, fifo
        assert sc.group_accesses > 0.5 * sc.accesses, (fifo, sc.group_accesses, sc.accesses)


def test_a_dissolved_groups_ksgxd_goes_back_to_its_generator() -> None:
    """The guard on ``_worth_serving``'s dissolved group (session ``fixes``): two threads
    on four CPUs, one stream ends first and dissolves the group, and the other's must
    reach the core again - ksgxd's served machine goes back to its generator at K0 and a
    session of its own forms at its loop top - each mutex (FIFO CPUs). Served on, the
    group's ksgxd kept the thread in Python for the rest of its stream: 4,845 served
    steps against 609 accesses on the core (Linux's mutex), 1,539 against 601 (the FIFO
    mutex); now ~330 and ~190 against 735 of 755. Every slice equal to the fast engine's
    and the reference's."""
    deadlines = [562_663, 1_656_597, 1_790_695, 1_864_876, 2_419_735, 2_995_277]
    for fifo in ("sched", "mutex+sched"):
        sc = agree(8392, "256K", 4, 4, 2, 600, 0.0, fifo, False, deadlines)
        assert sc.group_moves > 0, fifo
        assert sc.served_steps < 0.5 * sc.accesses, (fifo, sc.served_steps, sc.accesses)
        assert sc.accesses > sc.group_accesses + 100, (fifo, sc.accesses, sc.group_accesses)


@settings(
    max_examples=24 if LONG else 4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(**MANY_SHAPES)
def test_more_threads_than_cpus_on_the_core_match_the_reference(
    seed: int, epc: str, mult: int, nthreads: int, cpus: int, hot: float, fifo: str,
    direct: bool, deadlines: list[int],
) -> None:  # fmt: skip
    """Threads + ksgxd > CPUs (``clk[C_MANY]`` on the user path: the FIFO mutex since
    session ``cmany``, Linux's since ``linuxmx``; 3-6 threads on 1-3 CPUs, CFS and FIFO
    CPUs, direct reclaim on and off): after every slice reference == fast == fast with
    the core, as above. The sessions wait for their threads to join (``unjoined_kept``)."""
    with unjoined_kept():
        agree(seed, epc, mult, cpus, nthreads, 200, hot, fifo, direct, deadlines)


@contextlib.contextmanager
def unjoined_kept() -> Iterator[None]:
    """``group_move.UNJOINED`` (when a session with a thread not joined gives up, a cost
    choice, exact either way) raised out of reach: with Linux's mutex a thread is nearly
    always waiting for a CPU inside its Python fault, and at 8 attempts a thread no group
    ever moved (session ``linuxmx``: 0 moves in 9 shapes), so the moves of its sleeping
    half would go untested from the user path."""
    kept = group_move.UNJOINED
    group_move.UNJOINED = 1 << 40
    try:
        yield
    finally:
        group_move.UNJOINED = kept


def test_more_threads_than_cpus_ran_on_the_core_from_the_user_path() -> None:
    """The guard for ``C_MANY`` (session ``cmany``): 4 threads on 2 CPUs with ksgxd (the
    FIFO mutex, CFS and FIFO CPUs, uniform over 4x the EPC, 200 us slices, then
    ``run()``): the group moved onto the core with tasks waiting for a CPU and ran most
    of the accesses there, every slice equal to the fast engine's and the reference's.
    Linux's mutex (session ``linuxmx``) with CFS too, the sessions waiting for their
    threads to join (``unjoined_kept``): 1,422 of 1,865 accesses on the core in 4 moves,
    the first after 11,477 attempts (with FIFO CPUs its threads did not all join in this
    shape: no move)."""
    _group_ran_most(cpus=2, nthreads=4, variants=("mutex", "mutex+sched"))
    with unjoined_kept():
        _group_ran_most(cpus=2, nthreads=4, variants=("",))


def test_a_group_move_keeps_no_lp_of_its_own_threads_example() -> None:
    """Met by ``test_threads_core.test_threads_match_the_reference`` in a landing run
    (2026-11-27, session ``cmany``; on main 75fac7f too with the core engaged): 2 threads
    on 4 CPUs, the FIFO mutex and CPUs, ``start_streams`` then ``env.run()`` - the group
    moved once and the core ran 270 accesses, a thread changing CPUs there. At the
    hand-back ``GroupSession._fold_rows`` kept the LP of a CPU no session thread held
    then as another thread's (inside, its TCS busy): the other thread's next EENTER failed
    and its stream ended with SIGBUS at 98 of 216 accesses. After a move's drive every LP
    is the session's (``_movable``), so none is kept (``others=False``)."""
    from threads_cases import run_both

    (ref, _, _, outs), _ = run_both(
        1120, "fast", "1M", 4, 4, 2, 233, 0.99, "mutex+sched", fast_core=True
    )
    (_, _, _, want), _ = run_both(1120, "reference", "1M", 4, 4, 2, 233, 0.99, "mutex+sched")
    sc = ref.sgx.stream_core
    assert sc.group_moves > 0
    assert [dataclasses.astuple(o) for o in outs] == [dataclasses.astuple(o) for o in want]


@settings(
    max_examples=16 if LONG else 3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(**MANY_SHAPES)
def test_threads_joined_mid_fault_match_the_reference(
    seed: int, epc: str, mult: int, nthreads: int, cpus: int, hot: float, fifo: str,
    direct: bool, deadlines: list[int],
) -> None:  # fmt: skip
    """Threads + ksgxd > CPUs with ``group_move.UNJOINED`` at its real value (session
    ``join``): the moves take the threads that are not at their loop top where
    ``group_join`` maps their wait (a stream's start off its CPU, ``encl->lock`` in an
    access's fault or the entry's TCS fault), each mutex, CFS and FIFO CPUs; after every
    slice reference == fast == fast with the core, as above."""
    assert group_move.UNJOINED == 8
    agree(seed, epc, mult, cpus, nthreads, 200, hot, fifo, direct, deadlines)


def test_group_moves_join_threads_mid_fault() -> None:
    """The guard for ``group_join`` (session ``join``): 4 threads on 2 CPUs with ksgxd,
    Linux's mutex, ``UNJOINED`` at its real value, uniform over 4x the EPC, 200 us slices
    then ``run()``, CFS: the moves joined threads at each mapped point (``KINDS``: 2 at a
    stream's start, 1 on ``encl->lock`` in an access's fault, 2 in the entry's TCS fault)
    and the core ran most of the accesses (1,4xx of 1,5xx in 8 moves); before, no group
    with Linux's mutex moved in this shape (``unjoined_kept``'s docstring). Every slice
    equal to the fast engine's and the reference's."""
    from epcsim.fast.driver.group_join import KINDS

    deadlines = [200_000 * k for k in range(1, 9)]
    with pokes_counted() as pokes:
        sc = agree(3, "256K", 4, 2, 4, 600, 0.0, "", False, deadlines)
    assert sc.group_moves > 0
    assert sc.group_accesses > 0.5 * sc.accesses, (sc.group_accesses, sc.accesses)
    assert set(sc.mid_joins) == set(KINDS), sc.mid_joins
    # and the guard for ``transfer_pokes`` (session ``pokes``): the moves met stale pokes,
    # set some aside past their horizon and found them again by identity at a later move,
    # kept aside or due before that move's horizon and handed to the core (93, 248, 93)
    assert pokes["new"] > 0 and pokes["kept"] > 0 and pokes["due"] > 0, pokes


@contextlib.contextmanager
def pokes_counted() -> Iterator[dict[str, int]]:
    """``transfer_pokes.set_aside`` wrapped (session ``pokes``): at each move, the stale
    pokes met (``stale``), set aside anew (``new``), kept aside again (``kept``) and, of
    those a move before set aside, the ones now due before its horizon (``due``: to the
    core, their task read from ``keep``'s callback)."""
    from epcsim.fast.cosim import transfer_pokes

    counts = dict(moves=0, stale=0, new=0, kept=0, due=0)
    real = transfer_pokes.set_aside

    def counted(kept, stale, horizon, rows, tix):  # type: ignore[no-untyped-def]
        n_rows = len(rows)
        still, new = real(kept, stale, horizon, rows, tix)
        counts["moves"] += 1
        counts["stale"] += len(stale)
        counts["new"] += len(new)
        counts["kept"] += len(still)
        counts["due"] += len(rows) - n_rows - (len(stale) - len(new))
        return still, new

    transfer_pokes.set_aside = counted  # type: ignore[assignment]
    try:
        yield counts
    finally:
        transfer_pokes.set_aside = real  # type: ignore[assignment]


@settings(
    max_examples=12 if LONG else 1,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(**{**MANY_SHAPES, "fifo": st.sampled_from(["", "sched"]), "cpus": st.integers(1, 2)})
def test_threads_with_pokes_set_aside_match_the_reference(
    seed: int, epc: str, mult: int, nthreads: int, cpus: int, hot: float, fifo: str,
    direct: bool, deadlines: list[int],
) -> None:  # fmt: skip
    """Linux's mutex with threads + ksgxd > CPUs, where spinners' stale pokes are queued
    at the moves (``transfer_pokes``, session ``pokes``: the ones after the core's horizon
    stay out of its heap and go back into SimPy's queue at the move back): after every
    slice reference == fast == fast with the core, as above - the queue's keys, the next
    eid, the mutex's counters and the latencies included."""
    with unjoined_kept(), pokes_counted():
        agree(seed, epc, mult, cpus, nthreads, 200, hot, fifo, direct, deadlines)


def test_a_tcs_fault_joined_mid_way_stops_under_the_lock(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``TC_TCS_RETRY`` of a ``tcs_lock`` join (PATHS.md, session ``join``'s Left item 3;
    session ``tidy``): the guard's shape above, and after its second slice every evicted
    TCS's backing record tampered with (alike on the three engines). Thread ``t0``, in its
    entry's TCS fault waiting on ``encl->lock``, is joined mid-way by the next move
    (``tcs_lock``); its fault, resumed on the core, takes the lock and the record's check
    stops it before ELDU (``KB_ELDU``, under the lock). The rest is ``_ensure_tcs``'
    (``tcs_fault_locked``): the stream's SIGBUS at the TCS's address, ``entry_fault`` set,
    as the reference's entry reports it (before, the group went on as an access's fault:
    SIGBUS at the access's page). Every slice equal; the guard: a stop under the lock of
    the very fault a ``tcs_lock`` join took (its row and ``TC_T0``)."""
    from epcsim.fast.driver import group_join, stream_group
    from epcsim.fast.driver import kstate as K
    from epcsim.fast.driver import tstate as T

    joined, rests = set(), []
    retire = group_join.retire

    def record_join(sess, mids):  # type: ignore[no-untyped-def]
        for r, (_proc, mid) in (mids or {}).items():
            if mid[0] == "tcs_lock":
                joined.add((sess.threads[r].name, mid[5]))
        return retire(sess, mids)

    fault_rest = stream_group._fault_rest

    def record_rest(thread, tc):  # type: ignore[no-untyped-def]
        rests.append((thread.name, int(tc[T.TC_T0])))
        return fault_rest(thread, tc)

    monkeypatch.setattr(group_join, "retire", record_join)
    monkeypatch.setattr(stream_group, "_fault_rest", record_rest)

    def tamper(k, system, encl, threads):  # type: ignore[no-untyped-def]
        if k == 1:
            for t in threads:
                if encl.epc[t.tcs_index] < 0:
                    encl.backing.tamper(t.tcs_index, contents=b"\x00" * 8)

    deadlines = [200_000 * k for k in range(1, 9)]
    sc = agree(3, "256K", 4, 2, 4, 600, 0.0, "", False, deadlines, at=tamper)
    assert joined & set(rests), (joined, rests)
    assert sc.fault_stops.get(K.KB_ELDU, 0) >= 1, sc.fault_stops
