"""The EPC page allocator of ``sgx/main.c``, compiled: ``__sgx_alloc_epc_page_from_node``
and ``sgx_free_epc_page`` over ``EpcPages``' arrays (``epcsim.kernel.epc``): the page
flags (IS_FREE, ON_LRU, POISON) and owner page index, one word each (``owner_flags``:
``index << OWNER_SHIFT | flags``), the owner enclave and the free lists, each a row of
``PageLinks.ends`` over the shared links (``ops.page_list``). ``sgx_nr_free_pages`` is the
caller's counter: a page taken is one less, a page freed (poisoned or not) one more.
"""

from __future__ import annotations

from numba import njit

from epcsim.fast.ops.page_list import NIL, list_add_tail, list_pop_head
from epcsim.kernel.epc import (
    OWNER_NONE,
    OWNER_SHIFT,
    SGX_EPC_PAGE_IS_FREE,
    SGX_EPC_PAGE_ON_LRU,
    SGX_EPC_PAGE_POISON,
)

#: ``free_page`` of a page already free (``EpcPages.free`` raises)
FREED_TWICE = -1
#: ``free_page`` of a page still on the LRU (``EpcPages.free`` raises: its one link pair
#: is the LRU's)
FREED_ON_LRU = -2


@njit(cache=True, nogil=True)
def alloc_from_node(prev, next_, ends, owner_flags, owner_encl, row, encl_id, index):
    """``__sgx_alloc_epc_page_from_node``: take the head of the free list ``row`` (the
    node's), clear its flags (no longer IS_FREE) and give it to ``encl_id``/``index`` (an
    ELRANGE page index or an ``OWNER_*`` code, as ``Sgx.alloc_epc_page`` does). Returns the
    page, or ``NIL`` (-1) when the node has none free (nothing is changed)."""
    page = list_pop_head(prev, next_, ends, row)
    if page != NIL:
        owner_flags[page] = index << OWNER_SHIFT
        owner_encl[page] = encl_id
    return page


@njit(cache=True, nogil=True)
def free_page(prev, next_, ends, owner_flags, owner_encl, row, page):
    """``sgx_free_epc_page`` of an invalid (EREMOVEd or written back) page: no owner, and
    on the tail of its node's free list ``row`` - unless poisoned: then it goes on no list
    but is still flagged IS_FREE and counted free, as in the kernel (``EpcPages.free``).
    Returns 0, or ``FREED_TWICE``/``FREED_ON_LRU`` with nothing changed."""
    f = owner_flags[page]
    if f & SGX_EPC_PAGE_IS_FREE:
        return FREED_TWICE
    if f & SGX_EPC_PAGE_ON_LRU:
        return FREED_ON_LRU
    owner_encl[page] = -1
    poisoned = f & SGX_EPC_PAGE_POISON
    if not poisoned:
        list_add_tail(prev, next_, ends, row, page)
    owner_flags[page] = (OWNER_NONE << OWNER_SHIFT) | SGX_EPC_PAGE_IS_FREE | poisoned
    return 0
