"""Every System the tests build runs the invariant checker (epcsim.kernel.check) after each
public call: a broken invariant fails the test that caused it, wherever it is.

The suite's time budget and how to measure it: tests/README.md. ``--suite-part`` runs one
of ``make test``'s two processes (``suite_parts.py``)."""

import os
from pathlib import Path

import pytest

from suite_parts import COLLECTED, PARTS, select

os.environ.setdefault("EPCSIM_CHECK", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--suite-part",
        type=int,
        choices=PARTS,
        default=None,
        help="run only this part of the suite (make test runs each part in its own process; "
        "tests/suite_parts.py)",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each kernel selftest once per engine, not twice on the fast one; and with
    ``--suite-part``, only that part's files.

    ``tests/fast/test_differential.py::test_selftests_agree`` runs every selftest of
    ``tests/kernel`` that takes no fixture but ``system`` on both engines, each assertion
    on each, with the same ``System`` arguments: the fast engine's half is the selftest's
    own run (``engine="fast"`` is the default). When a session selects both (``make
    test``), the selftest's own item is deselected: it checks nothing the differential one
    does not. Run alone (``pytest tests/kernel``), it runs as before. ``trylast``: after
    ``-k``/``-m`` have deselected, so a selftest whose differential item was deselected
    still runs. A part deselects after that (``suite_parts.select``), so the two parts
    together run what one process runs."""
    config.stash[COLLECTED] = list(items)
    keep = select(items, Path(config.rootpath), config.getoption("suite_part"))
    if len(keep) == len(items):
        return
    kept = set(map(id, keep))
    config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept])
    items[:] = keep
