"""The steps of ``sgx_reclaimer_write``/``sgx_encl_ewb`` inside one of ``reclaim_run``'s
blocks that neither block, nor stop, nor ask Python for a service (PATHS.md row D; split
from ``reclaim.py`` by session ``tidy2``, each body the statements it had there).

Why a module of its own: ``reclaim.py``'s ``reclaim_run`` is one machine (its pcs and exits
are ``reclaim_pc.py``'s) whose blocks must stay in one function; what a block does between
two of its exits - the IPI's cpumask and the AEXs it causes (PATHS.md N3), the record's
store into the backing file, the page's entry after EWB, a failed EWB's VA slot - is the
kernel's ``sgx_encl_ewb`` and ``sgx_reclaimer_write`` and lives here, inlined
(``inline="always"``: compiled into ``reclaim_run``, no compile of their own). The order of
the steps is ``kernel/reclaim.py``'s; a change there changes this file in the same commit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import SGX_VA_SLOT_COUNT
from epcsim.fast.cosim.state import T_CPU
from epcsim.fast.driver.kstate import (
    K_CPUMASK,
    K_INSIDE,
    K_NTHREADS,
    K_THREAD_SLOT,
    K_THREAD_T,
    K_TRACKING,
    RC_CT,
    RC_MAC,
    RC_PACKED,
)
from epcsim.fast.driver.page_counts import count_move, page_class
from epcsim.fast.ops import backing as backing_ops


@njit(cache=True, nogil=True, inline="always")
def ipi_mask(st, kc, ke, es):
    """``send_ipi``'s mask (``sgx_encl_cpumask``): its enclave's cpumask now (the one at
    entry, and the CPU of each enclave thread on the core that holds one, if the threads
    are this enclave's, slot ``es``: PATHS.md N3)."""
    mask = ke[K_CPUMASK]
    tt = kc[K_THREAD_T]
    if tt >= 0 and kc[K_THREAD_SLOT] == es:
        for u in range(tt, tt + kc[K_NTHREADS]):
            if st.tasks[u, T_CPU] >= 0:
                mask |= np.int64(1) << st.tasks[u, T_CPU]
    return mask


@njit(cache=True, nogil=True, inline="always")
def ipi_aex(kc, ke, es, mask):
    """Every LP of the IPI's ``mask`` inside the enclave takes an AEX: each enclave thread's
    on the core, if they are this enclave's (its next T0 runs ERESUME), which leaves the
    tracking set too (``K_INSIDE``/``K_TRACKING``: LP bit masks, N3)."""
    tt = kc[K_THREAD_T]
    if tt >= 0 and kc[K_THREAD_SLOT] == es:
        hit = ke[K_INSIDE] & mask
        ke[K_INSIDE] &= ~hit
        ke[K_TRACKING] &= ~hit


@njit(cache=True, nogil=True, inline="always")
def store_record(ks, rw, index, pin):
    """The EWB's record unsealed (the tag, the version: ``kstate``'s deferred sealing) and
    stored in the backing file at page ``index`` (``pin``: the PCMD's pin, B's);
    ``backing_store``'s answer (< 0: Python stores it sealed)."""
    mac16 = ks.bscr[:16]
    ct8 = ks.bscr[16:24]
    _put_u64(mac16, 0, rw[RC_MAC])
    for b in range(8, 16):
        mac16[b] = 0
    _put_u64(ct8, 0, rw[RC_CT])
    return backing_ops.backing_store(
        ks.b_present, ks.b_odd, ks.b_chunk_row, ks.b_contents, ks.b_mac, ks.b_flags,
        ks.b_high_row, ks.b_high, ks.b_pcmd_live, ks.b_pcmd_kept, ks.b_pcmd_gen,
        index, pin, ct8, rw[RC_PACKED], mac16,
    )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def clear_epc_page(ks, ke, index, ret, vid, slot):
    """``encl_page->epc_page = NULL`` whatever EWB returned (``ret``); the VA reference
    (VA page ``vid``, ``slot``) on success; the enclave's page counts moved."""
    was = page_class(ks.desc, ks.pflags, index)
    if ks.desc[index] >= 0:
        ks.desc[index] = -1
    if ret == 0:
        ks.desc[index] = -2 - (vid * SGX_VA_SLOT_COUNT + slot)
    count_move(ke, was, page_class(ks.desc, ks.pflags, index))


@njit(cache=True, nogil=True, inline="always")
def _put_u64(row, at, value):
    for b in range(8):
        row[at + b] = (value >> (8 * b)) & 0xFF


@njit(cache=True, nogil=True, inline="always")
def va_free_slot(ks, vid, slot):
    """``sgx_free_va_slot`` without the move to the head (a failed EWB)."""
    ks.va_used[vid, slot >> 3] &= 0xFF ^ (1 << (slot & 7))


__all__ = ["clear_epc_page", "ipi_aex", "ipi_mask", "store_record", "va_free_slot"]
