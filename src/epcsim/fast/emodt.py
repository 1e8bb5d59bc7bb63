"""EMODT's outcome, compiled: the one restatement of ``EdmmMixin.emodt`` the fast paths use.

Why a restatement: MODIFY_TYPES' batch (``fast/ioctl/modify_types.modify_trim_run``) decides
for a run of pages at once whether each EMODT succeeds, and the compiled MODIFY_TYPES loop
planned in PATHS.md ("The MODIFY_TYPES loop", M3: a failing EMODT stops the machine *before*
the leaf, under ``encl->lock``, for Python to run it) must decide the same for the page it is
at. Both call ``emodt_word_ok``, so the decision is written once, next to its reference
(keep it in step with ``EdmmMixin.emodt``), as ``fast/eaccept.eaccept_word_ok`` is for
EACCEPT.

What the word alone decides, in the SDM leaf's order (``isa/edmm.py``): the page valid
(else #PF); the change REG -> TCS, REG -> TRIM or TCS -> TRIM (else #PF); neither PENDING
nor MODIFIED (else PAGE_NOT_MODIFIABLE). BLOCKED is not checked by EMODT. What it leaves
to the caller: the request (no reserved SECINFO bits, a new type of TCS or TRIM: the
kernel builds it, ``secinfo_flags(new_type)``), the EPC page number, and the page's SECS
initialized (``secs_of``: the caller's enclave, initialized by the ioctl's own checks).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from epcsim.arch import PageType
from epcsim.isa.epcm import (
    BEPOCH_MASK,
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PR,
    EPCM_PT_SHIFT,
    EPCM_RWX,
    EPCM_VALID,
)

_PT_REG, _PT_TCS, _PT_TRIM = int(PageType.REG), int(PageType.TCS), int(PageType.TRIM)


@njit(cache=True, nogil=True)
def emodt_word_ok(word, new_type):
    """``EdmmMixin.emodt``'s outcome from the page's EPCM word, for a request the caller
    checked (``new_type`` TCS or TRIM, no reserved bits) on a page of an initialized
    enclave: True exactly when the leaf returns 0."""
    w = int(word)
    if not w & EPCM_VALID:
        return False  # #PF
    old = w >> EPCM_PT_SHIFT
    if not (old == _PT_REG or (old == _PT_TCS and new_type == _PT_TRIM)):
        return False  # #PF
    return not w & (EPCM_PENDING | EPCM_MODIFIED)  # else PAGE_NOT_MODIFIABLE


@njit(cache=True, nogil=True)
def emodt_words_ok(words, new_type):
    """``emodt_word_ok`` of each word of ``words``."""
    ok = np.empty(words.size, np.bool_)
    for j in range(words.size):
        ok[j] = emodt_word_ok(np.int64(words[j]), new_type)  # int64, as the machines pass it
    return ok


#: the EPCM word's bits EMODT rewrites: the type, RWX and PR (MODIFIED is set)
_EMODT_CLEARS = (0xFF << EPCM_PT_SHIFT) | EPCM_RWX | EPCM_PR


@njit(cache=True, nogil=True)
def emodt_word(word, new_type):
    """The EPCM word a successful EMODT leaves (``EdmmMixin.emodt``: the type ``new_type``,
    MODIFIED set, RWX and PR cleared; VALID, BLOCKED and PENDING kept), for a word
    ``emodt_word_ok`` accepted."""
    w = int(word) & ~_EMODT_CLEARS
    return w | (int(new_type) << EPCM_PT_SHIFT) | EPCM_MODIFIED


@njit(cache=True, nogil=True)
def emodt_apply(eflags, bepoch, page, new_type, epoch):
    """EMODT's EPCM change of one page, in place: its word (``emodt_word``) and BEPOCH
    stamped at the SECS's ``epoch`` now (``Epcm.stamp_epoch``). The element form of
    ``fast/ioctl/layouts._epcm_emodt_trim``'s batch, for the compiled MODIFY_TYPES loop (PATHS.md
    M3), which applies one page at a time, each after its own ``run(emodt)``: a later
    ETRACK's re-base (``advance_epoch``) then sees it as the reference's does."""
    eflags[page] = emodt_word(np.int64(eflags[page]), new_type)
    bepoch[page] = epoch & BEPOCH_MASK
