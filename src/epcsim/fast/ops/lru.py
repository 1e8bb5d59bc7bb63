"""``sgx_active_page_list`` of ``sgx/main.c``, compiled: the kernel's LRU (``KernelLru``,
``epcsim.kernel.policy``) over the pages' shared links, the list's row of
``PageLinks.ends`` and the ``SGX_EPC_PAGE_ON_LRU`` bit of the page flags (``owner_flags``).
Phase A's isolate is ``ops.page_list.pop_head_many``.
"""

from __future__ import annotations

from numba import njit

from epcsim.fast.ops.page_list import list_add_tail, list_del
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU

#: ``lru_mark`` of a page on the list already, ``lru_unmark`` of one not on it
#: (``KernelLru`` raises; nothing is changed)
NOT_ALLOWED = -1
_CLEAR = ~SGX_EPC_PAGE_ON_LRU  # not 0xFF ^ bit: the flags share a word (kernel.epc)


@njit(cache=True, nogil=True)
def lru_mark(prev, next_, ends, flags, row, page):
    """``sgx_mark_page_reclaimable``: ``list_add_tail`` on the LRU (list ``row``)."""
    if flags[page] & SGX_EPC_PAGE_ON_LRU:
        return NOT_ALLOWED
    list_add_tail(prev, next_, ends, row, page)
    flags[page] |= SGX_EPC_PAGE_ON_LRU
    return 0


@njit(cache=True, nogil=True)
def lru_unmark(prev, next_, ends, flags, row, page):
    """``sgx_unmark_page_reclaimable`` of a page still on the LRU: ``list_del``."""
    if not flags[page] & SGX_EPC_PAGE_ON_LRU:
        return NOT_ALLOWED
    list_del(prev, next_, ends, row, page)
    flags[page] &= _CLEAR
    return 0


@njit(cache=True, nogil=True)
def lru_putback(prev, next_, ends, flags, row, page):
    """Phase B's put-back of a young page (or one whose backing failed): back on the tail,
    as ``sgx_reclaim_pages`` does with ``list_move_tail`` (``KernelLru.putback`` = ``mark``)."""
    return lru_mark(prev, next_, ends, flags, row, page)
