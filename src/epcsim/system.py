"""The Python API users script against (``design.md``, "Python API").

``System`` is one simulated machine: EPC, CPUs, the SGX driver with ksgxd running.
``Enclave`` mirrors the enclave uAPI. Every call blocks in *simulated* time while ksgxd and
any started threads run concurrently in the same simulated time; errors come back as the
kernel reports them (``r.errno == "EAGAIN"``), and bad Python arguments raise ``ValueError``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from epcsim.arch import PAGE_SIZE, Attribute
from epcsim.engine.costs import Costs
from epcsim.engine.machine import MUTEXES, SCHEDULERS, Machine, Task
from epcsim.isa import CONTENT_MODES, Secs, SgxCpu
from epcsim.kernel.check import assert_invariants
from epcsim.kernel.driver import SGX_IOC_ENCLAVE_CREATE
from epcsim.kernel.encl import SgxEncl
from epcsim.kernel.epc import MAX_ELRANGE_BYTES, EpcPages
from epcsim.kernel.main import Sgx
from epcsim.kernel.policy import make_policy
from epcsim.units import parse_duration, parse_pages, parse_size
from epcsim.user.args import parse_perm
from epcsim.user.enclave import Enclave
from epcsim.user.enclave_ioctl import IoctlError
from epcsim.user.enclu import EncluResult

__all__ = ["ENGINES", "Enclave", "EncluResult", "IoctlError", "System", "parse_perm"]

#: ``System(engine=...)``: the SimPy reference, and the fast path (:mod:`epcsim.fast`).
#: Decision (issue 9): ``"fast"`` is the default. It gives the reference's results exactly
#: (the differential tests in ``tests/fast``); its one deviation, the NOPAGE flood charged in
#: bulk, is the separate option ``nopage_flood="bulk"``, off by default.
ENGINES = ("reference", "fast")
#: ``System(nopage_flood=...)``: ``"simulate"`` runs every VM_FAULT_NOPAGE retry as Linux does;
#: ``"bulk"`` (fast engine only) charges a flood of identical retries at once, a named
#: deviation with a tested bound (``epcsim/fast/flood.py``, ``epcsim/fast/README.md``).
NOPAGE_FLOODS = ("simulate", "bulk")


def _resident_run(res: Any, at: float) -> bool:
    """``System.run(until=at)`` on a thread group resident on the compiled core
    (``epcsim/fast/driver/group_resident.run_until``); False when it ran nothing."""
    from epcsim.fast.driver.group_resident import run_until

    return run_until(res, at)


class System:
    """A simulated SGX machine.

    Parameters mirror the hardware and kernel knobs: ``epc`` (bytes, "93.5M" or a preset such
    as ``"sgx1-client"``), ``cpus``, ``direct_reclaim`` (``sgx_reclaim_direct`` in the SGX2
    ioctls, on as upstream), ``policy`` (reclaim victim policy, ``"lru"`` = the kernel's),
    ``content_mode`` (``"full"``, ``"mac"`` or ``"tag"``), ``costs`` (overrides of
    ``epcsim.engine.costs.Costs``), ``sections``/``nodes`` (EPC sections over NUMA nodes),
    ``sgx2`` (the CPU supports EDMM), ``timeslice`` (how long an enclave thread runs before a
    reschedule point), ``seed``, ``engine``
    (``"fast"``, the default: the model with the exact execution shortcuts of
    :mod:`epcsim.fast`, checked against the reference by differential tests;
    ``"reference"``: every step is a SimPy event), ``nopage_flood`` (``"simulate"``, the
    default, or ``"bulk"``: with the fast engine, charge a flood of VM_FAULT_NOPAGE retries
    at once - a named deviation, see ``epcsim/fast/README.md``), ``check`` (run the
    invariant checker, :mod:`epcsim.kernel.check`, after every public call and ``run()``;
    a violation raises ``InvariantError``; also on when the environment variable
    ``EPCSIM_CHECK`` is set to anything but ``0``), ``fast_core`` (run enclave threads'
    access streams and ksgxd's reclaim on the compiled core, ``epcsim.fast.driver.stream``:
    ``"auto"``, the default, engages it for a stream where it pays - its machines already
    compiled in this process or in numba's on-disk cache, or a stream long enough to repay
    their cold compile, ``epcsim.fast.driver.auto``; ``True`` always, ``False`` never. The
    core is exact, so this choice changes no result, only the host time: it is a speed
    knob, not a model option. Fast engine only; ``"auto"`` on the reference engine is off;
    ``fast_core_accesses`` counts what the core ran).

    ``mutex`` is ``encl->lock``'s behaviour: ``"linux"`` (kernel/locking/mutex.c: optimistic
    spinning, stealing, HANDOFF) or ``"fifo"`` (hand-over to the first sleeper).
    ``sched`` shares the CPUs: ``"cfs"`` (Linux's fair scheduler with wake-up preemption,
    PREEMPT_VOLUNTARY) or ``"fifo"`` (FIFO hand-out, no wake-up preemption; a task gives up a
    contended CPU at ``cond_resched`` after ``sched_slice``, default 3 ms - fifo only: CFS
    computes its slices from sched_latency). See ``epcsim.engine.mutex`` and
    ``epcsim.engine.sched`` for what each models.
    """

    def __init__(
        self,
        epc: int | str = "sgx1-client",
        cpus: int = 4,
        direct_reclaim: bool = True,
        seed: int = 0,
        *,
        policy: str = "lru",
        content_mode: str = "tag",
        costs: dict[str, Any] | Costs | None = None,
        sections: int = 1,
        nodes: int = 1,
        sgx2: bool = True,
        timeslice: int | str = "1ms",
        sched_slice: int | str | None = None,
        engine: str = "fast",
        nopage_flood: str = "simulate",
        mutex: str = "linux",
        sched: str = "cfs",
        check: bool = False,
        fast_core: bool | str = "auto",
    ):
        nr_pages = parse_pages(epc, "epc")
        #: a thread group left resident on the compiled core at the last ``run(until=)``
        #: deadline (``epcsim/fast/driver/group_resident.py``), or None
        self._resident: Any = None
        if content_mode not in CONTENT_MODES:
            raise ValueError(
                f"content_mode: one of {', '.join(CONTENT_MODES)}, got {content_mode!r}"
            )
        if not isinstance(sections, int) or not 1 <= sections <= 8 or sections > nr_pages:
            raise ValueError(f"sections: 1 to 8 EPC sections, got {sections!r}")
        if not isinstance(nodes, int) or not 1 <= nodes <= sections:
            raise ValueError(f"nodes: between 1 and the number of sections, got {nodes!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        if not isinstance(direct_reclaim, bool):
            raise ValueError(f"direct_reclaim: must be True or False, got {direct_reclaim!r}")
        if not isinstance(check, bool):
            raise ValueError(f"check: must be True or False, got {check!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine: one of {', '.join(ENGINES)}, got {engine!r}")
        if nopage_flood not in NOPAGE_FLOODS:
            raise ValueError(
                f"nopage_flood: one of {', '.join(NOPAGE_FLOODS)}, got {nopage_flood!r}"
            )
        if nopage_flood == "bulk" and engine != "fast":
            raise ValueError("nopage_flood: 'bulk' needs engine='fast' (the reference simulates)")
        if mutex not in MUTEXES:
            raise ValueError(f"mutex: one of {', '.join(MUTEXES)}, got {mutex!r}")
        if sched not in SCHEDULERS:
            raise ValueError(f"sched: one of {', '.join(SCHEDULERS)}, got {sched!r}")
        if sched_slice is not None and sched != "fifo":
            raise ValueError("sched_slice: only with sched='fifo' (CFS computes its own slices)")
        cost_model = costs if isinstance(costs, Costs) else Costs.from_dict(costs)
        self.seed = seed
        self.timeslice_ns = parse_duration(timeslice, "timeslice")
        self.engine = engine
        slice_ns = parse_duration("3ms" if sched_slice is None else sched_slice, "sched_slice")
        self._machine = Machine(
            cpus, cost_model, slice_ns, elide=engine == "fast", sched=sched, mutex=mutex
        )
        sizes = [
            nr_pages // sections + (1 if i < nr_pages % sections else 0) for i in range(sections)
        ]
        section_node = [i * nodes // sections for i in range(sections)]
        self.cpu = SgxCpu(nr_pages, nr_lps=cpus, content_mode=content_mode, seed=seed)
        epc_pages = EpcPages(sizes, section_node)
        self.sgx = Sgx(
            self._machine,
            self.cpu,
            epc_pages,
            make_policy(policy, nr_pages, seed, epc_pages),
            direct_reclaim=direct_reclaim,
            sgx2=sgx2,
            nopage_flood_bulk=nopage_flood == "bulk",
        )
        if not isinstance(fast_core, bool) and fast_core != "auto":
            raise ValueError(f"fast_core: True, False or 'auto', got {fast_core!r}")
        if fast_core is True and engine != "fast":
            raise ValueError("fast_core: needs engine='fast' (the reference is SimPy's)")
        # "auto" on the reference engine is off: it has no compiled core
        if fast_core is True or (fast_core == "auto" and engine == "fast"):
            from epcsim.fast.driver.stream import StreamCore

            self.sgx.stream_core = StreamCore(self, auto=fast_core == "auto")
        self.sgx.start_ksgxd()
        self.config = {
            "epc_bytes": nr_pages * PAGE_SIZE,
            "cpus": cpus,
            "direct_reclaim": direct_reclaim,
            "seed": seed,
            "policy": policy,
            "content_mode": content_mode,
            "sections": sections,
            "nodes": nodes,
            "sgx2": sgx2,
            "engine": engine,
            "nopage_flood": nopage_flood,
            "mutex": mutex,
            "sched": sched,
            "costs": cost_model.as_dict(),
        }
        self._threads: list[Any] = []
        #: the invariant checker (epcsim.kernel.check) runs after every public call; tests
        #: turn it on for every System with EPCSIM_CHECK=1 (tests/conftest.py)
        self.check = check or os.environ.get("EPCSIM_CHECK", "") not in ("", "0")

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def machine(self) -> Machine:
        """The SimPy engine (scheduler, mutexes, event queue): the model's internals, which
        tests and the scenario runner read. A thread group resident on the compiled core
        (``_materialise``) is moved back to SimPy first, so what is read is SimPy's state
        exactly as without residency."""
        if self._resident is not None:
            self._materialise()
        return self._machine

    @property
    def backing(self):
        """The untrusted backing store: raw records that tests and attackers may rewrite."""
        return self.sgx.backing

    @property
    def now(self) -> int:
        """Simulated time in nanoseconds."""
        return self._machine.now

    @property
    def costs(self) -> Costs:
        return self._machine.costs

    def _checkpoint(self, where: str = "a call") -> None:
        """A quiescent point of the API: with ``check`` on, every invariant must hold."""
        if self.check:
            assert_invariants(self.sgx, where)

    def _call(self, task: Task, gen: Generator) -> Any:
        """Run one blocking call to completion; everything else runs alongside it."""
        self._materialise()

        def wrapper():
            try:
                result = yield from gen
            finally:
                task.release_cpu()
            return result

        proc = self._machine.spawn(wrapper())
        self._machine.env.run(until=proc)
        self._checkpoint(getattr(gen, "__name__", "a call"))
        return proc.value

    def _materialise(self) -> None:
        """SimPy's state built from a thread group left resident on the compiled core at the
        last ``run(until=)`` deadline (``epcsim/fast/driver/group_resident.py``); nothing
        otherwise. Called before anything that runs or reads SimPy - ``run()`` without
        ``until``, every blocking call, ``Enclave.start`` - besides the guard on the SimPy
        environment itself; ``now``, ``stats()`` and a thread's ``is_alive`` are exact while
        resident and do not call it (that module's docstring says why)."""
        if self._resident is not None:
            from epcsim.fast.driver.group_resident import materialise

            materialise(self._resident)

    def run(self, until: int | str | None = None) -> None:
        """Run started threads (``Enclave.start``) to completion, or until a time (relative
        to now; 0 runs nothing)."""
        env = self._machine.env
        if until is not None:
            delta = parse_duration(until, "until")
            if delta > 0:
                res = self._resident
                if res is None or not _resident_run(res, env.now + delta):
                    env.run(until=env.now + delta)
        else:
            self._materialise()
            pending = [p for p in self._threads if p.is_alive]
            if pending:
                env.run(until=env.all_of(pending))
        self._checkpoint("run()")

    def create_enclave(
        self,
        size: int | str,
        *,
        debug: bool = False,
        name: str = "",
        ssa_frame_size: int = 1,
        process: Enclave | None = None,
    ) -> Enclave:
        """open("/dev/sgx_enclave") + SGX_IOC_ENCLAVE_CREATE of a ``size``-byte ELRANGE.

        ``size`` must be a size (bytes or "64K"): anything else is a ``ValueError``. A size the
        kernel refuses is the ioctl's business, as on Linux: not a power of two is -EINVAL from
        ``sgx_encl_create``; below 8K ECREATE faults and the ioctl returns -EIO. A failed CREATE
        raises :class:`IoctlError` (an ``OSError`` with that errno and the ``IoctlResult``);
        the half-made enclave is released, as closing its fd would.

        ``process``: create the enclave in the same process (mm) as that enclave, so their
        threads share one ``mm_cpumask`` - which is what the kernel's IPIs target.

        A model limit, not the kernel's: an ELRANGE holds at most 512 GiB (2**27 pages), as
        the owner page index of an EPC page shares 32 bits with its flags (issue 9,
        ``epcsim.kernel.epc``); a larger ``size`` is a ``ValueError``.
        """
        nbytes = parse_size(size, "size")
        if nbytes > MAX_ELRANGE_BYTES:
            raise ValueError(
                f"size: an ELRANGE of at most {MAX_ELRANGE_BYTES >> 30} GiB (the model's page "
                f"index is 27 bits), got {size!r}"
            )
        if process is not None and not isinstance(process, Enclave):
            raise ValueError(f"process: an Enclave of this System, got {process!r}")
        encl_id = self.sgx.new_encl_id()
        encl = SgxEncl(self.sgx, encl_id, self._unique_name(name or f"enclave{encl_id}", encl_id))
        self.sgx.enclaves[encl_id] = encl
        handle = Enclave(self, encl, None if process is None else process.mm)
        attrs = int(Attribute.MODE64BIT) | (int(Attribute.DEBUG) if debug else 0)
        # The loader reserves an ELRANGE aligned to its size (spec §15): one window per enclave.
        secs = Secs(
            size=nbytes, base=nbytes * encl_id, ssa_frame_size=ssa_frame_size, attributes=attrs
        )
        r = handle.ioctl(SGX_IOC_ENCLAVE_CREATE, secs)
        if not r.ok:
            handle.close()
            self.sgx.enclaves.pop(encl_id, None)
            raise IoctlError("SGX_IOC_ENCLAVE_CREATE", r)
        handle._secs = self.cpu.secs_state(encl.secs_epc)
        return handle

    def _unique_name(self, name: str, encl_id: int) -> str:
        """Decision (issue 10): ``stats()["enclaves"]`` and the reports key enclaves by name,
        so a name a live enclave already has gets ``#<id>`` appended (a second ``"worker"``
        becomes ``"worker#2"``): the first keeps its name and both stay visible."""
        taken = {e.name for e in self.sgx.enclaves.values()}
        while name in taken:
            name = f"{name}#{encl_id}"
        return name

    @property
    def enclaves(self) -> list[Enclave]:
        return [e.handle for e in self.sgx.enclaves.values() if isinstance(e.handle, Enclave)]

    @property
    def fast_core_accesses(self) -> int:
        """Stream accesses run on the compiled core (``fast_core`` True, or "auto" where it
        engaged; 0 otherwise)."""
        core = self.sgx.stream_core
        return 0 if core is None else int(core.accesses)

    def stats(self) -> dict[str, Any]:
        """Counters (design.md): EPC totals, per-enclave residency, leaf and reclaim counts."""
        sgx = self.sgx
        if sgx.flood is not None:
            sgx.flood.settle()  # retries charged in bulk whose instant has passed
        out: dict[str, Any] = {
            "epc_pages_total": sgx.epc.nr_pages,
            "epc_pages_free": sgx.epc.nr_free_pages,
            "simulated_ns": self.now,
        }
        out.update(sgx.stats.as_dict())
        out["backing_bytes"] = sgx.backing.bytes_used
        out["leaked_pages"] = sgx.leaked_pages
        out["warnings"] = len(sgx.warnings)
        out["enclaves"] = {
            e.name: {
                "id": e.id,
                "resident_pages": e.resident_pages,
                "swapped_pages": e.swapped_pages,
                "va_pages": len(e.va_pages),
                "secs_resident": e.secs_epc >= 0,
                "sigbus": e.sigbus,
            }
            for e in sgx.enclaves.values()
        }
        return out
