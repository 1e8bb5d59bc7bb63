"""The cost model: simulated nanoseconds for each instruction leaf and kernel step.

Every figure is a parameter (``System(costs={...})`` or a scenario's ``[costs]`` table).
The defaults follow ``spec/costs.md``; each carries its source tag:

* ``[VAULT]`` one EPC page swap (fault + AEX + ELDU + ERESUME) is about 40K cycles, ~13 µs
  at 3 GHz (Taassori et al., ASPLOS 2018).
* ``[VXAPPS]`` derived from VXAPPS/sgx-benchmark enclave builds: ~10 µs per EADD+EEXTEND
  page on SGX1, ~11 µs per evicted page (EWB plus its share of the reclaimer batch).
* ``[HOTCALLS]`` ECALL/OCALL 8,200-17,000 cycles, syscall ~150 cycles (Weisse et al.).
* ``[ASSUMED]`` no public per-leaf figure exists; the value is this project's assumption
  and every report lists these as such.

The split of a composite published figure into leaves is ours and is stated per field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Fields whose default is an assumption rather than a published measurement.
ASSUMED = frozenset(
    {
        "eaug",
        "eaccept",
        "emodpr",
        "emodt",
        "emodpe",
        "etrack",
        "ipi",
        "eblock",
        "eremove",
        "epa",
        "ecreate",
        "einit",
        "age_check",
        "zap_ptes",
        "backing_alloc",
        "lru_op",
        "access",
        "ioctl_page",
        "fault_entry",
        "aex",
        "eresume",
        "eenter",
        "eexit",
        "wakeup",
        "mutex_spin_poll",
        "mutex_pickup",
        "mutex_wakeup",
        "user_return",
    }
)


@dataclass(frozen=True)
class Costs:
    """Simulated cost of each step, in nanoseconds (3 GHz clock assumed for cycle figures)."""

    clock_ghz: float = 3.0
    # --- paging (the figures the cliff depends on) ---
    ewb: int = 9_000  # [VXAPPS] 11 µs/page incl. batch share; leaf = 11 µs minus the steps below
    eldu: int = 10_000  # [VAULT] 13 µs per swap-in minus fault entry, AEX and ERESUME
    eblock: int = 300  # [ASSUMED]
    etrack: int = 1_000  # [ASSUMED]
    ipi: int = 2_000  # [ASSUMED] synchronous IPI round trip incl. the AEX it forces
    age_check: int = 200  # [ASSUMED] sgx_reclaimer_age: mmap lock + PTE test-and-clear
    zap_ptes: int = 300  # [ASSUMED] sgx_zap_enclave_ptes for one page
    backing_alloc: int = 500  # [ASSUMED] shmem page lookup/pin for contents + PCMD
    lru_op: int = 20  # [ASSUMED] a list operation under sgx_reclaimer_lock
    # --- build ---
    ecreate: int = 10_000  # [ASSUMED]
    eadd: int = 4_000  # [VXAPPS] ~10 µs per measured page on SGX1 = EADD + 16 EEXTEND
    eextend: int = 375  # [VXAPPS] 16 x 375 ns = 6 µs of the 10 µs
    epa: int = 2_000  # [ASSUMED]
    einit: int = 100_000  # [ASSUMED]
    eremove: int = 1_000  # [ASSUMED]
    ioctl_page: int = 500  # [ASSUMED] per-page kernel overhead of an ioctl loop (xarray, GUP)
    syscall: int = 50  # [HOTCALLS] ~150 cycles: entering the kernel
    # [ASSUMED] returning to user space after a syscall (exit work, the mitigations' stack and
    # CR3 switches, copy_to_user of the argument) plus the caller's own turnaround before the
    # next call. A retry after -EAGAIN costs user_return + syscall, not the bare 50 ns.
    user_return: int = 1_000
    # --- SGX2 ---
    eaug: int = 2_000  # [ASSUMED]
    eaccept: int = 1_000  # [ASSUMED]
    emodpr: int = 1_000  # [ASSUMED]
    emodt: int = 1_000  # [ASSUMED]
    emodpe: int = 500  # [ASSUMED]
    # --- in-enclave execution ---
    access: int = 50  # [ASSUMED] one access to a resident EPC page (MEE/TME-protected DRAM)
    fault_entry: int = 1_000  # [VAULT] #PF delivery and handler entry (share of the 13 µs)
    aex: int = 1_000  # [VAULT] share of the 13 µs
    eresume: int = 1_000  # [VAULT] share of the 13 µs
    eenter: int = 1_400  # [HOTCALLS] half of an ~8,200-cycle ECALL round trip
    eexit: int = 1_400  # [HOTCALLS]
    wakeup: int = 2_000  # [ASSUMED] wake-up latency of a sleeping kernel thread
    # --- struct mutex (engine.mutex, mutex="linux") ---
    # [ASSUMED] how long a spinner takes to notice its owner left the CPU or its own
    # need_resched: one mutex_spin_on_owner iteration - a PAUSE (~140 cycles on Skylake and
    # later) plus re-reading owner->on_cpu, a line the owner's CPU just wrote (~70 ns).
    mutex_spin_poll: int = 100
    # [ASSUMED] a spinner takes a released lock only if it stays free this long: the unlock
    # invalidates the spinner's copy of lock->owner, its next read misses (~70 ns core to
    # core) and its cmpxchg needs the line exclusive again (~70 ns): two transfers. The value
    # issue 8 tried; the releaser re-locking sooner keeps the lock (stealing).
    mutex_pickup: int = 150
    # [ASSUMED] a woken mutex waiter runs this long after the unlock before its trylock:
    # try_to_wake_up, the idle exit or preemption on its CPU, the context switch - the same
    # order as a woken kernel thread (``wakeup``).
    mutex_wakeup: int = 2_000

    @classmethod
    def from_dict(cls, values: dict | None) -> Costs:
        """Build from overrides; unknown names and bad values raise ``ValueError``.

        Decision (issue 10): every step costs at least 1 ns. A step of 0 ns is refused, not
        rounded up: retry loops (a fault answered VM_FAULT_NOPAGE, ksgxd scanning young
        pages, an -EAGAIN retried by the runtime) would spin without simulated time passing,
        so the task that would end the loop never runs - a livelock, not a faster machine.
        """
        if not values:
            return cls()
        known = {f.name for f in fields(cls)}
        for key, val in values.items():
            if key not in known:
                raise ValueError(f"costs: unknown cost {key!r} (known: {', '.join(sorted(known))})")
            if not isinstance(val, int | float) or isinstance(val, bool) or not math.isfinite(val):
                raise ValueError(f"costs.{key}: must be a finite number, got {val!r}")
            if key == "clock_ghz":
                if val <= 0:
                    raise ValueError(f"costs.{key}: must be positive, got {val!r}")
            elif int(val) < 1:
                raise ValueError(
                    f"costs.{key}: must be at least 1 ns (a zero-cost step lets a retry loop "
                    f"spin without simulated time passing), got {val!r}"
                )
        typed: dict[str, Any] = {
            k: (float(v) if k == "clock_ghz" else int(v)) for k, v in values.items()
        }
        return cls(**typed)

    def as_dict(self) -> dict:
        return asdict(self)

    def assumed(self) -> dict[str, int]:
        """The costs whose defaults are assumptions (reports list them)."""
        return {k: v for k, v in self.as_dict().items() if k in ASSUMED}
