"""The suite's own rules (tests/README.md, "Rules for a new test") that a check can hold.

Helpers shared by test files live in a module without the ``test_`` prefix
(``tests/fast/core_cases.py``, ``stream_core_cases.py``, ...): a test file that imports
another test file re-runs nothing, but it ties the two files' names, collection and
import order together, and hides a helper where its next user will not look for it.
Session ``tidy`` moved every such import out; this keeps it so.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _imports_of_test_modules(path: Path) -> list[str]:
    """Every ``import test_x`` / ``from test_x import ...`` in ``path`` (at any depth, so a
    function-level import counts too), as ``line: module``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {n}" for n in names if n.split(".")[-1].startswith("test_")]
    return found


def test_no_file_imports_from_a_test_module() -> None:
    """Neither a test file nor a helper nor a benchmark imports a ``test_*`` module."""
    offenders = {
        str(p.relative_to(ROOT)): hits
        for d in ("tests", "benchmarks")
        for p in sorted((ROOT / d).rglob("*.py"))
        if (hits := _imports_of_test_modules(p))
    }
    assert offenders == {}, "move the shared helper to a module without the test_ prefix"


def test_the_check_sees_an_import_from_a_test_module(tmp_path: Path) -> None:
    """The check itself: each form of import from a test module is found, a helper is not."""
    f = tmp_path / "x.py"
    f.write_text(
        "from test_a import b\nimport test_c\ndef f():\n    from test_d import e\n"
        "from a_cases import g\nfrom tests.fast.test_h import i\n"
    )
    found = sorted(_imports_of_test_modules(f))
    assert found == ["1: test_a", "2: test_c", "4: test_d", "6: tests.fast.test_h"]
