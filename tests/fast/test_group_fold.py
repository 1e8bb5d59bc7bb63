"""The group's moves without their per-row Python (session ``many64``, issue 9 row 10):
``thread_fold.fold_stacked`` folds a ``GroupSession``'s stacked rows as whole columns
(``fold_rows`` row by row before), ``to_core`` writes the tasks' scheduler fields as
columns and finds a ``FifoMutex`` sleeper's entry without scanning the wait list, and
``group_move.drive`` folds only each thread's CPU before ``to_simpy`` writes the rest.

The stacked fold is checked against the row-by-row fold on drawn rows (the same counters,
page count and arrays after); the moves' results are ``test_threads_user.py``'s (reference
== fast == fast with the core after every slice, more threads than CPUs included). The
guard here: on that file's ``C_MANY`` shape (4 threads on 2 CPUs, the FIFO mutex) the
stacked fold ran and moves carried FIFO-mutex sleepers onto the core (``TS_MSLEEP`` rows),
every slice equal to the fast engine's and the reference's.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from threads_user_cases import agree

from epcsim.fast.cosim.state import T_STATE, TS_MSLEEP
from epcsim.fast.driver import group_move, thread_fold
from epcsim.fast.driver import tstate as T


def _rows(seed: int, n: int) -> tuple[object, list[object]]:
    """``n`` stacked thread rows (``tstate.stack``) with drawn counters and deltas."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        tc = np.zeros(T.N_TC, np.int64)
        tc[T.TC_REMOVED], tc[T.TC_ADDED] = rng.integers(0, 4, size=2)
        tc[T.TC_PAGE_CNT] = rng.integers(0, 100)
        tc[T.TC_ENTERED] = rng.integers(0, 2)
        tcnt = rng.integers(0, 3, size=len(T.TCOUNTERS)) * rng.integers(0, 1000)
        empty = np.zeros(0, np.int64)
        pages = rng.integers(0, 9, size=3)
        lat = np.zeros(8, np.int64)
        row = T.TState(
            tc, tcnt.astype(np.int64), pages, np.zeros(3, np.bool_), empty, lat, empty, empty
        )
        rows.append(row)
    return T.stack(rows)


def _owner() -> tuple[SimpleNamespace, SimpleNamespace]:
    stats = SimpleNamespace(**{name: 7 for name in T.TCOUNTERS})
    return SimpleNamespace(sgx=SimpleNamespace(stats=stats)), SimpleNamespace(page_cnt=50)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 9))
def test_the_stacked_fold_is_the_row_by_row_fold(seed: int, n: int) -> None:
    """``fold_stacked`` of ``n`` stacked rows leaves the counters, the enclave's page
    count and every row's arrays as ``fold_rows`` does."""
    tsx_a, rows_a = _rows(seed, n)
    tsx_b, _ = _rows(seed, n)
    sys_a, encl_a = _owner()
    sys_b, encl_b = _owner()
    thread_fold.fold_rows(sys_a, encl_a, rows_a)  # type: ignore[arg-type]
    thread_fold.fold_stacked(sys_b, encl_b, tsx_b, n)  # type: ignore[arg-type]
    assert vars(sys_a.sgx.stats) == vars(sys_b.sgx.stats)
    assert encl_a.page_cnt == encl_b.page_cnt
    assert np.array_equal(tsx_a.tc, tsx_b.tc)  # type: ignore[attr-defined]
    assert np.array_equal(tsx_a.tcnt, tsx_b.tcnt)  # type: ignore[attr-defined]
    assert not tsx_b.tcnt.any()  # type: ignore[attr-defined]


def test_the_group_moves_per_row_paths_ran(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The guard (module docstring): ``test_threads_user``'s ``C_MANY`` shape, CFS."""
    folds = [0]
    msleep = [0]
    fold_stacked = thread_fold.fold_stacked
    to_core = group_move.to_core

    def counted_fold(*a):  # type: ignore[no-untyped-def]
        folds[0] += 1
        return fold_stacked(*a)

    def counted_move(sv):  # type: ignore[no-untyped-def]
        moved = to_core(sv)
        if moved:
            msleep[0] += int((sv.st.tasks[:, T_STATE] == TS_MSLEEP).sum())
        return moved

    monkeypatch.setattr(thread_fold, "fold_stacked", counted_fold)
    monkeypatch.setattr(group_move, "to_core", counted_move)
    deadlines = [200_000 * k for k in range(1, 9)]
    sc = agree(5, "256K", 4, 2, 4, 600, 0.0, "mutex", False, deadlines)
    assert sc.group_moves > 0 and sc.group_accesses > 0.5 * sc.accesses
    assert folds[0] > 0 and msleep[0] > 0, (folds, msleep)
