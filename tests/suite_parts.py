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

Part 2 runs with ``EPCSIM_AUTO_IGNORE_CACHE=1`` (``fast/driver/auto.py``): its
``fast_core="auto"`` counts the machines warm only once part 2 itself has compiled or
loaded them, never because numba's on-disk cache holds them. So until its ``LATE`` files
(the last it runs, below) load the machines, "auto" leaves its tests' streams - and the
``epcsim`` processes they start - on the Python path, as ``pytest tests/kernel`` run alone
does; in one process the tests after the machines' compile engage the core instead
(``tests/hardening``, ``tests/kernel``, the examples, ...). Neither changes a result ("auto"
is a cost choice); the core's own paths are checked by the tests that set ``fast_core``,
and the Python path's by part 2 in ``make test``. The two parts share numba's cache (the
Makefile says why; since 2026-11-27: before, part 2 had a directory of its own and
compiled ~200 of the functions part 1 compiled).
``tests/fast/test_differential.py`` is part 1's (decision, the lead, 2026-11-27): its 200
generated scenarios - the issue's differential test - draw ``fast_core`` (True or False)
instead of leaving it to "auto", so what each compares no longer depends on what numba's
cache holds when it runs (in part 2 "auto" would keep all off the core). Few are taken by
the core even so (measured, ``/tmp/lead-gen.py``: of the 200, 85-101 drew the core and
3-5 ran accesses on it - ``mac`` content and the bulk flood exclude the core, and small
EPCs decline at the loop top); the core's differential coverage is the targeted
properties of ``tests/fast`` (``test_stream_core*``, ``test_threads_*``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

#: the files and directories part 2 runs (posix paths relative to the repository root; a
#: directory takes every file under it but ``PART_1``'s); every other test file is part 1's.
#: Part 2's own numba cache starts empty, so a file here that compiles the machines (sets
#: ``fast_core``, imports ``epcsim.fast.driver``) pays their ~100 s cold compile a second
#: time: ``tests/test_suite_parts.py`` fails on one. Measured (session ``suite5``, the
#: lead's whole-suite probe of main 75fac7f, cold cache, CPU per file): part 1 ~255 s with
#: the machines' compile, part 2 ~150 s plus its own cold compiles (~45 s: the task
#: programs' package, ``fast/cosim``, the Python path's helpers) and ruff and mypy. Session
#: ``tidy`` (each part probed as CI runs it): part 1 303 s -> 277 s, part 2 183 s -> 195 s,
#: moving the task programs' and compiled ops' files that part 1 ran without the machines.
PART_2: tuple[str, ...] = (
    "tests/cli/",
    "tests/engine/",
    "tests/fast/test_borrow.py",
    "tests/fast/test_cosim.py",
    "tests/fast/test_cosim_fifo.py",
    "tests/fast/test_cosim_lsleep.py",
    "tests/fast/test_cosim_run_user.py",
    "tests/fast/test_cosim_runq.py",
    "tests/fast/test_emodt_word.py",
    "tests/fast/test_flood.py",
    "tests/fast/test_no_literal_args.py",
    "tests/fast/test_numba_cache.py",
    "tests/fast/test_ops.py",
    "tests/fast/test_ops_state.py",
    "tests/fast/test_park_past.py",
    "tests/fast/test_poke_spinners.py",
    "tests/fast/test_resume_now.py",
    "tests/fast/test_row_lists.py",
    "tests/fast/test_seal_batch.py",
    "tests/fast/test_served.py",
    "tests/fast/test_tag_sealing.py",
    "tests/fast/test_typed_rows.py",
    "tests/hardening/",
    "tests/isa/",
    "tests/kernel/",
    "tests/scenario/",
    "tests/sweep/",
    "tests/workloads/",
    "tests/test_bench_sources.py",
    "tests/test_demo.py",
    "tests/test_readme.py",
    "tests/test_suite_parts.py",
    "tests/test_suite_rules.py",
    "tests/test_user_step_preempted.py",
)

#: files under a directory of ``PART_2`` that part 1 runs: they compile the machines
#: (``fast_core=True``), which part 1 has compiled already
PART_1: tuple[str, ...] = ("tests/kernel/test_page_counts.py",)

#: part 2's files that run the compiled core's machines (``LATE``: decision, the lead,
#: 2026-11-27). The two parts share numba's cache, and part 2 runs these after all its
#: other files, so by then part 1 - whose first core test compiles the machines, ~150-200 s
#: of CPU - has saved them and part 2 loads them (~1 s) instead of compiling them again.
#: Before, part 1 held every file that runs the machines, ~600 s of CPU against part 2's
#: ~390 (ruff and mypy counted): CI's wall was part 1's. Chosen by CPU (the lead's probe of
#: main f3cd1f9 and a fresh-clone ``make test`` with five files here, tests/README.md "Where
#: the time goes", the lead's 2026-11-27 entry: part 2 then ended ~1 min later, and
#: ``test_sampler_core.py``, ~19 s of CPU, went back; on an idle fresh clone of b165c85
#: part 1's pytest took 7:39 and part 2's 6:11 after ~40 s of ruff and mypy, so
#: ``test_stream_deadline.py``, ~12-18 s, came here). If
#: part 2 reaches them before part 1 has saved a machine, part 2 compiles it itself: the
#: same code, only the CPU twice - never a different result.
LATE: tuple[str, ...] = (
    "tests/fast/test_stream_core_ksgxd.py",
    "tests/fast/test_stream_deadline.py",
    "tests/fast/test_threads_core.py",
    "tests/fast/test_threads_flood_core.py",
    "tests/fast/test_threads_user.py",
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
    if rel in LATE:
        return 2
    if rel is None or rel in PART_1:
        return 1
    if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in PART_2):
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
    ``selftests_once``; part ``k`` runs that list's tests whose file is part ``k``'s, in
    that order, except that part 2 runs ``LATE``'s files after all its others."""
    once = selftests_once(items, root)
    if part is None:
        return once
    mine = [i for i in once if part_of(rel_path(i, root)) == part]
    late = [i for i in mine if rel_path(i, root) in LATE]
    return [i for i in mine if rel_path(i, root) not in LATE] + late
