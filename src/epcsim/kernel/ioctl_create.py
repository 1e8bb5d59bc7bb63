"""``SGX_IOC_ENCLAVE_CREATE``: ``sgx_ioc_enclave_create`` and ``sgx_encl_create``
(``sgx/ioctl.c``, spec §10.1). Split from ``ioctl.py`` by session ``tidy`` (no code changed).
"""

from __future__ import annotations

from epcsim.arch import EFAULT, EINVAL, EIO, SGX_ATTR_UNPRIV_MASK, Attribute
from epcsim.engine.machine import Gen, Task
from epcsim.isa import PageInfo, Secs
from epcsim.kernel import encls
from epcsim.kernel.encl import SgxEncl
from epcsim.kernel.epc import OWNER_SECS
from epcsim.kernel.uapi import IoctlResult


def sgx_ioc_enclave_create(task: Task, encl: SgxEncl, secs: Secs | None) -> Gen:
    """``sgx_ioc_enclave_create`` + ``sgx_encl_create`` (spec §10.1): the first VA page, the
    backing file, the SECS page and ECREATE.

    ``secs`` is the SECS page userspace points ``src`` at (None: the copy faults).

    Mainline's ``sgx_encl_create`` checks one SECS field itself: a size that is not a power of
    two is -EINVAL before anything is allocated (so that its size arithmetic cannot overflow;
    spec §10.1 still says the kernel checks no field - the stored sources show the check).
    Everything else (size < 8K, an unaligned base, bad XFRM/MISCSELECT/attributes, an SSA
    frame too small) is ECREATE's to reject, and any ECREATE failure is -EIO.

    The model's page arrays and backing are dense, so they are made once ECREATE has
    accepted the size; the kernel's shmem file is sparse and cannot fail for such a size, so
    nothing observable moves.

    Return:
    * 0: the enclave is CREATED.
    * -EINVAL: already created, or ``secs.size`` is not a power of two.
    * -EFAULT: the SECS could not be copied from user memory.
    * -ENOMEM: no EPC page and nothing reclaimable (SECS or first VA page).
    * -ERESTARTSYS: a signal arrived while the allocator was reclaiming.
    * -EIO: ECREATE failed.
    """
    sgx = encl.sgx
    if encl.created:
        return IoctlResult(-EINVAL)
    if secs is None:
        return IoctlResult(-EFAULT)
    if secs.size <= 0 or secs.size & (secs.size - 1):  # !is_power_of_2(secs->size)
        return IoctlResult(-EINVAL)
    va = yield from encl.grow(task, reclaim=True)
    if va < -1:
        return IoctlResult(va)
    encl.add_va_page(va)
    page = yield from sgx.alloc_epc_page(task, encl.id, OWNER_SECS, reclaim=True)
    if page < 0:
        yield from encl.shrink(task, va)
        return IoctlResult(page)
    ret = yield from encls.ecreate(sgx, task, PageInfo(contents=secs, metadata=0), page)
    if ret:
        yield from encl.free_epc_page(task, page)
        yield from encl.shrink(task, va)
        return IoctlResult(-EIO)
    encl.setup(secs.base, secs.size)
    encl.secs_epc = page
    encl.debug = bool(secs.attributes & Attribute.DEBUG)
    encl.attributes = secs.attributes
    encl.attributes_mask = int(SGX_ATTR_UNPRIV_MASK)
    encl.created = True
    return IoctlResult(0)


__all__ = ["sgx_ioc_enclave_create"]
