"""How the Python API reads its permission and page-type arguments: ``"rw"`` or R/W/X bits,
``"reg"``/``"tcs"``/``"trim"``, sizes that must be whole pages.

Why a module of its own: the ioctls (``enclave_ioctl``), the ENCLU leaves from inside
(``enclu``), ``Enclave.mprotect`` and the scenario loader (``scenario/model.py``,
``plan.py``) all parse them the same way (split from ``user/enclave.py`` by session
``split``, no code changed).
"""

from __future__ import annotations

from epcsim.arch import PAGE_SIZE, PageType
from epcsim.units import parse_size

PERMS = {"": 0, "r": 1, "w": 2, "x": 4}
PAGE_TYPES = {"reg": PageType.REG, "tcs": PageType.TCS, "trim": PageType.TRIM}


def parse_perm(perm: str | int, name: str = "perm") -> int:
    """``"rw"``, ``"rx"``, ``"r"`` ... or R/W/X bits as an int."""
    if isinstance(perm, int) and not isinstance(perm, bool) and 0 <= perm <= 7:
        return perm
    if isinstance(perm, str) and all(c in "rwx" for c in perm.lower()):
        bits = 0
        for c in perm.lower():
            bits |= PERMS[c]
        return bits
    raise ValueError(f"{name}: expected a permission string like 'rw' or 'rx', got {perm!r}")


def _page_aligned(value: int | str, name: str) -> int:
    nbytes = parse_size(value, name)
    if nbytes % PAGE_SIZE:
        raise ValueError(f"{name}: must be a multiple of 4096 bytes, got {nbytes}")
    return nbytes


__all__ = ["PAGE_TYPES", "PERMS", "parse_perm"]
