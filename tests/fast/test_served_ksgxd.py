"""ksgxd's compiled machine served by SimPy on a live ``System`` and moved between SimPy and
the core in the middle of its batches (``fast/driver/served_ksgxd.py``), ksgxd alone.

The scenario of ``test_driver_ksgxd`` (a thread's sweep, then ksgxd woken with work to
do): the reference runs ``wake_ksgxd(); env.run()``, the other copy
``run_ksgxd_switching`` with drawn switch points - core, SimPy, core, ... - and every array,
record, counter, clock and lock field must be equal; then both copies sweep again (the
reference's own ksgxd generator back on its wait queue in the second) and must still be.
Shrinking is off: each example builds two systems, and a failure is reproduced from its
printed arguments.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ksgxd_cases import build, differ, snapshot

import epcsim.fast.driver.served_ksgxd as served_ksgxd
from epcsim.fast.cosim.state import T_PC
from epcsim.fast.driver.ksgxd import P_NAMES
from epcsim.fast.driver.served_ksgxd import run_ksgxd_switching

EXAMPLES = 60 if os.environ.get("EPCSIM_LONG") else 6


def _both(seed: int, engine: str, extra: int, keep_free: int, switches: list[int]):  # type: ignore[no-untyped-def]
    n = 256 + extra
    ref = build(seed, engine, "1M", n, keep_free)
    drv = build(seed, engine, "1M", n, keep_free)
    ref.sgx.wake_ksgxd()
    ref.machine.env.run()
    result = run_ksgxd_switching(drv, switches)
    assert result.handed_back is None, result
    assert result.pc == "wait"
    assert differ(snapshot(ref), snapshot(drv)) == []
    # the System goes on with the reference's own ksgxd
    for system in (ref, drv):
        (encl,) = system.enclaves
        rng = np.random.default_rng(seed + 1)
        encl.access_pages(rng.permutation(n)[: n // 2].tolist())
        system.run()
    assert differ(_named(snapshot(ref)), _named(snapshot(drv))) == []
    return ref, drv


def _named(snap: dict[str, object]) -> dict[str, object]:
    """``snapshot`` with the lock's owner by name (a run can end with ksgxd holding it, and
    two systems' Task objects never compare equal)."""
    owner, *rest = snap["lock"]  # type: ignore[misc]
    return {**snap, "lock": (None if owner is None else owner.name, *rest)}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    seed=st.integers(0, 2**16),
    engine=st.sampled_from(["fast", "reference"]),
    extra=st.integers(16, 300),
    keep_free=st.integers(0, 40),
    switches=st.lists(st.integers(1, 40), min_size=1, max_size=12),
)
def test_ksgxd_moved_mid_batch_matches_the_reference(seed, engine, extra, keep_free, switches):
    _both(seed, engine, extra, keep_free, switches)


def test_moves_happen_inside_batches(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Switching every few events moves ksgxd to SimPy inside its batches - B, C and D,
    with ``encl->lock`` held - and back, and the result is still the reference's."""
    at: list[str] = []
    to_simpy = served_ksgxd.to_simpy

    def spy(sv):  # type: ignore[no-untyped-def]
        at.append(P_NAMES[int(sv.st.tasks[0, T_PC])])
        to_simpy(sv)

    monkeypatch.setattr(served_ksgxd, "to_simpy", spy)
    for engine in ("fast", "reference"):
        _both(3, engine, 120, 0, [3, 2] * 60)
    # waiting for its run steps: the age check (B), backing_alloc and EBLOCK and EWB with
    # ``encl->lock`` held (B, C, D), ETRACK
    for phase in ("age", "backing", "eblock", "ewb", "etrack"):
        assert any(p.startswith(phase) for p in at), (phase, sorted(set(at)))


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("switches", [[], [1], [5] * 40, [2, 7] * 20])
def test_the_secs_eviction_is_continued_in_python(engine, switches, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A small EPC whose every resident child ksgxd writes back: the driver stops before
    the SECS's last child's D step (``KB_SECS``), on the core or served, and ksgxd's own
    generator takes over there - the rest of the batch (``sgx_reclaim_write_back`` from
    that page), the SECS's eviction, the loop - to its sleep: all equal to the reference,
    and so is what the ``System`` does next."""
    served_stops = []
    fold = served_ksgxd.fold_kernel

    def spy(*a):  # type: ignore[no-untyped-def]
        served_stops.append(1)
        fold(*a)

    monkeypatch.setattr(served_ksgxd, "fold_kernel", spy)
    ref = build(5, engine, "512K", 140, 0)
    drv = build(5, engine, "512K", 140, 0)
    ref.sgx.wake_ksgxd()
    ref.machine.env.run()
    result = run_ksgxd_switching(drv, switches)
    assert result.handed_back == "SECS eviction, continued in Python"
    assert ref.sgx.stats.secs_evictions == drv.sgx.stats.secs_evictions == 1
    assert differ(_named(snapshot(ref)), _named(snapshot(drv))) == []
    for system in (ref, drv):
        (encl,) = system.enclaves
        encl.access_pages(list(range(0, 140, 3)))
        system.run()
    assert differ(_named(snapshot(ref)), _named(snapshot(drv))) == []
    if engine == "reference" and switches == [1]:
        assert served_stops  # the served machine met KB_SECS (not only the core)


@pytest.mark.parametrize("switches", [[1], [3, 2] * 30])
def test_python_between_served_steps_sees_the_kernel_as_it_is(switches) -> None:  # type: ignore[no-untyped-def]
    """Served, the kernel's scalars are taken before each step and folded after it
    (``bridge.take_small``/``fold_kernel``): Python code running between two served steps
    finds ``nr_free_pages`` equal to the free list's length and the counters and the
    backing store's record count in step with each other and growing batch by batch - not
    frozen at their entry values until the call's end - and the result is still the
    reference's. On the reference engine: the fast engine elides ksgxd's run steps (it is
    alone), so its whole batch fits in the core's first events and no step is served."""
    from epcsim.kernel.page_list import LEN

    ref = build(11, "reference", "1M", 420, 0)
    drv = build(11, "reference", "1M", 420, 0)
    ref.sgx.wake_ksgxd()
    ref.machine.env.run()
    sgx = drv.sgx
    (encl,) = drv.enclaves
    b = encl.encl.backing
    ewb0, nr0 = sgx.stats.ewb, b.nr_records
    seen: list[tuple[int, int]] = []

    def between(n: int) -> None:
        epc = sgx.epc
        listed = sum(int(epc.links.ends[fl.row, LEN]) for fl in epc.free_lists.values())
        assert epc.nr_free_pages == listed, (n, epc.nr_free_pages, listed)
        assert sgx.stats.ewb - ewb0 == b.nr_records - nr0, n
        seen.append((sgx.stats.ewb - ewb0, int(sgx.ksgxd_sleeping)))

    result = run_ksgxd_switching(drv, switches, between=between)
    assert result.handed_back is None, result
    assert differ(snapshot(ref), snapshot(drv)) == []
    # the guard: many served steps, and the kernel's state moved between them
    assert len(seen) > 50
    final = ref.sgx.stats.ewb - ewb0
    assert final > 0
    assert len({e for e, _ in seen}) > 2
    assert any(0 < e < final for e, _ in seen)
    # ksgxd_sleeping folded too: awake between the steps; only a last served step (its
    # wait at K0, when SimPy ends the call) may leave it asleep
    assert 1 not in [s for _, s in seen][:-1]
    assert seen[-1][1] == int(switches == [1])
