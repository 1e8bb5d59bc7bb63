"""Two enclaves on the user path of the compiled core (PATHS.md "Two enclaves in the
regime", session ``twoencl3``): the thread's and the ioctl machines' own enclave slot
(``tstate.TC_ESLOT``: its ``KState``, its ``encl->lock`` as the core's mutex row), ksgxd's
and the direct batches' victims of either enclave, the sessions over both slots
(``stream_ksgxd.Session``: taken, folded, served and stopped per slot), a backing file's
first record through the machines' ``SVC_STORE``, and the other enclave's SECS eviction
(ksgxd's ``KB_SECS``, or the adder's allocation batch's: ``END_DIRECT``).

The scenario is the demo's "idle neighbour" layout (``two_enclave_cases.two_user_scenario``):
A built, then B built on the core reclaiming A's pages, then A's trim reclaiming B's, then
B accessed again. Every step must be equal on the reference, the fast engine without the
core and with it (``core_cases.agree``): A's whole ``core_snap`` and B's ``enclave_part`` -
pages, VA list, records byte for byte, SECS state, both locks' fields and traces.

On one CPU too (session ``twoone``: "One CPU" and two enclaves together): the tasks share
the CPU through the core's run queue, each mutex and run-queue flavour, with guards for the
stops met with the thread switched out and for B's thread yielding inside B.
"""

from __future__ import annotations

import os

import pytest
from core_cases import agree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_core_cases import keep_demo_systems
from two_enclave_cases import two_user_scenario

from epcsim import demo
from epcsim.fast.driver import core_served

LONG = bool(os.environ.get("EPCSIM_LONG"))

#: the model's FIFO variants (session ``fifo``) besides Linux's mutex and CFS
VARIANTS = ({}, {"mutex": "fifo", "sched": "fifo"})
#: on one CPU each combination, as ``test_one_cpu_core``'s (the run queue's two flavours)
ONE_CPU_VARIANTS = ({}, {"mutex": "fifo", "sched": "fifo"}, {"mutex": "fifo"}, {"sched": "fifo"})


@settings(max_examples=60 if LONG else 8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.integers(96, 192),
    cpus=st.sampled_from([2, 4]),
    heap_x=st.floats(0.4, 1.2),
    nb_x=st.floats(0.5, 1.3),
    direct=st.booleans(),
    again=st.integers(0, 96),
    variant=st.sampled_from(VARIANTS),
)
def test_two_enclaves_on_the_user_path_match_the_reference(
    seed: int, epc_pages: int, cpus: int, heap_x: float, nb_x: float, direct: bool,
    again: int, variant: dict[str, str],
) -> None:  # fmt: skip
    agree(two_user_scenario, (seed, epc_pages, cpus, heap_x, nb_x, direct, again), variant)


def test_the_core_takes_both_enclaves() -> None:
    """The guard: B's build and A's trim run on the core (``adds``, ``trims``), B's
    accesses too, and the core writes back pages of the enclave that is not the caller's
    (``foreign_records``: B's first records among them, A's SECS evicted on the way)."""
    adds, trims, accesses, foreign, *_ = agree(
        two_user_scenario, (3, 128, 2, 0.9, 1.0, False, 64), {}
    )
    assert adds > 0 and trims > 0 and accesses > 0 and foreign > 0, (adds, trims, accesses)


@settings(max_examples=40 if LONG else 6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.integers(96, 192),
    heap_x=st.floats(0.4, 1.2),
    nb_x=st.floats(0.5, 1.3),
    direct=st.booleans(),
    again=st.integers(0, 96),
    variant=st.sampled_from(ONE_CPU_VARIANTS),
)
def test_two_enclaves_on_one_cpu_match_the_reference(
    seed: int, epc_pages: int, heap_x: float, nb_x: float, direct: bool, again: int,
    variant: dict[str, str],
) -> None:  # fmt: skip
    """The same layout on one CPU (session ``twoone``: PATHS.md "Two enclaves in the
    regime", "Left" item 1): the thread (or the adder, the trimmer) and ksgxd share it
    through the core's run queue, so the other enclave's SECS eviction - ksgxd's
    ``KB_SECS`` - may come while the thread waits for its CPU (it goes on served from the
    run queue), and its own direct batch may be switched out at a lock's might_sleep.
    Equal after every step (the event order: the next eid; the context switches)."""
    agree(two_user_scenario, (seed, epc_pages, 1, heap_x, nb_x, direct, again), variant)


