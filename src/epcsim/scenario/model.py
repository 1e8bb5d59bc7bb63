"""The scenario schema: pydantic v2 models of a TOML scenario file.

Every table forbids unknown keys (a typo is an error, not a silently ignored setting) and
types are strict (``direct_reclaim = "yes"`` is an error, not ``True``). Sizes take bytes or
strings such as ``"64M"`` or an EPC preset; durations take ns or ``"10ms"``. Checks that
involve several keys (region names, ELRANGE size, TCS count ...) are in ``semantics.py`` so
each error can name the exact key.

Shape of a file (see ``examples/``)::

    seed = 1
    [machine]            epc, cpus, sections, nodes, policy, direct_reclaim, content_mode, sgx2
    [costs]              any field of epcsim.engine.costs.Costs
    [[enclave]]          name, size (ELRANGE), tcs, debug
    [[enclave.region]]   name, size, perm, measure, dynamic (reserved for EAUG, not added)
    [[enclave.thread]]   name, repeat
    [[enclave.thread.step]]  op = access | grow | trim | restrict | sleep, ...
    [expect]             counter = { min = .., max = .. }   (failed -> exit 1)
    [cliff]              epc_range = "32M:256M", steps = 6  (defaults for ``epcsim cliff``)
"""

from __future__ import annotations

from dataclasses import fields as dc_fields
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from epcsim.engine.costs import Costs
from epcsim.kernel.policy import POLICIES
from epcsim.units import parse_duration, parse_size, show
from epcsim.user.args import parse_perm


def _reason(e: ValueError) -> str:
    """``parse_size`` prefixes its message with the argument name; the key path says it."""
    msg = str(e)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _size(v: Any) -> int:
    try:
        return parse_size(v, "size")
    except ValueError as e:
        raise ValueError(_reason(e)) from None


def _duration(v: Any) -> int:
    try:
        return parse_duration(v, "duration")
    except ValueError as e:
        raise ValueError(_reason(e)) from None


def _perm(v: str) -> str:
    try:
        bits = parse_perm(v)
    except ValueError as e:
        raise ValueError(_reason(e)) from None
    if bits & 2 and not bits & 1:
        raise ValueError(f"write without read is not a valid SGX permission, got {show(v)}")
    return v.lower()


# A size or duration is an int or a string; the before-validator turns either into an int
# (and rejects anything else with one message), so a union never reports per-member errors.
Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[int, BeforeValidator(_duration)]
Perm = Annotated[str, AfterValidator(_perm)]
Fraction = Annotated[float, Field(ge=0, le=1)]


#: bound of counts (accesses, repeats): far from int64 overflow, exact as a float
MAX_COUNT = 1 << 53
#: seeds are non-negative (NumPy's SeedSequence refuses negative entropy) and fit SQLite's
#: signed 64-bit INTEGER (the sweep database)
MAX_SEED = (1 << 63) - 1
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class _Model(BaseModel):
    # NaN and infinities are refused everywhere: a NaN bound would never fail a check, an
    # infinite rate or cost would stall or overflow the model
    model_config = ConfigDict(
        extra="forbid", strict=True, validate_default=True, allow_inf_nan=False
    )


class MachineSpec(_Model):
    """``[machine]``: the hardware and kernel knobs of ``epcsim.System``.

    Each field is passed as the ``System`` keyword argument of the same name (``plan.py``
    dumps the model), so adding a knob is adding its field here with the faithful default.
    """

    epc: Size = parse_size("sgx1-client", "epc")  # what the validator makes of the preset
    cpus: Annotated[int, Field(ge=1, le=1024)] = 4
    sections: Annotated[int, Field(ge=1, le=8)] = 1
    nodes: Annotated[int, Field(ge=1, le=8)] = 1
    policy: str = "lru"
    direct_reclaim: bool = True
    content_mode: Literal["tag", "mac", "full"] = "tag"
    sgx2: bool = True
    timeslice: Duration = parse_duration("1ms", "timeslice")
    mutex: Literal["linux", "fifo"] = "linux"  # encl->lock: Linux's mutex or FIFO hand-over
    sched: Literal["cfs", "fifo"] = "cfs"  # CPU sharing: CFS or FIFO (epcsim.engine.sched)
    engine: Literal["fast", "reference"] = "fast"  # epcsim.fast (exact) or the SimPy reference
    nopage_flood: Literal["simulate", "bulk"] = "simulate"  # bulk: fast only, a deviation

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"unknown reclaim policy {show(v)} (known: {', '.join(POLICIES)})")
        return v

    @model_validator(mode="after")
    def _bulk_needs_fast(self) -> MachineSpec:
        if self.nopage_flood == "bulk" and self.engine != "fast":
            raise ValueError('nopage_flood = "bulk" needs engine = "fast"')
        return self


