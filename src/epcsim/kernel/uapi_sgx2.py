"""The SGX2 page-range ioctls' argument structs, as ``arch/x86/include/uapi/asm/sgx.h``
defines them (spec §10.5-§10.9): what user space fills in and the kernel writes
``result`` and ``count`` back to.

Why a module of its own: the user side - ``user/enclave_ioctl.py``, ``workloads/edmm.py``,
the demo, the tests - builds these without the kernel's page loops, and the uapi header
is the boundary between the two; the ioctls that read them are ``ioctl_sgx2.py``'s (split
from it by session ``tidy`` when it passed 500 lines; no field changed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RestrictPermissionsArgs:
    """``struct sgx_enclave_restrict_permissions``."""

    offset: int
    length: int
    permissions: int
    result: int = 0
    count: int = 0


@dataclass
class ModifyTypesArgs:
    """``struct sgx_enclave_modify_types``."""

    offset: int
    length: int
    page_type: int
    result: int = 0
    count: int = 0


@dataclass
class RemovePagesArgs:
    """``struct sgx_enclave_remove_pages``."""

    offset: int
    length: int
    count: int = 0
