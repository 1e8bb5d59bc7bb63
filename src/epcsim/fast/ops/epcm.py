"""EPCM state checks and updates of the paging leaves (SDM Vol.3D ch. 40: EBLOCK, EWB,
ELDU/ELDB), over the packed ``flags`` word and ``bepoch`` of ``epcsim.isa.epcm.Epcm``.

``epcsim.isa.paging.PagingMixin`` calls these for the per-entry part of each leaf; the
parts that need Python objects (the SECS's tracking state, the sealing crypto, the VA slot
versions, the exact-address side table of ENCLAVEADDRESS) stay in the leaf. Codes are the
SDM's ``SgxReturn`` values as plain ints, and ``FAULT_PF`` for a leaf that raises #PF.
"""

from __future__ import annotations

from numba import njit

from epcsim.arch import PageType, SgxReturn
from epcsim.isa.epcm import (
    BEPOCH_MASK,
    EPCM_BLOCKED,
    EPCM_PT_SHIFT,
    EPCM_VALID,
)

_SECS = int(PageType.SECS)
_TCS = int(PageType.TCS)
_REG = int(PageType.REG)
_VA = int(PageType.VA)
_TRIM = int(PageType.TRIM)
_PG_INVLD = int(SgxReturn.PG_INVLD)
_PG_IS_SECS = int(SgxReturn.PG_IS_SECS)
_NOTBLOCKABLE = int(SgxReturn.NOTBLOCKABLE)
_BLKSTATE = int(SgxReturn.BLKSTATE)
_PAGE_NOT_BLOCKED = int(SgxReturn.PAGE_NOT_BLOCKED)
#: what ``ewb_check`` returns where EWB raises #PF (the leaf maps it to its fault code)
FAULT_PF = -1
#: the SECINFO.FLAGS bits ELDU copies from the PCMD into the entry: R/W/X, PENDING,
#: MODIFIED, PR (bits 0-5)
_STATE_BITS = 0x3F


@njit(cache=True, nogil=True)
def is_child_type(pt):
    """REG, TCS and TRIM pages: the ones EBLOCK blocks and EWB tracks."""
    return pt in (_REG, _TCS, _TRIM)


@njit(cache=True, nogil=True)
def eblock_apply(flags, bepoch, epc, epoch):
    """EBLOCK on a valid EPC index: PG_INVLD, PG_IS_SECS, NOTBLOCKABLE (not REG/TCS/TRIM),
    BLKSTATE (blocked already); else set BLOCKED and stamp BEPOCH with the SECS's ``epoch``
    (modulo 2**16, ``Epcm.stamp_epoch``) and return 0."""
    f = flags[epc]
    if not f & EPCM_VALID:
        return _PG_INVLD
    pt = (f >> EPCM_PT_SHIFT) & 0xFF
    if pt == _SECS:
        return _PG_IS_SECS
    if not is_child_type(pt):
        return _NOTBLOCKABLE
    if f & EPCM_BLOCKED:
        return _BLKSTATE
    flags[epc] = f | EPCM_BLOCKED
    bepoch[epc] = epoch & BEPOCH_MASK
    return 0


@njit(cache=True, nogil=True)
def ewb_check(flags, epc, va_epc):
    """EWB's EPCM checks on valid EPC indices, in the SDM's order: ``epc`` invalid or
    ``va_epc`` not a valid VA page -> ``FAULT_PF``; a REG/TCS/TRIM page not BLOCKED ->
    PAGE_NOT_BLOCKED. Otherwise returns 0; the leaf then asks the SECS whether the page's
    epoch is tracked (``SecsState.tracked``) or, for a SECS, whether children remain."""
    if not flags[epc] & EPCM_VALID:
        return FAULT_PF
    fv = flags[va_epc]
    if not fv & EPCM_VALID or ((fv >> EPCM_PT_SHIFT) & 0xFF) != _VA:
        return FAULT_PF
    f = flags[epc]
    if is_child_type((f >> EPCM_PT_SHIFT) & 0xFF) and not f & EPCM_BLOCKED:
        return _PAGE_NOT_BLOCKED
    return 0


@njit(cache=True, nogil=True)
def eldu_commit(flags, bepoch, epc, secinfo_flags, pt, blocked, epoch):
    """ELDU/ELDB's EPCM update once the record verified: the entry becomes VALID with the
    PCMD's page type and R/W/X/PENDING/MODIFIED/PR, BLOCKED only for ELDB of a
    REG/TCS/TRIM page. Every bit of the flags word is written (the entry was invalid, so
    nothing is kept). The owning SECS and ENCLAVEADDRESS are the caller's to write: they
    are stored once, derived from the page's owner (``isa.epcm``), so a caller whose page
    the kernel allocated for that enclave page writes nothing (the compiled driver).

    BEPOCH of a child page: ``epoch`` (the SECS's epoch now) minus 2, "tracked for good".
    The page was written back, and EWB refuses a page whose tracking is not complete
    (NOT_TRACKED), so whatever EMODPR/EMODT/EBLOCK stamped it had been tracked before the
    ELDU: an EACCEPT of a reloaded MODIFIED or PR page must not see NOT_TRACKED, or paging
    would not be transparent to the enclave (real hardware passes the removal selftests on
    EPCs far past 2**16 ETRACKs). The SDM's ELDU pseudocode does not name BEPOCH; a stamp
    of 0 (the model before 2026-11-26) read as 0 epochs behind whenever the SECS's epoch
    was a multiple of 2**16 (``isa.epcm``'s 16-bit distance): 45 EACCEPTs of an 8 GiB
    removal run failed. A SECS or VA page keeps 0 (nothing reads it)."""
    flags[epc] = eldu_word(secinfo_flags, pt, blocked)
    if is_child_type(pt):
        bepoch[epc] = (epoch - 2) & BEPOCH_MASK
    else:
        bepoch[epc] = 0


@njit(cache=True, nogil=True, inline="always")
def eldu_word(secinfo_flags, pt, blocked):
    """The EPCM word ``eldu_commit`` writes (the MODIFY_TYPES loop reads it before the ELDU
    to decide the page's EMODT, PATHS.md M2)."""
    w = EPCM_VALID | ((pt & 0xFF) << EPCM_PT_SHIFT) | (secinfo_flags & _STATE_BITS)
    if blocked and is_child_type(pt):
        w |= EPCM_BLOCKED
    return w
