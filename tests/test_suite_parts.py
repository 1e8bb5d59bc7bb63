"""``make test``'s two pytest processes run exactly what one process runs (``suite_parts``).

The property that keeps the suite's coverage when it is split over CI's two cores: over the
suite this session collected (each process collects all of it), part 1 and part 2 together
select the same node ids as one process, none twice, none lost; each in the order one
process runs them. Checked with the function the processes' collection hook calls
(``suite_parts.select``), on the real items, so a file in no part, a file in both or a
kernel selftest that both parts deselect (or neither) fails here, in every run of the
suite - the landing's single process and each part of ``make test`` alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from suite_parts import COLLECTED, LATE, PART_1, PART_2, PARTS, part_of, rel_path, select

ROOT = Path(__file__).parents[1]


def test_the_parts_together_run_what_one_process_runs(request: pytest.FixtureRequest) -> None:
    items = request.config.stash[COLLECTED]
    one = [i.nodeid for i in select(items, ROOT, None)]
    parts = [[i.nodeid for i in select(items, ROOT, k)] for k in PARTS]
    together = [n for p in parts for n in p]
    assert len(set(together)) == len(together), "a test in two parts"
    assert sorted(together) == sorted(one), "a test lost or added by the split"
    late = {i.nodeid for i in items if rel_path(i, ROOT) in LATE}
    for k, p in zip(PARTS, parts, strict=True):
        # one process's order, but part 2 runs LATE's files after all its others
        early = [n for n in one if n in set(p) and n not in late]
        want = early + ([n for n in one if n in late] if k == 2 else [])
        assert p == want, "a part reorders one process's tests"
    if late & set(one):
        assert parts[1][-1] in late, "part 2 runs LATE's files last"


def test_each_part_path_names_a_test_file_or_directory() -> None:
    """A stale entry of ``PART_2`` (a file renamed or removed) would silently move nothing."""
    for p in PART_1 + PART_2 + LATE:
        path = ROOT / p
        assert path.is_dir() if p.endswith("/") else path.is_file(), p


def test_make_test_runs_every_part_in_parallel() -> None:
    """The Makefile's ``test`` runs one process per part, together (``-j``), and none
    twice: the property above holds for what CI runs only if it does."""
    text = (ROOT / "Makefile").read_text()
    assert sorted(map(int, re.findall(r"--suite-part=(\d+)", text))) == list(PARTS)
    assert re.search(r"\$\(MAKE\) .*-j2 .*test-part1 test-part2", text)


def test_the_parts_write_their_own_pytest_cache() -> None:
    """pytest writes its cache files in place, and each part writes back the last failures
    it read less its own passes: two processes sharing ``.pytest_cache`` could tear a file
    and drop the other's failures (the Makefile says why, session ``tidy``). Part 2's
    command names a cache directory of its own; part 1's keeps the default."""
    text = (ROOT / "Makefile").read_text()
    lines = {k: [ln for ln in text.splitlines() if f"--suite-part={k}" in ln] for k in PARTS}
    assert all(len(v) == 1 for v in lines.values()), lines
    dirs = [re.findall(r"cache_dir=(\S+)", lines[k][0]) for k in PARTS]
    assert dirs[0] == [] and len(dirs[1]) == 1 and dirs[1][0] != ".pytest_cache", dirs


#: part 2's uses of a helper that can run the core, checked not to: (file, helper) -> why
HELPER_USES_WITHOUT_THE_CORE = {
    ("tests/fast/test_flood.py", "differential_cases"): (
        "run_generated's fast_core is the scenario's draw, else 'auto'; test_flood's "
        "scenario draws none, and its bulk NOPAGE flood keeps the core off"
    ),
}


def test_part_2_shares_the_cache_and_ignores_it_in_auto() -> None:
    """Part 2 loads what part 1 compiled (one numba cache: no ``NUMBA_CACHE_DIR`` of its
    own) and its ``fast_core="auto"`` does not look in that cache
    (``EPCSIM_AUTO_IGNORE_CACHE=1``), so what it exercises never depends on how far part 1
    has got (the Makefile and ``suite_parts`` say why; the lead, 2026-11-27)."""
    text = (ROOT / "Makefile").read_text()
    (line,) = [ln for ln in text.splitlines() if "--suite-part=2" in ln]
    assert "EPCSIM_AUTO_IGNORE_CACHE=1" in line and "NUMBA_CACHE_DIR" not in line, line
    (one,) = [ln for ln in text.splitlines() if "--suite-part=1" in ln]
    assert "EPCSIM_AUTO_IGNORE_CACHE" not in one and "NUMBA_CACHE_DIR" not in one, one


def test_part_2_runs_the_machines_only_in_its_late_files() -> None:
    """Part 2 runs the core's machines (``fast_core``, ``epcsim.fast.driver``) only in
    ``LATE``'s files, which it runs last: an earlier file would compile them while part 1
    is compiling them too (~150-200 s of CPU twice; session ``suite4`` measured ~100 s when
    ``tests/kernel/test_page_counts.py`` did it before ``PART_1`` named it), and would let
    "auto" engage the core in the part-2 tests after it. Checked on the source: part 2's
    test files, the ``*_cases.py`` helpers beside them, and the helpers they import from
    ``tests/`` (``test_fifo_core.py`` names neither but runs the core through
    ``core_cases.py``; session ``tidy``)."""

    def compiles(text: str) -> bool:
        return "fast_core" in text or "epcsim.fast.driver" in text

    helpers = {p.stem: p for p in (ROOT / "tests").rglob("*.py") if not p.stem.startswith("test_")}
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if (
            part_of(rel) != 2
            or rel in LATE
            or path.name in ("test_suite_parts.py", "suite_parts.py")
        ):
            continue
        text = path.read_text()
        imported = re.findall(r"^\s*(?:from|import) (\w+)", text, re.M)
        via = [m for m in imported if m in helpers and compiles(helpers[m].read_text())]
        via = [m for m in via if (rel, m) not in HELPER_USES_WITHOUT_THE_CORE]
        if compiles(text) or via:
            offenders.append((rel, via))
    assert offenders == [], "list these in suite_parts.PART_1 or LATE (or move them out of PART_2)"
