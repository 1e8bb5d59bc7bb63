"""Batched runs of the enclave ioctls' page loops: ADD_PAGES, MODIFY_TYPES(TRIM),
RESTRICT_PERMISSIONS, REMOVE_PAGES.

Each loop (``sgx_ioc_enclave_add_pages``, ``_page_loop`` of the SGX2 ioctls) does per page a
fixed sequence of steps with fixed costs. When nothing can interleave with a run of pages,
every page of the run does exactly what the reference does, at a fixed offset in time, so
the run is applied at once and its cost charged in one sum. "Nothing can interleave" is
``_quiet``: no event due up to and including the run's end (the elision rule of
``Task.run``), no task waiting for a CPU (``need_resched`` stays false), ``encl->lock`` idle.
Each run function adds the conditions of its own loop and stops the run at the first page
that does not meet them; that page runs the reference code:

* ``add_run`` (``sgx_encl_add_page``): the offset has no page yet, the allocator's node has
  a free page for it (and for the VA page ``sgx_encl_grow`` adds every 512 pages: EPA runs
  in the batch, through the ISA's ``epa``) and the free count stays at or above the low
  watermark (no ksgxd wake-up, no reclaim); EADD (and EEXTEND) cannot fail on
  a free page of a created, uninitialized enclave. MRENCLAVE gets the same bytes in the same
  order (``epcsim.isa.measure.eadd_blocks``/``eextend_headers``).
* ``modify_trim_run`` (``sgx_enclave_modify_types`` with TRIM): the page is resident and not
  BEING_RECLAIMED, REG or TCS, EMODT succeeds (``fast/emodt.emodt_word_ok``: valid, REG or
  TCS in the EPCM, neither PENDING nor MODIFIED), no LP is
  inside the enclave and no other CPU is in its mm cpumask (ETRACK succeeds, no IPI), the
  free count is at or above the low watermark (``sgx_reclaim_direct`` does nothing).
* ``remove_run`` (``sgx_enclave_remove_pages``): the page is resident, not BEING_RECLAIMED,
  an accepted TRIM page (the EMODPR probe takes #PF), on the LRU or untracked, not poisoned;
  freeing pages only raises the free count, so direct reclaim stays idle.

The EPCM, the enclave's page arrays and ``sgx_epc_page`` are written through the ``_epcm_*``
and ``_encl_*`` functions below only, so a layout change touches those.

A ``progress`` hook (``ProgressHook``) marked ``observe_only`` (a progress bar) is called once
per page, in order, with the clock set to that page's end, as in the reference; the page
arrays it could read already hold the whole run. A hook without the mark may act (a test
sends a signal from one), so the callers take no batched run then
(``epcsim.kernel.progress.hook_may_act``).

One module per ioctl, as the kernel's ``ioctl.c`` has one function per ioctl (``add_pages``,
``modify_types``, ``restrict_permissions``, ``remove_pages``), ``batch`` for what every
batch needs (``_quiet``, ``_finish``) and ``layouts`` for the state adapters (split from one
543-line ``fast/ioctl.py`` by session ``split``, 2026-11-26; no code changed).
"""

from __future__ import annotations

from epcsim.fast.ioctl.add_pages import add_run, measure_added
from epcsim.fast.ioctl.modify_types import modify_trim_run
from epcsim.fast.ioctl.remove_pages import remove_run
from epcsim.fast.ioctl.restrict_permissions import restrict_run

__all__ = ["add_run", "measure_added", "modify_trim_run", "remove_run", "restrict_run"]
