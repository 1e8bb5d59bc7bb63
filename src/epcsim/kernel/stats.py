"""Counters (``system.stats()``) and the sampled timeline used by reports.

Counter names are part of the product (``design.md``, "Counters"); keep them stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Counters:
    """Global event counts. Each is incremented where the modelled kernel code runs."""

    ewb: int = 0  # EWB leaves executed (every attempt, incl. NOT_TRACKED retries)
    ewb_pages: int = 0  # pages written out successfully
    eldu: int = 0  # ELDU leaves executed
    eldu_failed: int = 0  # ELDU that failed (MAC mismatch, replay, #GP)
    eaug: int = 0
    eremove: int = 0
    eblock: int = 0
    etrack: int = 0
    ipi: int = 0  # on_each_cpu_mask() rounds that reached at least one other CPU
    epa: int = 0
    eadd: int = 0
    eextend: int = 0
    emodpr: int = 0
    emodt: int = 0
    eaccept: int = 0
    emodpe: int = 0
    ksgxd_wakeups: int = 0  # ksgxd went from sleeping to running
    ksgxd_batches: int = 0
    ksgxd_pages_reclaimed: int = 0
    direct_reclaim_calls: int = 0  # sgx_reclaim_direct() calls that ran a batch
    direct_reclaim_pages: int = 0  # pages reclaimed by those batches and by alloc(reclaim)
    alloc_reclaim_batches: int = 0  # batches run inside sgx_alloc_epc_page(reclaim=true)
    alloc_ebusy: int = 0  # sgx_alloc_epc_page() returned -EBUSY
    alloc_enomem: int = 0
    reclaim_batches: int = 0
    reclaim_scanned: int = 0  # pages isolated from the LRU
    reclaim_young: int = 0  # skipped because the accessed bit was set
    page_faults: int = 0  # #PF taken by enclave threads on EPC pages
    fault_retries: int = 0  # VM_FAULT_NOPAGE retries caused by -EBUSY
    sigbus: int = 0
    enclave_accesses: int = 0
    secs_evictions: int = 0
    secs_reloads: int = 0
    va_pages: int = 0  # VA pages currently allocated
    ioctl_ebusy: int = 0  # ioctls refused because another one was in progress

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Timeline:
    """Step series sampled on change, at most one point per ``resolution_ns``."""

    resolution_ns: int = 1_000
    t: list[int] = field(default_factory=list)
    v: list[int] = field(default_factory=list)

    def record(self, now: int, value: int) -> None:
        if self.t and now - self.t[-1] < self.resolution_ns:
            self.v[-1] = value  # keep the latest value of the interval
            return
        self.t.append(int(now))
        self.v.append(int(value))