def _positive_cost(v: int) -> int:
    if v < 1:  # Costs.from_dict explains why a zero-cost step is refused
        raise ValueError(
            f"must be at least 1 ns (a zero-cost step lets a retry loop spin without "
            f"simulated time passing), got {v}"
        )
    return v


def _cost_field(name: str) -> tuple[Any, Any]:
    if name == "clock_ghz":
        return (Annotated[float, Field(gt=0)] | None, None)
    return (Annotated[Duration, AfterValidator(_positive_cost)] | None, None)


#: ``[costs]``: every field of ``Costs``, in ns (or a duration string); unknown names fail.
CostsSpec = create_model(  # type: ignore[call-overload]
    "CostsSpec",
    __base__=_Model,
    **{f.name: _cost_field(f.name) for f in dc_fields(Costs)},
)


class RegionSpec(_Model):
    """``[[enclave.region]]``: a part of ELRANGE, laid out in file order after the TCS pages.
    A static region is added at build (ADD_PAGES, measured or not); a ``dynamic`` one is
    only reserved and grows at run time by EAUG (a ``grow`` step)."""

    name: Annotated[str, Field(min_length=1)]
    size: Size
    perm: Perm = "rw"
    measure: bool = False
    dynamic: bool = False

    @field_validator("size")
    @classmethod
    def _pages(cls, v: int) -> int:
        if v <= 0 or v % 4096:
            raise ValueError(f"must be a positive multiple of 4K, got {v} bytes")
        return v


class _StepBase(_Model):
    region: str | None = None  # default: the enclave's only region
    offset: Size = 0  # within the region
    length: Size | None = None  # default: the rest of the region


class _AccessBase(_StepBase):
    op: Literal["access"]
    count: Count | None = None  # default: one pass over the range
    writes: Fraction = 0.0  # fraction of accesses that write


class _Sequential(_Model):
    pattern: Literal["sequential"]
    stride: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1


class _Uniform(_Model):
    pattern: Literal["uniform"]


class _Zipf(_Model):
    pattern: Literal["zipf"]
    alpha: Annotated[float, Field(gt=0)] = 1.0
    scatter: bool = False


class _HotCold(_Model):
    pattern: Literal["hotcold"]
    hot_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1
    hot_probability: Fraction = 0.9


class _Growing(_Model):
    pattern: Literal["growing"]
    start_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1


_SIMPLE: dict[str, type[_Model]] = {
    "sequential": _Sequential,
    "uniform": _Uniform,
    "zipf": _Zipf,
    "hotcold": _HotCold,
    "growing": _Growing,
}
PATTERN_NAMES = [*_SIMPLE, "phases"]


def _tagged_union(models: dict[str, Any], discriminator: Discriminator) -> Any:
    """A union of ``models`` told apart by ``discriminator`` (a tag per model)."""
    members = tuple(Annotated[m, Tag(tag)] for tag, m in models.items())
    return Annotated[Union[members], discriminator]  # noqa: UP007 (built at run time)


def _tag_of(key: str, known: list[str]):
    def tag(v: Any) -> str | None:
        if isinstance(v, dict):
            name = v.get(key)
        else:
            name = getattr(v, key, None)
        return name if name in known else None

    return tag


# A phase is a simple pattern plus its own ``count``.
_PHASE_MODELS: dict[str, type[_Model]] = {
    n: create_model(f"Phase{m.__name__}", __base__=m, count=(Count, ...))
    for n, m in _SIMPLE.items()
}
# The tagged unions are built at run time from the model tables, so a type checker cannot see
# their members: it treats them as Any (the validated objects are checked by pydantic).
if TYPE_CHECKING:
    PhaseSpec = Any
