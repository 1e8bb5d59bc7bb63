"""ENCLU leaves run from inside an ``Enclave`` by one of its threads: EACCEPT, EMODPE,
EACCEPTCOPY, each on one page (an absent page faults first, and on SGX2 the kernel EAUGs
it), and ``EncluResult``, what such a leaf returns.

Why a module of its own: these are the SDM's user leaves as the enclave runs them, apart from
the kernel's ioctls (``enclave_ioctl``). ``EncluFromInside`` is a mixin of ``Enclave``
(split from ``user/enclave.py`` by session ``split``, no code changed): ``_index`` and
``_main_thread`` are ``Enclave``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from epcsim.arch import PageType, SecinfoFlags, ret_name, secinfo_flags
from epcsim.kernel.encl import SgxEncl
from epcsim.user.args import PAGE_TYPES, parse_perm
from epcsim.user.thread import EnclaveThread

if TYPE_CHECKING:
    from epcsim.system import System


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


class EncluFromInside:
    """The ENCLU leaves of ``Enclave`` (module docstring)."""

    # set by ``Enclave.__init__``
    system: System
    encl: SgxEncl

    if TYPE_CHECKING:

        def _index(self, offset: int | str, name: str = "offset") -> int: ...

        def _main_thread(self) -> EnclaveThread: ...

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


__all__ = ["EncluFromInside", "EncluResult"]
