"""The uAPI ioctls of an ``Enclave`` handle (``SGX_IOC_ENCLAVE_*``), called from the owning
process's ioctl thread: ADD_PAGES, PROVISION, INIT (with the modelled signer's SIGSTRUCT),
and the SGX2 range operations RESTRICT_PERMISSIONS, MODIFY_TYPES, REMOVE_PAGES, each also
``_raw`` with a hand-made argument struct. ``IoctlError`` is the one ioctl failure that
raises (CREATE, from ``System.create_enclave``).

Why a module of its own: the kernel's ``ioctl.c``/SGX2 ioctls as user space calls them, apart
from the ENCLU leaves run from inside (``enclu``) and the threads (``enclave``).
``EnclaveIoctls`` is a mixin of ``Enclave`` (split from ``user/enclave.py`` by session
``split``, no code changed): the attributes it reads are ``Enclave.__init__``'s.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from epcsim.arch import EBADF, PageType, secinfo_flags
from epcsim.engine.machine import Task
from epcsim.isa import Sigstruct
from epcsim.kernel.driver import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_PROVISION,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    sys_ioctl,
)
from epcsim.kernel.encl import SgxEncl
from epcsim.kernel.progress import ProgressHook
from epcsim.kernel.uapi import AddPagesArgs, IoctlResult, Secinfo
from epcsim.kernel.uapi_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs
from epcsim.units import parse_size
from epcsim.user.args import PAGE_TYPES, _page_aligned, parse_perm

if TYPE_CHECKING:
    from epcsim.isa.secs import SecsState
    from epcsim.system import System

#: The modelled signer's key: a fixed 384-byte modulus (RSA itself is not modelled).
MODEL_SIGNER_MODULUS = hashlib.shake_256(b"epcsim model signer").digest(384)


class IoctlError(OSError):
    """An ioctl that failed where the Python API has no result object to hand back - today
    only SGX_IOC_ENCLAVE_CREATE, since ``System.create_enclave`` returns the ``Enclave``.

    It is an ``OSError`` like any failed system call in Python (``errno`` is the number,
    ``strerror`` the message), and keeps the kernel's ``IoctlResult`` as ``result``. A
    valid Python value that the kernel or ECREATE refuses comes back this way (e.g. a size
    that is not a power of two is EINVAL, a SECS that ECREATE faults on is EIO); a value
    that is not a size at all is still a ``ValueError`` naming the argument.
    """

    def __init__(self, command: str, result: IoctlResult):
        err = -result.ret
        super().__init__(err, f"{command}: {result.errno}")
        self.result = result
        self.command = command


class EnclaveIoctls:
    """The ioctls of ``Enclave`` (module docstring)."""

    # set by ``Enclave.__init__``
    system: System
    encl: SgxEncl
    task: Task
    closed: bool
    _secs: SecsState | None

    def ioctl(self, cmd: int, arg: Any, progress: ProgressHook | None = None) -> IoctlResult:
        """``ioctl(enclave_fd, cmd, arg)`` from the process's ioctl thread: the syscall runs
        ``sgx_ioctl`` (which refuses a second concurrent ioctl with -EBUSY). A closed fd
        fails with -EBADF before reaching the driver."""
        if self.closed:
            return IoctlResult(-EBADF)
        return self.system._call(self.task, sys_ioctl(self.task, self.encl, cmd, arg, progress))

    # -- build ------------------------------------------------------------------------------
    def add_pages(
        self,
        offset: int | str,
        length: int | str,
        perm: str | int = "rw",
        *,
        page_type: str = "reg",
        measure: bool = False,
        data: bytes | None = None,
        progress: ProgressHook | None = None,
    ) -> IoctlResult:
        """SGX_IOC_ENCLAVE_ADD_PAGES. ``data`` (``length`` bytes) is copied by EADD;
        ``progress(encl, bytes done)`` is called after each page."""
        off = _page_aligned(offset, "offset")
        ln = _page_aligned(length, "length")
        pt = PAGE_TYPES.get(str(page_type).lower())
        if pt not in (PageType.REG, PageType.TCS):
            raise ValueError(f"page_type: 'reg' or 'tcs' for add_pages, got {page_type!r}")
        bits = parse_perm(perm) if pt == PageType.REG else 0
        if data is not None and len(data) < ln:
            raise ValueError(f"data: {len(data)} bytes given for a length of {ln}")
        args = AddPagesArgs(
            off, ln, Secinfo(secinfo_flags(pt, bits)), flags=1 if measure else 0, src=data
        )
        return self.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, args, progress)

    def add_pages_raw(self, args: AddPagesArgs | None) -> IoctlResult:
        """ADD_PAGES with a hand-made argument struct (for validation tests)."""
        return self.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, args)

    def provision(self, fd_path: str | None = "/dev/sgx_provision") -> IoctlResult:
        """SGX_IOC_ENCLAVE_PROVISION with an fd opened from ``fd_path``: allows PROVISIONKEY."""
        return self.ioctl(SGX_IOC_ENCLAVE_PROVISION, fd_path)

    def sigstruct(self) -> Sigstruct:
        """A SIGSTRUCT for what was built: the signer computed the same MRENCLAVE offline."""
        # The SECS may be evicted (after EINIT): its state, measurement included, is kept by
        # the CPU across evictions, so the signer reads it from there.
        st = (
            self._secs if self._secs is not None else self.system.cpu.secs_state(self.encl.secs_epc)
        )
        return Sigstruct.sign(
            st.measurement_digest(), MODEL_SIGNER_MODULUS, attributes=self.encl.attributes
        )

    def init(self, sigstruct: Sigstruct | None = None) -> IoctlResult:
        """SGX_IOC_ENCLAVE_INIT (signed for the built measurement unless one is given)."""
        if self.closed:
            return IoctlResult(-EBADF)
        sig = sigstruct if sigstruct is not None else self.sigstruct()
        return self.ioctl(SGX_IOC_ENCLAVE_INIT, sig)

    # -- SGX2 page-range operations ----------------------------------------------------------
    def restrict_permissions(
        self,
        offset: int | str,
        length: int | str,
        perm: str | int = "r",
        progress: ProgressHook | None = None,
    ) -> IoctlResult:
        """SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS (EMODPR; the enclave then EACCEPTs with PR)."""
        args = RestrictPermissionsArgs(
            parse_size(offset, "offset"), parse_size(length, "length"), parse_perm(perm)
        )
        return self.restrict_permissions_raw(args, progress)

    def restrict_permissions_raw(
        self, args: RestrictPermissionsArgs | None, progress: ProgressHook | None = None
    ) -> IoctlResult:
        return self.ioctl(SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, args, progress)

    def modify_types(
        self,
        offset: int | str,
        length: int | str,
        page_type: str | int = "trim",
        progress: ProgressHook | None = None,
    ) -> IoctlResult:
        """SGX_IOC_ENCLAVE_MODIFY_TYPES (EMODT to ``"trim"`` or ``"tcs"``)."""
        if isinstance(page_type, str):
            if page_type.lower() not in PAGE_TYPES:
                raise ValueError(f"page_type: 'trim' or 'tcs', got {page_type!r}")
            pt = int(PAGE_TYPES[page_type.lower()])
        else:
            pt = int(page_type)
        args = ModifyTypesArgs(parse_size(offset, "offset"), parse_size(length, "length"), pt)
        return self.modify_types_raw(args, progress)

    def modify_types_raw(
        self, args: ModifyTypesArgs | None, progress: ProgressHook | None = None
    ) -> IoctlResult:
        return self.ioctl(SGX_IOC_ENCLAVE_MODIFY_TYPES, args, progress)

    def remove_pages(
        self, offset: int | str, length: int | str, progress: ProgressHook | None = None
    ) -> IoctlResult:
        """SGX_IOC_ENCLAVE_REMOVE_PAGES (EREMOVE of accepted TRIM pages)."""
        args = RemovePagesArgs(parse_size(offset, "offset"), parse_size(length, "length"))
        return self.remove_pages_raw(args, progress)

    def remove_pages_raw(
        self, args: RemovePagesArgs | None, progress: ProgressHook | None = None
    ) -> IoctlResult:
        return self.ioctl(SGX_IOC_ENCLAVE_REMOVE_PAGES, args, progress)


__all__ = ["MODEL_SIGNER_MODULUS", "EnclaveIoctls", "IoctlError"]
