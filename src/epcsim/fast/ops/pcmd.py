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
    resident test comes first: ``desc`` of an evicted page holds its VA slot instead.

    Written without the kernel's early return (the answer is the same: both tests read
    only, and either order of them gives the same conjunction): the loop then has no
    branch to mispredict and LLVM vectorizes it. With the early return it was ~20% of the
    thread machine's host time on row 1 (``perf``, session ``fault2``)."""
    first = index & ~(PCMDS_PER_PAGE - 1)
    last = min(first + PCMDS_PER_PAGE, desc.size)
    busy = 0
    for i in range(first, last):
        busy |= (desc[i] >= 0) & ((page_flags[i] & ENCL_PAGE_BEING_RECLAIMED) != 0)
    return busy != 0
