"""The ISA leaves ksgxd runs, compiled: EBLOCK, ETRACK and EWB (``isa/paging.py``), with
the EPCM checks of ``fast/ops/epcm``, the version LCG of ``isa/core.py`` and the ``tag``
mode's seal of ``fast/ops/tag_sealing`` - byte for byte what ``SgxCpu`` does, for the one
enclave of the regime, whose ``SecsState`` is a few ``kc`` columns.

Each function is the *effect* of a leaf, applied once the step's ``run`` is over (the
engine's rule: charge first, apply after); the counters of ``kernel/encls.py`` are counted
here too. Where the leaf needs something the arrays lack it changes nothing and says so:
EWB into a VA page with no row of versions yet returns ``NEED_VA_ROW`` (Python adds the
row, as ``VaPages.set_version`` would, and the step is applied again).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import PageType, SgxReturn
from epcsim.fast.driver.kstate import (
    CN_EBLOCK,
    CN_ETRACK,
    CN_EWB,
    CN_EWB_ATTEMPTS,
    K_BASE,
    K_EID,
    K_ENCL_ID,
    K_EPOCH,
    K_INSIDE,
    K_SECS_CHILDREN,
    K_SECS_EPC,
    K_SVC,
    K_SVC_ARG,
    K_TRACKING,
    RC_CT,
    RC_MAC,
    RC_PACKED,
    SVC_VA_ROW,
)
from epcsim.fast.ops import epcm as epcm_ops
from epcsim.fast.ops.backing import set_bit
from epcsim.fast.ops.seal_batch import compact_marked, seal_marked, unpack_flags
from epcsim.fast.ops.tag_sealing import seal
from epcsim.fast.ops.typed_rows import row as row_of
from epcsim.isa.core import PF
from epcsim.isa.epcm import (
    BEPOCH_MASK,
    BEPOCH_REBASE,
    EPCM_PT_SHIFT,
    EPCM_SECINFO_MASK,
    EPCM_VALID,
)
from epcsim.isa.epcm import _rebase as rebase

NOT_TRACKED = int(SgxReturn.NOT_TRACKED)
VA_SLOT_OCCUPIED = int(SgxReturn.VA_SLOT_OCCUPIED)
PREV_TRK_INCMPL = int(SgxReturn.PREV_TRK_INCMPL)
ENCLS_PF = int(PF)
#: ``ewb`` changed nothing: the VA page needs a row of versions first (``kc[K_SVC]``)
NEED_VA_ROW = -1
#: ``ewb`` of a page that is not a child (SECS, VA): never on the LRU in the regime
NOT_CHILD = -2

_REG = int(PageType.REG)
_TCS = int(PageType.TCS)
_TRIM = int(PageType.TRIM)
#: ``_pack_flags``'s page-type codes (``kernel/backing.py``): TCS 1, REG 2, TRIM 3
_LCG_A = np.uint64(6364136223846793005)
_LCG_C = np.uint64(1442695040888963407)


@njit(cache=True, nogil=True, inline="always")
def epcm_secs_is_mine(ks, epc):
    """``EPCM[epc].ENCLAVESECS == encl->secs.epc_page``, read as ``isa.epcm`` stores it: a
    valid entry of an enclave page reads the SECS of its owner, any other entry -1. The
    driver runs only while no entry is kept aside (``bridge._check_regime``), and a valid
    child of another enclave has that enclave's resident SECS, never this one's."""
    if ks.eflags[epc] & EPCM_VALID and ks.owner_index[epc] >= 0:  # the word's sign: the index's
        return ks.owner_encl[epc] == ks.ke[K_ENCL_ID]
    return ks.ke[K_SECS_EPC] == -1


@njit(cache=True, nogil=True, inline="always")
def epoch_of(ks, epc):
    """``secs_of(epc).epoch``: the enclave's epoch for its own child, 0 for any other page
    (EBLOCK of a page with no resident SECS stamps 0)."""
    if epcm_secs_is_mine(ks, epc):
        return ks.ke[K_EPOCH]
    return 0


@njit(cache=True, nogil=True, inline="always")
def eblock(ks, epc):
    """``encls.eblock``'s effect: ``stats.eblock += 1`` and EBLOCK (``eblock_apply`` at the
    SECS's epoch). Returns the leaf's code (0, or an SGX code the caller WARNs about)."""
    ks.cnt[CN_EBLOCK] += 1
    return epcm_ops.eblock_apply(ks.eflags, ks.bepoch, epc, epoch_of(ks, epc))


@njit(cache=True, nogil=True, inline="always")
def etrack(ks):
    """``encls.etrack``'s effect on the enclave's SECS: PREV_TRK_INCMPL while LPs of the
    last epoch are still inside, else a new epoch whose tracking set is the LPs inside now
    (``K_INSIDE``: the enclave thread's LP, or none with ksgxd alone), and the EPCM's BEPOCH
    re-base at every multiple of ``BEPOCH_REBASE`` (``Epcm.advance_epoch``)."""
    ke = ks.ke
    ks.cnt[CN_ETRACK] += 1
    if ke[K_TRACKING] != 0:
        return PREV_TRK_INCMPL
    old = ke[K_EPOCH]
    new = old + 1
    ke[K_EPOCH] = new
    ke[K_TRACKING] = ke[K_INSIDE]
    last = new - new % BEPOCH_REBASE
    if last > old:
        rebase(ks.eflags, ks.owner_encl, ks.owner_index, ks.bepoch, ke[K_ENCL_ID], old, last)
    return 0


@njit(cache=True, nogil=True, inline="always")
def tracked(ks, bepoch):
    """``SecsState.tracked``: an ETRACK since the page's EBLOCK, and every LP inside at it
    has exited since (the 16-bit distance is exact, ``isa/epcm.py``)."""
    behind = (ks.ke[K_EPOCH] - bepoch) & BEPOCH_MASK
    if behind == 0:
        return False
    if behind >= 2:
        return True
    return ks.ke[K_TRACKING] == 0


@njit(cache=True, nogil=True, inline="always")
def va_row_of(ks, va_epc):
    """``VaPages._row[va_epc]`` by binary search in ``vp_epc`` (ascending): the row, -1 for
    a VA page whose slots are all zero (no row), -2 for no VA page."""
    lo = 0
    hi = ks.vp_epc.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if ks.vp_epc[mid] < va_epc:
            lo = mid + 1
        else:
            hi = mid
    if lo < ks.vp_epc.size and ks.vp_epc[lo] == va_epc:
        return ks.vp_row[lo]
    return -2


@njit(cache=True, nogil=True, inline="always")
def fresh_version(ks):
    """``SgxCore._fresh_version``: the next value of the 64-bit LCG, never zero."""
    v = ks.ku[0] * _LCG_A + _LCG_C
    ks.ku[0] = v
    if v == 0:
        return np.uint64(1)
    return v


@njit(cache=True, nogil=True, inline="always")
def pack_flags(secinfo):
    """``kernel.backing._pack_flags`` of a child page's SECINFO.FLAGS (TCS, REG, TRIM)."""
    pt = secinfo >> 8
    code = 2
    if pt == _TCS:
        code = 1
    elif pt == _TRIM:
        code = 3
    return (secinfo & 0x3F) | (code << 6)


@njit(cache=True, nogil=True, inline="always")
def ewb(ks, r, epc, va_epc, slot):
    """``encls.ewb``'s effect (``SgxCpu.ewb`` of a child page of the enclave, ``tag`` mode),
    run by reclaimer ``r`` (``reclaim.py``).

    Returns the leaf's code: 0 (the record in ``rc[r]``'s ``RC_CT``/``RC_MAC``/``RC_PACKED``, *not*
    sealed: the content tag and the version, ``kstate``'s deferred sealing; ``seal_record``
    seals it where it must be now), VA_SLOT_OCCUPIED (evicted too, as the SDM says),
    NOT_TRACKED, an EPCM check's code, or ``NEED_VA_ROW``/``NOT_CHILD`` with nothing
    changed (not even the counter).

    ``va_row_of``'s -2 (no VA page at ``va_epc`` in the state's table) falls to
    ``ewb_check``: a page the EPCM does not hold as a valid VA page is the SDM's #PF there.
    An EPCM VA page missing from the table would be the model's own inconsistency (the
    table is built from ``VaPages`` at each entry and the core never allocates a VA page:
    ``sgx_encl_grow`` runs in Python), and ``row_of`` raises ``IndexError`` on it rather
    than reading another page's slots (found by session ``fault1``)."""
    kc = ks.kc
    ke = ks.ke
    row = va_row_of(ks, va_epc)
    if row == -1:
        kc[K_SVC] = SVC_VA_ROW
        kc[K_SVC_ARG] = va_epc
        return NEED_VA_ROW
    f = ks.eflags[epc]
    pt = (f >> EPCM_PT_SHIFT) & 0xFF
    if (f & 0x40) and not epcm_ops.is_child_type(pt):
        return NOT_CHILD
    ks.cnt[CN_EWB_ATTEMPTS] += 1
    check = epcm_ops.ewb_check(ks.eflags, epc, va_epc)
    if check != 0:
        if check == epcm_ops.FAULT_PF:
            return ENCLS_PF
        return check
    if not epcm_secs_is_mine(ks, epc) or not tracked(ks, np.int64(ks.bepoch[epc])):
        return NOT_TRACKED
    secinfo = np.int64(f) & EPCM_SECINFO_MASK
    tag = ks.etag[epc]
    version = fresh_version(ks)
    slots = row_of(ks.vp_blocks, row)  # borrowed (``ops.typed_rows``): no refcounting
    occupied = slots[0, slot] != 0
    slots[0, slot] = version
    ke[K_SECS_CHILDREN] -= 1
    ks.eflags[epc] = 0  # invalid: SECS and ENCLAVEADDRESS read (-1, 0)
    ks.bepoch[epc] = 0
    rw = ks.rc[r]
    rw[RC_CT] = np.int64(tag)
    rw[RC_MAC] = np.int64(version)
    rw[RC_PACKED] = pack_flags(secinfo)
    if occupied:
        return VA_SLOT_OCCUPIED
    ks.cnt[CN_EWB] += 1
    return 0


@njit(cache=True, nogil=True, inline="always")
def seal_record(ks, r, index):
    """Seal reclaimer ``r``'s current EWB's record of page ``index`` now (``RC_CT``: the tag
    becomes the contents, ``RC_MAC``: the version becomes the MAC's first 8 bytes), the bytes
    ``SgxCpu.ewb`` writes: for a record the machine cannot store itself (Python stores it,
    ``SVC_STORE``), which leaves the core unsealed otherwise."""
    ke = ks.ke
    rw = ks.rc[r]
    eid = np.uint64(ke[K_EID])
    linaddr = np.uint64(ke[K_BASE]) + (np.uint64(index) << np.uint64(12))
    ct, mac = seal(
        ks.keys, ks.sh, ks.sm, np.uint64(rw[RC_CT]), np.uint64(rw[RC_MAC]),
        np.uint64(unpack_flags(rw[RC_PACKED])), linaddr, eid, eid,
    )  # fmt: skip
    rw[RC_CT] = np.int64(ct)
    rw[RC_MAC] = np.int64(mac)


@njit(cache=True, nogil=True, inline="always")
def seal_deferred(ks):
    """Seal every record the core wrote and nobody has sealed (``ops.seal_batch.seal_marked``
    over ``dlist``), and empty the list."""
    ke = ks.ke
    seal_marked(
        ks.keys, ks.sh, ks.sm, ks.dlist, ks.dn[0], ks.dmark, ks.b_present,
        ks.b_chunk_row, ks.b_contents, ks.b_mac, ks.b_flags, ks.b_high_row, ks.b_high,
        ke[K_BASE], ke[K_EID],
    )  # fmt: skip
    ks.dn[0] = 0


@njit(cache=True, nogil=True, inline="always")
def defer(ks, index):
    """Mark the record of page ``index``, just stored unsealed, as pending (``kstate``'s
    deferred sealing). A full list is first compacted (records loaded again since, repeats);
    if it stays more than half full, what it holds is sealed now."""
    n = ks.dn[0]
    if n >= ks.dlist.size:
        n = compact_marked(ks.dlist, n, ks.dmark)
        ks.dn[0] = n
        if n > ks.dlist.size // 2:
            seal_deferred(ks)
            n = 0
    ks.dlist[n] = index
    ks.dn[0] = n + 1
    set_bit(ks.dmark, index, np.bool_(True))
