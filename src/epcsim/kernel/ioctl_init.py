"""``SGX_IOC_ENCLAVE_INIT``: ``sgx_ioc_enclave_init`` and ``sgx_encl_init``
(``sgx/ioctl.c``, spec §10.3), with the reserved-bit masks ``sgx_drv_init`` derives. Split
from ``ioctl.py`` by session ``tidy`` (no code changed).
"""

from __future__ import annotations

from epcsim.arch import (
    EACCES,
    EFAULT,
    EINVAL,
    EIO,
    EPERM,
    ERESTARTSYS,
    SgxReturn,
    encls_failed,
    encls_faulted,
)
from epcsim.engine.machine import Gen, Task
from epcsim.isa import Sigstruct
from epcsim.isa.secs import SUPPORTED_ATTRIBUTES, SUPPORTED_MISCSELECT, SUPPORTED_XFRM
from epcsim.kernel import encls
from epcsim.kernel.encl import SgxEncl
from epcsim.kernel.ioctl_validate import U64_MAX
from epcsim.kernel.uapi import IoctlResult

#: ``sgx_drv_init`` derives these from CPUID leaf 0x12 (the model's CPU: ``epcsim.isa.secs``)
#: and the architecturally reserved bits (``SGX_ATTR_RESERVED_MASK``: bits 3, 6, 8, 9, 11-63;
#: ``SGX_MISC_RESERVED_MASK``: bits 1-63). OSXSAVE is assumed, so XFRM is checked against
#: what the CPU reports rather than against x87|SSE only.
SGX_ATTR_RESERVED_MASK = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 9) | (U64_MAX & ~((1 << 11) - 1))
SGX_MISC_RESERVED_MASK = U64_MAX & ~1
sgx_attributes_reserved_mask = (~SUPPORTED_ATTRIBUTES & U64_MAX) | SGX_ATTR_RESERVED_MASK
sgx_misc_reserved_mask = ((~SUPPORTED_MISCSELECT) | SGX_MISC_RESERVED_MASK) & 0xFFFFFFFF
sgx_xfrm_reserved_mask = ~SUPPORTED_XFRM & U64_MAX

SGX_EINIT_SPIN_COUNT = 20
SGX_EINIT_SLEEP_COUNT = 50
SGX_EINIT_SLEEP_TIME_NS = 20_000_000  # msleep_interruptible(20)


def sgx_ioc_enclave_init(task: Task, encl: SgxEncl, sigstruct: Sigstruct | None) -> Gen:
    """``sgx_ioc_enclave_init`` + ``sgx_encl_init`` (spec §10.3).

    Return:
    * 0: the enclave is INITIALIZED.
    * -EINVAL: not CREATED or already INITIALIZED; SIGSTRUCT vendor not 0 or 0x8086; a bit
      set in both a SIGSTRUCT value and its mask (attributes, miscselect, xfrm) that the
      platform reserves.
    * -EFAULT: the SIGSTRUCT could not be copied.
    * -EACCES: the SECS asks for attributes not allowed to this enclave (PROVISIONKEY
      without SGX_IOC_ENCLAVE_PROVISION).
    * -ERESTARTSYS: EINIT kept reporting SGX_UNMASKED_EVENT and a signal arrived while
      waiting between rounds.
    * -EPERM: EINIT returned an SGX error code (``result`` holds it).
    * -EIO: EINIT faulted.
    """
    if not encl.created or encl.initialized:
        return IoctlResult(-EINVAL)
    if sigstruct is None:
        return IoctlResult(-EFAULT)
    if sigstruct.vendor not in (0, 0x8086):
        return IoctlResult(-EINVAL)
    ret = yield from sgx_encl_init(task, encl, sigstruct)
    if ret < 0:
        return IoctlResult(ret)
    if ret:
        return IoctlResult(-EPERM, result=int(ret))
    return IoctlResult(0)


def sgx_encl_init(task: Task, encl: SgxEncl, sigstruct: Sigstruct) -> Gen:
    """``sgx_encl_init``: the attribute checks, then EINIT under ``encl->lock``.

    EINIT is interruptible: SGX_UNMASKED_EVENT is retried up to ``SGX_EINIT_SPIN_COUNT``
    times, then the task sleeps 20 ms and tries another round, up to ``SGX_EINIT_SLEEP_COUNT``
    rounds, giving up with -ERESTARTSYS if a signal is pending after a sleep.

    Return:
    * 0: success.
    * -EACCES, -EINVAL, -ERESTARTSYS, -EIO: as ``sgx_ioc_enclave_init``.
    * a positive SGX return code: EINIT refused the SIGSTRUCT (the ioctl makes it -EPERM).
    """
    if encl.attributes & ~encl.attributes_mask:
        return -EACCES
    if sigstruct.attributes & sigstruct.attribute_mask & sgx_attributes_reserved_mask:
        return -EINVAL
    if sigstruct.miscselect & sigstruct.miscmask & sgx_misc_reserved_mask:
        return -EINVAL
    if sigstruct.xfrm & sigstruct.xfrm_mask & sgx_xfrm_reserved_mask:
        return -EINVAL
    sgx = encl.sgx
    yield from task.lock(encl.lock)
    try:
        ret = 0
        for _ in range(SGX_EINIT_SLEEP_COUNT):
            for _ in range(SGX_EINIT_SPIN_COUNT):
                ret = yield from encls.einit(sgx, task, sigstruct, encl.secs_epc, None)
                if ret != SgxReturn.UNMASKED_EVENT:
                    break
            if ret != SgxReturn.UNMASKED_EVENT:
                break
            yield from task.sleep(sgx.m.env.timeout(SGX_EINIT_SLEEP_TIME_NS))
            if task.signal_pending():
                return -ERESTARTSYS
        if encls_faulted(ret):
            if encls_failed(ret):
                encls.encls_warn(sgx, ret, "EINIT")
            return -EIO
        if ret == 0:
            encl.initialized = True
        return int(ret)
    finally:
        task.unlock(encl.lock)


__all__ = ["sgx_encl_init", "sgx_ioc_enclave_init"]
