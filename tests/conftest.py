"""Every System the tests build runs the invariant checker (epcsim.kernel.check) after each
public call: a broken invariant fails the test that caused it, wherever it is.

The suite's time budget and how to measure it: tests/README.md."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("EPCSIM_CHECK", "1")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each kernel selftest once per engine, not twice on the fast one.

    ``tests/fast/test_differential.py::test_selftests_agree`` runs every selftest of
    ``tests/kernel`` that takes no fixture but ``system`` on both engines, each assertion
    on each, with the same ``System`` arguments: the fast engine's half is the selftest's
    own run (``engine="fast"`` is the default). When a session selects both (``make
    test``), the selftest's own item is deselected: it checks nothing the differential one
    does not. Run alone (``pytest tests/kernel``), it runs as before. ``trylast``: after
    ``-k``/``-m`` have deselected, so a selftest whose differential item was deselected
    still runs."""
    covered: set[tuple[str, str]] = set()
    for item in items:
        spec = getattr(item, "callspec", None)
        if getattr(item, "originalname", None) == "test_selftests_agree" and spec is not None:
            covered.add((spec.params["rel"], spec.params["name"]))
    if not covered:
        return
    root = Path(config.rootpath)
    drop = []
    for item in items:
        try:
            rel = Path(item.path).relative_to(root).as_posix()
        except ValueError:
            continue
        if (rel, item.name) in covered:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        keep = set(map(id, drop))
        items[:] = [i for i in items if id(i) not in keep]
