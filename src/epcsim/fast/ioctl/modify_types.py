"""``SGX_IOC_ENCLAVE_MODIFY_TYPES`` with TRIM batched: ``modify_trim_run`` applies a run of
the page loop's EMODT and ETRACK at once (the conditions are the package docstring's; the
EPCM word's outcome is ``fast/emodt.emodt_words_ok``, the one restatement of EMODT's checks).

Why a module of its own: one ioctl (``sgx_enclave_modify_types``), as the kernel's
``ioctl.c`` has one function per ioctl; what it shares with RESTRICT_PERMISSIONS is in
``batch._emod_run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PageType
from epcsim.fast.ioctl.batch import _emod_run, _finish, _run_of
from epcsim.fast.ioctl.layouts import _epcm_emodt_trim

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.progress import ProgressHook


_PT_TRIM = int(PageType.TRIM)


def modify_trim_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of MODIFY_TYPES(TRIM) from page ``index`` at once (see the
    module docstring). Returns the pages changed (0: run the reference for ``index``)."""
    from epcsim.fast.emodt import emodt_words_ok  # numba: not on the reference's import

    sgx = encl.sgx
    hw = sgx.cpu
    c = task.m.costs
    steps = (c.ioctl_page, c.emodt, c.etrack)
    k, st = _emod_run(task, encl, index, limit, sum(steps))
    if k <= 0 or st is None:
        return 0
    secs = encl.secs_epc
    sl = slice(index, index + k)
    t = encl.type[sl]
    pages = encl.epc[sl].astype(np.int64)
    e = hw.epcm
    # the kernel's transition check, the page's own SECS (initialized: the ioctl checked),
    # then EMODT's outcome from the EPCM word (``fast/emodt``, the one restatement)
    ok = ((t == PageType.REG) | (t == PageType.TCS)) & (e.secs[pages] == secs)
    ok &= emodt_words_ok(e.flags[pages], _PT_TRIM)
    k = _run_of(ok)
    if k <= 0:
        return 0
    pages = pages[:k]
    sl = slice(index, index + k)
    # EMODT stamps the current epoch, then sgx_enclave_etrack starts the next one
    hw.epcm.advance_epoch(secs, st.epoch, st.epoch + k)  # the pages not stamped here
    _epcm_emodt_trim(hw, pages, st.epoch + np.arange(k, dtype=np.int64), st.epoch + k)
    st.epoch += k
    st.tracking = set()
    encl.type[sl] = PageType.TRIM
    sgx.stats.emodt += k
    sgx.stats.etrack += k
    _finish(task, encl, k, sum(steps), steps, progress, count0)
    return k


__all__ = ["modify_trim_run"]