else:
    PhaseSpec = _tagged_union(
        _PHASE_MODELS,
        Discriminator(
            _tag_of("pattern", list(_SIMPLE)),
            custom_error_type="bad_pattern",
            custom_error_message=f"pattern: expected one of {', '.join(_SIMPLE)}",
        ),
    )


class _Phases(_Model):
    pattern: Literal["phases"]
    phases: Annotated[list[PhaseSpec], Field(min_length=1)]


def _access_model(m: type[_Model]) -> type[_Model]:
    bases: tuple[type[_Model], ...] = (_AccessBase, m)
    return create_model(f"Access{m.__name__}", __base__=bases)


_ACCESS_BASES: dict[str, type[_Model]] = {**_SIMPLE, "phases": _Phases}
_ACCESS_MODELS = {n: _access_model(m) for n, m in _ACCESS_BASES.items()}


class GrowStep(_StepBase):
    op: Literal["grow"]


class TrimStep(_StepBase):
    op: Literal["trim"]


class RestrictStep(_StepBase):
    op: Literal["restrict"]
    perm: Perm


class SleepStep(_Model):
    op: Literal["sleep"]
    duration: Duration


STEP_OPS = ["access", "grow", "trim", "restrict", "sleep"]
EDMM_OPS = {"grow", "trim", "restrict"}


def _step_tag(v: Any) -> str | None:
    op = v.get("op") if isinstance(v, dict) else getattr(v, "op", None)
    if op == "access":
        pattern = v.get("pattern") if isinstance(v, dict) else getattr(v, "pattern", None)
        return f"access:{pattern}" if pattern in PATTERN_NAMES else None
    return op if op in STEP_OPS else None


STEP_TAGS = {*(f"access:{p}" for p in PATTERN_NAMES), *STEP_OPS, *PATTERN_NAMES}

if TYPE_CHECKING:
    StepSpec = Any
else:
    StepSpec = _tagged_union(
        {
            **{f"access:{p}": m for p, m in _ACCESS_MODELS.items()},
            "grow": GrowStep,
            "trim": TrimStep,
            "restrict": RestrictStep,
            "sleep": SleepStep,
        },
        Discriminator(
            _step_tag,
            custom_error_type="bad_step",
            custom_error_message=(
                f"op: expected one of {', '.join(STEP_OPS)}"
                f" (op = 'access' also needs pattern = one of {', '.join(PATTERN_NAMES)})"
            ),
        ),
    )


class ThreadSpec(_Model):
    """``[[enclave.thread]]``: one user thread running its steps ``repeat`` times
    (``repeat = 0``: again and again until the scenario's ``duration`` ends)."""

    name: str = ""
    repeat: Count = 1
    step: Annotated[list[StepSpec], Field(min_length=1)]


class EnclaveSpec(_Model):
    """``[[enclave]]``: built in file order (CREATE, ADD_PAGES per region, INIT)."""

    name: Annotated[str, Field(min_length=1)]
    size: Size | None = None  # ELRANGE; default the smallest power of two that fits
    tcs: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None  # default: one per thread
    debug: bool = False
    region: Annotated[list[RegionSpec], Field(min_length=1)]
    thread: list[ThreadSpec] = []


class Bound(_Model):
    """``[expect]`` entry: the run fails its checks (exit 1) outside ``[min, max]``."""

    min: float | None = None  # an int is accepted too (strict floats take ints)
    max: float | None = None


class CliffSpec(_Model):
    """``[cliff]``: defaults for ``epcsim cliff`` (the command line overrides them)."""

    epc_range: str = "32M:256M"
    steps: Annotated[int, Field(ge=2, le=64)] = 6


class Scenario(_Model):
    """A whole scenario file."""

    name: str = ""
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    duration: Duration | None = None  # cap on simulated run time (after the build)
    machine: MachineSpec = MachineSpec()
    costs: CostsSpec = CostsSpec()
    enclave: Annotated[list[EnclaveSpec], Field(min_length=1)]
    expect: dict[str, Bound] = {}
    cliff: CliffSpec | None = None
    cgroup: Any = None  # reserved for the sgx_epc cgroup model; rejected in semantics.py
    _source: str = PrivateAttr("")  # the file's text, shown in reports as the config used

    def costs_dict(self) -> dict[str, Any]:
        costs: BaseModel = self.costs
        return {k: v for k, v in costs.model_dump().items() if v is not None}
