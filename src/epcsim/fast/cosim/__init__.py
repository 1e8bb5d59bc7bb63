"""The compiled co-simulation core (issue 9, ``fast/DESIGN.md`` step 2, part 1).

SimPy's event queue and the engine primitives the kernel's paging paths use - ``Task.run``,
``LinuxMutex`` with optimistic spinning, ``WaitQueue``, CFS's wake-up onto an idle CPU,
process start and end - restated once each as numba functions over NumPy arrays, in
SimPy's exact event order. One module per concept, each next to its reference in
``epcsim/engine``: ``queue`` (``Environment``), ``task`` (``Task``, ``CfsRunQueue.wake``),
``spin`` and ``mutex`` (``LinuxMutex``), ``waitqueue`` (``WaitQueue``), ``dispatch``
(``Environment.step`` + ``Process._resume``), ``state`` (the arrays, codes, ``new_state``).
``program`` is a small interpreter of task programs over the core, and ``simpy_program``
runs the same programs on ``engine.machine``: the differential tests compare the two.

No user-visible path uses the core yet: ``System`` does not call it. ``DESIGN.md``, "What is
built", states the API the kernel state machines will use, the regime and the hand-backs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_numba_cache() -> None:
    """numba's ``cache=True`` checks only the file that defines a function: a cached
    ``run_programs`` keeps the code of ``spin.poke`` it was compiled with after ``spin.py``
    changes, and the constants of ``state.py`` are baked into every caller. So the cached
    machine code of this package is kept only while *all* its sources are unchanged: a
    digest of them is stored next to numba's in-tree cache, and a different digest drops
    the package's cache files before any module here is compiled or loaded. (A cache
    placed elsewhere by ``NUMBA_CACHE_DIR`` is not checked: clear it after editing.)"""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
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
