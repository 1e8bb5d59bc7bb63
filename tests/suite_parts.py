"""Which tests a pytest process runs: ``make test``'s two processes, one per core of CI.

``make test`` runs the suite as two pytest processes started together
(``pytest --suite-part=1`` and ``--suite-part=2``, the Makefile's ``test-part*`` targets),
so CI's second core does half of the work: one process in one pytest session leaves it idle
but for the tests' own children (tests/README.md, "Where the time goes", session
``suite5``). Each process collects the whole suite, keeps what one process would run
(``selftests_once``: the kernel selftests that ``test_selftests_agree`` runs on both
engines are deselected, as ``conftest.py``'s collection hook always did), then keeps its
part's files. So the two parts together run exactly the tests one process runs - the same
node ids, none twice, none lost (``tests/test_suite_parts.py`` checks it on the collected
suite) - and the deduplication never depends on which part a selftest's file is in.

The split is by test file (a module's fixtures of ``scope="module"`` are built once, and a
file's tests keep their order). Part 1 is the default, the compiled core's tests
(``tests/fast``), which pay the machines' cold compile (~116 s of CPU in the first core
test, session ``suite4``); part 2 is ``PART_2``'s files, chosen by their CPU in a
whole-suite probe (``benchmarks/suite_probe.py``, ``SUITE_PROBE_CPU_TOP``) so that the two
processes end together. A new test file goes to part 1 unless listed here; move files
when one part's CPU outgrows the other's (README: how to measure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

#: the files and directories part 2 runs (posix paths relative to the repository root; a
#: directory takes every file under it); every other test file is part 1's
PART_2: tuple[str, ...] = (
    "tests/cli/",
    "tests/engine/",
    "tests/hardening/",
    "tests/isa/",
    "tests/kernel/",
    "tests/scenario/",
    "tests/sweep/",
    "tests/workloads/",
    "tests/test_demo.py",
    "tests/test_readme.py",
    "tests/test_suite_parts.py",
    "tests/test_suite_rules.py",
    "tests/test_user_step_preempted.py",
)

#: the parts ``--suite-part`` takes (the Makefile runs each once)
PARTS = (1, 2)

#: every item the session collected, before ``conftest.py``'s hook deselected any
#: (``tests/test_suite_parts.py`` checks the parts on it)
COLLECTED = pytest.StashKey[list[pytest.Item]]()


def rel_path(item: pytest.Item, root: Path) -> str | None:
    """``item``'s file relative to ``root``, posix, or None outside it."""
    try:
        return Path(item.path).relative_to(root).as_posix()
    except ValueError:
        return None


def part_of(rel: str | None) -> int:
    """The part that runs the test file ``rel`` (``rel_path``)."""
    if rel is not None and any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in PART_2):
        return 2
    return 1


def selftests_once(items: Sequence[pytest.Item], root: Path) -> list[pytest.Item]:
    """``items`` less each kernel selftest that ``test_selftests_agree`` runs in the same
    session (``conftest.py``'s hook says why); the order is kept."""
    covered: set[tuple[str, str]] = set()
    for item in items:
        spec = getattr(item, "callspec", None)
        if getattr(item, "originalname", None) == "test_selftests_agree" and spec is not None:
            covered.add((spec.params["rel"], spec.params["name"]))
    if not covered:
        return list(items)
    return [i for i in items if (rel_path(i, root), i.name) not in covered]


def select(items: Sequence[pytest.Item], root: Path, part: int | None) -> list[pytest.Item]:
    """What a process runs of the collected ``items``: one process (``part`` None) runs
    ``selftests_once``; part ``k`` runs that list's tests whose file is part ``k``'s."""
    once = selftests_once(items, root)
    if part is None:
        return once
    return [i for i in once if part_of(rel_path(i, root)) == part]
