"""The host-memory estimate (``scenario/hostmem.py``) covers the arrays the model really
allocates per EPC page and per ELRANGE page, so a refusal is never a false economy and an
accepted input does not end in a MemoryError. Walks the live objects of a System."""

from __future__ import annotations

import numpy as np

from epcsim import System
from epcsim.scenario.hostmem import (
    ELRANGE_PAGE_BYTES,
    EPC_PAGE_BYTES,
    HostMemoryError,
    check_bytes,
    fmt_bytes,
)


def _arrays(root, sizes: set[int]) -> dict[int, np.ndarray]:
    """Every ndarray reachable from ``root`` whose first dimension is in ``sizes``."""
    seen: set[int] = set()
    found: dict[int, np.ndarray] = {}
    todo = [(root, 0)]
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or depth > 6:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.ndim and obj.shape[0] in sizes and obj.base is None:
                found[id(obj)] = obj
            continue
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, list | tuple):
            children = list(obj) if len(obj) < 64 else []
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("epcsim"):
            children = list(vars(obj).values())
        else:
            children = []
        todo.extend((c, depth + 1) for c in children)
    return found


def test_per_page_estimates_cover_the_real_arrays():
    epc_pages = 4096 + 7  # an odd size: no array shares it by accident
    system = System(epc=epc_pages * 4096, cpus=2)
    per_epc = sum(a.nbytes for a in _arrays(system, {epc_pages, epc_pages + 1}).values())
    assert 20 * epc_pages < per_epc <= EPC_PAGE_BYTES * epc_pages
    encl = system.create_enclave(size="64M")
    n = (64 << 20) // 4096
    per_encl = sum(a.nbytes for a in _arrays(encl, {n, n + 1}).values())
    assert 5 * n < per_encl <= ELRANGE_PAGE_BYTES * n


def test_check_bytes_names_the_key_and_sizes(monkeypatch):
    monkeypatch.setenv("EPCSIM_MEMORY_LIMIT", "1G")
    check_bytes("machine.epc", 1 << 29, "x")
    try:
        check_bytes("machine.epc", 3 << 30, "an EPC of 1 page")
    except HostMemoryError as e:
        assert str(e).startswith("machine.epc: an EPC of 1 page needs about 3.0 GiB")
        assert "1.0 GiB available" in str(e)
    else:
        raise AssertionError("not refused")
    assert fmt_bytes(1536) == "1.5 KiB" and fmt_bytes(12) == "12 bytes"
