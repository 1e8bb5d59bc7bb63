"""What every batched run of an ioctl's page loop needs (``fast/ioctl``'s package docstring):
``_quiet`` (nothing can interleave with a run of pages), ``_finish`` (the run's cost charged
in one sum, ``encl->lock`` released at its end, the progress hook once per page),
``_run_of``, and the two conditions several loops share: ``_resident_run``
(``__sgx_encl_load_page`` finds the page resident) and ``_emod_run`` (MODIFY_TYPES' and
RESTRICT_PERMISSIONS' ETRACK and IPI conditions).

Why a module of its own: these are the elision rule (``Task.run``'s) restated once for every
batch - ADD_PAGES, MODIFY_TYPES, RESTRICT_PERMISSIONS, REMOVE_PAGES and ``fast/eaccept``'s
EACCEPT pass - so a change to what "quiet" means is made here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import PAGE_SIZE

if TYPE_CHECKING:
    from epcsim.engine.machine import Machine, Task
    from epcsim.isa.secs import SecsState
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.progress import ProgressHook


#: longest run one call applies: each call scans its window, so a bounded window keeps a
#: range that is cut into many runs (events, VA pages) linear in its length. It also bounds
#: the run's temporaries (index, address and timeline arrays, ~100 B a page at their peak)
#: to a few hundred KiB: with 65,536-page runs they were megabytes, freed blocks above glibc's
#: mmap threshold raise that threshold, later ones stay on the heap, and the process kept
#: them - row 8 of BENCHMARKS.md measured 72-85 B of RSS per page for the fast engine at
#: 256 MiB + 256 MiB against 25 B with 4,096-page runs (the reference: 38-47 B). The price:
#: ADD_PAGES of 524,288 pages took 0.52-0.70 µs a page against 0.40-0.46 with 65,536-page
#: runs (each run's fixed work, alternating runs on the shared machine).
MAX_RUN = 1 << 12


# -- what every batch needs ---------------------------------------------------------------------
def _quiet(task: Task, encl: SgxEncl, period: int, limit: int) -> int:
    """How many pages of ``period`` ns each can run before anything else could: 0 if some
    other task could interleave now."""
    m = task.m
    limit = min(limit, MAX_RUN)
    if limit <= 0 or period <= 0 or task.cpu is None or task._resched:
        return 0
    if m.rq.waiting() or not encl.lock.idle():
        return 0
    if m.flood is not None and m.flood.parked:  # their retries would take encl->lock
        return 0
    nxt = m.env.peek()
    if nxt == float("inf"):
        return limit
    return max(0, min(limit, (int(nxt) - 1 - m.now) // period))


def _finish(
    task: Task,
    encl: SgxEncl,
    k: int,
    period: int,
    steps: tuple[int, ...],
    progress: ProgressHook | None,
    count0: int,
    extra: tuple[int, np.ndarray] | None = None,
) -> None:
    """Charge ``k`` pages of ``period`` ns (``steps``: the costs of the ``Task.run`` calls of
    one page, each elided), release ``encl->lock`` at the last page's end, call the hook.
    ``extra`` = (ns, mask): the pages of ``mask`` take one more step of ``ns`` (EPA)."""
    m: Machine = task.m
    t0 = m.now
    ends = np.arange(1, k + 1, dtype=np.int64) * period
    nsteps = k * sum(1 for ns in steps if ns > 0)
    if extra is not None:
        ns, mask = extra
        ends += np.cumsum(mask.astype(np.int64)) * ns
        nsteps += int(mask.sum()) * (ns > 0)
    end = t0 + int(ends[-1])
    encl.lock.released(end)
    task.busy_ns += int(ends[-1])
    m.elided += nsteps
    encl.sgx.batched_pages += k
    if progress is not None:
        for j in range(k):
            m.env._now = t0 + int(ends[j])
            progress(encl, count0 + (j + 1) * PAGE_SIZE)
    m.env._now = end


def _run_of(mask: np.ndarray) -> int:
    """Length of the leading run of True."""
    return int(np.argmin(mask)) if not mask.all() else int(mask.size)


def _resident_run(encl: SgxEncl, index: int, k: int) -> int:
    """``__sgx_encl_load_page`` returns 0 without loading: present, resident, not
    BEING_RECLAIMED."""
    sl = slice(index, index + k)
    return _run_of(encl.present[sl] & (encl.epc[sl] >= 0) & ~encl.reclaiming[sl])


def _emod_run(
    task: Task, encl: SgxEncl, index: int, limit: int, period: int
) -> tuple[int, SecsState | None]:
    """What a batched MODIFY_TYPES(TRIM) and RESTRICT_PERMISSIONS both need before their
    EMODT/EMODPR: a quiet run (``_quiet``), an initialized SECS that no LP is inside and that
    tracks no epoch (each page's ``sgx_enclave_etrack`` succeeds at once), direct reclaim
    idle, no other CPU in the enclave's cpumask (``send_ipi`` reaches nobody), and pages that
    ``__sgx_encl_load_page`` finds resident. Returns ``(pages, SECS state)``; 0 pages: run
    the reference for ``index``."""
    sgx = encl.sgx
    k = _quiet(task, encl, period, min(limit, encl.nr_pages - index))
    secs = encl.secs_epc
    st = sgx.cpu.secs_at.get(secs) if secs >= 0 else None
    if k <= 0 or st is None or not st.initialized or st.inside or st.tracking:
        return 0, None
    if sgx.direct_reclaim and sgx.should_reclaim(sgx.low_pages):
        return 0, None
    if any(cpu != task.cpu for cpu in encl.cpumask()):  # send_ipi would reach another CPU
        return 0, None
    return _resident_run(encl, index, k), st
