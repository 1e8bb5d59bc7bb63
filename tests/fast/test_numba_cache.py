"""``epcsim.fast.numba_cache.drop_stale``: a package's cached machine code survives while
every source it depends on is unchanged, and goes when any of them changes - the case
numba's own check misses (a callee or a constant in another file)."""

from __future__ import annotations

import os

from epcsim.fast.numba_cache import ROOT, drop_stale, sources


def _package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    dep = tmp_path / "callee.py"
    dep.write_text("X = 1\n")
    return pkg, dep


def _cached(pkg):
    for name in ("f.py38.nbi", "f.f-1.py38.nbc"):
        (pkg / "__pycache__" / name).write_bytes(b"machine code")
    return sorted(p.name for p in (pkg / "__pycache__").iterdir() if p.suffix in (".nbi", ".nbc"))


def test_the_cache_stays_while_the_sources_are_unchanged(tmp_path):
    pkg, dep = _package(tmp_path)
    drop_stale(pkg, [dep])  # first sight: the digest is written
    files = _cached(pkg)
    drop_stale(pkg, [dep])
    assert sorted(p.name for p in (pkg / "__pycache__").glob("*.nb?")) == files


def test_a_changed_dependency_drops_the_cache(tmp_path):
    pkg, dep = _package(tmp_path)
    drop_stale(pkg, [dep])
    _cached(pkg)
    dep.write_text("X = 2\n")  # a constant the cached code baked in
    drop_stale(pkg, [dep])
    assert not list((pkg / "__pycache__").glob("*.nb?"))
    _cached(pkg)  # compiled afresh against X = 2: kept from now on
    drop_stale(pkg, [dep])
    assert len(list((pkg / "__pycache__").glob("*.nb?"))) == 2


def test_sources_names_packages_and_modules():
    got = sources("fast/cosim", "arch.py")
    assert ROOT / "arch.py" in got and ROOT / "fast" / "cosim" / "queue.py" in got
    assert all(p.exists() for p in got)


#: a child process: compiles ``racefn.f`` for one argument type into the shared cache
#: (``NUMBA_CACHE_DIR``), both children's index writes held back until the other has read
#: the index too (or ``wait`` s passed): argv = module dir, "int"/"float", "locked"/
#: "unlocked", wait
_RACER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from numba.core import caching
import epcsim.fast  # installs the lock (numba_cache.lock_index_saves)
cls = caching.IndexDataCacheFile
if sys.argv[3] == "unlocked":
    cls.save = cls.save.__wrapped__
mine, other = sys.argv[2], "float" if sys.argv[2] == "int" else "int"
save_index = cls._save_index
def held_back(self, overloads):
    open(os.path.join(sys.argv[1], "read-" + mine), "w").close()
    end = time.monotonic() + float(sys.argv[4])
    while not os.path.exists(os.path.join(sys.argv[1], "read-" + other)):
        if time.monotonic() > end:
            break
        time.sleep(0.01)
    save_index(self, overloads)
cls._save_index = held_back
import racefn
racefn.f(1 if mine == "int" else 1.5)
"""

#: a third process: both signatures from the cache - results and cache misses
_LOADER = """
import sys
sys.path.insert(0, sys.argv[1])
import epcsim.fast
import racefn
print(racefn.f(1), racefn.f(1.5), sum(racefn.f.stats.cache_misses.values()))
"""


def _race(tmp_path, mode: str, wait: float) -> str:
    import subprocess
    import sys
    from pathlib import Path

    import epcsim

    d = tmp_path / mode
    d.mkdir()
    (d / "racefn.py").write_text(
        "from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n"
    )
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(d / "cache")
    env["PYTHONPATH"] = str(Path(epcsim.__file__).parents[1])
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(d), kind, mode, str(wait)], env=env)
        for kind in ("int", "float")
    ]
    assert [p.wait(timeout=120) for p in racers] == [0, 0]
    out = subprocess.run(
        [sys.executable, "-c", _LOADER, str(d)], env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_processes_saving_two_signatures_at_once_keep_both(tmp_path):
    """``lock_index_saves`` (session ``tidy``): two processes compile one cached function
    for two argument types into one cache at once, each index write held back until the
    other has read the index too. Unlocked (numba's own ``save``) the index keeps one
    entry and a third process compiles the other signature again (or, had the data race
    gone the other way, loads the wrong code); locked, the second save waits for the first
    and reads its entry: both load from the cache, with their own results."""
    assert _race(tmp_path, "unlocked", 60.0).split() != ["2", "2.5", "0"]
    assert _race(tmp_path, "locked", 1.0).split() == ["2", "2.5", "0"]


def test_epcsim_fast_installs_the_lock():
    """Every compiled package imports ``epcsim.fast`` first (its ``__init__`` installs the
    lock); installing twice wraps once."""
    from numba.core import caching

    import epcsim.fast  # noqa: F401
    from epcsim.fast.numba_cache import lock_index_saves

    save = caching.IndexDataCacheFile.save
    assert save.__wrapped__ is not None
    lock_index_saves()
    assert caching.IndexDataCacheFile.save is save
