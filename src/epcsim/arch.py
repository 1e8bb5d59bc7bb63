"""Architectural constants: what ``arch/x86/include/asm/sgx.h`` and ``sgx/sgx.h`` define.

Everything here is a fact of the ISA or of the Linux driver's ABI (spec §1, §1.1);
nothing here is policy. Both the hardware model (:mod:`epcsim.isa`) and the kernel
model (:mod:`epcsim.kernel`) import from this one place so that a constant has a
single home.
"""

from __future__ import annotations

import errno as _errno
from enum import IntEnum, IntFlag

PAGE_SIZE = 4096
PAGE_SHIFT = 12

# --- sgx.h (driver) ------------------------------------------------------------------------
SGX_MAX_EPC_SECTIONS = 8
SGX_EEXTEND_BLOCK_SIZE = 256  # 16 EEXTENDs per page
SGX_NR_TO_SCAN = 16  # pages taken off the LRU per sgx_reclaim_pages() batch
SGX_NR_LOW_PAGES = 32  # wake ksgxd / direct reclaim below this many free pages
SGX_NR_HIGH_PAGES = 64  # ksgxd reclaims while free < this
SGX_VA_SLOT_COUNT = 512  # 8-byte version slots per VA page
PCMD_SIZE = 128  # sizeof(struct sgx_pcmd)
PCMDS_PER_PAGE = PAGE_SIZE // PCMD_SIZE  # 32
SECINFO_SIZE = 64
SGX_LAUNCH_TOKEN_SIZE = 304
SGX_MODULUS_SIZE = 384
SGX_SIGSTRUCT_SIZE = 1808
SGX_EINIT_SPIN_COUNT = 20
SGX_EINIT_SLEEP_COUNT = 50
SGX_EINIT_SLEEP_TIME_MS = 20

# ENCLS fault encoding used by the driver's __encls_ret_N wrappers ([ENCLS]).
SGX_ENCLS_FAULT_FLAG = 0x40000000
X86_TRAP_GP = 13
X86_TRAP_PF = 14

# Page-fault error-code bits the selftests check (spec §15).
PF_PROT = 0x1
PF_WRITE = 0x2
PF_USER = 0x4
PF_SGX = 0x8000


class PageType(IntEnum):
    """SGX page types (SECINFO bits 15:8, EPCM.PT)."""

    SECS = 0
    TCS = 1
    REG = 2
    VA = 3
    TRIM = 4


