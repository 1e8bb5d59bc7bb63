"""Keeping numba's on-disk cache honest for the compiled packages of the fast engine.

numba's ``cache=True`` stores a function's machine code next to its module and reuses it
while *that module's file* is unchanged. It does not notice a change in another file the
function depends on - a compiled function it calls (whose code is built into the caller),
or a module-level constant baked in at compile time - a limitation numba documents. So
after an edit of, say, ``fast/ops/page_list.py``, a cached state machine in ``fast/driver``
would go on running the old list code. ``drop_stale`` is called by a package's
``__init__`` before any of its modules is compiled or loaded: it keeps one digest of every
source the package's compiled code depends on next to numba's in-tree cache, and when the
digest differs it deletes the package's cached files, so they are compiled afresh. A cache
placed elsewhere by ``NUMBA_CACHE_DIR`` is not checked (``make clean-cache`` and clearing
that directory are the remedies). Fresh clones and CI start with no cache at all.

Processes sharing one cache (``lock_index_saves``, decision of session ``tidy``,
2026-11-27): numba writes each cache file by temp file + ``os.replace``, but it updates a
function's index (``.nbi``: signature -> data file) by an unlocked read-modify-write
(``numba/core/caching.py``, ``IndexDataCacheFile.save``). Two processes saving two
signatures of one function at once both read the index without the other's entry, both
name their code ``<function>.1.nbc`` and both write the index back: one entry is lost and
the data file holds whichever code was written last - under the other's key, if the
index's writer lost the data race. ``epcsim sweep``'s Dask workers and ``epcsim demo``'s
worker processes all compile into one cache when it is cold. Of the remedies - warm the
cache in the parent first (``epcsim warm``: ~75-133 s of CPU, more than a small sweep
costs, and it covers the machines only, not the Python path's helpers a run compiles), a
cache directory per worker while the cache is cold (no worker then reuses what another
compiled, and nothing is kept for the next run) - the one that fixes the cause is taken:
every ``epcsim`` process holds an exclusive ``flock`` on ``numba-index.lock`` in the cache
directory around numba's ``save`` (load, name, write the index, write the data), so the
read-modify-write is whole. A reader needs no lock: it sees the old or the new index
(``os.replace``), and an entry whose data file is not written yet is a miss numba
recompiles. ``make test``'s two parts share the cache (since 2026-11-27, the lead: part 2
loads what part 1 compiled; before, each had its own and part 2 compiled ~200 of the same
functions again), and part 2 sets ``EPCSIM_AUTO_IGNORE_CACHE`` so that its
``fast_core="auto"`` does not depend on what part 1 has compiled (``tests/suite_parts.py``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: the ``epcsim`` package directory (sources named relative to it)
ROOT = Path(__file__).resolve().parent.parent

#: the modules whose layouts and codes compiled page-state code bakes in as constants (EPC
#: page and ``sgx_encl_page`` flags, page-list columns, backing-store codes, the EPCM
#: layout, ISA fault codes, sealing layouts, ``arch``'s SGX codes)
PAGE_STATE = (
    "kernel/epc.py",
    "kernel/encl_page.py",
    "kernel/page_list.py",
    "kernel/backing.py",
    "isa/epcm.py",
    "isa/core.py",
    "isa/sealing.py",
    "arch.py",
)
#: the engine modules whose costs and scheduler constants the compiled core bakes in
ENGINE = ("engine/costs.py", "engine/sched.py")


def sources(*names: str) -> list[Path]:
    """The ``.py`` files a package's compiled code depends on: each name is a package
    directory (every module in it) or a module file, relative to ``epcsim/``."""
    out: list[Path] = []
    for name in names:
        p = ROOT / name
        out += sorted(p.glob("*.py")) if p.is_dir() else [p]
    return out


def drop_stale(package: Path, deps: Iterable[Path]) -> None:
    """Delete ``package``'s cached machine code unless every file of ``deps`` is byte for
    byte what it was when the cache was written (the digest in ``numba-sources.sha256``)."""
    digest = hashlib.sha256()
    for src in deps:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    cache = package / "__pycache__"
    stamp = cache / "numba-sources.sha256"
    want = digest.hexdigest()
    try:
        if stamp.exists() and stamp.read_text() == want:
            return
        for f in (*cache.glob("*.nbi"), *cache.glob("*.nbc")):
            f.unlink(missing_ok=True)  # another process may have dropped it first
        cache.mkdir(exist_ok=True)
        # whole or not at all (temp file + rename, as numba writes its own files): a process
        # importing the package meanwhile (make test's other part, a sweep's worker) must
        # never read half a digest, take it for a changed source and drop the cache
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(want)
        os.replace(tmp, stamp)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        pass


#: the lock file ``lock_index_saves`` takes in each cache directory
LOCK_NAME = "numba-index.lock"


def lock_index_saves() -> None:
    """Make numba's cache index updates whole across processes (module docstring): wrap
    ``IndexDataCacheFile.save`` in an exclusive ``flock`` on the cache directory's
    ``LOCK_NAME``. Idempotent; ``save.__wrapped__`` is numba's own. Uses numba's cache
    internals (not documented API, as ``fast/driver/auto.py`` does): if they are not
    there, or ``fcntl`` is not (Windows), or the lock cannot be opened (a read-only
    directory, where numba cannot save either), saves go on unlocked as before."""
    try:
        import fcntl

        from numba.core import caching

        cls: Any = caching.IndexDataCacheFile
        save = cls.save
    except (ImportError, AttributeError):
        return
    if getattr(save, "__wrapped__", None) is not None:
        return

    @functools.wraps(save)
    def locked_save(self: Any, key: Any, data: Any) -> None:
        try:
            fd = os.open(os.path.join(self._cache_path, LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o644)
        except (OSError, AttributeError):
            save(self, key, data)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            save(self, key, data)
        finally:
            os.close(fd)  # releases the lock

    cls.save = locked_save
