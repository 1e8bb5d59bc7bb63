"""Row 1 over many processes, trees alternated: what a row-1 A/B needs (issue 9, session
``row1``, 2026-11-27).

    PYTHONPATH=benchmarks python benchmarks/row1_ab.py --rounds 8 main=/tmp/base/src \\
        new=/work/wt/x/src

Each round starts one process per tree (the order reversed every other round); a process
runs ``rows.fault_rate("fast+core")`` ``--calls`` times (7) and keeps its minimum and
median, host CPU (``time.process_time``). Before each call it times a fixed pure-Python
loop (``machine_ms``): how fast the machine ran the process then.

Why processes, and why the loop (session ``row1``, BENCHMARKS.md ``row1``): row 1's calls
are "bimodal" - a run of calls at ~1.1-1.25 us a fault, or at ~1.5-2.4. The slow mode is
the machine's, not the process's: it comes in phases of a few seconds (a process's first
two or three calls slow, then fast), and the pure-Python loop slows with it (correlation
0.73 over 36 calls at load ~8; the loop 6.1 against 4.8 ms median). No property of the
process separates them (its CPU, its collections - none in the timed call -, its first
call). So a figure is the median of per-process minima over many processes, alternated,
with the split printed: a process whose minimum is above ``SLOW`` times the best one's is
counted slow, and the loop's time says whether the machine was slow then.

The first call of a process (~2.7 us a fault: lazy loads, ~320 page faults) is in the
median, not in the minimum. Output: one JSON line a process (``--out``) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

#: a process is counted in the slow mode when its minimum exceeds the best minimum of the
#: run by this factor (the modes sit at ~1.1-1.25 and ~1.5-2.4 us a fault)
SLOW = 1.25


def _machine_ms() -> float:
    """A fixed pure-Python loop's host CPU, in ms (~4-5 ms on an idle core)."""
    t = time.process_time()
    x = 0
    for i in range(150_000):
        x += i & 7
    return (time.process_time() - t) * 1e3


def child(calls: int) -> None:
    """One process: ``calls`` row-1 calls, each after the machine loop; prints one JSON
    line."""
    import rows  # the sources PYTHONPATH names (the parent puts the tree's src first)

    us: list[float] = []
    mach: list[float] = []
    for _ in range(calls):
        mach.append(_machine_ms())
        us.append(rows.fault_rate("fast+core")["us_per_fault"])
    print(
        json.dumps(
            {
                "min": min(us),
                "med": statistics.median(us),
                "us": us,
                "machine_ms": mach,
                "src": os.path.dirname(rows.epcsim.__file__),
            }
        ),
        flush=True,
    )


def _load() -> float:
    return os.getloadavg()[0]


def process(src: str, calls: int = 7) -> dict:
    """One child process measuring the sources in ``src`` (``child``'s JSON line)."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(src), here]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--calls", str(calls)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    d: dict = json.loads(out.stdout.strip().splitlines()[-1])
    d["load"] = _load()
    return d


def summary(ps: list[dict], best: float | None = None) -> dict:
    """Per-process minima of ``ps``: median, range, the processes in the slow mode (a minimum
    above ``SLOW`` x ``best``, by default their own best), the machine loop's median."""
    mins = [d["min"] for d in ps]
    best = min(mins) if best is None else best
    return {
        "median": statistics.median(mins),
        "lo": min(mins),
        "hi": max(mins),
        "slow": sum(m > SLOW * best for m in mins),
        "n": len(mins),
        "median_of_medians": statistics.median(d["med"] for d in ps),
        "machine_ms": statistics.median(x for d in ps for x in d["machine_ms"]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", help="NAME=SRC_DIR, the first is the base")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--out", default=None, help="append each process's JSON line here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.calls)
        return
    trees = [t.split("=", 1) for t in a.trees]
    res: dict[str, list[dict]] = {name: [] for name, _ in trees}
    loads = [_load()]
    t0 = time.strftime("%H:%M:%S", time.gmtime())
    for r in range(a.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, src in order:
            d = process(src, a.calls)
            d.update(tree=name, round=r)
            res[name].append(d)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(d) + "\n")
        loads.append(_load())
    t1 = time.strftime("%H:%M:%S", time.gmtime())
    best = min(d["min"] for v in res.values() for d in v)
    base = trees[0][0]
    print(f"{a.rounds} rounds, {t0}-{t1} UTC, load {min(loads):.1f}-{max(loads):.1f}; "
          f"slow mode: a minimum above {SLOW} x the best ({best:.3f} us)")  # fmt: skip
    print("| tree | median (range) of per-process minima, us a fault | median of medians "
          "| slow processes | machine loop, ms (median) | paired vs base | lower in |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, _ in trees:
        v = res[name]
        s = summary(v, best)
        if name == base:
            paired, lower = "-", "-"
        else:
            ratios = [d["min"] / b["min"] for d, b in zip(v, res[base], strict=True)]
            paired = f"{statistics.median(ratios):.3f}"
            lower = f"{sum(x < 1 for x in ratios)}/{len(ratios)}"
        print(
            f"| {name} | {s['median']:.3f} ({s['lo']:.3f}-{s['hi']:.3f}) "
            f"| {s['median_of_medians']:.3f} | {s['slow']}/{s['n']} | {s['machine_ms']:.2f} "
            f"| {paired} | {lower} |"
        )


if __name__ == "__main__":
    main()
