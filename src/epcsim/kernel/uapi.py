"""The SGX1 enclave ioctls' argument structs, as ``arch/x86/include/uapi/asm/sgx.h`` defines
them (spec §10.1-§10.3), and what user space gets back from any enclave ioctl
(``IoctlResult``).

User memory is not modelled as addresses: ``src`` carries the page data itself (``bytes``
or ``None`` for zero pages), and ``src_addr`` the user address whose alignment the kernel
checks.

Why a module of its own: the user side - ``user/enclave_ioctl.py``, ``workloads/edmm.py``,
the demo, the tests - builds these without the kernel's handlers, and the uapi header is
the boundary between the two, as ``uapi_sgx2.py`` is for the SGX2 ioctls (split from
``ioctl.py`` by session ``tidy`` when it passed 500 lines; no field changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from epcsim.arch import PAGE_SIZE, errno_name

#: ``SGX_PAGE_MEASURE``: ADD_PAGES' flag to EEXTEND each page into MRENCLAVE
SGX_PAGE_MEASURE = 0x01


@dataclass
class IoctlResult:
    """What userspace gets back: the return value and the copied-back struct fields."""

    ret: int = 0  # 0 or -errno
    count: int = 0  # bytes fully processed (ADD_PAGES and the SGX2 ioctls)
    result: int = 0  # SGX return code of a failing EMODPR/EMODT (SGX2 ioctls)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def errno(self) -> str | None:
        """The errno name (``"EAGAIN"``) or None on success."""
        return errno_name(-self.ret) if self.ret < 0 else None

    @property
    def ok(self) -> bool:
        return self.ret == 0

    @property
    def pages(self) -> int:
        return self.count // PAGE_SIZE


@dataclass
class Secinfo:
    """``struct sgx_secinfo``: flags and 56 reserved bytes."""

    flags: int
    reserved: bytes = bytes(56)


# -- SGX_IOC_ENCLAVE_ADD_PAGES ------------------------------------------------------------------
@dataclass
class AddPagesArgs:
    """``struct sgx_enclave_add_pages`` (plus the page data the kernel would copy from src)."""

    offset: int
    length: int
    secinfo: Secinfo | None
    flags: int = 0
    src: bytes | None = None  # page data, ``length`` bytes (None: zero pages)
    src_addr: int = 0x7F0000000000  # user address of src; must be page aligned
    count: int = 0


__all__ = ["SGX_PAGE_MEASURE", "AddPagesArgs", "IoctlResult", "Secinfo"]
