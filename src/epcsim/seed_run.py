"""What one run of the seed scenario records (``demo.run_seed``'s ``SeedRun``): the kernel's
state at an instant (``Snapshot``), what the runtime's retry loop saw call by call
(``CallLog``, each -EAGAIN by the cause the kernel found: ``NO_FREE_PAGE``,
``BEING_RECLAIMED``), and the run's summary, the per-run JSON object of ``epcsim demo
--json``. Split from ``demo.py`` by session ``tidy`` (no code changed): the scenario and its
steps are there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epcsim.demo import SeedConfig
    from epcsim.system import System
    from epcsim.workloads.edmm import OpRecord

#: why a page-range ioctl returned -EAGAIN (what the kernel found at the page that stopped it)
NO_FREE_PAGE = "no_free_page"  # ELDU's sgx_alloc_epc_page(reclaim=false) returned -EBUSY
BEING_RECLAIMED = "being_reclaimed"  # __sgx_encl_load_page: resident, BEING_RECLAIMED
OTHER = "other"


def ewb_counts(stats: dict[str, Any]) -> tuple[int, int]:
    """(pages written back, EWB leaf executions incl. SGX_NOT_TRACKED retries): the
    counters ``ewb`` and ``ewb_attempts``."""
    return int(stats["ewb"]), int(stats["ewb_attempts"])


@dataclass
class Snapshot:
    """The kernel's state at one instant (for "the first call stopped after N pages = ...")."""

    t_ns: int
    free_pages: int
    ksgxd_asleep: bool
    ksgxd_pages_reclaimed: int
    direct_reclaim_pages: int
    direct_reclaim_calls: int
    ewb: int  # pages written back so far
    eldu: int

    @classmethod
    def take(cls, system: System) -> Snapshot:
        sgx = system.sgx
        st = sgx.stats
        return cls(
            system.now,
            sgx.epc.nr_free_pages,
            bool(sgx.ksgxd_sleeping),
            st.ksgxd_pages_reclaimed,
            st.direct_reclaim_pages,
            st.direct_reclaim_calls,
            ewb_counts(st.as_dict())[0],
            st.eldu,
        )


@dataclass
class CallLog:
    """What the runtime's retry loop saw, call by call, for one range operation."""

    eagain_causes: dict[str, int] = field(default_factory=dict)
    first_stop_cause: str | None = None  # why the first call stopped (None: it did not)
    first_end: Snapshot | None = None


@dataclass
class SeedRun:
    config: SeedConfig
    length_pages: int
    build_ns: int
    probe_errno: str | None
    buffer_calls_ok: bool
    at_first_call: Snapshot
    modify: OpRecord
    modify_log: CallLog
    accept_ns: int
    accept_failures: int
    remove: OpRecord | None
    remove_log: CallLog
    stats: dict[str, Any]
    free_timeline: tuple[list[int], list[int]]
    system_config: dict[str, Any]
    #: simulated ns where each phase began (build, probe, buffer calls, modify_types, ...)
    phases: dict[str, int] = field(default_factory=dict)
    #: heap pages in backing before the first resident one when the trim starts: the ioctl
    #: reaches the pages reclaimers are taking only after ELDU-ing these
    evicted_ahead: int = 0

    @property
    def mutex(self) -> str:
        return str(self.system_config.get("mutex", "fifo"))

    @property
    def sched(self) -> str:
        return str(self.system_config.get("sched", "fifo"))

    @property
    def label(self) -> str:
        dr = "direct reclaim" if self.config.direct_reclaim else "no direct reclaim"
        return f"{dr}, {self.mutex}/{self.sched}" + (", trim only" if self.config.trim_only else "")

    def eagain_by_cause(self) -> dict[str, int]:
        out = {NO_FREE_PAGE: 0, BEING_RECLAIMED: 0, OTHER: 0}
        for log in (self.modify_log, self.remove_log):
            for k, v in log.eagain_causes.items():
                out[k] += v
        return out

    def summary(self) -> dict[str, Any]:
        """The per-run JSON object of ``epcsim demo --json``."""
        s = self.stats
        ewb, ewb_attempts = ewb_counts(s)
        at, end = self.at_first_call, self.modify_log.first_end
        causes = self.eagain_by_cause()
        return {
            "label": self.label,
            "direct_reclaim": self.config.direct_reclaim,
            "cpus": self.config.cpus,
            "mutex": self.mutex,
            "sched": self.sched,
            "length_pages": self.length_pages,
            "free_pages_at_first_call": at.free_pages,
            "ksgxd_asleep_at_first_call": at.ksgxd_asleep,
            "evicted_ahead_at_first_call": self.evicted_ahead,
            "first_call_count_pages": self.modify.first_call_pages,
            "first_call_errno": self.modify.first_call_errno,
            "first_call_stop": self.modify_log.first_stop_cause,
            "first_call_eldu": (end.eldu - at.eldu) if end else 0,
            # pages written back (each freed at once) while the first call ran, by ksgxd and
            # by direct reclaim; a batch counter would also count pages of a batch that was
            # already running when the call started
            "first_call_ksgxd_reclaimed": (
                (end.ewb - at.ewb) - (end.direct_reclaim_pages - at.direct_reclaim_pages)
                if end
                else 0
            ),
            "first_call_direct_reclaimed": (
                end.direct_reclaim_pages - at.direct_reclaim_pages if end else 0
            ),
            "free_pages_at_first_stop": end.free_pages if end else None,
            "eagain_returns": self.modify.eagain + (self.remove.eagain if self.remove else 0),
            "eagain_no_free_page": causes[NO_FREE_PAGE],
            "eagain_being_reclaimed": causes[BEING_RECLAIMED],
            "calls_to_complete": self.modify.calls + (self.remove.calls if self.remove else 0),
            "modify_calls": self.modify.calls,
            "remove_calls": self.remove.calls if self.remove else 0,
            "simulated_ns": s["simulated_ns"],
            "operation_ns": self.modify.simulated_ns
            + self.accept_ns
            + (self.remove.simulated_ns if self.remove else 0),
            "ewb": ewb,
            "ewb_attempts": ewb_attempts,
            "eldu": s["eldu"],
            "ksgxd_wakeups": s["ksgxd_wakeups"],
            "ksgxd_pages_reclaimed": s["ksgxd_pages_reclaimed"],
            "direct_reclaim_calls": s["direct_reclaim_calls"],
            "direct_reclaim_pages": s["direct_reclaim_pages"],
            "trim_ns": self.modify.simulated_ns,
            "trim_completed": self.modify.errno is None
            and self.modify.pages_done == self.length_pages,
            #: the retry loop hit its bound (10 calls per page) with the range unfinished
            "gave_up": not self.config.stop_after_first_call
            and self.modify.errno is None
            and self.modify.pages_done < self.length_pages,
            "completed": self.remove is not None
            and self.modify.errno is None
            and self.remove.errno is None
            and self.remove.pages_done == self.length_pages,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # ``fast_core`` chooses host time only (the core is exact): not part of the record,
        # so a run's JSON is the same whichever way it ran (``epcsim warm``'s runs)
        d["config"].pop("fast_core", None)
        d["summary"] = self.summary()
        return d


__all__ = [
    "BEING_RECLAIMED",
    "NO_FREE_PAGE",
    "OTHER",
    "CallLog",
    "SeedRun",
    "Snapshot",
    "ewb_counts",
]
