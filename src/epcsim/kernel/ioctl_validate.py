"""The enclave ioctls' argument checks: ``sgx_validate_offset_length`` and
``sgx_validate_secinfo`` (``sgx/ioctl.c``, spec §10.2), shared by ADD_PAGES and the SGX2
ioctls. Split from ``ioctl.py`` by session ``tidy`` (no code changed).
"""

from __future__ import annotations

from epcsim.arch import PAGE_SIZE, PageType, secinfo_page_type
from epcsim.kernel.encl import PROT_R, PROT_W, SgxEncl
from epcsim.kernel.uapi import Secinfo

#: the range of the kernel's ``u64`` (the sum ``offset + length`` must not overflow it)
U64_MAX = (1 << 64) - 1


def validate_offset_length(encl: SgxEncl, offset: int, length: int) -> bool:
    """``sgx_validate_offset_length``."""
    if offset < 0 or length < 0 or offset % PAGE_SIZE or not length or length % PAGE_SIZE:
        return False
    if offset + length > U64_MAX:  # overflow of the u64 sum
        return False
    return offset + length - PAGE_SIZE < encl.size


def validate_secinfo(secinfo: Secinfo) -> bool:
    """``sgx_validate_secinfo``: REG or TCS, W implies R, TCS without permissions,
    no reserved bits, reserved bytes zero."""
    flags = secinfo.flags
    perm = flags & 7
    pt = secinfo_page_type(flags)
    if pt not in (PageType.REG, PageType.TCS):
        return False
    if (perm & PROT_W) and not (perm & PROT_R):
        return False
    if pt == PageType.TCS and perm:
        return False
    if flags & ~(0x7 | (0xFF << 8)) & U64_MAX:
        return False
    return not any(secinfo.reserved)


__all__ = ["U64_MAX", "validate_offset_length", "validate_secinfo"]
