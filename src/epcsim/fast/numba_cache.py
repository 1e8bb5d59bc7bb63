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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

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
            f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(want)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        pass
