"""The ISA leaves the enclave thread runs, compiled: ELDU's check and commit, and the
EENTER/ERESUME checks (``isa/paging.py`` ``eldu``, ``isa/enclu.py`` ``eenter``) for the one
enclave of the regime, in ``tag`` mode.

ELDU is split at its run: ``eldu_check`` reads the record and verifies it *before* the
step (``sgx_encl_eldu`` reads the backing before ``__eldu`` runs, and nothing the check
reads can change under ``encl->lock`` in the regime: the record, the VA slot, the SECS), so
that a record that would fail hands back before the step (PATHS.md); ``eldu_commit`` is the
leaf's effect once its run is over. The MAC is checked inline with
``tag_sealing.unseal`` for a record the core did not write or Python touched since (the
reference's, or sealed by ``EnclaveBacking.sealed_at``: a tampered one fails here as in the
reference); a record the core wrote, in this call or an earlier one, and nobody touched
since is still unsealed and needs no check (``kstate``, "Deferred sealing"). A record
kept raw (``odd``: tampered, or its PCMD lost) is checked by Python
(``kstate.SVC_UNSEAL``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import SGX_VA_SLOT_COUNT, PageType
from epcsim.fast.driver.encls import epcm_secs_is_mine, va_row_of
from epcsim.fast.driver.kstate import (
    K_DEFER_LOADS,
    K_EID,
    K_EPOCH,
    K_INITIALIZED,
    K_SECS_CHILDREN,
    K_SECS_EPC,
)
from epcsim.fast.driver.tstate import (
    TC_BASE,
    TC_FLAGS,
    TC_SLOT,
    TC_TAG,
    TC_VA,
    TC_VID,
    TC_VROW,
)
from epcsim.fast.ops import backing as backing_ops
from epcsim.fast.ops import epcm as epcm_ops
from epcsim.fast.ops.tag_sealing import unseal
from epcsim.fast.ops.typed_rows import row as row_of
from epcsim.isa.core import GP, PF
from epcsim.isa.epcm import (
    EPCM_BLOCKED,
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PT_SHIFT,
    EPCM_VALID,
)

ENCLU_GP = int(GP)
ENCLU_PF = int(PF)
#: ``eldu_check``: the record is kept raw, Python checks it (``SVC_UNSEAL``)
RAW = -1
#: ``eldu_check``: the MAC does not verify (``SgxReturn.MAC_COMPARE_FAIL``'s case)
MAC_FAIL = -2
_TCS = int(PageType.TCS)
_VA = int(PageType.VA)
#: ``kernel.backing._PT_OF_CODE``: the page type of a packed SECINFO.FLAGS' code
_PT_OF_CODE = np.array([0, int(PageType.TCS), int(PageType.REG), int(PageType.TRIM)], np.int64)


@njit(cache=True, nogil=True, inline="always")
def enter_check(ks, tcs_epc):
    """EENTER's (and so ERESUME's) checks of ``tcs_epc`` for an LP not inside any enclave
    (the regime: ``lp_eid`` is -1 and ``busy_tcs`` empty while the thread is out): 0, or
    the leaf's #PF/#GP with nothing changed. The caller applies a success."""
    if tcs_epc < 0 or tcs_epc >= ks.eflags.size:
        return ENCLU_PF
    f = ks.eflags[tcs_epc]
    if not f & EPCM_VALID or f & EPCM_BLOCKED or ((f >> EPCM_PT_SHIFT) & 0xFF) != _TCS:
        return ENCLU_PF
    if f & (EPCM_PENDING | EPCM_MODIFIED):
        return ENCLU_PF
    if not epcm_secs_is_mine(ks, tcs_epc) or ks.ke[K_SECS_EPC] < 0:
        return ENCLU_GP  # ``secs_of`` is not this enclave's resident SECS
    if ks.ke[K_INITIALIZED] == 0:
        return ENCLU_GP
    return 0


@njit(cache=True, nogil=True, inline="always")
def tcs_refused(ks, tcs):
    """Whether EENTER/ERESUME through TCS page ``tcs`` (mapped; -1: the implicit TCS, with
    the SECS resident) would fail now: the thread's machine reads it at the loop top,
    before the leaf's run, so that a failing entry stops where ``enter()`` goes on from
    (``thread.py``, "The thread's stops")."""
    if tcs >= 0:
        return enter_check(ks, ks.desc[tcs]) != 0
    return ks.ke[K_INITIALIZED] == 0


