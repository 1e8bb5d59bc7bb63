"""One wrapper per ENCLS leaf, as ``arch/x86/kernel/cpu/sgx/encls.h`` has ``__ecreate()``,
``__eadd()``, ``__ewb()`` ... (spec §14).

Every kernel call site runs its leaf through here, so the three things each execution implies
happen in one place and cannot drift apart:

* the leaf's simulated cost (``Costs.<leaf>``) is charged to the calling task *before* the
  effect, the engine's rule that no other task sees an effect before the instruction ends;
* the leaf's counter in ``Counters`` is incremented (one per execution, retries included;
  ``ewb_attempts`` counts EWB executions, ``ewb`` the pages it wrote back successfully);
* a failure the kernel WARNs about is appended to ``sgx.warnings`` (the model's WARN list).

Why the WARN policy is per call site and not "any non-zero": the kernel warns only where a
failure means a kernel or hardware bug. It uses ``ENCLS_WARN`` guarded by ``encls_failed()``
(which excludes a #PF, the EPC-lost-on-suspend case) after EBLOCK, ETRACK in
``sgx_encl_ewb``, EWB, ELDU, EEXTEND and a faulting EINIT; ``WARN_ONCE`` on any non-zero
EREMOVE (the page then leaks) and EPA. ECREATE and EADD failures are user errors (-EIO, no
WARN); EAUG failures give SIGBUS; EMODPR/EMODT/ETRACK in the SGX2 ioctls use ``pr_err_once``
or are probes whose failure is the expected answer (EMODPR on an accepted TRIM page), so their
wrappers take ``warn=False`` by default and callers say when the kernel WARNs.

The wrappers are generators run by a ``Task`` (``ret = yield from encls.eblock(sgx, task,
page)``); ``ret`` is the leaf's return as the ISA model gives it: 0, an ``SgxReturn`` code, or
an ``encls_fault()`` encoding that ``encls_faulted()`` recognises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from epcsim.arch import encls_failed, ret_name
from epcsim.engine.machine import Gen, Task
from epcsim.isa import PageInfo, Sigstruct

if TYPE_CHECKING:
    from epcsim.kernel.main import Sgx


def encls_warn(sgx: Sgx, ret: int, name: str, what: str = "") -> None:
    """``ENCLS_WARN(ret, name)`` / ``WARN_ONCE``: record what the kernel would print."""
    where = f" ({what})" if what else ""
    sgx.warnings.append(f"{name} returned {ret_name(ret)} [{ret:#x}]{where}")


def _warn_if_failed(sgx: Sgx, ret: int, name: str, what: str, warn: bool) -> None:
    if warn and encls_failed(ret):
        encls_warn(sgx, ret, name, what)


# The paging wrappers below run several times per simulated fault: they test ``ret`` before
# calling ``_warn_if_failed``, so a success formats no message (``encls_failed(0)`` is false).


# -- SGX1 build leaves ---------------------------------------------------------------------------
def ecreate(sgx: Sgx, task: Task, pginfo: PageInfo, page: int) -> Gen:
    """``__ecreate``: make ``page`` the SECS described by ``pginfo.contents``. Any failure is
    -EIO for ``sgx_encl_create`` and is not WARNed (a bad SECS is the caller's error)."""
    yield from task.run(sgx.m.costs.ecreate)
    sgx.stats.ecreate += 1
    return sgx.cpu.ecreate(pginfo, page)


def eadd(sgx: Sgx, task: Task, pginfo: PageInfo, page: int) -> Gen:
    """``__eadd``: copy a page into ``page`` and measure it. Failure is -EIO, no WARN."""
    yield from task.run(sgx.m.costs.eadd)
    sgx.stats.eadd += 1
    return sgx.cpu.eadd(pginfo, page)


def eextend(sgx: Sgx, task: Task, secs: int, page: int, chunk: int, *, warn: bool = True) -> Gen:
    """``__eextend``: measure one 256-byte chunk (``__sgx_encl_extend`` WARNs on failure)."""
    yield from task.run(sgx.m.costs.eextend)
    sgx.stats.eextend += 1
    ret = sgx.cpu.eextend(secs, page, chunk)
    _warn_if_failed(sgx, ret, "EEXTEND", f"EPC page {page}", warn)
    return ret


def einit(sgx: Sgx, task: Task, sigstruct: Sigstruct, secs: int, token: object = None) -> Gen:
    """``__einit``: one EINIT attempt. The retry policy (SGX_UNMASKED_EVENT) and the WARN on a
    fault belong to ``sgx_encl_init``, which sees the whole loop."""
    yield from task.run(sgx.m.costs.einit)
    sgx.stats.einit += 1
    return sgx.cpu.einit(sigstruct, secs, token)


def eremove(sgx: Sgx, task: Task, page: int) -> Gen:
    """``__eremove``: return ``page`` to the invalid state. Any non-zero result is WARNed
    (``EREMOVE_ERROR_MESSAGE`` in ``sgx_encl_free_epc_page``): the page then leaks."""
    yield from task.run(sgx.m.costs.eremove)
    sgx.stats.eremove += 1
    ret = sgx.cpu.eremove(page)
    if ret:
        encls_warn(sgx, ret, "EREMOVE", f"EPC page {page} leaked")
    return ret


def epa(sgx: Sgx, task: Task, page: int) -> Gen:
    """``__epa``: turn ``page`` into a Version Array page (``sgx_alloc_va_page`` WARNs)."""
    yield from task.run(sgx.m.costs.epa)
    sgx.stats.epa += 1
    ret = sgx.cpu.epa(page)
    if ret:
        encls_warn(sgx, ret, "EPA", f"EPC page {page}")
    return ret


# -- paging ---------------------------------------------------------------------------------------
def eblock(sgx: Sgx, task: Task, page: int) -> Gen:
    """``__eblock`` (``sgx_reclaimer_block`` WARNs if ``encls_failed``)."""
    yield from task.run(sgx.m.costs.eblock)
    sgx.stats.eblock += 1
    ret = sgx.cpu.eblock(page)
    if ret:
        _warn_if_failed(sgx, ret, "EBLOCK", f"EPC page {page}", True)
    return ret


def etrack(sgx: Sgx, task: Task, secs: int, *, warn: bool = True) -> Gen:
    """``__etrack``: start a new tracking epoch on the enclave of ``secs``. ``sgx_encl_ewb``
    WARNs on failure; ``sgx_enclave_etrack`` (SGX2 ioctls) only ``pr_err_once``s (``warn=False``).
    """
    yield from task.run(sgx.m.costs.etrack)
    sgx.stats.etrack += 1
    ret = sgx.cpu.etrack(secs)
    if ret:
        _warn_if_failed(sgx, ret, "ETRACK", f"SECS {secs}", warn)
    return ret


def ewb(
    sgx: Sgx, task: Task, pginfo: PageInfo, page: int, va: int, slot: int, *, warn: bool = False
) -> Gen:
    """``__ewb``: one EWB execution. Returns ``(ret, SealedPage | None)``.

    ``warn`` is off by default because SGX_NOT_TRACKED is the expected answer of the first two
    stages of ``sgx_encl_ewb``; the caller WARNs on the final result."""
    yield from task.run(sgx.m.costs.ewb)
    stats = sgx.stats
    stats.ewb_attempts += 1
    ret, sealed = sgx.cpu.ewb(pginfo, page, va, slot)
    if ret == 0:
        stats.ewb += 1
    elif warn:
        _warn_if_failed(sgx, ret, "EWB", f"EPC page {page}", warn)
    return ret, sealed


def eldu(sgx: Sgx, task: Task, pginfo: PageInfo, page: int, va: int, slot: int) -> Gen:
    """``__eldu``: reload a sealed page into ``page`` (``__sgx_encl_eldu`` WARNs if
    ``encls_failed``; the model also counts every failure in ``eldu_failed``)."""
    yield from task.run(sgx.m.costs.eldu)
    sgx.stats.eldu += 1
    ret = sgx.cpu.eldu(pginfo, page, va, slot)
    if ret:
        sgx.stats.eldu_failed += 1
        _warn_if_failed(sgx, ret, "ELDU", f"EPC page {page}", True)
    return ret


# -- SGX2 -----------------------------------------------------------------------------------------
def eaug(sgx: Sgx, task: Task, pginfo: PageInfo, page: int) -> Gen:
    """``__eaug``: add a PENDING page to an initialized enclave (failure is SIGBUS, no WARN)."""
    yield from task.run(sgx.m.costs.eaug)
    sgx.stats.eaug += 1
    return sgx.cpu.eaug(pginfo, page)


def emodpr(sgx: Sgx, task: Task, secinfo_flags: int, page: int) -> Gen:
    """``__emodpr``: restrict EPCM permissions. Also the REMOVE_PAGES probe, where #PF is the
    answer sought, so no WARN here (the kernel only ``pr_err_once``s a real fault)."""
    yield from task.run(sgx.m.costs.emodpr)
    sgx.stats.emodpr += 1
    return sgx.cpu.emodpr(secinfo_flags, page)


def emodt(sgx: Sgx, task: Task, secinfo_flags: int, page: int) -> Gen:
    """``__emodt``: change a page's type (to TCS or TRIM); ``pr_err_once`` only, no WARN."""
    yield from task.run(sgx.m.costs.emodt)
    sgx.stats.emodt += 1
    return sgx.cpu.emodt(secinfo_flags, page)


__all__ = [
    "eadd",
    "eaug",
    "eblock",
    "ecreate",
    "eextend",
    "einit",
    "eldu",
    "emodpr",
    "emodt",
    "encls_warn",
    "epa",
    "eremove",
    "etrack",
    "ewb",
]
