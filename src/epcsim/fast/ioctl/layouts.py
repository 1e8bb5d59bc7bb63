"""The only writers of the page layouts that the batched ioctl runs change at once: the EPCM's
columns (EADD, EMODT to TRIM, EMODPR, EREMOVE's ``Epcm.clear``) and the enclave's page
arrays (``sgx_encl_add_page``'s entry, ``sgx_enclave_remove_pages``' erase).

Why a module of its own: each function restates, for many pages at once, what one ISA leaf or
kernel step writes for one page, so a change of the EPCM's or ``SgxEncl``'s layout touches
this file only, not the batches of ``add_pages``, ``modify_types``, ``restrict_permissions``
and ``remove_pages``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType

if TYPE_CHECKING:
    from epcsim.isa import SgxCpu
    from epcsim.kernel.encl import SgxEncl


def _epcm_eadd(cpu: SgxCpu, pages, pt: int, rwx: int, secs: int, linaddrs, contents) -> None:
    """EADD (``EnclsMixin.eadd``) of each page: ``contents`` is None (zero pages), a list of
    4 KiB ``bytes`` (``full`` mode) or of 64-bit tags."""
    e = cpu.epcm
    if e.data is not None:
        if contents is None:
            e.data[pages] = 0
        else:
            e.data[pages] = np.frombuffer(b"".join(contents), np.uint8).reshape(-1, PAGE_SIZE)
    elif contents is None:  # _store_contents: a tag only outside full mode
        e.tag[pages] = 0
    else:
        e.tag[pages] = np.asarray(contents, dtype=np.uint64)
    e.valid[pages] = True
    e.pt[pages] = pt
    e.rwx[pages] = rwx
    e.pending[pages] = e.modified[pages] = e.pr[pages] = e.blocked[pages] = False
    e.secs[pages] = secs
    e.linaddr[pages] = linaddrs
    e.bepoch[pages] = 0


def _epcm_emodt_trim(cpu: SgxCpu, pages, epochs, now: int) -> None:
    """EMODT to TRIM (``EdmmMixin.emodt``): MODIFIED, RWX and PR cleared, BEPOCH stamped
    (``now``: the SECS's epoch after the batch's ETRACKs, see ``Epcm.stamp_epochs``). One
    page's change, compiled: ``fast/emodt.emodt_apply``."""
    e = cpu.epcm
    e.pt[pages] = PageType.TRIM
    e.modified[pages] = True
    e.rwx[pages] = 0
    e.pr[pages] = False
    e.stamp_epochs(pages, epochs, now)


def _epcm_clear(cpu: SgxCpu, pages) -> None:
    """``Epcm.clear`` of each page (EREMOVE)."""
    e = cpu.epcm
    e.valid[pages] = False
    e.pt[pages] = 0
    e.rwx[pages] = 0
    e.pending[pages] = e.modified[pages] = e.pr[pages] = e.blocked[pages] = False
    e.secs[pages] = -1
    e.linaddr[pages] = 0
    e.bepoch[pages] = 0


def _encl_add(encl: SgxEncl, sl: slice, pages, pt: int, max_prot: int) -> None:
    """``sgx_encl_add_page``'s page entry; the loader maps it with ``max_prot``."""
    encl.present[sl] = True
    encl.epc[sl] = pages
    encl.type[sl] = pt
    encl.max_prot[sl] = max_prot
    encl.vma_prot[sl] = max_prot


def _encl_remove(encl: SgxEncl, sl: slice) -> None:
    """``sgx_enclave_remove_pages``: PTEs zapped, the entry erased."""
    encl.pte_present[sl] = False
    encl.pte_young[sl] = False
    encl.epc[sl] = -1
    encl.present[sl] = False
    encl.type[sl] = 0
    encl.max_prot[sl] = 0


def _epcm_emodpr(cpu: SgxCpu, pages, perm: int, epochs, now: int) -> None:
    """EMODPR (``EdmmMixin.emodpr``): RWX &= the new permissions, PR set, BEPOCH stamped
    (``now``: the SECS's epoch after the batch's ETRACKs, see ``Epcm.stamp_epochs``)."""
    e = cpu.epcm
    e.rwx[pages] = e.rwx[pages] & (perm & 7)
    e.pr[pages] = True
    e.stamp_epochs(pages, epochs, now)
