"""``/dev/sgx_enclave``'s ioctl entry: ``sgx_ioctl`` (``sgx/ioctl.c``) and the syscall around it.

``sgx_ioctl`` owns the one-ioctl-at-a-time rule: it sets ``SGX_ENCL_IOCTL`` with
test-and-set and a second ioctl on the same enclave meanwhile gets -EBUSY (spec §10), then
dispatches on the command number. Nothing outside this module touches ``encl.ioctl_busy``.

``sys_ioctl`` is the part of the system call the SGX driver does not own but whose cost and
scheduling effects matter for the -EAGAIN retry loops (issue 8, item 5): entering the kernel
(``Costs.syscall``), and returning to user space (``Costs.user_return``), where a pending
signal is delivered and ``need_resched`` is honoured - a retry after -EAGAIN is a return to
user space plus a new syscall, and the task may lose its CPU in between.

Command numbers are the uAPI's (``arch/x86/include/uapi/asm/sgx.h``): ``_IOW``/``_IOWR`` of
type 0xA4 with the size of each argument struct; an unknown number is -ENOTTY (the driver's
-ENOIOCTLCMD as userspace sees it).
"""

from __future__ import annotations

from typing import Any

from epcsim.arch import EBUSY, EFAULT, EINVAL, ENOTTY, Attribute
from epcsim.engine.machine import Gen, Task
from epcsim.kernel.encl import SgxEncl
from epcsim.kernel.ioctl_add import sgx_ioc_enclave_add_pages
from epcsim.kernel.ioctl_create import sgx_ioc_enclave_create
from epcsim.kernel.ioctl_init import sgx_ioc_enclave_init
from epcsim.kernel.ioctl_sgx2 import (
    sgx_ioc_enclave_modify_types,
    sgx_ioc_enclave_remove_pages,
    sgx_ioc_enclave_restrict_permissions,
)
from epcsim.kernel.progress import ProgressHook
from epcsim.kernel.uapi import IoctlResult

_IOC_WRITE, _IOC_READ = 1, 2
SGX_MAGIC = 0xA4


def _ioc(direction: int, nr: int, size: int) -> int:
    """``_IOC(dir, SGX_MAGIC, nr, size)``."""
    return (direction << 30) | (size << 16) | (SGX_MAGIC << 8) | nr


SGX_IOC_ENCLAVE_CREATE = _ioc(_IOC_WRITE, 0x00, 8)  # struct sgx_enclave_create
SGX_IOC_ENCLAVE_ADD_PAGES = _ioc(_IOC_WRITE | _IOC_READ, 0x01, 48)
SGX_IOC_ENCLAVE_INIT = _ioc(_IOC_WRITE, 0x02, 8)
SGX_IOC_ENCLAVE_PROVISION = _ioc(_IOC_WRITE, 0x03, 8)
SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = _ioc(_IOC_WRITE | _IOC_READ, 0x05, 40)
SGX_IOC_ENCLAVE_MODIFY_TYPES = _ioc(_IOC_WRITE | _IOC_READ, 0x06, 40)
SGX_IOC_ENCLAVE_REMOVE_PAGES = _ioc(_IOC_WRITE | _IOC_READ, 0x07, 24)

#: the path of the one attribute fd the kernel accepts (``sgx_set_attribute``)
SGX_PROVISION_PATH = "/dev/sgx_provision"


def sgx_ioc_enclave_provision(encl: SgxEncl, fd_path: str | None) -> IoctlResult:
    """``sgx_ioc_enclave_provision`` / ``sgx_set_attribute`` (spec §10.4). The model names
    the fd by the path it was opened from. No state check: it may come at any time.

    Return:
    * 0: PROVISIONKEY is now allowed in this enclave's attributes.
    * -EFAULT: the argument could not be copied (``None``).
    * -EINVAL: the fd is not ``/dev/sgx_provision``.
    """
    if fd_path is None:
        return IoctlResult(-EFAULT)
    if fd_path != SGX_PROVISION_PATH:
        return IoctlResult(-EINVAL)
    encl.attributes_mask |= int(Attribute.PROVISIONKEY)
    return IoctlResult(0)


