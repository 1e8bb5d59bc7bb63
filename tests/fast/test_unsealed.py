"""The records the compiled core leaves unsealed (``fast/driver/unsealed.py``, DESIGN.md
item 4): sealed when Python first reads or writes one, never seen unsealed.

After one or more ``access_pages`` calls on the core with nothing reading the backing store
in between (so a call loads records an earlier call wrote, unsealed, and the last call
leaves some pending), each public reader of the store must give what the same scenario
gives without the core (``fast_core=False``, whose records are sealed by every EWB):
``lookup``, ``records``, ``BackingStore.record``, ``tamper`` (which keeps the fields it is
not given: the old PCMD's MAC), a copy and a pickle, and a Python ELDU (``EnclaveThread``
faulting in Python after the core: ``fast_core`` off on the same ``System``). Not here:
``Enclave.usable_tcs_pages``, which reads a TCS record's SECINFO flags only - the same
bytes sealed or not (it goes through ``lookup`` all the same). A reader that bypassed
``EnclaveBacking.sealed_at`` would see a content tag and a version where the contents and
the MAC go. Then a further call and every observable after it must be equal too.
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stream_core_cases import build_enclave, core_snap

from epcsim.kernel.backing import EnclaveBacking


def _records(f: EnclaveBacking) -> dict[int, tuple[bytes, bytes]]:
    return {i: (r.contents, r.pcmd) for i, r in f.records.items()}


def _read(reader: str, system, encl, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """What ``reader`` returns (or, for the writers, the records once it is done)."""
    e = encl.encl
    f = e.backing
    present = sorted(f.records)
    pick = present[int(rng.integers(len(present)))] if present else -1
    if reader == "lookup":
        return None if pick < 0 else f.lookup(pick)
    if reader == "records":
        return _records(f)
    if reader == "record":
        return [system.backing.record(e.id, i) for i in present[::3]]
    if reader == "tamper":
        if pick >= 0:
            system.backing.tamper(e.id, pick, contents=bytes(8))
        return _records(f)
    if reader in ("copy", "pickle"):
        va_of, f.va_of = f.va_of, None  # (a closure over the enclave: not the file's bytes)
        twin = copy.deepcopy(f) if reader == "copy" else pickle.loads(pickle.dumps(f))
        f.va_of = va_of
        return _records(twin)
    assert reader == "python_eldu"
    sc = system.sgx.stream_core
    if sc is not None:
        sc.on = False  # the next call faults in Python: the reference's ELDU reads records
    pages = np.array(present[:8] or [0], dtype=np.int64)
    out = encl.access_pages(pages)
    if sc is not None:
        sc.on = True
    return out


READERS = ("lookup", "records", "record", "tamper", "copy", "pickle", "python_eldu")


def _run(core: bool, seed: int, epc_pages: int, cpus: int, calls: int, reader: str):  # type: ignore[no-untyped-def]
    system, encl, n = build_enclave("fast", seed, epc_pages, cpus, tcs=True, fast_core=core)
    rng = np.random.default_rng(seed)
    outs = []
    for _ in range(calls):
        size = int(rng.integers(2 * epc_pages, 6 * epc_pages))
        pages = rng.integers(1, n, size=size)
        outs.append(encl.access_pages(pages, rng.random(size) < 0.4))
    f = encl.encl.backing
    pending = f.unsealed is not None and f.unsealed.pending()
    got = _read(reader, system, encl, rng)
    pages = rng.integers(1, n, size=3 * epc_pages)
    out = encl.access_pages(pages)
    return outs, pending, got, core_snap(system, encl, out), system


#: examples per reader (each runs two scenarios, with and without the core: seconds)
EXAMPLES = 12 if os.environ.get("EPCSIM_LONG") else 2


@pytest.mark.parametrize("reader", READERS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes
)
@given(
    seed=st.integers(0, 2**16),
    epc_pages=st.sampled_from([48, 128]),
    cpus=st.integers(2, 3),
    calls=st.integers(1, 3),
)
def test_every_reader_sees_the_sealed_bytes(
    reader: str, seed: int, epc_pages: int, cpus: int, calls: int
) -> None:
    outs, _, want, snap, _ = _run(False, seed, epc_pages, cpus, calls, reader)
    core_outs, pending, got, core_snap, system = _run(True, seed, epc_pages, cpus, calls, reader)
    assert system.fast_core_accesses > 0, "the core never ran"
    assert pending, "the core left nothing unsealed: the gate was not tested"
    assert core_outs == outs
    assert got == want, reader
    assert [k for k in snap if snap[k] != core_snap[k]] == []


def test_a_later_call_loads_what_an_earlier_one_left_unsealed() -> None:
    """Records an earlier call left pending are loaded by a later call with no seal and no
    MAC check (``KState.dn``/``dmark`` are the file's, kept across calls); the records and
    every observable stay the engine's without the core."""
    seed, epc_pages = 7, 256
    base, bencl, n = build_enclave("fast", seed, epc_pages, 2, tcs=True, fast_core=False)
    system, encl, _ = build_enclave("fast", seed, epc_pages, 2, tcs=True, fast_core=True)
    rng = np.random.default_rng(seed)
    first = rng.integers(1, n, size=4 * epc_pages)
    second = rng.integers(1, n, size=4 * epc_pages)
    for e in (bencl, encl):
        e.access_pages(first, write=True)
    f = encl.encl.backing
    u = f.unsealed
    assert u is not None and u.pending()
    left = {i for i in range(n) if u.pending(i)}
    sealed: list[int] = []
    seal = u.seal
    u.seal = lambda f, index=-1: (sealed.append(index), seal(f, index))  # type: ignore[method-assign]
    bout = bencl.access_pages(second)
    out = encl.access_pages(second)
    assert out == bout
    loaded = {i for i in left if not u.pending(i)} - set(sealed)
    assert len(loaded) > epc_pages // 4, len(loaded)  # ELDUs on the core, nothing sealed
    assert -1 not in sealed
    assert core_snap(base, bencl, bout) == core_snap(system, encl, out)
    assert not any(u.pending(i) for i in range(n))  # the snapshot's lookups sealed the rest
