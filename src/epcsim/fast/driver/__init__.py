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
* ``bridge``: Python - take the arrays from a live ``System``, drive the core, serve the
  driver's requests for Python work (a new row of a table), fold the small arrays back
  into the Python objects when the call ends.

No user-visible path uses the driver yet (PATHS.md, "What is built").
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_numba_cache() -> None:
    """numba's ``cache=True`` checks only the file that defines a function, and the state
    machines here call the core (``fast/cosim``), the ops (``fast/ops``) and the ISA's
    compiled helpers: a cached ``drive`` keeps the code of ``ksgxd_resume`` it was compiled
    with. So, as ``fast/cosim`` does for itself, this package's cached machine code is kept
    only while its sources *and those it calls* are unchanged (one digest over them)."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for d in (here, here.parent / "cosim", here.parent / "ops"):
        for src in sorted(d.glob("*.py")):
            digest.update(src.name.encode() + b"\0" + src.read_bytes())
    for name in ("epcm.py", "core.py"):
        digest.update((here.parent.parent / "isa" / name).read_bytes())
    cache = here / "__pycache__"
    stamp = cache / "numba-sources.sha256"
    want = digest.hexdigest()
    try:
        if stamp.exists() and stamp.read_text() == want:
            return
        for f in (*cache.glob("*.nbi"), *cache.glob("*.nbc")):
            f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(want)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        pass


_drop_stale_numba_cache()
