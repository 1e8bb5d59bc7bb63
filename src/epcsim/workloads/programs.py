"""Enclave programs: what each user thread of an enclave does, step by step.

A program is a list of steps run ``repeat`` times (0: until the run is stopped) by one
enclave thread. Steps touch pages
(a synthetic ``Access`` pattern or an explicit ``Stream`` from a trace), change the
enclave's memory with EDMM (``Grow``, ``Trim``, ``Restrict``, see ``workloads.edmm``), or
``Sleep``. Every thread is its own SimPy process on the shared machine, so threads of one
or many enclaves run concurrently with each other and with ksgxd, in the same simulated
time; ``start_thread`` is the generator-level counterpart of ``Enclave.start``.

A thread stops at the first access the enclave cannot complete (an SGX #PF reported to the
enclave, e.g. a write to a page whose permissions were restricted, or SIGBUS): a real
enclave would be signalled there. The record says where and why; the runner turns it into
a failed check.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE
from epcsim.engine.machine import Gen
from epcsim.user.enclave import Enclave
from epcsim.workloads import edmm
from epcsim.workloads.patterns import CHUNK, Pattern, stream


@dataclass
class Access:
    """``count`` accesses drawn from ``pattern`` over pages ``first_page ..``."""

    first_page: int
    pattern: Pattern
    count: int
    writes: float = 0.0

    def planned_accesses(self) -> int:
        return self.count

    def run(self, ctx: edmm.Ctx, rng: np.random.Generator, rec: ThreadRecord) -> Gen:
        for pages, writes in stream(self.pattern, self.count, rng, self.writes):
            ok = yield from _touch(ctx, self.first_page + pages, writes, rec)
            if not ok:
                return False
        return True


@dataclass
class Stream:
    """An explicit page stream (trace replay): page indices relative to the enclave."""

    pages: np.ndarray
    writes: np.ndarray | bool = False

    def planned_accesses(self) -> int:
        return int(self.pages.size)

    def run(self, ctx: edmm.Ctx, rng: np.random.Generator, rec: ThreadRecord) -> Gen:
        w = np.broadcast_to(np.asarray(self.writes, dtype=np.bool_), self.pages.shape)
        for lo in range(0, self.pages.size, CHUNK):
            ok = yield from _touch(ctx, self.pages[lo : lo + CHUNK], w[lo : lo + CHUNK], rec)
            if not ok:
                return False
        return True


@dataclass
class Grow:
    """Add ``pages`` pages at ``first_page`` on demand (EACCEPT -> #PF -> EAUG)."""

    first_page: int
    pages: int
    perm: int = 3

    def planned_accesses(self) -> int:
        return 0

    def run(self, ctx, rng, rec) -> Gen:
        recs = yield from edmm.grow(ctx, self.first_page, self.pages, self.perm)
        return all(r.ok for r in recs)


@dataclass
class Trim:
    """Return ``pages`` pages at ``first_page`` (TRIM, EACCEPT, REMOVE_PAGES)."""

    first_page: int
    pages: int

    def planned_accesses(self) -> int:
        return 0

    def run(self, ctx, rng, rec) -> Gen:
        recs = yield from edmm.trim(ctx, self.first_page, self.pages)
        return all(r.ok for r in recs)


@dataclass
class Restrict:
    """Restrict ``pages`` pages at ``first_page`` to ``perm`` (EMODPR, EACCEPT(PR))."""

    first_page: int
    pages: int
    perm: int

    def planned_accesses(self) -> int:
        return 0

    def run(self, ctx, rng, rec) -> Gen:
        recs = yield from edmm.restrict(ctx, self.first_page, self.pages, self.perm)
        return all(r.ok for r in recs)


@dataclass
class Sleep:
    """Leave the enclave and sleep (off CPU) for ``ns`` of simulated time."""

    ns: int

    def planned_accesses(self) -> int:
        return 0

    def run(self, ctx, rng, rec) -> Gen:
        t = ctx.thread
        yield from t.leave()
        yield from t.sleep(ctx.system.machine.env.timeout(self.ns))
        return True


Step = Access | Stream | Grow | Trim | Restrict | Sleep


@dataclass
class ThreadPlan:
    """One thread's program."""

    name: str
    steps: list[Any]
    repeat: int = 1

    def planned_accesses(self) -> int:
        """Accesses of the whole program (of one pass when it repeats until stopped)."""
        return max(1, self.repeat) * sum(s.planned_accesses() for s in self.steps)


@dataclass
class ThreadRecord:
    """How a thread's program went."""

    name: str
    enclave: str
    start_ns: int = 0
    end_ns: int | None = None  # None while still running (e.g. cut by the duration)
    accesses: int = 0
    steps_done: int = 0
    pf_error: int = 0
    sigbus: bool = False
    fault_page: int | None = None
    error: str | None = None
    ops: list[edmm.OpRecord] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.end_ns is not None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enclave": self.enclave,
            "finished": self.finished,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "accesses": self.accesses,
            "steps_done": self.steps_done,
            "pf_error": self.pf_error,
            "sigbus": self.sigbus,
            "fault_page": self.fault_page,
            "error": self.error,
        }


def _touch(ctx: edmm.Ctx, pages: np.ndarray, writes: np.ndarray, rec: ThreadRecord) -> Gen:
    out = yield from ctx.thread.access_stream(pages, writes)
    rec.accesses += out.done
    if out.ok:
        return True
    rec.pf_error = out.pf_error
    rec.sigbus = out.sigbus
    kind = "SIGBUS" if out.sigbus else f"SGX #PF (error code {out.pf_error:#x})"
    if out.fault_address:  # a #GP on entry has no address: fault_page stays None
        rec.fault_page = (out.fault_address - ctx.handle.base) // PAGE_SIZE
        rec.error = f"access to page {rec.fault_page} stopped with {kind}"
    else:
        rec.error = f"the enclave entry failed ({kind})"
    return False


def thread_body(
    handle: Enclave, plan: ThreadPlan, rng: np.random.Generator, rec: ThreadRecord
) -> Gen:
    """The SimPy process body of one program thread."""
    system = handle.system
    t = handle.new_thread(plan.name)
    ctx = edmm.Ctx(handle, t, rec.ops)
    rec.start_ns = system.now
    ok = True
    for _ in itertools.count() if plan.repeat == 0 else range(plan.repeat):
        for step in plan.steps:
            ok = yield from step.run(ctx, rng, rec)
            if not ok:
                break
            rec.steps_done += 1
        if not ok:
            break
    if not ok and rec.error is None:
        bad = next((o for o in rec.ops if not o.ok), None)
        if bad is not None:
            why = bad.errno or f"{bad.failures} EACCEPT failures"
            rec.error = f"{bad.kind} at page {bad.first_page} failed: {why}"
    yield from t.leave()
    rec.end_ns = system.now
    yield from handle._thread_exited(t)
    t.release_cpu()
    return rec


def start_thread(
    handle: Enclave, plan: ThreadPlan, rng: np.random.Generator
) -> tuple[Any, ThreadRecord]:
    """Start ``plan`` on a new thread of ``handle``; ``System.run()`` (or running the
    environment) executes it. Returns the SimPy process and the record it fills."""
    rec = ThreadRecord(plan.name, handle.encl.name)
    proc = handle.system.machine.spawn(thread_body(handle, plan, rng, rec))
    handle._thread_started(proc)
    return proc, rec