class SecinfoFlags(IntFlag):
    """SECINFO.FLAGS bits below the page type (spec §1)."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2
    PENDING = 1 << 3
    MODIFIED = 1 << 4
    PR = 1 << 5


SGX_SECINFO_PERMISSION_MASK = 0x7
SGX_SECINFO_STATE_MASK = 0x38  # PENDING | MODIFIED | PR
SGX_SECINFO_PAGE_TYPE_SHIFT = 8
SGX_SECINFO_PAGE_TYPE_MASK = 0xFF << SGX_SECINFO_PAGE_TYPE_SHIFT
SGX_SECINFO_RESERVED_MASK = ~(SGX_SECINFO_PERMISSION_MASK | SGX_SECINFO_PAGE_TYPE_MASK) & (
    (1 << 64) - 1
)


def secinfo_flags(page_type: PageType | int, perm: int = 0, state: int = 0) -> int:
    """Build SECINFO.FLAGS from a page type, R/W/X bits and PENDING/MODIFIED/PR bits."""
    return (int(page_type) << SGX_SECINFO_PAGE_TYPE_SHIFT) | (perm & 7) | (state & 0x38)


def secinfo_page_type(flags: int) -> int:
    return (flags >> SGX_SECINFO_PAGE_TYPE_SHIFT) & 0xFF


class Attribute(IntFlag):
    """SECS.ATTRIBUTES bits ([ASM])."""

    INIT = 1 << 0
    DEBUG = 1 << 1
    MODE64BIT = 1 << 2
    PROVISIONKEY = 1 << 4
    EINITTOKENKEY = 1 << 5
    KSS = 1 << 7
    ASYNC_EXIT_NOTIFY = 1 << 10


SGX_ATTR_UNPRIV_MASK = (
    Attribute.DEBUG | Attribute.MODE64BIT | Attribute.KSS | Attribute.ASYNC_EXIT_NOTIFY
)
SGX_ATTR_PRIV_MASK = Attribute.PROVISIONKEY | Attribute.EINITTOKENKEY


class SgxReturn(IntEnum):
    """SGX return codes in RAX after ENCLS/ENCLU (spec §1.1, [ERRNO])."""

    SUCCESS = 0
    INVALID_SIG_STRUCT = 1
    INVALID_ATTRIBUTE = 2
    BLKSTATE = 3
    INVALID_MEASUREMENT = 4
    NOTBLOCKABLE = 5
    PG_INVLD = 6
    EPC_PAGE_CONFLICT = 7
    INVALID_SIGNATURE = 8
    MAC_COMPARE_FAIL = 9
    PAGE_NOT_BLOCKED = 10
    NOT_TRACKED = 11
    VA_SLOT_OCCUPIED = 12
    CHILD_PRESENT = 13
    ENCLAVE_ACT = 14
    ENTRYEPOCH_LOCKED = 15
    INVALID_EINITTOKEN = 16
    PREV_TRK_INCMPL = 17
    PG_IS_SECS = 18
    PAGE_ATTRIBUTES_MISMATCH = 19
    PAGE_NOT_MODIFIABLE = 20
    PAGE_NOT_DEBUGGABLE = 21
    INVALID_COUNTER = 25
    PG_NONEPC = 26
    TRACK_NOT_REQUIRED = 27
    INVALID_CPUSVN = 32
    INVALID_ISVSVN = 64
    UNMASKED_EVENT = 128
    INVALID_KEYNAME = 256


def encls_fault(trapnr: int) -> int:
    """The driver's encoding of a faulting ENCLS: ``SGX_ENCLS_FAULT_FLAG | trapnr``."""
    return SGX_ENCLS_FAULT_FLAG | trapnr


def encls_faulted(ret: int) -> bool:
    """``encls_faulted()``: the leaf raised #GP/#PF instead of returning a code."""
    return bool(ret & SGX_ENCLS_FAULT_FLAG)


def encls_trapnr(ret: int) -> int:
    """``ENCLS_TRAPNR()``: the trap vector of a faulted leaf."""
    return ret & ~SGX_ENCLS_FAULT_FLAG


def encls_failed(ret: int) -> bool:
    """``encls_failed()``: faulted with anything but #PF, or returned a non-zero code."""
    if encls_faulted(ret):
        return encls_trapnr(ret) != X86_TRAP_PF
    return ret != 0


def ret_name(ret: int) -> str:
    """Human-readable name of an ENCLS/ENCLU result (for messages and reports)."""
    if encls_faulted(ret):
        return {X86_TRAP_GP: "#GP", X86_TRAP_PF: "#PF"}.get(encls_trapnr(ret), "#fault")
    try:
        return SgxReturn(ret).name
    except ValueError:
        return f"SGX_{ret}"


# --- errno ---------------------------------------------------------------------------------
# The kernel returns negative errnos; the uAPI shows userspace -1 and errno. The model keeps
# the positive errno number and its name (``errno_name``) on results.
EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
EBADF = _errno.EBADF
EINTR = _errno.EINTR
EIO = _errno.EIO
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EACCES = _errno.EACCES
EFAULT = _errno.EFAULT
EBUSY = _errno.EBUSY
ENODEV = _errno.ENODEV
EINVAL = _errno.EINVAL
ENOTTY = _errno.ENOTTY
ERESTARTSYS = 512  # kernel-internal; never reaches userspace unrestarted


def errno_name(err: int | None) -> str | None:
    """``EAGAIN`` for 11, None for success (0 or None)."""
    if not err:
        return None
    if err == ERESTARTSYS:
        return "ERESTARTSYS"
    return _errno.errorcode.get(err, f"E{err}")
