"""Taking pages off the head of a list over ``sgx_epc_page.list`` (``epcsim.kernel.page_list``).

``pop_head_many`` is Phase A of ``sgx_reclaim_pages`` for the kernel's LRU: up to
``SGX_NR_TO_SCAN`` times ``list_first_entry`` + ``list_del`` on ``sgx_active_page_list``,
each page's membership bit cleared as ``KernelLru.unmark`` does. The list's head, tail and
length are Python attributes of ``PageList``; the caller applies the returned head.
"""

from __future__ import annotations

from numba import njit

NIL = -1


@njit(cache=True, nogil=True)
def pop_head_many(prev, next_, flags, member_bit, head, n, out):
    """Take up to ``n`` pages off the list starting at ``head`` into ``out``, clearing
    ``member_bit`` in each page's ``flags``. Returns ``(count, new_head)``; ``count`` is
    ``-1 - k`` if the ``k``-th page was not flagged a member (a corrupt list: the caller
    raises, as ``unmark`` does) with the first ``k`` pages taken."""
    count = 0
    clear = 0xFF ^ member_bit
    while count < n and head != NIL:
        page = head
        if not flags[page] & member_bit:
            return -1 - count, head
        nxt = next_[page]
        if nxt != NIL:
            prev[nxt] = NIL
        prev[page] = NIL
        next_[page] = NIL
        flags[page] &= clear
        out[count] = page
        count += 1
        head = nxt
    return count, head
