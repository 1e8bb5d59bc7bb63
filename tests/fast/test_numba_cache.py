"""``epcsim.fast.numba_cache.drop_stale``: a package's cached machine code survives while
every source it depends on is unchanged, and goes when any of them changes - the case
numba's own check misses (a callee or a constant in another file)."""

from __future__ import annotations

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
