"""The enclave handle of the Python API: the uAPI ioctls and the ENCLU leaves from inside.

``Enclave`` is what ``System.create_enclave`` returns. Each method blocks in simulated time
while ksgxd and any started threads run alongside; ioctls return ``IoctlResult`` (``count``,
``errno``, ``result`` as the kernel reports them).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.arch import (
    EBADF,
    PAGE_SIZE,
    PageType,
    SecinfoFlags,
    ret_name,
    secinfo_flags,
)
from epcsim.engine.machine import Gen, Task
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
from epcsim.kernel.encl import Mm, SgxEncl
from epcsim.kernel.ioctl import AddPagesArgs, IoctlResult, ProgressHook, Secinfo
from epcsim.kernel.ioctl_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs
from epcsim.units import parse_size
from epcsim.user.thread import AccessOutcome, EnclaveThread
from epcsim.user.vdso import EENTER, SgxEnclaveRun, vdso_sgx_enter_enclave

if TYPE_CHECKING:
    from epcsim.isa.secs import SecsState
    from epcsim.system import System

PERMS = {"": 0, "r": 1, "w": 2, "x": 4}
PAGE_TYPES = {"reg": PageType.REG, "tcs": PageType.TCS, "trim": PageType.TRIM}

#: The modelled signer's key: a fixed 384-byte modulus (RSA itself is not modelled).
MODEL_SIGNER_MODULUS = hashlib.shake_256(b"epcsim model signer").digest(384)


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


class EncluResult:
    """The outcome of an ENCLU leaf run from inside: ``ret`` is the SGX code in RAX (0 on
    success) or a #PF/#GP fault encoding; ``sigbus`` when the kernel could not map the page."""

    def __init__(self, ret: int, sigbus: bool = False):
        self.ret = ret
        self.sigbus = sigbus

    @property
    def ok(self) -> bool:
        return self.ret == 0 and not self.sigbus

    @property
    def name(self) -> str:
        return "SIGBUS" if self.sigbus else ret_name(self.ret)

    def __repr__(self) -> str:
        return f"EncluResult({self.name})"