def test_one_cpu_reaches_the_stops_with_the_thread_switched_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guards the one-CPU property needs (the examples the search met, checked by hand
    with a spy on every stop): the build, the trim and B's accesses on the core with
    context switches on its CPU, ksgxd's ``KB_SECS`` with the thread waiting in the run
    queue (``queued_stops``), and - the second scenario, direct reclaim - ksgxd's
    ``KB_SECS`` while the trimmer's direct batch is switched out, after which the served
    thread's own batch stops before the other SECS's eviction (``END_DIRECT`` from the
    served thread: ``CoreStreamServed._served_to_top`` takes the batch's rest)."""
    counts = agree(two_user_scenario, (3, 128, 1, 0.9, 1.0, False, 64), {})
    assert all(c > 0 for c in counts), counts  # adds, trims, accesses, foreign, switches, queued
    served_direct = []
    real = core_served._direct_rest

    def spy(*a: object) -> object:
        served_direct.append(1)
        return real(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(core_served, "_direct_rest", spy)
    args = (37271, 99, 1, 0.6983216840375743, 1.248216347238809, True, 0)
    *_, queued = agree(two_user_scenario, args, {})
    assert queued > 0 and served_direct, (queued, served_direct)


def test_the_neighbours_thread_yields_inside_it_on_one_cpu() -> None:
    """A directed run where B's thread (slot 1) gives its CPU up *inside* B: ksgxd's
    batches long (EWB 100 us) and B's accesses 5 us, then a hot set of 32 of B's pages 400
    times over, so the tick takes the CPU from the thread at a loop top after a user step
    (``resched.thread_resched``'s switch-out: an AEX on *its* slot's ``K_INSIDE``). Equal
    on the three systems; the AEX on slot 0 instead (by hand, session ``twoone``) makes the
    core's run differ at B's stream."""
    args = (3, 128, 1, 0.9, 1.0, False, 0, 400)
    *_, switches, _queued = agree(
        two_user_scenario, args, {"costs": {"ewb": 100_000, "access": 5_000}}
    )
    assert switches > 0


@pytest.mark.parametrize("cpus", [1, 2])
def test_a_neighbour_cell_runs_on_the_core(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    """The demo's "idle neighbour" flip cell on 1 and 2 CPUs (``cli.FLIP_LAYOUTS``: heap 0.9
    EPC, a neighbour of 1.0 EPC, no direct reclaim, the first MODIFY_TYPES call only; 8 MiB
    EPC) builds the neighbour and trims on the core, the same run as without it; on one
    CPU with switches on the core's CPU (session ``twoone``)."""
    made = keep_demo_systems(monkeypatch)
    cfg = dict(epc="8M", heap_factor=0.9, neighbour_factor=1.0, cpus=cpus, seed=0,
               direct_reclaim=False, stop_after_first_call=True)  # fmt: skip
    core = demo.run_seed(demo.SeedConfig(**cfg, fast_core=True))  # type: ignore[arg-type]
    plain = demo.run_seed(demo.SeedConfig(**cfg, fast_core=False))  # type: ignore[arg-type]
    sc = made[0].sgx.stream_core
    assert sc is not None and sc.adds > 0 and sc.trims > 0 and sc.foreign_records > 0
    assert cpus > 1 or sc.core_switches > 0, "nothing switched on the core's one CPU"
    assert core.stats == plain.stats
    assert core.free_timeline == plain.free_timeline
    assert core.modify == plain.modify and core.phases == plain.phases
