"""Sizes ("4K", "93.5M", "64G" or bytes) and EPC presets of real platforms (spec/costs.md)."""

from __future__ import annotations

import re
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


def parse_size(value: int | str, name: str = "size") -> int:
    """Bytes from an int or a string such as ``"4K"``, ``"93.5M"``, ``"64G"``.

    Raises ``ValueError`` naming ``name`` on anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a size such as 4096, '4K' or '93M', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name}: must not be negative, got {value}")
        return value
    if isinstance(value, str):
        if value.lower() in EPC_PRESETS:
            return EPC_PRESETS[value.lower()]
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    raise ValueError(
        f"{name}: expected a size such as 4096, '4K', '93.5M', '64G'"
        f" or a preset ({', '.join(EPC_PRESETS)}), got {value!r}"
    )


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
        raise ValueError(f"{name}: expected a duration such as '10ms', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{name}: must not be negative, got {value}")
        return int(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$", str(value))
    if not m:
        raise ValueError(f"{name}: expected a duration such as '10ms' or '2s', got {value!r}")
    scale = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
    return int(float(m.group(1)) * scale[m.group(2) or "ns"])


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
