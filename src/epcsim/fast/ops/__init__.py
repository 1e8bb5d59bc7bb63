"""Page-state operations written once (``DESIGN.md`` item 1): numba functions over the
NumPy state, one module per kernel or SDM concept, named as the kernel names it.

Each op takes arrays and scalars, returns a code, and knows nothing of time, locks or CPUs:
the reference's generators call them (SimPy supplies time), and compiled code can call the
same functions, so a kernel decision lives in one place. Only ops that replace several
NumPy scalar operations are worth a compiled call from Python (a call costs ~1-2 µs of
dispatch); a one-field read or write stays in Python.

* ``epcm``: the EPCM state checks and updates of EBLOCK, EWB and ELDU (``isa/paging.py``).
* ``page_list``: ``list_add_tail``, ``list_del``, taking the head (one or many) over the
  shared links and the lists' ``ends`` rows (the LRU's isolate, the removal runs).
* ``pcmd``: ``reclaimer_writing_to_pcmd`` (``sgx/encl.c``).
* ``encl_page``: ``sgx_zap_enclave_ptes`` and ``sgx_encl_test_and_clear_young`` for a page.
* ``va``: a VA page's first free slot (``sgx_alloc_va_slot``) and ``sgx_free_va_slot``.
* ``backing``: the backing store's store (with ``sgx_encl_get_backing``'s pin and the PCMD
  pages' generations), compact lookup and truncation (``epcsim.kernel.backing``).
* ``epc``: ``__sgx_alloc_epc_page_from_node`` and ``sgx_free_epc_page``.
* ``lru``: ``sgx_mark_page_reclaimable``, ``sgx_unmark_page_reclaimable`` and the put-back.
* ``typed_rows``: a row of a typed list of arrays (the backing store's rows, the VA
  version blocks) read borrowed, without numba's per-item reference counting.
* ``tag_sealing``: the ``tag`` mode's EWB sealing and ELDU check (keyed BLAKE2b-64), byte
  for byte ``isa.sealing.Sealer``'s, for compiled callers (the driver of ``DESIGN.md``).
"""

from __future__ import annotations

from pathlib import Path

from epcsim.fast.numba_cache import PAGE_STATE, drop_stale, sources

__all__: list[str] = []

# numba's cached code goes when a source it depends on changes (``fast/numba_cache.py``)
drop_stale(
    Path(__file__).parent,
    sources("fast/ops", *PAGE_STATE),
)
