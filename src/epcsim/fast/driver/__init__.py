"""The compiled kernel state machines of the co-simulation driver (issue 9, ``fast/DESIGN.md``
step 2, part 2), over the engine core of ``fast/cosim``.

Each module restates one kernel path of ``fast/PATHS.md`` as a state machine - a ``pc`` per
task, a branch per pc - asking the core for engine actions (``run``, ``lock``/``unlock`` of
``encl->lock``, sleeping on ``ksgxd_waitq``) and applying each step's page-state effect with
the compiled ops of ``fast/ops``:

* ``kstate``: the kernel's arrays and the small arrays for what lives in Python objects
  (counters, the SECS's tracking state, the version LCG, the free timeline's new points,
  the refcount), their columns and the codes a call ends with;
* ``encls``: the ISA steps ksgxd runs (EBLOCK, ETRACK, EWB with its version draw and
  ``tag``-mode seal);
* ``ksgxd``: ksgxd's loop and ``sgx_reclaim_pages`` (PATHS.md K0, A-D);
* ``tstate``: the enclave thread's arrays and scalars (the stream, the thread's state that
  lives in Python objects, its counters and fault latencies);
* ``eldu``: the ISA steps the thread runs (ELDU's check and commit with the ``tag``-mode
  MAC check, EENTER/ERESUME's checks);
* ``thread``: ``access_stream`` and its fault path (PATHS.md T0-T7), and in its EACCEPT
  mode ``eaccept_range``'s per-page loop (E0-E4; the leaf's outcome is ``fast/eaccept``'s
  ``eaccept_word_ok``, hence that file among the sources below); its pc table is
  ``thread_pc``, its stop at a hooked loop top ``hook_stop``, its fault path's rows (T3-T7)
  ``vma_fault``;
* ``bridge``: Python - take the arrays from a live ``System``, drive the core, serve the
  driver's requests for Python work (a new row of a table), fold the small arrays back
  into the Python objects when the call ends (``run_ksgxd``: ksgxd alone);
* ``thread_bridge``: the same for ``run_thread`` (the thread alone, ksgxd asleep) and
  ``run_pair`` (the thread and ksgxd together, row 1's regime); the thread's fold back
  into the Python objects is ``thread_fold``.

No user-visible path uses the driver yet (PATHS.md, "What is built").
"""

from __future__ import annotations

from pathlib import Path

from epcsim.fast.numba_cache import ENGINE, PAGE_STATE, drop_stale, sources

# numba's cached code goes when a source it depends on changes (``fast/numba_cache.py``)
drop_stale(
    Path(__file__).parent,
    sources(
        "fast/driver",
        "fast/cosim",
        "fast/ops",
        "fast/access.py",
        "fast/eaccept.py",
        "fast/emodt.py",
        *ENGINE,
    )
    + sources(*PAGE_STATE),
)
