"""The report of ``epcsim run`` and ``epcsim replay``: one self-contained ``report.html``.

It answers, in order: did the run pass its checks; how fast did it go and how much did it
page (derived figures); how EPC was used over time, overall and per enclave; when faults
and write-backs happened; how the EDMM operations progressed (each -EAGAIN is a visible
restart); how long faults took (simulated); then the raw counters and the exact
configuration, with the cost figures that are assumptions marked as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np

from epcsim.engine.costs import Costs
from epcsim.report.html import Report

_MS = 1e6


def _ms(t) -> np.ndarray:
    return np.asarray(t, dtype=np.float64) / _MS


def _epc_figure(res) -> Any:
    t, v = res.free_timeline
    total = res.stats["epc_pages_total"]
    t = [*list(t), res.build_ns + res.run_ns]
    v = [*list(v), v[-1] if v else total]
    free = np.asarray(v)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.step(_ms(t), free, where="post", label="free", linewidth=1)
    ax.step(_ms(t), total - free, where="post", label="used", linewidth=1)
    ax.axhline(total, color="grey", linestyle="--", linewidth=0.8, label="EPC pages")
    ax.axvline(
        res.build_ns / _MS, color="black", linestyle=":", linewidth=0.8, label="threads start"
    )
    ax.set_ylim(0, total * 1.05)  # a count of pages: the axis never shows values below 0
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("EPC pages")
    ax.legend(loc="center right", fontsize=8)
    return fig


def _residency_figure(samples) -> Any:
    fig, ax = plt.subplots(figsize=(9, 3.4))
    t = _ms(samples["t"])
    for i, (name, res) in enumerate(samples["resident"].items()):
        color = f"C{i % 10}"
        ax.step(t, res, where="post", color=color, label=f"{name} resident", linewidth=1.2)
        ax.step(
            t,
            samples["swapped"][name],
            where="post",
            color=color,
            linestyle="--",
            label=f"{name} in backing",
            linewidth=0.9,
        )
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("pages")
    ax.legend(fontsize=8, loc="best")
    return fig


def _rates_figure(samples, intervals: int = 200) -> Any:
    """Rates over at most ``intervals`` equal slices of the samples (readable, not noisy)."""
    t = samples["t"]
    idx = np.unique(np.linspace(0, t.size - 1, min(t.size, intervals + 1)).astype(int))
    t = t[idx]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if t.size >= 2:
        dt = np.diff(t) / _MS
        dt[dt == 0] = np.nan
        for i, (key, label) in enumerate(
            (
                ("page_faults", "page faults"),
                ("ewb", "pages written back (ewb)"),
                ("eldu", "pages loaded back (eldu)"),
                ("eaug", "pages added by EAUG"),
            )
        ):
            c = samples["counters"][key][idx]
            if c[-1] == c[0]:
                continue
            # a fixed colour per counter, whichever others are drawn
            ax.step(
                _ms(t[1:]), np.diff(c) / dt, where="pre", label=label, linewidth=1, color=f"C{i}"
            )
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("events per ms (per sample interval)")
    ax.legend(fontsize=8)
    return fig


def _ops_figure(ops) -> Any:
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for i, op in enumerate(ops):
        if not op.progress:
            continue
        tt = [op.start_ns] + [p[0] for p in op.progress]
        pp = [0] + [p[1] for p in op.progress]
        label = f"{op.enclave}/{op.thread}: {op.kind} @{op.first_page}"
        if op.eagain:
            label += f" ({op.eagain} -EAGAIN)"
        ax.plot(_ms(tt), pp, drawstyle="steps-post", linewidth=1.1, label=label if i < 12 else None)
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("pages done")
    ax.legend(fontsize=7, loc="best")
    return fig


def _latency_figure(lat: np.ndarray) -> Any:
    us = lat.astype(np.float64) / 1e3
    us = us[us > 0]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    bins = np.logspace(np.log10(us.min()), np.log10(max(us.max(), us.min() * 1.01)), 50)
    ax.hist(us, bins=bins.tolist(), color="C0")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    for q, style in ((50, "--"), (99, ":")):
        v = np.percentile(us, q)
        ax.axvline(v, color="black", linestyle=style, linewidth=0.9, label=f"p{q} = {v:,.1f} µs")
    ax.set_xlabel("fault latency, #PF to return to user (simulated µs, log scale)")
    ax.set_ylabel("faults")
    ax.legend(fontsize=8)
    return fig


def _derived_rows(d: dict[str, Any]) -> list[list[Any]]:
    names = {
        "build_ns": "build time (ms)",
        "run_ns": "run time (ms)",
        "baseline_run_ns": "run time with the footprint resident (ms)",
        "slowdown": "slowdown vs all-resident",
        "accesses": "accesses",
        "faults_in_run": "page faults",
        "eldu_in_run": "pages loaded back (eldu)",
        "ewb_in_run": "pages written back (ewb)",
        "fault_rate": "page faults per access",
        "eldu_per_access": "ELDU per access",
        "accesses_per_ms": "accesses per simulated ms",
        "fault_latency_p50_ns": "fault latency p50 (µs)",
        "fault_latency_p99_ns": "fault latency p99 (µs)",
        "footprint_pages": "footprint (pages, incl. SECS and TCS)",
    }
    rows = []
    for k, label in names.items():
        v = d.get(k)
        if k.endswith("_ns") and v is not None:
            v = v / (1e3 if "latency" in k else _MS)
        rows.append([label, v])
    return rows


def write_run_report(res, out_dir: Path, title: str | None = None) -> Path:
    """Write ``out_dir/report.html`` for a ``RunResult`` and return its path."""
    plan = res.plan
    rep = Report(title or f"epcsim — {plan.title}")
    if plan.description:
        rep.paragraph(plan.description)
    epc = res.stats["epc_pages_total"]
    rep.paragraph(
        f"EPC {epc:,} pages ({epc * 4096 / 2**20:,.1f} MiB); footprint {plan.footprint_pages:,}"
        f" pages ({plan.footprint_pages / max(epc, 1):.2f}x the EPC);"
        f" {len(plan.enclaves)} enclave(s), {len(res.threads)} thread(s); seed {plan.seed}."
    )
    rep.heading("Outcome")
    if res.ok:
        rep.paragraph(
            "All checks passed." + (" The run was cut by its duration." if res.truncated else "")
        )
    else:
        rep.table(["failed check"], [[f] for f in res.failures])
    rep.table(["figure", "value"], _derived_rows(res.derived))

    rep.heading("EPC over time")
    rep.figure(_epc_figure(res), "Free and used EPC pages over simulated time (build, then run)")
    if res.samples is not None and res.samples["t"].size:
        rep.figure(
            _residency_figure(res.samples),
            "Per-enclave pages resident in the EPC (solid) and in backing (dashed)",
        )
        rep.heading("Paging activity")
        rep.figure(
            _rates_figure(res.samples),
            "Page faults, EWB, ELDU and EAUG per simulated ms, per sample interval",
        )
    rep.heading("EDMM operations")
    if res.ops:
        rep.figure(
            _ops_figure(res.ops),
            "Progress of each page-range operation (a flat step is a -EAGAIN restart)",
        )
        rep.table(
            [
                "thread",
                "operation",
                "first page",
                "pages",
                "done",
                "calls",
                "-EAGAIN",
                "-EBUSY",
                "EACCEPT failures",
                "error",
                "time (ms)",
            ],
            [
                [
                    f"{o.enclave}/{o.thread}",
                    o.kind,
                    o.first_page,
                    o.pages,
                    o.pages_done,
                    o.calls,
                    o.eagain,
                    o.ebusy,
                    o.failures,
                    o.errno,
                    (o.end_ns - o.start_ns) / _MS,
                ]
                for o in res.ops
            ],
        )
    else:
        rep.paragraph("This workload runs no EDMM operations.", "note")
    rep.heading("Fault latency (simulated)")
    if res.fault_latency_ns.size:
        rep.figure(
            _latency_figure(res.fault_latency_ns),
            "Distribution of simulated fault latencies during the run",
        )
    else:
        rep.paragraph("No page faults during the run.", "note")
    rep.heading("Threads")
    rep.table(
        ["enclave", "thread", "accesses", "steps done", "finished", "time (ms)", "stopped by"],
        [
            [
                t.enclave,
                t.name,
                t.accesses,
                t.steps_done,
                t.finished,
                ((t.end_ns if t.end_ns is not None else res.build_ns + res.run_ns) - t.start_ns)
                / _MS,
                t.error,
            ]
            for t in res.threads
        ],
    )
    rep.heading("Counters")
    stats = {k: v for k, v in res.stats.items() if k != "enclaves"}
    rep.table(
        ["counter", "whole simulation", "run phase"],
        [[k, v, res.run_stats.get(k)] for k, v in stats.items()],
    )
    encls = res.stats.get("enclaves", {})
    if encls:
        cols = ["resident_pages", "swapped_pages", "va_pages", "secs_resident", "sigbus"]
        rep.table(["enclave", *cols], [[n, *[e.get(c) for c in cols]] for n, e in encls.items()])
    rep.heading("Configuration used")
    rep.code(res.machine_config)
    if plan.source:
        rep.paragraph("Scenario file:")
        rep.code(plan.source)
    else:
        rep.code(plan.config)
    assumed = Costs.from_dict(plan.costs or None).assumed()
    rep.paragraph(
        "Cost figures without a published per-leaf measurement are assumptions of this model "
        "(spec/costs.md): " + ", ".join(f"{k} = {v:,} ns" for k, v in assumed.items()),
        "note",
    )
    return rep.write(Path(out_dir) / "report.html")
