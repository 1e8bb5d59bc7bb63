"""Where the machines' cold compile goes: numba's passes per function, LLVM per library
(issue 9, session ``ccomp``, 2026-11-27).

    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=src:benchmarks python benchmarks/compile_passes.py

Runs ``cold_compile.py`` (the first ``fast_core=True`` stream, which compiles the machines;
an empty cache, as CI's fresh clone has) and prints the host CPU (``time.process_time``)
of:

* each numba compiler pass, summed over every function, and per function its own time
  (a callee's compile, nested in its caller's type inference, is the callee's; the untyped
  passes numba runs on an ``inline="always"`` callee at each call site are the callee's,
  the caller's ``inline_inlinables`` is what the inlining costs the caller);
* per code library (one per compiled function and signature) the LLVM work inside
  ``native_lowering``: the module's optimization after numba links every callee's library
  into it (numba's ``CPUCodeLibrary.finalize``: a caller's module holds its callees' code,
  transitively, optimized again and compiled to machine code again) and the machine code.

Measurement only: numba's documented event API (``numba:run_pass``) and a wrapper around
three methods of numba's ``CPUCodeLibrary`` (not documented API: if a numba release renames
them, the LLVM table is empty and the rest still holds). ``--top N`` rows per table.
"""

from __future__ import annotations

import argparse
import collections
import os
import runpy
import time
from typing import Any


def _passes() -> dict[tuple[str, str], float]:
    """Self CPU per (function, pass), from numba's ``numba:run_pass`` events."""
    from numba.core import event

    stack: list[list[float]] = []
    agg: dict[tuple[str, str], float] = collections.defaultdict(float)

    class Listener(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: Any) -> None:
            stack.append([time.process_time(), 0.0])

        def on_end(self, ev: Any) -> None:
            c0, children = stack.pop()
            dt = time.process_time() - c0
            if stack:
                stack[-1][1] += dt
            d = ev.data
            agg[(f"{d['module']}.{d['qualname']}", d["name"].split(" [")[0])] += dt - children

    event.register("numba:run_pass", Listener())
    return agg


def _llvm() -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """CPU per code library in its module's optimization and machine code, and how many
    functions its final module defines (its own and its callees')."""
    from numba.core import codegen

    lib = codegen.CPUCodeLibrary
    agg: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: collections.defaultdict(float)
    )
    nfuncs: dict[str, int] = {}
    for name in ("_optimize_final_module", "_finalize_final_module"):
        orig = getattr(lib, name, None)
        if orig is None:
            continue

        def wrapped(self: Any, *a: Any, _orig: Any = orig, _name: str = name, **k: Any) -> Any:
            if _name == "_finalize_final_module":
                nfuncs[self.name] = sum(
                    1 for f in self._final_module.functions if not f.is_declaration
                )
            t = time.process_time()
            try:
                return _orig(self, *a, **k)
            finally:
                agg[self.name][_name] += time.process_time() - t

        setattr(lib, name, wrapped)
    return agg, nfuncs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    passes = _passes()
    llvm, nfuncs = _llvm()
    c0 = time.process_time()
    here = os.path.dirname(os.path.abspath(__file__))
    runpy.run_path(os.path.join(here, "cold_compile.py"), run_name="__main__")
    total = time.process_time() - c0
    by_pass: dict[str, float] = collections.defaultdict(float)
    by_fn: dict[str, float] = collections.defaultdict(float)
    for (fn, p), v in passes.items():
        by_pass[p] += v
        by_fn[fn] += v
    print(f"process CPU from the first stream on: {total:.1f} s; in numba's passes "
          f"{sum(passes.values()):.1f} s")  # fmt: skip
    print(
        "by pass: "
        + ", ".join(f"{p} {v:.1f}" for p, v in sorted(by_pass.items(), key=lambda kv: -kv[1])[:8])
    )
    print("\nby function (own CPU in its passes; the four largest passes):")
    for fn, v in sorted(by_fn.items(), key=lambda kv: -kv[1])[: a.top]:
        top = sorted(((x, p) for (f, p), x in passes.items() if f == fn), reverse=True)[:4]
        print(f"{v:7.2f}  {fn}  " + ", ".join(f"{p} {x:.1f}" for x, p in top))
    if llvm:
        opt = sum(d["_optimize_final_module"] for d in llvm.values())
        mc = sum(d["_finalize_final_module"] for d in llvm.values())
        print(f"\nLLVM per library: module optimization {opt:.1f} s, machine code {mc:.1f} s; "
              "functions its module defines (its callees' too):")  # fmt: skip
        rows = sorted(llvm.items(), key=lambda kv: -sum(kv[1].values()))
        for name, d in rows[: a.top]:
            o, m = d["_optimize_final_module"], d["_finalize_final_module"]
            print(f"{o + m:7.2f}  opt {o:5.2f}  mc {m:5.2f}  {nfuncs.get(name, 0):4d}  {name[:80]}")


if __name__ == "__main__":
    main()
