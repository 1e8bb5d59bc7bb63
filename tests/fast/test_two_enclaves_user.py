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
"""

from __future__ import annotations

import os

import pytest
from core_cases import agree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from two_enclave_cases import two_user_scenario

from epcsim import demo
from epcsim.system import System

LONG = bool(os.environ.get("EPCSIM_LONG"))

#: the model's FIFO variants (session ``fifo``) besides Linux's mutex and CFS
VARIANTS = ({}, {"mutex": "fifo", "sched": "fifo"})


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
    adds, trims, accesses, foreign = agree(two_user_scenario, (3, 128, 2, 0.9, 1.0, False, 64), {})
    assert adds > 0 and trims > 0 and accesses > 0 and foreign > 0, (adds, trims, accesses)


def test_a_two_cpu_neighbour_cell_runs_on_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's "idle neighbour" flip cell on 2 CPUs (``cli.FLIP_LAYOUTS``: heap 0.9 EPC,
    a neighbour of 1.0 EPC, no direct reclaim, the first MODIFY_TYPES call only; 8 MiB
    EPC) builds the neighbour and trims on the core, the same run as without it."""
    made: list[System] = []

    class Kept(System):  # the run's System, for its core's counts
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(demo, "System", Kept)
    cfg = dict(epc="8M", heap_factor=0.9, neighbour_factor=1.0, cpus=2, seed=0,
               direct_reclaim=False, stop_after_first_call=True)  # fmt: skip
    core = demo.run_seed(demo.SeedConfig(**cfg, fast_core=True))  # type: ignore[arg-type]
    plain = demo.run_seed(demo.SeedConfig(**cfg, fast_core=False))  # type: ignore[arg-type]
    sc = made[0].sgx.stream_core
    assert sc is not None and sc.adds > 0 and sc.trims > 0 and sc.foreign_records > 0
    assert core.stats == plain.stats
    assert core.free_timeline == plain.free_timeline
    assert core.modify == plain.modify and core.phases == plain.phases
