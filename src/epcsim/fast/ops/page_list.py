"""The list operations over ``sgx_epc_page.list`` (``epcsim.kernel.page_list``), compiled.

Every list made of the pages' shared link pair (a node's ``free_page_list``,
``sgx_active_page_list``) is a row of ``ends`` (``PageLinks.ends``: ``HEAD``, ``TAIL``,
``LEN``) over the arrays ``prev`` and ``next_``; so is an enclave's ``va_pages``, over links
by VA page number (``epcsim.kernel.va_page``). These are the ``include/linux/list.h``
operations the paging paths use, over those arrays only, for a compiled driver to call and
for the Python side's batched operations; ``PageList``'s single-page methods are the same
rules in Python (a numba call from Python costs more than they do) and
``tests/fast/test_ops.py`` checks that both agree step by step.

* ``list_add_tail``  - ``sgx_free_epc_page`` (free list), ``sgx_mark_page_reclaimable`` (LRU).
* ``list_add``       - a new VA page, or one a slot was freed in, to the head of ``va_pages``.
* ``list_pop_head``  - ``__sgx_alloc_epc_page_from_node``: ``list_first_entry`` + ``list_del``.
* ``list_del``       - ``sgx_unmark_page_reclaimable``.
* ``list_del_many``  - ``list_del`` of pages in order (``SGX_IOC_ENCLAVE_REMOVE_PAGES`` runs).
* ``pop_head_many``  - Phase A of ``sgx_reclaim_pages`` for the kernel's LRU: up to
  ``SGX_NR_TO_SCAN`` times ``list_first_entry`` + ``list_del`` on ``sgx_active_page_list``,
  each page's membership bit cleared as ``KernelLru.unmark`` does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NIL = -1
HEAD, TAIL, LEN = 0, 1, 2  # the columns of ``ends`` (``epcsim.kernel.page_list``)


@njit(cache=True, nogil=True)
def list_add_tail(prev, next_, ends, row, page):
    """Append ``page`` (on no list) at the tail of list ``row``."""
    tail = ends[row, TAIL]
    prev[page] = tail
    next_[page] = NIL
    if tail != NIL:
        next_[tail] = page
    else:
        ends[row, HEAD] = page
    ends[row, TAIL] = page
    ends[row, LEN] += 1


@njit(cache=True, nogil=True)
def list_add(prev, next_, ends, row, page):
    """Insert ``page`` (on no list) at the head of list ``row``."""
    head = ends[row, HEAD]
    prev[page] = NIL
    next_[page] = head
    if head != NIL:
        prev[head] = page
    else:
        ends[row, TAIL] = page
    ends[row, HEAD] = page
    ends[row, LEN] += 1


@njit(cache=True, nogil=True)
def list_del(prev, next_, ends, row, page):
    """Unlink ``page``, which the caller knows is on list ``row``."""
    p = prev[page]
    n = next_[page]
    if p != NIL:
        next_[p] = n
    else:
        ends[row, HEAD] = n
    if n != NIL:
        prev[n] = p
    else:
        ends[row, TAIL] = p
    prev[page] = NIL
    next_[page] = NIL
    ends[row, LEN] -= 1


@njit(cache=True, nogil=True)
def list_pop_head(prev, next_, ends, row):
    """Take the head of list ``row`` off and return it, or ``NIL`` when the list is empty."""
    page = np.int64(ends[row, HEAD])  # (int64, as every caller passes a page: one signature)
    if page != NIL:
        list_del(prev, next_, ends, row, page)
    return page


@njit(cache=True, nogil=True)
def list_del_many(prev, next_, ends, row, pages):
    """``list_del`` of each of ``pages`` (all on list ``row``) in order."""
    for i in range(pages.size):
        list_del(prev, next_, ends, row, pages[i])


@njit(cache=True, nogil=True)
def pop_head_many(prev, next_, flags, member_bit, ends, row, n, out):
    """Take up to ``n`` pages off the head of list ``row`` into ``out``, clearing
    ``member_bit`` in each page's ``flags``. Returns the count; ``-1 - k`` if the ``k``-th
    page was not flagged a member (a corrupt list: the caller raises, as ``unmark`` does)
    with the first ``k`` pages taken and that page left at the head."""
    count = 0
    clear = ~member_bit  # the flags may share a word with other bits (kernel.epc)
    while count < n:
        page = np.int64(ends[row, HEAD])
        if page == NIL:
            break
        if not flags[page] & member_bit:
            return -1 - count
        list_del(prev, next_, ends, row, page)
        flags[page] &= clear
        out[count] = page
        count += 1
    return count