def sgx_ioctl(
    task: Task, encl: SgxEncl, cmd: int, arg: Any, progress: ProgressHook | None = None
) -> Gen:
    """``sgx_ioctl``: one ioctl at a time per enclave, then the command's handler.

    ``arg`` is the command's argument as the handler takes it (a ``Secs`` for CREATE, a
    ``Sigstruct`` for INIT, the argument dataclass for the others, ``None`` for a pointer
    the kernel cannot copy). ``progress`` is passed to the page-loop handlers.

    Return: the handler's ``IoctlResult``, or
    * -EBUSY: another ioctl is running on this enclave (``SGX_ENCL_IOCTL`` was set).
    * -ENOTTY: an unknown command.
    """
    sgx = encl.sgx
    if encl.ioctl_busy:  # test_and_set_bit(SGX_ENCL_IOCTL, &encl->flags)
        sgx.stats.ioctl_ebusy += 1
        return IoctlResult(-EBUSY)
    encl.ioctl_busy = True
    if sgx.flood is not None and sgx.flood.parked:
        sgx.flood.wake_all(encl)
    try:
        if cmd == SGX_IOC_ENCLAVE_CREATE:
            return (yield from sgx_ioc_enclave_create(task, encl, arg))
        if cmd == SGX_IOC_ENCLAVE_ADD_PAGES:
            return (yield from sgx_ioc_enclave_add_pages(task, encl, arg, progress))
        if cmd == SGX_IOC_ENCLAVE_INIT:
            return (yield from sgx_ioc_enclave_init(task, encl, arg))
        if cmd == SGX_IOC_ENCLAVE_PROVISION:
            return sgx_ioc_enclave_provision(encl, arg)
        if cmd == SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS:
            return (yield from sgx_ioc_enclave_restrict_permissions(task, encl, arg, progress))
        if cmd == SGX_IOC_ENCLAVE_MODIFY_TYPES:
            return (yield from sgx_ioc_enclave_modify_types(task, encl, arg, progress))
        if cmd == SGX_IOC_ENCLAVE_REMOVE_PAGES:
            return (yield from sgx_ioc_enclave_remove_pages(task, encl, arg, progress))
        return IoctlResult(-ENOTTY)
    finally:
        encl.ioctl_busy = False  # clear_bit(SGX_ENCL_IOCTL, &encl->flags)


def sys_ioctl(
    task: Task, encl: SgxEncl, cmd: int, arg: Any, progress: ProgressHook | None = None
) -> Gen:
    """``ioctl(fd, cmd, arg)`` as a whole: syscall entry, ``sgx_ioctl``, return to user space.

    The return path delivers a pending signal (a handler that returned -ERESTARTSYS is
    restarted or fails with EINTR in userspace, depending on SA_RESTART; the model reports
    the kernel's -ERESTARTSYS and leaves the decision to the caller) and reschedules if
    another task is owed the CPU, as ``exit_to_user_mode_loop`` does.

    Return: ``sgx_ioctl``'s result.
    """
    costs = task.m.costs
    yield from task.run(costs.syscall)
    result = yield from sgx_ioctl(task, encl, cmd, arg, progress)
    yield from task.run(costs.user_return)
    task.deliver_signal()
    yield from task.cond_resched()
    return result


__all__ = [
    "SGX_IOC_ENCLAVE_ADD_PAGES",
    "SGX_IOC_ENCLAVE_CREATE",
    "SGX_IOC_ENCLAVE_INIT",
    "SGX_IOC_ENCLAVE_MODIFY_TYPES",
    "SGX_IOC_ENCLAVE_PROVISION",
    "SGX_IOC_ENCLAVE_REMOVE_PAGES",
    "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS",
    "sgx_ioctl",
    "sys_ioctl",
]
