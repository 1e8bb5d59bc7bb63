"""A run of resident accesses (``EnclaveThread.access_stream``), compiled, written once.

``access_stream`` charges a run of accesses to mapped pages in one step: find the first
unmapped page, check the VMA protection and then the EPCM (the same masks as
``epcsim.isa.epcm.Epcm.allows``), set the Accessed bits, and advance the content tag of
each distinct written page once (``mac``/``tag`` modes: a stream write changes the page's
contents, so EWB and ELDU carry changing contents; in ``full`` mode only ``Enclave.write``
changes bytes). Both engines call ``resident_run`` (DESIGN.md item 1: the decision lives in
one place); it replaced about fifteen NumPy calls on short slices. A change to the access
checks goes here, and into ``Epcm.allows`` where whole arrays are checked.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import PageType
from epcsim.isa.epcm import (
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PT_SHIFT,
    EPCM_R,
    EPCM_VALID,
    EPCM_W,
)
from epcsim.kernel.encl_page import ENCL_PAGE_PTE_PRESENT, ENCL_PAGE_PTE_YOUNG, PROT_VMA_SHIFT

# ``Epcm.allows`` as two masks over the packed EPCM flags word: VALID, PT == REG, neither
# PENDING nor MODIFIED, R (and W for a write).
_LOOK = EPCM_VALID | EPCM_PENDING | EPCM_MODIFIED | (0xFF << EPCM_PT_SHIFT) | EPCM_R
_WANT = EPCM_VALID | (int(PageType.REG) << EPCM_PT_SHIFT) | EPCM_R
_PTE_PRESENT = np.uint8(ENCL_PAGE_PTE_PRESENT)
_PTE_YOUNG = np.uint8(ENCL_PAGE_PTE_YOUNG)
_VMA_SHIFT = PROT_VMA_SHIFT
_WRITE_MIX = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def resident_run(seg, wseg, page_flags, desc, prot, epcm_flags, tags, apply_writes):
    """Returns ``(k, k2)``: ``seg[:k]`` are mapped, ``seg[:k2]`` (``k2 <= k``) are allowed
    and were touched: Accessed set and, with ``apply_writes``, the content tag of each
    distinct written page advanced once (NumPy fancy assignment semantics).

    ``page_flags``, ``desc`` and ``prot`` are the enclave's packed page arrays
    (``epcsim.kernel.encl_page``): a mapped page is resident, so its ``desc`` is its EPC
    page; ``epcm_flags`` is the EPCM's packed flags word (``epcsim.isa.epcm``)."""
    n = seg.size
    k = n
    for i in range(n):
        if not page_flags[seg[i]] & _PTE_PRESENT:
            k = i
            break
    k2 = k
    for i in range(k):
        idx = seg[i]
        w = wseg[i]
        vma = prot[idx] >> _VMA_SHIFT
        e = desc[idx]
        ok = (vma & 1) != 0 and (not w or (vma & 2) != 0)
        f = epcm_flags[e]
        ok = ok and (f & _LOOK) == _WANT and (not w or (f & EPCM_W) != 0)
        if not ok:
            k2 = i
            break
    for i in range(k2):
        page_flags[seg[i]] |= _PTE_YOUNG
    if apply_writes:
        nw = 0
        for i in range(k2):
            if wseg[i]:
                nw += 1
        if nw:
            wr = np.empty(nw, dtype=np.int64)
            j = 0
            for i in range(k2):
                if wseg[i]:
                    wr[j] = desc[seg[i]]
                    j += 1
            for e in np.unique(wr):
                tags[e] = tags[e] * _WRITE_MIX + np.uint64(1)
    return k, k2


@njit(cache=True, nogil=True)
def young_again(touched, page_flags):
    """End of a step: pages still mapped were accessed during it."""
    for i in range(touched.size):
        idx = touched[i]
        if page_flags[idx] & _PTE_PRESENT:
            page_flags[idx] |= _PTE_YOUNG
