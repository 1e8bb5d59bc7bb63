"""The benchmarks measure the sources their ``PYTHONPATH`` names (``benchmarks/src_tree.py``,
session ``fixes``): an A/B against a base worktree (``PYTHONPATH=/tmp/base/src``) run from
this checkout must time the base, not this checkout twice, as ``row_profile.py`` did
through ``pair_perf.py``, which put its own checkout's ``src`` first on ``sys.path``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _src_tree():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("src_tree", ROOT / "benchmarks" / "src_tree.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_sources_chosen(tmp_path: Path) -> None:
    """``--src`` first, then the first ``PYTHONPATH`` entry holding ``epcsim``, else this
    checkout's ``src``."""
    chosen = _src_tree().chosen_src
    other = tmp_path / "base" / "src"
    (other / "epcsim").mkdir(parents=True)
    (other / "epcsim" / "__init__.py").write_text("")
    path = os.pathsep.join([str(tmp_path / "benchmarks"), str(other), str(ROOT / "src")])
    assert chosen([], path) == str(other)
    assert chosen(["--runs", "3"], str(ROOT / "benchmarks")) == str(ROOT / "src")
    assert chosen(["--src", str(tmp_path)], path) == str(tmp_path)
    assert chosen([f"--src={tmp_path}"], "") == str(tmp_path)


def test_no_benchmark_puts_its_own_src_first() -> None:
    """No script inserts its own checkout's ``src`` on ``sys.path``: each asks
    ``src_tree.src_to_measure``."""
    own = '"..", "src"'
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    offenders = [p.name for p in scripts if p.name != "src_tree.py" and own in p.read_text()]
    assert offenders == []