class Enclave:
    """One enclave and the process that owns it (its ioctl caller and its threads)."""

    def __init__(self, system: System, encl: SgxEncl, mm: Mm | None = None):
        self.system = system
        self.encl = encl
        encl.handle = self
        #: the owning process's address space (shared when enclaves share a process)
        self.mm = mm if mm is not None else Mm(f"{encl.name}:mm")
        encl.mm_add(self.mm)  # the loader mmaps the enclave at once
        self.task = Task(system.machine, f"{encl.name}:ioctl")
        self.mm.tasks.append(self.task)
        self._thread: EnclaveThread | None = None
        self._vdso_thread: EnclaveThread | None = None
        self._nthreads = 0
        #: the process's references to the enclave (see ``close``): the fd's, taken by
        #: SgxEncl at open, and the mm's (``sgx_encl_mm_add`` at mmap), taken here
        self.closed = False
        self._live_threads = 0
        self._mm_ref = True
        encl.refcount += 1
        #: the SECS's state, kept by the CPU across evictions; the signer's MRENCLAVE
        self._secs: SecsState | None = None

    def _check_open(self) -> None:
        """Python files raise ValueError on a closed file; so does a closed enclave handle
        for what would run in its (exited) process."""
        if self.closed:
            raise ValueError(f"enclave: {self.encl.name} is closed")

    @property
    def id(self) -> int:
        return self.encl.id

    @property
    def size(self) -> int:
        return self.encl.size

    @property
    def base(self) -> int:
        return self.encl.base

    @property
    def resident_pages(self) -> int:
        return self.encl.resident_pages

    @property
    def swapped_pages(self) -> int:
        return self.encl.swapped_pages

    def _index(self, offset: int | str, name: str = "offset") -> int:
        off = parse_size(offset, name)
        if off >= self.encl.size:
            raise ValueError(f"{name}: {off:#x} is outside the enclave (size {self.encl.size:#x})")
        return off // PAGE_SIZE

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

    # -- ENCLU from inside -------------------------------------------------------------------
    def _secinfo(
        self, page_type: str | int, perm: str | int, pending: bool, modified: bool, pr: bool
    ) -> int:
        pt = PAGE_TYPES[page_type.lower()] if isinstance(page_type, str) else int(page_type)
        state = (
            (SecinfoFlags.PENDING if pending else 0)
            | (SecinfoFlags.MODIFIED if modified else 0)
            | (SecinfoFlags.PR if pr else 0)
        )
        return secinfo_flags(pt, parse_perm(perm), int(state))

    def eaccept(
        self,
        offset: int | str,
        page_type: str | int = "reg",
        perm: str | int = "rw",
        *,
        pending: bool = False,
        modified: bool = False,
        pr: bool = False,
        thread: EnclaveThread | None = None,
    ) -> EncluResult:
        """ENCLU[EACCEPT] on one page from inside the enclave. An absent page faults and, on
        SGX2, is EAUGed by the kernel first (``augment_via_eaccept``)."""
        flags = self._secinfo(page_type, perm, pending, modified, pr)
        return self._enclu(
            offset,
            thread,
            lambda lp, epc, addr: self.system.cpu.eaccept(lp, flags, addr, epc),
            "eaccept",
        )

    def emodpe(
        self, offset: int | str, perm: str | int, *, thread: EnclaveThread | None = None
    ) -> EncluResult:
        """ENCLU[EMODPE]: extend the EPCM permissions of a page from inside."""
        flags = secinfo_flags(PageType.REG, parse_perm(perm))
        return self._enclu(
            offset,
            thread,
            lambda lp, epc, addr: self.system.cpu.emodpe(lp, flags, addr, epc),
            "emodpe",
        )

    def eacceptcopy(
        self,
        offset: int | str,
        src_offset: int | str,
        perm: str | int = "rw",
        *,
        thread: EnclaveThread | None = None,
    ) -> EncluResult:
        """ENCLU[EACCEPTCOPY]: initialise a PENDING page from another page and accept it."""
        flags = secinfo_flags(PageType.REG, parse_perm(perm), int(SecinfoFlags.PENDING))
        src_idx = self._index(src_offset, "src_offset")

        def leaf(lp, epc, addr):
            return self.system.cpu.eacceptcopy(lp, flags, addr, epc, int(self.encl.epc[src_idx]))

        return self._enclu(offset, thread, leaf, "eaccept", src=src_idx)

    def _enclu(self, offset, thread, leaf, counter: str, src: int = -1) -> EncluResult:
        idx = self._index(offset)
        t = thread or self._main_thread()
        addr = self.encl.linaddr(idx)
        cost = getattr(self.system.costs, counter)
        stats = self.system.sgx.stats

        def prog():
            def run_leaf(lp, epc):
                setattr(stats, counter, getattr(stats, counter) + 1)
                return leaf(lp, epc, addr)

            ret = yield from t.enclu_on_page(idx, run_leaf, src)
            if ret is None:
                return EncluResult(-1, sigbus=True)
            yield from t.run(cost)
            return EncluResult(int(ret))

        return self.system._call(t, prog())

    def mprotect(self, offset: int | str, length: int | str, perm: str | int) -> int:
        """mprotect() of part of the enclave mapping: 0, or -EACCES from sgx_encl_may_map."""
        self._check_open()
        off = _page_aligned(offset, "offset")
        ln = _page_aligned(length, "length")
        if off + ln > self.encl.size:
            raise ValueError("length: the range runs past the end of the enclave")
        ret = self.encl.mprotect(off // PAGE_SIZE, (off + ln) // PAGE_SIZE, parse_perm(perm))
        self.system._checkpoint()
        return ret

    # -- running inside ----------------------------------------------------------------------
    def _main_thread(self) -> EnclaveThread:
        self._check_open()
        if self._thread is None:
            self._thread = self.new_thread()
        return self._thread

    def tcs_pages(self) -> list[int]:
        """Pages the kernel records as TCS (``entry->type``), accepted by the enclave or not."""
        e = self.encl
        return np.flatnonzero(e.present & (e.type == PageType.TCS)).tolist()

    def usable_tcs_pages(self) -> list[int]:
        """TCS pages a thread can enter through: the kernel's TCS pages minus those whose
        EPCM entry is still MODIFIED or PENDING (a MODIFY_TYPES(TCS) the enclave has not yet
        EACCEPTed). EENTER on such a page fails (SDM EENTER: the TCS must be a settled PT_TCS
        page), and a runtime only hands out TCSs it has accepted. For an evicted TCS page the
        state is the SECINFO.FLAGS that EWB sealed into its PCMD, which ELDU restores; a page
        with no readable record is not counted (its ELDU would fail anyway)."""
        epcm = self.system.cpu.epcm
        unsettled = int(SecinfoFlags.PENDING | SecinfoFlags.MODIFIED)
        usable = []
        for index in self.tcs_pages():
            epc = int(self.encl.epc[index])
            if epc >= 0:
                if epcm.modified[epc] or epcm.pending[epc]:
                    continue
            else:
                rec = self.system.backing.record(self.encl.id, index)
                if rec is None or int.from_bytes(rec.pcmd[:8], "little") & unsettled:
                    continue
            usable.append(index)
        return usable

    def new_thread(self, name: str = "") -> EnclaveThread:
        """A new enclave thread, bound to the next usable TCS (``usable_tcs_pages``), or to
        the implicit TCS when the enclave has none."""
        self._check_open()
        tcs = self.usable_tcs_pages()
        tcs_index = tcs[self._nthreads % len(tcs)] if tcs else -1
        self._nthreads += 1
        return EnclaveThread(
            self.encl,
            name or f"{self.encl.name}:t{self._nthreads}",
            tcs_index,
            self.system.timeslice_ns,
            mm=self.mm,
        )

    # -- the vDSO (struct sgx_enclave_run) ---------------------------------------------------
    def new_run(self, tcs: int | str = 0, **fields) -> SgxEnclaveRun:
        """A ``struct sgx_enclave_run`` entering through the TCS at offset ``tcs``."""
        return SgxEnclaveRun(tcs=self.base + self._index(tcs, "tcs") * PAGE_SIZE, **fields)

    def vdso_call(
        self,
        op,
        run: SgxEnclaveRun,
        function: int = EENTER,
        *,
        thread: EnclaveThread | None = None,
    ) -> int:
        """``__vdso_sgx_enter_enclave(op, ..., function, run)``: run enclave code ``op``
        (e.g. :mod:`epcsim.user.encl_ops`) through ``run.tcs`` and return what the vDSO
        returns (0, -EINVAL, or the user handler's negative value). ``run`` tells how the
        enclave exited (``function``, ``exception_*``); see :mod:`epcsim.user.vdso`. The
        calling thread is the process's own unless ``thread`` is given."""
        self._check_open()
        if thread is None:
            if self._vdso_thread is None:
                self._vdso_thread = EnclaveThread(
                    self.encl, f"{self.encl.name}:vdso", -1, self.system.timeslice_ns, mm=self.mm
                )
            thread = self._vdso_thread
        if not isinstance(function, int) or isinstance(function, bool):
            raise ValueError(
                f"function: an ENCLU leaf number (EENTER=2, ERESUME=3), got {function!r}"
            )
        return self.system._call(thread, vdso_sgx_enter_enclave(thread, op, function, run))

    def access(self, offset: int | str, write: bool = False) -> AccessOutcome:
        """One access from inside the enclave (faults and reloads as needed)."""
        idx = self._index(offset)
        t = self._main_thread()
        return self.system._call(t, t.access_stream(np.array([idx]), write))

    def access_pages(self, pages, write: bool | np.ndarray = False) -> AccessOutcome:
        """A stream of page indices touched in order by the main enclave thread."""
        t = self._main_thread()
        return self.system._call(t, t.access_stream(np.asarray(pages), write))

    def start(self, pages, write: bool | np.ndarray = False, name: str = ""):
        """Start a concurrent enclave thread running an access stream; ``System.run()``
        runs it. Returns the SimPy process (its ``.value`` is the ``AccessOutcome``)."""
        t = self.new_thread(name)
        pages = np.asarray(pages)

        def prog():
            # No yield in a finally: a System dropped while this thread is suspended closes
            # the generator, and a yield there would be "generator ignored GeneratorExit".
            try:
                out = yield from t.access_stream(pages, write)
            except GeneratorExit:
                raise
            except BaseException:
                yield from self._thread_exited(t)
                t.release_cpu()
                raise
            yield from t.leave()
            yield from self._thread_exited(t)
            t.release_cpu()
            return out

        proc = self.system.machine.spawn(prog())
        self._thread_started(proc)
        return proc

    def _thread_started(self, proc) -> None:
        """A started thread keeps the process, and so its mm, alive (see ``close``)."""
        self._live_threads += 1
        self.system._threads.append(proc)

    def _thread_exited(self, task: Task) -> Gen:
        """The thread ends; the last one of a closed process takes the mm with it: the mm's
        enclave reference is put (the mmu notifier's release), on that thread's task."""
        self._live_threads -= 1
        if self.closed and self._live_threads == 0 and self._mm_ref:
            self._mm_ref = False
            yield from self.encl.put(task)

    def write(self, offset: int, data: bytes) -> AccessOutcome:
        """Write bytes from inside the enclave (``full`` content mode keeps them exactly)."""
        return self._rw(offset, data=data)

    def read(self, offset: int, length: int) -> bytes:
        """Read bytes from inside the enclave; faults bring evicted pages back (ELDU)."""
        out = self._rw(offset, length=length)
        if not out.ok:
            raise RuntimeError(f"read at {offset:#x} failed: {out}")
        return out.data

    def _rw(self, offset: int, data: bytes | None = None, length: int = 0) -> AccessOutcome:
        if self.system.cpu.content_mode != "full":
            raise ValueError("content_mode: byte-exact read/write needs content_mode='full'")
        off = parse_size(offset, "offset")
        n = len(data) if data is not None else length
        if off + n > self.encl.size:
            raise ValueError("offset: the range runs past the end of the enclave")
        t = self._main_thread()
        hw = self.system.cpu

        def prog():
            buf = bytearray()
            pos = off
            while pos < off + n:
                idx, in_page = divmod(pos, PAGE_SIZE)
                take = min(PAGE_SIZE - in_page, off + n - pos)
                res = yield from t.access_stream(np.array([idx]), data is not None)
                if not res.ok:
                    return res
                epc = int(self.encl.epc[idx])
                if data is not None:
                    hw.write(epc, in_page, data[pos - off : pos - off + take])
                else:
                    buf += hw.read(epc, in_page, take)
                pos += take
            res = AccessOutcome(done=n)
            res.data = bytes(buf)
            return res

        return self.system._call(t, prog())

    def close(self) -> int:
        """Close the fd and exit the process; 0, or -EBADF for a handle already closed.

        Decision (issue 10), after the kernel: the enclave lives while a reference does -
        the fd's (put by ``sgx_release``), the mm's (put when the mm goes away; the model
        has one mm per enclave) and any ksgxd takes for a batch in flight; the last put
        runs ``sgx_encl_release``. The fd's reference goes now. Threads started with
        ``start()`` (or by a scenario) are not killed: the process exits, and its mm goes
        away, when the last of them has finished, so nothing is freed under a running
        thread (EREMOVE would fail with an LP inside and leak the pages). A second close
        is EBADF and changes nothing. Afterwards ioctls return -EBADF, and accesses, ENCLU
        leaves, ``mprotect`` and ``start`` raise ``ValueError``."""
        if self.closed:
            return -EBADF
        self.closed = True
        refs = 1 + (self._live_threads == 0 and self._mm_ref)
        self._mm_ref = self._mm_ref and self._live_threads > 0

        def drop() -> Gen:  # the fd's reference, and the mm's when no thread runs
            for _ in range(refs):
                yield from self.encl.put(self.task)

        self.system._call(self.task, drop())
        return 0
