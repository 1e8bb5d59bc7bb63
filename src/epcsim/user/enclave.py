"""The enclave handle of the Python API: the uAPI ioctls and the ENCLU leaves from inside.

``Enclave`` is what ``System.create_enclave`` returns. Each method blocks in simulated time
while ksgxd and any started threads run alongside; ioctls return ``IoctlResult`` (``count``,
``errno``, ``result`` as the kernel reports them).

This module holds the handle itself: the process that owns the enclave, its threads and the
vDSO, accesses from inside, ``mprotect`` and ``close``. Its ioctls are ``enclave_ioctl``'s
``EnclaveIoctls`` and its ENCLU leaves ``enclu``'s ``EncluFromInside`` (mixins, split from
this file by session ``split``, no code changed); the names that lived here are
re-exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import EBADF, PAGE_SIZE, PageType, SecinfoFlags
from epcsim.engine.machine import Gen, Task
from epcsim.kernel.encl import Mm, SgxEncl
from epcsim.units import parse_size
from epcsim.user.args import PAGE_TYPES as PAGE_TYPES
from epcsim.user.args import PERMS as PERMS
from epcsim.user.args import _page_aligned, parse_perm
from epcsim.user.enclave_ioctl import MODEL_SIGNER_MODULUS as MODEL_SIGNER_MODULUS
from epcsim.user.enclave_ioctl import EnclaveIoctls, IoctlError
from epcsim.user.enclu import EncluFromInside, EncluResult
from epcsim.user.thread import AccessOutcome, EnclaveThread
from epcsim.user.vdso import EENTER, SgxEnclaveRun, vdso_sgx_enter_enclave

if TYPE_CHECKING:
    from epcsim.isa.secs import SecsState
    from epcsim.system import System


class Enclave(EnclaveIoctls, EncluFromInside):
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
        self.system._materialise()  # a thread group resident on the core (``System``)
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


__all__ = ["Enclave", "EncluResult", "IoctlError", "parse_perm"]
