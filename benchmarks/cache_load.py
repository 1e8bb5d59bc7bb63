"""What a fresh process pays before its first results on the compiled core, with numba's
cache warm (issue 9 row 5, session ``cacheload``; BENCHMARKS.md "cacheload").

    PYTHONPATH=src python benchmarks/cache_load.py [--run 0] [--top 12]

Runs one of ``epcsim demo``'s runs (``--run``: an index of ``demo_phases.py --runs all``,
default 0, the seed run without direct reclaim: the first run of ``epcsim demo``'s parent
process) twice in this process. The first run pays the process's one-time costs, the second
does not; their difference is what each process (``epcsim demo``'s parent and each of its
workers, row 5's process) pays once. Within it, numba's part is measured by wrapping its
internals (timing only; numba 0.68): the time inside ``Dispatcher.compile`` per compiled
function (a load from the on-disk cache, or a compile when the cache lacks it), and of it
the target context's ``refresh`` (the first one: numba's lazy imports of its own
implementations and the runtime's compile, paid by the first function loaded; nested calls
count twice) and the unserializing and linking of the cached object code
(``unserialize_library``), all during the first run. ``compiles`` counts real
compiles (``numba:compile`` events): 0 when every function the run calls is cached. CPU
time (``time.process_time``); the imports of numba and of epcsim are given apart.
Warm the tree's cache first (``demo_phases.py --core True --runs 0,1``, then
``demo_phases.py --runs all``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from typing import Any

T = time.process_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, default=0, help="index of demo_phases.py's --runs all")
    ap.add_argument("--top", type=int, default=12, help="functions listed by load time")
    args = ap.parse_args()
    t0 = T()
    import numba  # noqa: F401

    t1 = T()
    from numba.core import base, dispatcher, event
    from numba.core.codegen import JITCPUCodegen

    per_fn: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    compiles: list[str] = []

    def timed(owner: Any, name: str, tag: str) -> None:
        orig = getattr(owner, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            s = T()
            try:
                return orig(*a, **k)
            finally:
                parts[tag] += T() - s

        setattr(owner, name, wrapper)

    orig_compile = dispatcher.Dispatcher.compile
    depth = [0]

    def compile_(self: Any, sig: Any) -> Any:
        s = T()
        depth[0] += 1
        try:
            return orig_compile(self, sig)
        finally:
            depth[0] -= 1
            if depth[0] == 0:  # nested compiles are the outer one's
                f = self.py_func
                per_fn[f"{f.__module__}.{f.__qualname__}"] += T() - s

    dispatcher.Dispatcher.compile = compile_
    timed(JITCPUCodegen, "unserialize_library", "unserialize_s")
    timed(base.BaseContext, "refresh", "refresh_s")

    class Compiles(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: Any) -> None:
            pass

        def on_end(self, ev: Any) -> None:
            f = getattr(ev.data["dispatcher"], "py_func", None)
            compiles.append(f"{f.__module__}.{f.__qualname__}" if f else "?")

    event.register("numba:compile", Compiles())
    t2 = T()
    from epcsim.cli import flip_configs
    from epcsim.demo import demo_configs, run_seed

    t3 = T()
    runs = demo_configs() + [cfg for *_, cfg in flip_configs("8M", 2.0, 0)]
    cfg = runs[args.run]
    a = T()
    s1 = run_seed(cfg).summary()
    b = T()
    in_numba = sum(per_fn.values())
    parts_first = dict(parts)
    s2 = run_seed(cfg).summary()
    c = T()
    assert s1 == s2, "the same run twice in one process gave different summaries"
    top = per_fn.most_common(args.top)
    out = {
        "run": args.run,
        "import_numba_s": round(t1 - t0, 3),
        "import_epcsim_s": round(t3 - t2, 3),
        "first_run_s": round(b - a, 3),
        "second_run_s": round(c - b, 3),
        "once_s": round((b - a) - (c - b), 3),
        "numba_s": round(in_numba, 3),
        "refresh_s": round(parts_first.get("refresh_s", 0.0), 3),
        "unserialize_s": round(parts_first.get("unserialize_s", 0.0), 3),
        "functions": len(per_fn),
        "compiles": len(compiles),
        "top": {k: round(v, 4) for k, v in top},
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
