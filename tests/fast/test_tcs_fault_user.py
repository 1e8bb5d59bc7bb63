"""``_ensure_tcs``' fault on the TCS run on the compiled core from the user path (issue 9
session ``tcsuser``; PATHS.md "What is built: the waiting thread's TCS fault on the core,
from the direct entry" and "One CPU: the thread and ksgxd sharing it").

On one CPU the thread gives its CPU to ksgxd at its ``cond_resched`` points, ksgxd's
batches age and then write back the thread's TCS (nothing enters the enclave meanwhile),
and the thread's next ERESUME faults on it. The machine now runs that fault
(``vma_fault.tcs_fault``) without ``clk[C_MANY]``, where it handed back (``KB_TCS``)
before; a stop under ``encl->lock`` inside it goes on with
``EnclaveThread.tcs_fault_locked`` (``tc[TC_TCS_RETRY]``: its SIGBUS is the entry's, at the
TCS's address). Every observable after every step equal on the reference, the fast engine
without the core and with it (``core_snap``: counters, timeline, latencies, LP state, the
scheduler's fields, the next eid and the queue), and ``StreamCore.tcs_faults`` (the
machine's ``tc[TC_TCS_FAULTS]``) the guard that the core ran them.

Mutation tried by hand (session ``tcsuser``): ``stream_stops._fault_rest`` ignoring
``TC_TCS_RETRY`` (every stop continued as an access's fault) fails
``test_a_tampered_tcs_ends_the_stream_with_the_entrys_sigbus`` (the SIGBUS reported at
the access's address, 0x29a000 for 0x200000). The core's own rows are session
``tcsfault``'s, with its mutations (``test_threads_core.py``).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import ENGINE_KEYS, build_enclave, core_snap, three_ways

from epcsim.fast.driver import kstate as K

LONG = bool(os.environ.get("EPCSIM_LONG"))
VARIANTS = st.sampled_from([("linux", "cfs"), ("fifo", "fifo"), ("fifo", "cfs"), ("linux", "fifo")])
SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
}
ENGINES = (
    ("reference", "reference", {}),
    ("fast", "fast", {"fast_core": False}),
    ("core", "fast", {"fast_core": True}),
)


def _agree(args: tuple[object, ...], kw: dict[str, object]) -> tuple[int, int, int]:
    """``stream_scenario`` with an explicit TCS on the three systems, equal after every
    step; the core's ``(accesses, ksgxd pages, TCS faults)``."""
    outs = three_ways(*args, **kw)
    return outs[-1] if outs else (0, 0, 0)


@settings(max_examples=10 if LONG else 3, **SETTINGS)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([96, 128]),
    eaug=st.booleans(),
    mult=st.sampled_from([2, 4, 6]),
    settle=st.booleans(),
    variant=VARIANTS,
)
def test_tcs_faults_on_one_cpu_match_the_reference(
    seed: int, epc_pages: int, eaug: bool, mult: int, settle: bool, variant: tuple[str, str]
) -> None:
    """The stream scenario (``stream_core_cases``) with its TCS on one CPU, Linux's mutex
    and CFS or a FIFO variant: equal after every step. (EPCs of 96-128 pages: at 48-64 the
    SECS goes with the TCS, and the core declines while it is evicted.)"""
    mutex, sched = variant
    accesses, _pages, _tcs = _agree(
        (seed, epc_pages, 1, True, eaug, mult, settle), {"mutex": mutex, "sched": sched}
    )
    assert accesses > 0, "the hook never engaged"


def test_the_core_runs_the_tcs_faults_on_one_cpu() -> None:
    """The guard the property needs: fixed one-CPU cases, Linux's mutex with CFS and the
    FIFO variants, in which the machine ran the TCS faults (15-45 each when written)."""
    for seed, epc_pages, mult, mutex, sched in (
        (0, 96, 2, "linux", "cfs"),
        (1, 96, 4, "fifo", "fifo"),
        (2, 128, 2, "fifo", "cfs"),
    ):
        args = (seed, epc_pages, 1, True, False, mult, seed % 2 == 0)
        _a, _p, tcs = _agree(args, {"mutex": mutex, "sched": sched})
        assert tcs > 0, (seed, epc_pages, "the core ran no TCS fault")


def test_a_tampered_tcs_ends_the_stream_with_the_entrys_sigbus() -> None:
    """A started thread on one CPU, stopped by ``System.run(until=)`` 4,068,520 ns in (found
    by watching the core: the thread in its TCS fault on the core, after the fault's entry
    run, its TCS written back), the TCS's record rewritten there: the thread goes on served,
    its fault stops before ELDU (``KB_ELDU``, ``tc[TC_TCS_RETRY]``), and Python's rest of it
    (``tcs_fault_locked``) fails the entry - SIGBUS at the TCS's address, ``entry_fault``
    set - as the reference's ``_ensure_tcs`` does. Equal on the three systems."""
    snaps = {}
    for name, engine, kw in ENGINES:
        system, encl, npages = build_enclave(engine, 0, 96, 1, True, 2, True, **kw)
        rng = np.random.default_rng(0)
        pages = rng.integers(1, npages, size=3000)
        proc = encl.start(pages, rng.random(3000) < 0.3)
        e = encl.encl
        system.run(until=4_068_520 - system.now)
        assert e.present[0] and e.epc[0] < 0, "the TCS is resident at the stop"
        e.backing.tamper(0, contents=b"\x00" * 8)
        system.run()
        out = proc.value
        thread = encl.mm.tasks[-1]
        assert out.sigbus and out.fault_address == e.linaddr(0)
        assert thread.entry_fault is not None and thread.entry_fault.addr == e.linaddr(0)
        snaps[name] = core_snap(system, encl, out)
        snaps[name]["entry_fault"] = repr(thread.entry_fault)
        if kw.get("fast_core"):
            sc = system.sgx.stream_core
            assert sc.fault_stops == {K.KB_ELDU: 1} and sc.tcs_faults >= 1
    a, f, b = snaps["reference"], snaps["fast"], snaps["core"]
    assert [key for key in f if f[key] != b[key]] == []
    assert [key for key in a if a[key] != f[key] and key not in ENGINE_KEYS] == []
