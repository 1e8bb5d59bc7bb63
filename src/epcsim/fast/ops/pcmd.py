"""``reclaimer_writing_to_pcmd`` (``sgx/encl.c``): may ELDU truncate a PCMD page?"""

from __future__ import annotations

from numba import njit

from epcsim.arch import PCMDS_PER_PAGE
from epcsim.kernel.encl_page import ENCL_PAGE_BEING_RECLAIMED


@njit(cache=True, nogil=True)
def reclaimer_writing_to_pcmd(desc, page_flags, index):
    """True when a page sharing the PCMD page of page ``index`` (the 32 pages from
    ``index & ~31``, clipped to the enclave) is resident and BEING_RECLAIMED, over the
    packed ``sgx_encl_page`` arrays (``epcsim.kernel.encl_page``). As in the kernel, the
    resident test comes first: ``desc`` of an evicted page holds its VA slot instead."""
    first = index & ~(PCMDS_PER_PAGE - 1)
    last = min(first + PCMDS_PER_PAGE, desc.size)
    for i in range(first, last):
        if desc[i] >= 0 and page_flags[i] & ENCL_PAGE_BEING_RECLAIMED:
            return True
    return False
