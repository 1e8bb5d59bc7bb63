"""The enclave's resident and swapped page counts on the compiled core (issue 9, session
``runscale``; ``kernel/page_counts.py`` says what they count and why they are running counts).

A machine that writes a page's ``desc`` or PRESENT bit classifies the page before
(``page_class``) and after, and moves its enclave's ``ke`` deltas (``count_move``):
``K_RESIDENT``, ``K_SWAPPED``, folded into ``SgxEncl.counts`` by ``bridge.fold_kernel`` and
read unfolded by an observer (``observe.CoreView``). The sites: ADD_PAGES' EADD
(``add.py``), the fault's ELDU (``vma_fault.py``), the reclaimer's EWB (``reclaimer_write.py``, the
victim's slot), REMOVE_PAGES' EREMOVE (``remove.py``). Inlined: no compile of their own.
"""

from __future__ import annotations

from epcsim.fast.cosim.jit import core_jit
from epcsim.fast.driver.kstate import K_RESIDENT, K_SWAPPED
from epcsim.kernel.encl_page import ENCL_PAGE_PRESENT

#: ``page_class``'s values
NEITHER = 0
RESIDENT = 1
SWAPPED = 2


@core_jit(inline="always")
def page_class(desc, pflags, idx):
    """``RESIDENT`` (an EPC page: ``desc >= 0``), ``SWAPPED`` (PRESENT without one) or
    ``NEITHER``: ``PageCounts.classes``' rule for one page."""
    if desc[idx] >= 0:
        return RESIDENT
    if (pflags[idx] & ENCL_PAGE_PRESENT) != 0:
        return SWAPPED
    return NEITHER


@core_jit(inline="always")
def count_move(ke, before, after):
    """A page went from class ``before`` to ``after``: move the enclave's deltas."""
    if before == after:
        return
    if before == RESIDENT:
        ke[K_RESIDENT] -= 1
    elif before == SWAPPED:
        ke[K_SWAPPED] -= 1
    if after == RESIDENT:
        ke[K_RESIDENT] += 1
    elif after == SWAPPED:
        ke[K_SWAPPED] += 1
