"""A thread group left resident on the compiled core between ``System.run(until=)`` slices
(issue 9 row 10, ``fast/driver/group_resident.py``, session ``resident``).

The same run sliced with residency and without it (``group_resident.RESIDENT`` off: every
deadline moves the group back to SimPy, as before) gives, after every slice, the same
clock, counters (``stats()``), threads alive, mutex trace (the event order), mutex
counters and threads' scheduler fields - read without materialising - and at the end the
same everything (``threads_user_cases._snap``: the LPs, the run queue, SimPy's queue and
the next eid, every outcome). Between slices, drawn: nothing, a new thread
(``Enclave.start``), an ioctl (``restrict_permissions``), an access (``System._call``), a
sampler started (an observer in SimPy's queue), a read of ``System.machine``; threads of
unequal lengths end on their own, and the run ends with ``run()``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from threads_user_cases import _snap

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.driver import group_move, group_resident
from epcsim.scenario.sampler import Sampler

EPC = 64
LONG = bool(os.environ.get("EPCSIM_LONG"))

#: what runs between two slices (module docstring)
KINDS = ("none", "machine", "ioctl", "access", "start", "sampler")


@contextlib.contextmanager
def resident(on: bool) -> Iterator[None]:
    old = group_resident.RESIDENT
    group_resident.RESIDENT = on
    try:
        yield
    finally:
        group_resident.RESIDENT = old


def _plain(system: epcsim.System, threads: list[Any], procs: list[Any], lock: Any) -> Any:
    """What a slice's end shows without materialising (``group_resident``'s docstring)."""
    m = system._machine  # not ``System.machine``: that would materialise
    return (
        system.now,
        system.stats(),
        [p.is_alive for p in procs],
        list(lock.trace),
        (None if lock.owner is None else lock.owner.name, lock.contended, lock.wait_ns,
         lock.steals, lock.handoffs),
        [None if t is None else t.name for t in m.running],
        (m.context_switches, m.elided),
        [(t.cpu, t.last_cpu, t.busy_ns, t.step_end, t.step_ns, t.slice_start, t.vruntime,
          t.started, t._resched) for t in threads],
    )  # fmt: skip


def user_slices(
    on: bool,
    seed: int,
    cpus: int,
    nthreads: int,
    mutex: str,
    slices: list[tuple[int, str]],
    length: int = 600,
    want: list[str] | None = None,
    to_end: bool = True,
) -> tuple[list[Any], dict[str, int]]:
    """The run (module docstring): ``slices`` of (µs, what runs after it); returns every
    slice's observables and the end's, and the kinds met while the group was resident.
    ``want``: the kinds to run, in order, each after the first slice that leaves the group
    resident (from then on, the kinds in ``slices`` are replaced: "none" or the one run,
    written back into ``slices`` for the run without residency to repeat). ``to_end``: the
    run ends with ``run()``, else with the last slice."""
    met: dict[str, int] = {}
    with resident(on):
        system = epcsim.System(
            epc=EPC * PAGE_SIZE, cpus=cpus, seed=seed, mutex=mutex, fast_core=True, check=True
        )
        n = 256
        encl = system.create_enclave(1 << int(np.ceil(np.log2((n + nthreads + 4) * PAGE_SIZE))))
        assert encl.add_pages(0, (nthreads + 4) * PAGE_SIZE, page_type="tcs").ok
        base = nthreads + 4
        assert encl.add_pages(base * PAGE_SIZE, n * PAGE_SIZE).ok and encl.init().ok
        rng = np.random.default_rng(seed)
        threads: list[Any] = []
        new_thread = encl.new_thread
        encl.new_thread = lambda name="": threads.append(new_thread(name)) or threads[-1]  # type: ignore[method-assign]
        lock = encl.encl.lock
        lock.trace = []
        procs = [
            encl.start(base + rng.integers(0, n, size=length * (1 + i % 3)), name=f"t{i}")
            for i in range(nthreads)
        ]
        out: list[Any] = []
        extra = 0
        for i, (us, kind) in enumerate(slices):
            system.run(until=f"{us}us")
            out.append(_plain(system, threads, procs, lock))
            if want is not None:
                kind = want.pop(0) if want and system._resident is not None else "none"
                slices[i] = (us, kind)
            if system._resident is not None:
                met[kind] = met.get(kind, 0) + 1
            if kind == "start" and extra < 4:
                procs.append(encl.start(base + rng.integers(0, n, size=200), name=f"x{extra}"))
                extra += 1
            elif kind == "ioctl":
                r = encl.restrict_permissions((base + 1) * PAGE_SIZE, PAGE_SIZE, "r")
                out.append((r.ok, r.errno))
            elif kind == "access":
                out.append(encl.access((base + 2) * PAGE_SIZE).ok)
            elif kind == "sampler":
                Sampler(system, 100_000).start(system.machine.env.event())
            elif kind == "machine":
                out.append(_snap(system, [], procs))
            if kind != "none":
                out.append(system._resident is None)  # each materialised the group
        if to_end:
            system.run()
            out.append(_plain(system, threads, procs, lock))
        out.append(_snap(system, [], procs))
    return out, met


def agree(**kw: Any) -> dict[str, int]:
    """Both runs equal after every slice; returns the kinds met while resident."""
    base, met0 = user_slices(False, **kw)
    assert not met0
    new, met = user_slices(True, **kw)
    assert len(base) == len(new)
    for k, (a, b) in enumerate(zip(base, new, strict=True)):
        assert a == b, f"entry {k} differs"
    return met


def _both(want: list[str], **kw: Any) -> dict[str, int]:
    """The run with residency (``want`` met as it goes), then without it on the same
    slices: equal entry by entry; returns the kinds met while resident."""
    slices = [(150, "none")] * kw.pop("n")
    new, met = user_slices(True, slices=slices, want=want, **kw)
    base, met0 = user_slices(False, slices=slices, **kw)
    assert not met0
    for k, (a, b) in enumerate(zip(base, new, strict=True)):
        assert a == b, f"entry {k} differs"
    return met


def test_resident_slices_match_every_interruption() -> None:
    """Every kind of interruption met with the group resident, more threads than CPUs:
    the guard that the property below tests residency at all. Linux's mutex: a new task
    on a CPU dissolves the group, and its next forms only after ``UNJOINED_WAIT`` loop
    tops (``group_move``), so one such kind a run."""
    met = _both(["machine", "ioctl", "access", "start", "sampler"], n=25,
                seed=3, cpus=3, nthreads=6, mutex="fifo", length=150, to_end=False)  # fmt: skip
    assert set(met) == set(KINDS[1:]), met
    met = _both(["none", "machine", "access"], n=8,
                seed=3, cpus=3, nthreads=6, mutex="linux", length=100)  # fmt: skip
    assert set(met) == {"none", "machine", "access"}, met


@settings(
    max_examples=24 if LONG else 2,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    cpus=st.integers(2, 8),
    nthreads=st.integers(4, 16),
    mutex=st.sampled_from(["linux", "fifo"]),
    slices=st.lists(
        st.tuples(st.integers(20, 400), st.sampled_from(KINDS)), min_size=1, max_size=8
    ),
)
def test_resident_slices_match_without_residency(
    seed: int, cpus: int, nthreads: int, mutex: str, slices: list[tuple[int, str]]
) -> None:
    agree(seed=seed, cpus=cpus, nthreads=nthreads, mutex=mutex, slices=slices, length=40)


def test_simpy_touched_outside_the_guard_raises() -> None:
    """An eid taken behind the guard's back (``env._eid`` read directly, not through
    ``schedule``) while the group is resident: the next slice raises rather than run with
    eids that could collide (``group_resident._as_left``)."""
    with resident(True):
        system = epcsim.System(epc=64 * PAGE_SIZE, cpus=3, seed=3, mutex="fifo", fast_core=True)
        encl = system.create_enclave(1 << 21)
        assert encl.add_pages(0, 10 * PAGE_SIZE, page_type="tcs").ok
        assert encl.add_pages(10 * PAGE_SIZE, 256 * PAGE_SIZE).ok and encl.init().ok
        rng = np.random.default_rng(3)
        for i in range(6):
            encl.start(10 + rng.integers(0, 256, size=300), name=f"t{i}")
        for _ in range(12):
            system.run(until="150us")
            if system._resident is not None:
                break
        assert system._resident is not None
        next(system._machine.env._eid)
        with pytest.raises(RuntimeError, match="resident"):
            system.run(until="150us")


def test_ksgxd_asleep_at_a_deadline_is_not_lost() -> None:
    """The example the landing's suite hung on (``test_threads_user.py``'s threads + ksgxd
    > CPUs property): ksgxd asleep on the core at deadlines, each slice's snapshot
    materialising - with residency as without it (PATHS.md, session ``resident``)."""
    from threads_user_cases import user_run

    kw: dict[str, Any] = dict(
        seed=13399, epc="512K", mult=2, cpus=1, nthreads=3, length=200, hot=1.0, fifo="",
        direct=False, deadlines=[121806, 908484, 929843, 977628, 1449973, 1770486],
    )  # fmt: skip
    runs = []
    kept = group_move.UNJOINED
    group_move.UNJOINED = 1 << 40  # as ``test_threads_user.unjoined_kept``: the group moves
    try:
        for on in (False, True):
            with resident(on):
                snaps, sc = user_run("fast", **kw)
            runs.append(snaps)
    finally:
        group_move.UNJOINED = kept
    assert sc is not None and sc.group_moves > 0
    assert runs[0] == runs[1]