@njit(cache=True, nogil=True, inline="always")
def eldu_check(ks, ts, index, epc):
    """``sgx_encl_eldu``'s read of the record and ELDU's checks, for page ``index`` into
    the free EPC page ``epc``: 0 (the record verified: ``tc`` holds its tag, flags and VA
    slot), ``RAW`` (Python checks it), or a failure (#PF, #GP, ``MAC_FAIL``)."""
    tc = ts.tc
    d = ks.desc[index]
    if d > -2:
        return ENCLU_PF  # no VA reference: ``va_page`` -1 is not a valid EPC page
    ref = -2 - d
    vid = ref // SGX_VA_SLOT_COUNT
    slot = ref % SGX_VA_SLOT_COUNT
    va_epc = ks.va_epc_of[vid]
    tc[TC_VA] = va_epc
    tc[TC_SLOT] = slot
    tc[TC_VID] = vid
    if epc < 0 or epc >= ks.eflags.size or va_epc < 0 or va_epc >= ks.eflags.size:
        return ENCLU_PF
    ct8 = ks.bscr[16:24]
    mac16 = ks.bscr[:16]
    packed = backing_ops.backing_lookup(
        ks.b_present, ks.b_odd, ks.b_chunk_row, ks.b_contents, ks.b_mac, ks.b_flags,
        ks.b_high_row, ks.b_high, index, ct8, mac16,
    )  # fmt: skip
    if packed == backing_ops.RAW:
        return RAW
    if packed == backing_ops.ABSENT:
        return ENCLU_GP  # a shmem hole: an all-zero PCMD
    flags = (packed & 0x3F) | (_PT_OF_CODE[packed >> 6] << 8)
    if ks.eflags[epc] & EPCM_VALID:
        return ENCLU_PF
    fv = ks.eflags[va_epc]
    if not fv & EPCM_VALID or ((fv >> EPCM_PT_SHIFT) & 0xFF) != _VA:
        return ENCLU_PF
    if not epcm_ops.is_child_type((flags >> 8) & 0xFF):
        return ENCLU_GP  # a SECS/VA record given a parent
    secs = ks.ke[K_SECS_EPC]
    if secs < 0:
        return ENCLU_PF
    row = va_row_of(ks, va_epc)
    if row < 0:
        return ENCLU_GP  # no row of versions: the slot reads zero
    version = row_of(ks.vp_blocks, row)[0, slot]  # borrowed (``ops.typed_rows``)
    if version == 0:
        return ENCLU_GP
    tc[TC_VROW] = row
    ct = np.uint64(0)
    mac_lo = np.uint64(0)
    mac_hi = np.uint64(0)
    for b in range(8):
        ct |= np.uint64(ct8[b]) << np.uint64(8 * b)
        mac_lo |= np.uint64(mac16[b]) << np.uint64(8 * b)
        mac_hi |= np.uint64(mac16[8 + b]) << np.uint64(8 * b)
    if backing_ops.bit(ks.dmark, index):
        # a record the core wrote, still unsealed (kstate's deferred sealing): the tag and the
        # version EWB drew; the reference's MAC check passes iff the slot holds that version
        if mac_hi != 0 or mac_lo != version:
            return MAC_FAIL
        ks.kc[K_DEFER_LOADS] += 1
        tag = ct
    else:
        linaddr = np.uint64(tc[TC_BASE] + (index << 12))
        eid = np.uint64(ks.ke[K_EID])
        ok, tag = unseal(
            ks.keys, ks.sh, ks.sm, ct, mac_lo, mac_hi, version, np.uint64(flags), linaddr, eid,
            eid,
        )  # fmt: skip
        if not ok:
            return MAC_FAIL
    tc[TC_TAG] = np.int64(tag)
    tc[TC_FLAGS] = flags
    return 0


@njit(cache=True, nogil=True, inline="always")
def eldu_commit(ks, ts, index, epc):
    """ELDU's effect once its run is over (``SgxCpu.eldu``'s commit, ``tag`` mode, a child
    page): the version is consumed (the slot zeroed), the EPCM entry made VALID with the
    record's type and flags and this enclave's SECS, ENCLAVEADDRESS and the content tag
    restored, the SECS's child count up."""
    tc = ts.tc
    row_of(ks.vp_blocks, tc[TC_VROW])[0, tc[TC_SLOT]] = 0
    flags = tc[TC_FLAGS]
    # SECS and ENCLAVEADDRESS: what the page's owner (this enclave, ``index``, set by the
    # allocation) implies, stored once (``isa.epcm``): nothing to write
    epcm_ops.eldu_commit(
        ks.eflags, ks.bepoch, epc, flags, (flags >> 8) & 0xFF, np.bool_(False), ks.ke[K_EPOCH]
    )
    ks.etag[epc] = np.uint64(tc[TC_TAG])
    ks.ke[K_SECS_CHILDREN] += 1
