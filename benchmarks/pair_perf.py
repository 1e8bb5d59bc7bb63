"""Where the host time of ``run_pair`` goes, function by function, with Linux ``perf`` (issue
9, PATHS.md "Per fault on the core"; session ``pcost``).

numba's compiled code has no symbols ``perf`` can see. This script keeps the object code
numba loads from its cache (it records what ``CodeLibrary._set_compiled_object`` is given:
not documented API), reads each object's symbols with ``nm`` and writes
``/tmp/perf-PID.map`` (the format ``perf report`` reads for JIT code), then records
``--runs`` ``run_pair`` calls of ``driver_pair.py``'s scenario with ``perf record`` and
prints the self time of each function (numba's inlined callees count in their caller).
The numba cache must be warm (run ``pair_profile.py`` once first): a function compiled in
this process has no cached object and shows as a bare address.

    PYTHONPATH=src .venv/bin/python benchmarks/pair_perf.py [--runs 8] [--freq 4000]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numba.core.codegen as codegen

_OBJECTS: dict[int, tuple[Any, bytes]] = {}
_set = codegen.CodeLibrary._set_compiled_object


def _keep(self: Any, value: bytes) -> None:
    _OBJECTS[id(self)] = (self, value)
    _set(self, value)


codegen.CodeLibrary._set_compiled_object = _keep  # before any cached function loads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src_tree import src_to_measure  # noqa: E402

sys.path.insert(0, src_to_measure())  # first: the sources to measure (src_tree.py)
from driver_pair import build, stream  # noqa: E402
from epcsim.fast.driver import thread_bridge as tb  # noqa: E402


def _perf_map(tmp: str) -> str:
    """``/tmp/perf-PID.map``: every function of every loaded object, at its address."""
    lines = []
    for k, (lib, obj) in enumerate(_OBJECTS.values()):
        path = os.path.join(tmp, f"o{k}.o")
        with open(path, "wb") as f:
            f.write(obj)
        out = subprocess.run(["nm", "-S", "--defined-only", path], capture_output=True, text=True)
        syms = []
        for ln in out.stdout.splitlines():
            f4 = ln.split()
            if len(f4) == 4 and f4[2] in "tTwW":
                syms.append((int(f4[0], 16), int(f4[1], 16), f4[3], f4[2]))
        base = None
        for off, _, name, kind in syms:  # the object's load address, from one global symbol
            if kind == "T":
                addr = lib._codegen._engine.get_function_address(name)
                if addr:
                    base = addr - off
                    break
        if base is not None:
            lines += [f"{base + off:x} {size:x} {name}" for off, size, name, _ in syms]
    path = f"/tmp/perf-{os.getpid()}.map"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _short(sym: str) -> str:
    """``module.function`` of a numba-mangled name (its length-prefixed components)."""
    if not sym.startswith("_ZN"):
        return sym[:60]
    i, parts = 3, []
    while i < len(sym) and sym[i].isdigit():
        j = i
        while sym[j].isdigit():
            j += 1
        n = int(sym[i:j])
        parts.append(sym[j : j + n])
        i = j + n
    return ".".join(parts[-2:])


def perf_self_time(work: Callable[[], None], freq: int = 4000) -> tuple[float, dict[str, float]]:
    """Run ``work()`` under ``perf record`` of this process (the JIT map written first: every
    compiled function ``work`` calls must be loaded already) and return its host CPU time
    and the self time of each function in percent (``module.function``; numba's inlined
    callees count in their caller). Used by ``row_profile.py --perf`` too."""
    with tempfile.TemporaryDirectory() as tmp:
        mapped = _perf_map(tmp)
        data = os.path.join(tmp, "perf.data")
        cmd = ["perf", "record", "-F", str(freq), "-o", data, "-p", str(os.getpid())]
        rec = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # perf attached
        t0 = time.process_time()
        work()
        cpu = time.process_time() - t0
        rec.send_signal(signal.SIGINT)
        rec.wait()
        rep = subprocess.run(
            ["perf", "report", "-i", data, "--no-children", "--sort", "sym", "--stdio"],
            capture_output=True, text=True,
        )  # fmt: skip
        os.unlink(mapped)
    self_pc: dict[str, float] = {}
    for ln in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(\S+)", ln)
        if m:
            name = _short(m.group(2))
            self_pc[name] = self_pc.get(name, 0.0) + float(m.group(1))
    return cpu, self_pc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--freq", type=int, default=4000)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    warm, wencl = build(1, "fast", "1M", 600, 2)
    tb.run_pair(warm, wencl._main_thread(), *stream(1, 600, 256, 500, 0.0))
    runs = []
    for _ in range(a.runs):
        system, encl = build(1, "fast", "4M", 3072, 2)
        runs.append((system, encl, stream(1, 3072, 1024, 20000, 0.0)))

    def work() -> None:
        for system, encl, (pages, writes) in runs:
            tb.run_pair(system, encl._main_thread(), pages, writes)

    cpu, self_pc = perf_self_time(work, a.freq)
    print(f"{a.runs} run_pair calls, {cpu:.2f} s CPU; self time by function:")
    for name, pc in sorted(self_pc.items(), key=lambda x: -x[1])[: a.top]:
        print(f"  {pc:6.2f}%  {name}")


if __name__ == "__main__":
    main()
