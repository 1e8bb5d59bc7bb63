"""The enclave uAPI: ``sgx/ioctl.c`` (spec §10), one module per concept.

Each ioctl validates its arguments in the kernel's order with the kernel's errno, and the
per-page loops report partial success through ``count`` exactly as the kernel does. Handlers
return ``IoctlResult`` with ``ret`` = 0 or ``-errno`` (userspace would see -1 and errno).

Where each part lives (split by session ``tidy`` when this file passed 500 lines; no code
changed, and every name it held is still importable from here):

- ``uapi.py``: the SGX1 argument structs (``Secinfo``, ``AddPagesArgs``,
  ``SGX_PAGE_MEASURE``) and ``IoctlResult``; the SGX2 ones are ``uapi_sgx2.py``'s;
- ``progress.py``: the model's progress hook (``ProgressHook``, ``observe_only``,
  ``hook_may_act``);
- ``ioctl_validate.py``: ``sgx_validate_offset_length``, ``sgx_validate_secinfo``;
- ``ioctl_create.py``, ``ioctl_add.py``, ``ioctl_init.py``: SGX_IOC_ENCLAVE_CREATE,
  ADD_PAGES (its page loop, ``sgx_encl_add_page``, the compiled core's loop) and INIT;
- ``ioctl_sgx2.py``: the SGX2 ioctls; ``driver.py``: ``sgx_ioctl``, the dispatch.
"""

from __future__ import annotations

from epcsim.kernel.ioctl_add import content_for, sgx_encl_add_page, sgx_ioc_enclave_add_pages
from epcsim.kernel.ioctl_create import sgx_ioc_enclave_create
from epcsim.kernel.ioctl_init import sgx_encl_init, sgx_ioc_enclave_init
from epcsim.kernel.ioctl_validate import U64_MAX, validate_offset_length, validate_secinfo
from epcsim.kernel.progress import ProgressHook, hook_may_act, observe_only
from epcsim.kernel.uapi import SGX_PAGE_MEASURE, AddPagesArgs, IoctlResult, Secinfo

__all__ = [
    "SGX_PAGE_MEASURE",
    "U64_MAX",
    "AddPagesArgs",
    "IoctlResult",
    "ProgressHook",
    "Secinfo",
    "content_for",
    "hook_may_act",
    "observe_only",
    "sgx_encl_add_page",
    "sgx_encl_init",
    "sgx_ioc_enclave_add_pages",
    "sgx_ioc_enclave_create",
    "sgx_ioc_enclave_init",
    "validate_offset_length",
    "validate_secinfo",
]
