"""Sizes ("4K", "93.5M", "64G" or bytes) and EPC presets of real platforms (spec/costs.md)."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from epcsim.arch import PAGE_SIZE

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)

#: EPC presets: usable EPC bytes of real parts (spec/costs.md, "EPC sizes of real platforms").
EPC_PRESETS = {
    # SGX1 client / Xeon E3: 128 MB PRM, a Kubernetes node reports 98,041,856 bytes usable
    "sgx1-client": 98_041_856,
    # older servers: 256 MB PRM, ~189 MB usable seen
    "sgx1-server": 189 << 20,
    # Ice Lake-SP Xeon Gold 5315Y: 65,144 MB
    "icelake-64g": 65_144 << 20,
}


#: largest size accepted (1 PiB): above any EPC or ELRANGE a model run could hold, and far
#: below where page counts would overflow the int64 arrays that hold them
MAX_SIZE = 1 << 50
#: longest duration accepted, in ns (2**53, ~104 simulated days): every duration and every
#: sum of a few of them stays exact as a float and far from int64 overflow
MAX_DURATION = 1 << 53
#: numbers with more digits than this are refused before they are converted
_MAX_DIGITS = 30


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut in the middle when long (a user may paste
    a 40,000-character value; the message stays one short line)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[: limit // 2]) + f" ... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ..."


def _number(text: str) -> Fraction:
    if len(text) > _MAX_DIGITS:
        raise OverflowError
    return Fraction(text)


def parse_size(value: int | str, name: str = "size") -> int:
    """Bytes from an int or a string such as ``"4K"``, ``"93.5M"``, ``"64G"``.

    Raises ``ValueError`` naming ``name`` on anything else, and on sizes above ``MAX_SIZE``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a size such as 4096, '4K' or '93M', got {show(value)}")
    nbytes: int | None = None
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name}: must not be negative, got {show(value)}")
        nbytes = value
    elif isinstance(value, str):
        if value.lower() in EPC_PRESETS:
            return EPC_PRESETS[value.lower()]
        m = _SIZE_RE.match(value) if len(value) <= 64 else None
        if m:
            try:
                nbytes = int(_number(m.group(1)) * _UNITS[m.group(2).upper()])
            except OverflowError:
                nbytes = MAX_SIZE + 1
    if nbytes is None:
        raise ValueError(
            f"{name}: expected a size such as 4096, '4K', '93.5M', '64G'"
            f" or a preset ({', '.join(EPC_PRESETS)}), got {show(value)}"
        )
    if nbytes > MAX_SIZE:
        raise ValueError(f"{name}: at most 1P (2**50 bytes), got {show(value)}")
    return nbytes


def parse_pages(value: int | str, name: str = "size") -> int:
    """A size rounded down to whole pages, at least one page."""
    nbytes = parse_size(value, name)
    pages = nbytes // PAGE_SIZE
    if pages < 1:
        raise ValueError(f"{name}: must be at least one page (4K), got {value!r}")
    return pages


def parse_duration(value: int | float | str, name: str = "duration") -> int:
    """Nanoseconds from a number (ns) or a string such as ``"10ms"``, ``"2s"``, ``"500us"``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a duration such as '10ms', got {show(value)}")
    ns: int | None = None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, got {show(value)}")
        if value < 0:
            raise ValueError(f"{name}: must not be negative, got {show(value)}")
        ns = int(min(value, MAX_DURATION + 1))
    elif isinstance(value, str) and len(value) <= 64:
        m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$", value)
        if m:
            scale = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
            try:
                ns = int(_number(m.group(1)) * scale[m.group(2) or "ns"])
            except OverflowError:
                ns = MAX_DURATION + 1
    if ns is None:
        raise ValueError(f"{name}: expected a duration such as '10ms' or '2s', got {show(value)}")
    if ns > MAX_DURATION:
        raise ValueError(f"{name}: at most 2**53 ns (~104 days), got {show(value)}")
    return ns


def fmt_value(v: Any) -> str:
    """How reports and tables print a value: thousands separators, yes/no, — for None."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
