"""``fast_core="auto"`` and numba's on-disk cache (``fast/driver/auto.py``):
``EPCSIM_AUTO_IGNORE_CACHE=1`` - set by ``make test``'s part 2, which shares part 1's
cache - makes "auto" count the machines warm only once compiled or loaded in this process.

The machines are stood in for by dispatcher-like objects (no compile): what is checked is
the decision ``machines_warm`` takes from what it finds, with the module's sticky state
reset around each case."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from epcsim.fast.driver import auto


@pytest.fixture
def cold(monkeypatch: pytest.MonkeyPatch) -> list[SimpleNamespace]:
    """Three machines not compiled in this process, each present in the disk cache."""
    fns = [SimpleNamespace(signatures=[]) for _ in range(3)]
    monkeypatch.setattr(auto, "_warm", False)
    monkeypatch.setattr(auto, "_disk", None)
    monkeypatch.setattr(auto, "_dispatchers", lambda: tuple(fns))
    monkeypatch.setattr(auto, "_cached_on_disk", lambda fn: True)
    return fns


def test_the_disk_cache_counts_unless_ignored(cold, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auto.IGNORE_CACHE_ENV, raising=False)
    assert auto.machines_warm()


def test_ignored_the_disk_cache_does_not_count(cold, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auto.IGNORE_CACHE_ENV, "1")
    assert not auto.machines_warm()
    assert not auto.auto_engages(1, auto.machines_warm())
    # ... until the machines are compiled or loaded here (part 2's LATE files load them)
    for fn in cold:
        fn.signatures.append("sig")
    assert auto.machines_warm()


def test_only_1_ignores_it(cold, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auto.IGNORE_CACHE_ENV, "0")
    assert auto.machines_warm()
