"""``SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS`` batched: ``restrict_run`` applies a run of the
page loop's EMODPR and ETRACK at once.

Why a module of its own: one ioctl (``sgx_enclave_restrict_permissions``); its conditions
beyond ``batch._emod_run`` are EMODPR's (a valid REG page, neither PENDING nor MODIFIED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PageType
from epcsim.fast.ioctl.batch import _emod_run, _finish, _run_of
from epcsim.fast.ioctl.layouts import _epcm_emodpr

if TYPE_CHECKING:
    from epcsim.engine.machine import Task
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.progress import ProgressHook


def restrict_run(
    task: Task,
    encl: SgxEncl,
    index: int,
    limit: int,
    perm: int,
    progress: ProgressHook | None,
    count0: int,
) -> int:
    """Up to ``limit`` pages of RESTRICT_PERMISSIONS from page ``index`` at once: resident,
    not BEING_RECLAIMED, REG, and in the EPCM a valid REG page neither PENDING nor MODIFIED
    (EMODPR succeeds); ETRACK and the IPI as for ``modify_trim_run``. Returns the pages done
    (0: run the reference for ``index``)."""
    sgx = encl.sgx
    hw = sgx.cpu
    c = task.m.costs
    steps = (c.ioctl_page, c.emodpr, c.etrack)
    k, st = _emod_run(task, encl, index, limit, sum(steps))
    if k <= 0 or st is None:
        return 0
    secs = encl.secs_epc
    sl = slice(index, index + k)
    pages = encl.epc[sl].astype(np.int64)
    e = hw.epcm
    ok = (encl.type[sl] == PageType.REG) & e.valid[pages] & (e.pt[pages] == PageType.REG)
    ok &= ~e.pending[pages] & ~e.modified[pages] & (e.secs[pages] == secs)
    k = _run_of(ok)
    if k <= 0:
        return 0
    # EMODPR stamps the current epoch, then sgx_enclave_etrack starts the next one
    hw.epcm.advance_epoch(secs, st.epoch, st.epoch + k)  # the pages not stamped here
    _epcm_emodpr(hw, pages[:k], perm, st.epoch + np.arange(k, dtype=np.int64), st.epoch + k)
    st.epoch += k
    st.tracking = set()
    sgx.stats.emodpr += k
    sgx.stats.etrack += k
    _finish(task, encl, k, sum(steps), steps, progress, count0)
    return k


__all__ = ["restrict_run"]
