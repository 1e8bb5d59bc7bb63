"""The Python paging path calls the compiled helpers it shares with the machines with the
machines' argument types, so each is compiled once (tests/README.md, "One compiled
signature per machine").

``EnclaveThread.access_stream`` (``epcsim.user.thread``) calls ``resident_run`` and
``young_again`` (``epcsim.fast.access``) on slices of the stream; the thread's machine calls
them on its own C-contiguous, writable copies. A read-only stream (a frozen array, or the
``np.broadcast_to`` mask of a scalar ``write``) once gave the Python path three more
layouts, each another compile (session ``suite3``: 4 signatures of ``resident_run``, 2 of
``young_again``). A dispatcher called from Python lists every type it was called with,
whether numba compiled it or loaded it from its cache, so this holds warm or cold.
"""

from __future__ import annotations

import numpy as np
from numba import types

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.fast.access import resident_run, young_again


def _odd_arrays(sig: tuple) -> list[str]:
    return [
        str(t) for t in sig if isinstance(t, types.Array) and (t.layout != "C" or not t.mutable)
    ]


def test_the_python_path_passes_the_machines_layouts() -> None:
    system = epcsim.System(epc=32 * PAGE_SIZE, cpus=2, seed=1, fast_core=False)
    encl = system.create_enclave(128 * PAGE_SIZE)
    assert encl.add_pages(0, 64 * PAGE_SIZE).ok and encl.init().ok
    stream = np.random.default_rng(1).integers(0, 64, size=400)
    stream.flags.writeable = False
    mask = np.random.default_rng(2).random(stream.size) < 0.3
    mask.flags.writeable = False
    for write in (False, True, mask):  # a scalar (broadcast: stride 0), a frozen mask
        assert encl.access_pages(stream, write=write).ok
        assert encl.access_pages(stream[::2], write=write if write is not mask else mask[::2]).ok
    assert system.stats()["enclave_accesses"] > 0
    for disp in (resident_run, young_again):
        assert disp.signatures, disp
        assert [s for s in disp.signatures if _odd_arrays(s)] == [], disp
