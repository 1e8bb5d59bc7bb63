"""Which epcsim sources a benchmark measures (session ``fixes``, 2026-11-27).

Run against another tree's sources - ``PYTHONPATH=/tmp/base/src python benchmarks/x.py``,
the alternated A/B that ``BENCHMARKS.md`` asks for - a benchmark must measure that tree.
The scripts used to put their own checkout's ``src`` first on ``sys.path``, ahead of
``PYTHONPATH``, so such an A/B run from one checkout timed the same code twice
(``row_profile.py``, through ``pair_perf.py``; found by session ``fault5``). A script puts
``src_to_measure()`` first instead (``sys.path.insert(0, src_to_measure())``, before it
imports ``epcsim``): ``--src DIR`` if the command line has it, else the first
``PYTHONPATH`` entry that holds ``epcsim``, else this checkout's ``src``.
"""

from __future__ import annotations

import os
import sys

_OWN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def chosen_src(argv: list[str], pythonpath: str) -> str:
    """The sources to measure, from a command line and a ``PYTHONPATH`` (module
    docstring)."""
    for k, arg in enumerate(argv):
        if arg == "--src" and k + 1 < len(argv):
            return os.path.abspath(argv[k + 1])
        if arg.startswith("--src="):
            return os.path.abspath(arg.split("=", 1)[1])
    for entry in pythonpath.split(os.pathsep):
        if entry and os.path.isfile(os.path.join(entry, "epcsim", "__init__.py")):
            return os.path.abspath(entry)
    return _OWN


def src_to_measure() -> str:
    """This process's sources to measure (``chosen_src`` of its command line and
    environment); an ``epcsim`` already imported from elsewhere is an error."""
    src = chosen_src(sys.argv[1:], os.environ.get("PYTHONPATH", ""))
    mod = sys.modules.get("epcsim")
    if mod is not None and not str(mod.__file__).startswith(src + os.sep):
        raise RuntimeError(f"epcsim was imported from {mod.__file__}, not from {src}")
    return src


__all__ = ["chosen_src", "src_to_measure"]
