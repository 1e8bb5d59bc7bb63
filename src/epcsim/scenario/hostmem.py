"""Will a run's state fit in this host's memory? Estimated before anything is allocated.

The model keeps its state in NumPy arrays sized by the input: per EPC page (the EPCM, the
kernel's ``sgx_epc_page`` fields, free lists, the reclaim policy's list), per ELRANGE page
of each enclave (the page arrays of ``struct sgx_encl`` and of its backing file) and, for
pages that can be written back, a backing record (contents and PCMD) and a VA slot. A
scenario that asks for more than the host has would otherwise take gigabytes before a
``MemoryError`` (or the OOM killer) ends it; ``check_plan`` refuses it first, naming the
key and the size it would need (exit 2 on the command line).

The per-page figures are sums of the arrays' item sizes, rounded up (see the modules
named); they are an estimate, not a bound, so the check leaves headroom for Python and the
plot data. ``EPCSIM_MEMORY_LIMIT`` (a size such as ``2G``) replaces the host's available
memory, for a shared machine or a test.
"""

from __future__ import annotations

import os

from epcsim.arch import PAGE_SIZE

#: bytes per EPC page: EPCM fields (isa/epcm.py, 20), sgx_epc_page arrays with the list
#: links the free lists and the LRU share (kernel/epc.py, 15); rounded up
EPC_PAGE_BYTES = 48
#: bytes per ELRANGE page: the packed sgx_encl_page arrays (kernel/encl_page.py, 6) and the
#: backing file's presence bit (kernel/backing.py), rounded up
ELRANGE_PAGE_BYTES = 16
#: bytes per page that may be written back (tag/mac mode): an 8-byte contents record, of the
#: PCMD the flags and MAC (10 in tag mode, 18 in mac mode, kernel/backing.py), the VA slot
#: (8) and its bit in the kernel's slot map; rounded up
SWAP_PAGE_BYTES = 40
#: what "full" content mode adds per EPC page and per backed-up page: the 4 KiB of data
FULL_CONTENT_BYTES = PAGE_SIZE
#: bytes per page an access pattern may precompute (Zipf weights, phase tables)
PATTERN_PAGE_BYTES = 16
#: share of the available memory a run may plan to use (the rest: Python, plots, the OS)
HEADROOM = 0.8


def fmt_bytes(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} bytes"


def available_bytes() -> int:
    """What a run may use: ``EPCSIM_MEMORY_LIMIT`` if set, else MemAvailable (Linux) or the
    physical memory, times ``HEADROOM``."""
    limit = os.environ.get("EPCSIM_MEMORY_LIMIT")
    if limit:
        from epcsim.units import parse_size

        return parse_size(limit, "EPCSIM_MEMORY_LIMIT")
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            avail = 1 << 40  # unknown host: do not refuse
    return int(avail * HEADROOM)


def epc_bytes(epc_pages: int, content_mode: str = "tag") -> int:
    per = EPC_PAGE_BYTES + (FULL_CONTENT_BYTES if content_mode == "full" else 0)
    return epc_pages * per


def enclave_bytes(elrange_pages: int, footprint_pages: int, content_mode: str = "tag") -> int:
    swap = SWAP_PAGE_BYTES + (FULL_CONTENT_BYTES if content_mode == "full" else 0)
    return (
        elrange_pages * ELRANGE_PAGE_BYTES
        + footprint_pages * swap
        + footprint_pages * PATTERN_PAGE_BYTES
    )


class HostMemoryError(ValueError):
    """The input needs more memory than this host has: ``key`` names what asked for it."""

    def __init__(self, key: str, need: int, have: int, what: str):
        self.key = key
        self.reason = (
            f"{what} needs about {fmt_bytes(need)} of host memory for the model's arrays;"
            f" this host has {fmt_bytes(have)} available (EPCSIM_MEMORY_LIMIT overrides)"
        )
        super().__init__(f"{key}: {self.reason}")


def check_bytes(key: str, need: int, what: str, have: int | None = None) -> None:
    """Raise ``HostMemoryError`` when ``need`` bytes do not fit."""
    have = available_bytes() if have is None else have
    if need > have:
        raise HostMemoryError(key, need, have, what)


def check_scenario(sc) -> None:
    """The same check for a checked ``Scenario`` before it is compiled (compiling builds the
    access patterns, which hold per-page tables: a Zipf over a huge region is the first
    large allocation)."""
    from epcsim.scenario.semantics import elrange_size, layout, step_range

    have = available_bytes()
    mode = sc.machine.content_mode
    total = epc_bytes(sc.machine.epc // PAGE_SIZE, mode)
    check_bytes("machine.epc", total, f"an EPC of {sc.machine.epc // PAGE_SIZE:,} pages", have)
    for i, e in enumerate(sc.enclave):
        lay = layout(e)
        elrange = elrange_size(e, lay) // PAGE_SIZE
        n = enclave_bytes(elrange, 1 + lay.total_pages, mode)
        for t in e.thread:
            for s in t.step:
                if s.op == "access":
                    n += step_range(lay, s, "")[1] * PATTERN_PAGE_BYTES
        key = f"enclave[{i}].size" if e.size is not None else f"enclave[{i}].region"
        check_bytes(key, n, f"enclave {e.name[:40]!r} (ELRANGE {elrange:,} pages)", have)
        total += n
    check_bytes("machine", total, "the EPC and every enclave together", have)


def check_plan(plan) -> None:
    """Refuse a ``Plan`` whose state would not fit: the EPC alone, each enclave alone, then
    the whole; the first that does not fit is named."""
    have = available_bytes()
    mode = plan.machine.get("content_mode", "tag")
    pages = plan.epc_pages
    total = epc_bytes(pages, mode)
    check_bytes("machine.epc", total, f"an EPC of {pages:,} pages", have)
    for i, e in enumerate(plan.enclaves):
        n = enclave_bytes(e.size // PAGE_SIZE, e.total_pages, mode)
        check_bytes(
            f"enclave[{i}]",
            n,
            f"enclave {e.name!r} (ELRANGE {e.size // PAGE_SIZE:,} pages,"
            f" {e.total_pages:,} pages in use)",
            have,
        )
        total += n
    check_bytes("machine", total, "the EPC and every enclave together", have)
