"""Checks that span several keys, and the page layout of each enclave.

The schema (``model.py``) checks each value on its own; here the scenario is checked as a
whole (names unique and resolvable, ranges inside their region, ELRANGE large enough, one
TCS per thread ...) so that every error still names one key path, e.g.
``enclave[0].thread[1].step[2].region``.

Layout (documented in the README): each enclave's ELRANGE starts with its TCS pages, then
the regions follow in file order, each starting on the next page. A step's ``offset`` and
``length`` are relative to its region.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from epcsim.arch import PAGE_SIZE
from epcsim.kernel.stats import Counters
from epcsim.scenario.model import EDMM_OPS, EnclaveSpec, Scenario
from epcsim.units import show

#: derived figures a run reports (``RunResult.derived``) and ``[expect]`` may bound
DERIVED_KEYS = (
    "build_ns",
    "run_ns",
    "accesses",
    "faults_in_run",
    "eldu_in_run",
    "ewb_in_run",
    "fault_rate",
    "eldu_per_access",
    "accesses_per_ms",
    "fault_latency_p50_ns",
    "fault_latency_p99_ns",
    "footprint_pages",
    "slowdown",
)
#: counters of ``System.stats()`` that ``[expect]`` may bound (besides ``DERIVED_KEYS``)
STAT_KEYS = (
    "epc_pages_total",
    "epc_pages_free",
    "simulated_ns",
    "backing_bytes",
    "leaked_pages",
    "warnings",
    *(f.name for f in fields(Counters)),
)
EXPECT_KEYS = (*STAT_KEYS, *DERIVED_KEYS)


#: the smallest EPC a run can start on: SGX_IOC_ENCLAVE_CREATE takes one page for the
#: enclave's first VA page (``sgx_encl_grow``) and one for the SECS
MIN_EPC_PAGES = 2


def check_epc_pages(pages: int, key: str) -> None:
    """``ScenarioError`` naming ``key`` when an EPC of ``pages`` cannot even run ECREATE."""
    if pages < MIN_EPC_PAGES:
        raise ScenarioError(
            key,
            f"at least {MIN_EPC_PAGES} pages (8K): ECREATE takes one EPC page for the first"
            f" VA page and one for the SECS, got {pages} page(s)",
        )


class ScenarioError(ValueError):
    """A bad scenario: ``key`` is the dotted path (``machine.epc``), ``reason`` says why."""

    def __init__(self, key: str, reason: str, path: str | None = None):
        self.key, self.reason, self.path = key, reason, path
        super().__init__(self.format())

    def format(self) -> str:
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}{self.key}: {self.reason}" if self.key else f"{prefix}{self.reason}"


@dataclass
class RegionLayout:
    name: str
    first_page: int
    pages: int
    perm: str
    measure: bool
    dynamic: bool


@dataclass
class EnclaveLayout:
    tcs: int
    regions: dict[str, RegionLayout] = field(default_factory=dict)

    @property
    def total_pages(self) -> int:
        """TCS plus every region (static and dynamic): what the enclave may use."""
        return self.tcs + sum(r.pages for r in self.regions.values())

    @property
    def static_pages(self) -> int:
        return self.tcs + sum(r.pages for r in self.regions.values() if not r.dynamic)


def layout(e: EnclaveSpec) -> EnclaveLayout:
    out = EnclaveLayout(tcs=e.tcs if e.tcs is not None else max(1, len(e.thread)))
    page = out.tcs
    for r in e.region:
        n = r.size // PAGE_SIZE
        out.regions[r.name] = RegionLayout(r.name, page, n, r.perm, r.measure, r.dynamic)
        page += n
    return out


def elrange_size(e: EnclaveSpec, lay: EnclaveLayout) -> int:
    """The ELRANGE: as given, or the smallest power of two (at least 8K) that fits."""
    if e.size is not None:
        return e.size
    size = 2 * PAGE_SIZE
    while size < lay.total_pages * PAGE_SIZE:
        size <<= 1
    return size


def _names(names) -> str:  # type: ignore[no-untyped-def]
    """Region names for an error line: as written, but a name that is not one short
    printable line (a newline, a pasted page of text) as ``show`` gives it, so the message
    stays one short line (found by ``test_fuzz_inputs``: a region named ``"\n"``)."""
    return ", ".join(n if n.isprintable() and len(n) <= 60 else show(n) for n in names)


def step_range(lay: EnclaveLayout, step, key: str) -> tuple[int, int]:
    """(first page, pages) a step covers; raises ``ScenarioError`` naming the key."""
    name = step.region
    if name is None:
        if len(lay.regions) != 1:
            raise ScenarioError(
                f"{key}.region",
                f"required when the enclave has several regions ({_names(lay.regions)})",
            )
        name = next(iter(lay.regions))
    if name not in lay.regions:
        raise ScenarioError(
            f"{key}.region", f"no region {show(name)} (regions: {_names(lay.regions)})"
        )
    reg = lay.regions[name]
    if step.offset % PAGE_SIZE:
        raise ScenarioError(f"{key}.offset", f"must be a multiple of 4K, got {step.offset}")
    first = step.offset // PAGE_SIZE
    if first >= reg.pages:
        raise ScenarioError(f"{key}.offset", f"past the end of region {show(name)}")
    if step.length is None:
        pages = reg.pages - first
    else:
        if step.length <= 0 or step.length % PAGE_SIZE:
            raise ScenarioError(
                f"{key}.length", f"must be a positive multiple of 4K, got {step.length}"
            )
        pages = step.length // PAGE_SIZE
        if first + pages > reg.pages:
            raise ScenarioError(
                f"{key}.length", f"offset + length runs past the end of region {show(name)}"
            )
    return reg.first_page + first, pages


def check(sc: Scenario) -> None:
    """Raise ``ScenarioError`` for the first problem found (file order)."""
    if sc.cgroup is not None:
        raise ScenarioError(
            "cgroup",
            "not supported yet: the sgx_epc misc cgroup is not modelled in this version;"
            " remove the [[cgroup]] tables",
        )
    m = sc.machine
    if m.nodes > m.sections:
        raise ScenarioError("machine.nodes", f"at most machine.sections ({m.sections})")
    if m.epc < PAGE_SIZE * m.sections:
        raise ScenarioError("machine.epc", "at least one 4K page per EPC section")
    check_epc_pages(m.epc // PAGE_SIZE, "machine.epc")
    if sc.duration is not None and sc.duration <= 0:
        raise ScenarioError("duration", "must be positive")
    names: set[str] = set()
    for i, e in enumerate(sc.enclave):
        _check_enclave(sc, e, f"enclave[{i}]", names)
    for k, b in sc.expect.items():
        if k not in EXPECT_KEYS:
            raise ScenarioError(f"expect.{k}", f"unknown counter (known: {', '.join(EXPECT_KEYS)})")
        if b.min is None and b.max is None:
            raise ScenarioError(f"expect.{k}", "give min, max or both")
    if sc.cliff is not None:
        try:
            parse_epc_range(sc.cliff.epc_range)
        except ValueError as e:
            raise ScenarioError("cliff.epc_range", str(e)) from None


def _check_enclave(sc: Scenario, e: EnclaveSpec, key: str, names: set[str]) -> None:
    if e.name in names:
        raise ScenarioError(f"{key}.name", f"duplicate enclave name {show(e.name)}")
    names.add(e.name)
    regions: set[str] = set()
    for j, r in enumerate(e.region):
        rk = f"{key}.region[{j}]"
        if r.name in regions:
            raise ScenarioError(f"{rk}.name", f"duplicate region name {show(r.name)}")
        regions.add(r.name)
        if r.dynamic and r.measure:
            raise ScenarioError(f"{rk}.measure", "a dynamic region is EAUGed, never measured")
        if r.dynamic and r.perm != "rw":
            raise ScenarioError(f"{rk}.perm", "a dynamic region is EAUGed read-write: use 'rw'")
    lay = layout(e)
    if e.tcs is not None and e.tcs < len(e.thread):
        raise ScenarioError(
            f"{key}.tcs", f"{len(e.thread)} threads need at least {len(e.thread)} TCS pages"
        )
    if e.size is not None:
        if e.size < 2 * PAGE_SIZE or e.size & (e.size - 1):
            raise ScenarioError(
                f"{key}.size", f"ELRANGE must be a power of two >= 8K, got {e.size}"
            )
        if e.size < lay.total_pages * PAGE_SIZE:
            raise ScenarioError(
                f"{key}.size",
                f"ELRANGE of {e.size} bytes is smaller than the TCS and regions"
                f" ({lay.total_pages * PAGE_SIZE} bytes)",
            )
    threads: set[str] = set()
    for j, t in enumerate(e.thread):
        tk = f"{key}.thread[{j}]"
        tname = t.name or f"t{j}"
        if tname in threads:
            raise ScenarioError(f"{tk}.name", f"duplicate thread name {show(tname)}")
        threads.add(tname)
        if t.repeat == 0 and sc.duration is None:
            raise ScenarioError(f"{tk}.repeat", "0 (until the end) needs a top-level duration")
        for s, step in enumerate(t.step):
            sk = f"{tk}.step[{s}]"
            if step.op in EDMM_OPS and not sc.machine.sgx2:
                raise ScenarioError(f"{sk}.op", f"{show(step.op)} needs SGX2: machine.sgx2 = true")
            if step.op == "sleep":
                continue
            step_range(lay, step, sk)
            if step.op == "access" and step.pattern == "phases" and step.count is not None:
                raise ScenarioError(f"{sk}.count", "a phases pattern takes a count per phase")


def parse_epc_range(text: str) -> tuple[int, int]:
    """``"32M:256M"`` -> (low, high) in bytes, low < high."""
    from epcsim.units import parse_size

    parts = str(text).split(":")
    if len(parts) != 2:
        raise ValueError(f"expected LOW:HIGH such as '32M:256M', got {show(text)}")
    lo, hi = (parse_size(p.strip(), "epc_range") for p in parts)
    if lo < 2 * PAGE_SIZE or hi <= lo:
        raise ValueError(f"expected LOW < HIGH, each at least 8K, got {show(text)}")
    return lo, hi
