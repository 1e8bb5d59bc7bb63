"""The ``epcsim demo`` report: the answer first, then the configuration, the plots and where
the race flips.

Every sentence that states a finding is generated from the runs' own numbers (``findings``):
change the model or its costs and the text changes with it. The CLI prints the same findings
under its table, and the README quotes them from a run of the default demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from epcsim.arch import SGX_NR_HIGH_PAGES, SGX_NR_LOW_PAGES, SGX_NR_TO_SCAN
from epcsim.demo import MAX_STALLED_CALLS
from epcsim.engine.costs import ASSUMED
from epcsim.report.html import Report
from epcsim.seed_run import BEING_RECLAIMED, NO_FREE_PAGE, SeedRun

#: one colour per run, in ``demo_configs`` order, used by every plot: the faithful default's
#: pair in strong red/blue, the FIFO comparison's pair in the light shades of the same hues
RUN_COLOURS = ("#c0392b", "#1f5fa8", "#f1948a", "#85b6e6", "#7d3c98", "#138d75")

STOP_TEXT = {
    NO_FREE_PAGE: "free pool empty",
    BEING_RECLAIMED: "page BEING_RECLAIMED",
    None: "did not stop",
}

TABLE_COLUMNS = [
    ("run", lambda s: s["label"]),
    ("heap pages", lambda s: s["length_pages"]),
    ("free EPC pages at 1st call", lambda s: s["free_pages_at_first_call"]),
    ("pages done by 1st call", lambda s: s["first_call_count_pages"]),
    ("1st call errno", lambda s: s["first_call_errno"] or "ok"),
    ("1st call stopped by", lambda s: STOP_TEXT.get(s["first_call_stop"], "other")),
    ("-EAGAIN returns", lambda s: s["eagain_returns"]),
    ("  on a BEING_RECLAIMED page", lambda s: s["eagain_being_reclaimed"]),
    ("ioctl calls (MODIFY_TYPES + REMOVE_PAGES)", lambda s: s["calls_to_complete"]),
    ("simulated time (ms)", lambda s: s["simulated_ns"] / 1e6),
    ("ewb (pages written back)", lambda s: s["ewb"]),
    ("ewb_attempts (EWB leaves incl. retries)", lambda s: s["ewb_attempts"]),
    ("eldu (ELDU leaves)", lambda s: s["eldu"]),
    ("ksgxd_wakeups", lambda s: s["ksgxd_wakeups"]),
    ("ksgxd_pages_reclaimed", lambda s: s["ksgxd_pages_reclaimed"]),
    ("direct_reclaim_calls (sgx_reclaim_direct batches)", lambda s: s["direct_reclaim_calls"]),
]


def table_rows(runs: list[SeedRun]) -> tuple[list[str], list[list[Any]]]:
    """One row per run (the first cell is the run's label); the CLI transposes it."""
    header = [c for c, _ in TABLE_COLUMNS]
    rows = [[f(r.summary()) for _, f in TABLE_COLUMNS] for r in runs]
    return header, rows


def colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


# -- findings: text computed from the runs ----------------------------------------------------
def _pairs(runs: list[SeedRun]) -> list[tuple[SeedRun | None, SeedRun | None]]:
    """(without, with) direct reclaim for each mutex/scheduler variant, in run order."""
    out: dict[tuple[str, str], list[SeedRun | None]] = {}
    for r in runs:
        pair = out.setdefault((r.mutex, r.sched), [None, None])
        pair[1 if r.config.direct_reclaim else 0] = r
    return [(p[0], p[1]) for p in out.values()]


def _first_call_sentence(r: SeedRun) -> str:
    s = r.summary()
    n, length = s["first_call_count_pages"], s["length_pages"]
    m = s["free_pages_at_first_call"]
    k_ks, k_dr = s["first_call_ksgxd_reclaimed"], s["first_call_direct_reclaimed"]
    left = s["free_pages_at_first_stop"]
    eldu = s["first_call_eldu"]
    freed = f"ksgxd reclaimed {k_ks:,} more while it ran" + (
        f" and direct reclaim {k_dr:,}" if k_dr else ""
    )
    if s["first_call_stop"] is None:
        return (
            f"The first MODIFY_TYPES call covered all {length:,} pages (count = length): it "
            f"started with {m:,} free EPC pages, {freed}, and its {eldu:,} ELDUs never found "
            f"the free pool empty ({left:,} pages free at its end)."
        )
    head = (
        f"The first MODIFY_TYPES call stopped with -EAGAIN after {n:,} of {length:,} pages. "
        f"It started with {m:,} free EPC pages and {freed}; its {eldu:,} ELDUs used "
        f"{m:,} + {k_ks + k_dr:,} - {left:,} = {m + k_ks + k_dr - left:,} of them."
    )
    if s["first_call_stop"] == NO_FREE_PAGE:
        return head + (
            f" At page {n + 1:,} the free pool was empty: the ELDU's "
            "sgx_alloc_epc_page(reclaim=false) returned -EBUSY, which the ioctl reports as "
            "-EAGAIN."
        )
    if s["first_call_stop"] == BEING_RECLAIMED:
        return head + (
            f" Page {n + 1:,} was isolated by a reclaimer and marked BEING_RECLAIMED, so "
            f"__sgx_encl_load_page() returned -EBUSY (-EAGAIN to user space) although "
            f"{left:,} EPC pages were free."
        )
    return head


def _variant(r: SeedRun) -> str:
    return f"{r.mutex} mutex, {r.sched} scheduler"


def findings(runs: list[SeedRun]) -> list[str]:
    """The report's answer, one paragraph per finding, computed from the runs."""
    out: list[str] = []
    pairs = _pairs(runs)
    if not pairs:
        return out
    for i, (no, dr) in enumerate(pairs):
        ref = no or dr
        assert ref is not None
        prefix = "" if i == 0 else f"Comparison ({_variant(ref)}): "
        if i == 0:
            dt = (ref.at_first_call.t_ns - ref.phases.get("probe", ref.build_ns)) / 1e3
            out.append(
                f"Configuration of record: {_variant(ref)}, {ref.config.cpus} CPUs, a heap of "
                f"{ref.length_pages:,} pages ({ref.config.heap_factor:g}x the EPC). The "
                f"selftest's steps between EINIT and the trim (the SGX2 probe and two enclave "
                f"calls) took {dt:,.0f} µs; the trim started with "
                f"{ref.at_first_call.free_pages:,} free EPC pages and ksgxd "
                + ("asleep." if ref.at_first_call.ksgxd_asleep else "still reclaiming.")
            )
        if no is not None:
            s = no.summary()
            if s["gave_up"]:
                tail = (
                    f" The runtime's retry loop gave up after {s['modify_calls']:,} "
                    f"MODIFY_TYPES calls with {no.modify.pages_done:,} of "
                    f"{s['length_pages']:,} pages done in {s['trim_ns'] / 1e6:,.0f} ms"
                    + (
                        f", the last {MAX_STALLED_CALLS:,} without progress"
                        if s["modify_calls"] < 10 * s["length_pages"] + 100
                        else " (its bound of 10 calls per page)"
                    )
                    + ": a livelock "
                    f"({s['eagain_no_free_page']:,} of the {s['eagain_returns']:,} "
                    "-EAGAIN returns found the free pool empty, "
                    f"{s['eagain_being_reclaimed']:,} a page BEING_RECLAIMED)."
                )
            else:
                tail = (
                    f" The runtime's retry loop needed {s['modify_calls']:,} MODIFY_TYPES "
                    f"calls ({s['eagain_returns']:,} -EAGAIN returns in all) and "
                    f"{s['trim_ns'] / 1e6:,.0f} ms to trim the range."
                )
            out.append(prefix + "Without direct reclaim: " + _first_call_sentence(no) + tail)
        if dr is not None:
            s = dr.summary()
            text = (
                prefix + "With direct reclaim: sgx_reclaim_direct() runs one reclaim batch "
                f"(up to {SGX_NR_TO_SCAN} pages) in the ioctl's own context, before it takes "
                f"encl->lock, whenever fewer than {SGX_NR_LOW_PAGES} pages are free. It ran "
                f"{s['direct_reclaim_calls']:,} batches here. " + _first_call_sentence(dr)
            )
            if s["eagain_returns"]:
                text += (
                    f" It still returned -EAGAIN {s['eagain_returns']:,} times: "
                    f"{s['eagain_being_reclaimed']:,} on a page a reclaimer held "
                    f"BEING_RECLAIMED, {s['eagain_no_free_page']:,} with no free page."
                )
            elif dr.remove is not None or s["trim_completed"]:
                text += (
                    " No -EAGAIN at all: direct reclaim keeps a page free for every ELDU, "
                    "and the pages the reclaimers hold BEING_RECLAIMED (the LRU head) started "
                    f"{s['evicted_ahead_at_first_call']:,} pages ahead of the ioctl, so it "
                    "never reached one before its write-back was done. (Real v6.0 hardware "
                    "still saw -EAGAIN; the model gives it when the range starts at the LRU "
                    "head while ksgxd reclaims: tests/test_demo.py.)"
                )
            out.append(text)
        if no is not None and dr is not None and no.summary()["gave_up"]:
            b = dr.summary()
            out.append(
                prefix + "What direct reclaim changes: the trim finishes. Without it the "
                "runtime gave up in a livelock; with it "
                + (
                    f"one call covered all {b['length_pages']:,} pages"
                    if b["first_call_stop"] is None
                    else f"{b['modify_calls']:,} calls covered the range"
                )
                + f" in {b['trim_ns'] / 1e6:,.0f} ms."
            )
        elif no is not None and dr is not None:
            a, b = no.summary(), dr.summary()
            whole = no.remove is not None and dr.remove is not None
            key, what = ("simulated_ns", "whole run") if whole else ("trim_ns", "trim")
            t1, t2 = a[key] / 1e6, b[key] / 1e6
            out.append(
                prefix + "What direct reclaim changes: "
                f"{a['eagain_returns'] - b['eagain_returns']:,} fewer -EAGAIN returns "
                f"({a['eagain_returns']:,} → {b['eagain_returns']:,}), "
                f"{a['calls_to_complete'] - b['calls_to_complete']:,} fewer ioctl calls, and "
                f"a first-call count of {b['first_call_count_pages']:,} pages instead of "
                f"{a['first_call_count_pages']:,}. The {what}'s simulated time goes from "
                f"{t1:,.0f} ms to {t2:,.0f} ms ({(t2 - t1) / t1:+.1%}); pages written back: "
                f"{a['ewb']:,} without, {b['ewb']:,} with"
                + (
                    " (direct reclaim moves that work into the ioctl's context rather than "
                    "removing it)."
                    if abs(a["ewb"] - b["ewb"]) <= 0.05 * max(a["ewb"], 1)
                    else "."
                )
            )
    return out


# -- the flip sweep ----------------------------------------------------------------------------
def flip_findings(flips: list[dict]) -> list[str]:
    """One sentence per layout: where the first call completes, from the sweep's cells."""
    out = []
    for layout in dict.fromkeys(f["layout"] for f in flips):
        cells = [f for f in flips if f["layout"] == layout]
        done = [f for f in cells if f["complete"]]
        if not done:
            best = max(cells, key=lambda f: f["first_call_pages"])
            out.append(
                f"Victims from the {layout}: the first call completed in none of the "
                f"{len(cells)} cells; the most it did was {best['first_call_pages']:,} of "
                f"{best['length_pages']:,} pages ({best['cpus']} CPUs, EWB/ELDU = "
                f"{best['ratio']:g})."
            )
            continue
        per_cpu = []
        for c in sorted({f["cpus"] for f in cells}):
            ok = sorted(f["ratio"] for f in done if f["cpus"] == c)
            fail = sorted(f["ratio"] for f in cells if f["cpus"] == c and not f["complete"])
            if not ok:
                per_cpu.append(f"{c} CPU(s): never")
            elif not fail:
                per_cpu.append(f"{c} CPU(s): at every ratio")
            else:
                per_cpu.append(
                    f"{c} CPU(s): up to EWB/ELDU = {max(ok):g}, failing from {min(fail):g}"
                    if max(ok) < min(fail)
                    else f"{c} CPU(s): at ratios {', '.join(f'{x:g}' for x in ok)}"
                )
        out.append(
            f"Victims from the {layout}: the first call completed in {len(done)} of "
            f"{len(cells)} cells - " + "; ".join(per_cpu) + "."
        )
    return out


def write_flip_section(rep: Report, flips: list[dict]) -> None:
    rep.heading("Where does the race flip?")
    f0 = flips[0]
    rep.paragraph(
        "Without direct reclaim, does the first MODIFY_TYPES call cover the whole range? Rows "
        "are CPU counts, columns the EWB cost relative to ELDU. A cell shows the pages the "
        f"first call completed, or 'all'. Mutex {f0.get('mutex', '?')}, scheduler "
        f"{f0.get('sched', '?')}."
    )
    for layout in dict.fromkeys(f["layout"] for f in flips):
        cells = [f for f in flips if f["layout"] == layout]
        ratios = sorted({f["ratio"] for f in cells})
        cpus = sorted({f["cpus"] for f in cells})
        at = {(f["cpus"], f["ratio"]): f for f in cells}
        rows = []
        for c in cpus:
            row: list[Any] = [c]
            for ra in ratios:
                f = at.get((c, ra))
                row.append(
                    None if f is None else "all" if f["complete"] else f"{f['first_call_pages']:,}"
                )
            rows.append(row)
        c0 = cells[0]
        rep.paragraph(
            f"Victims from the {layout}: EPC {c0['epc']}, heap {c0['heap_factor']:g}x "
            f"EPC ({c0['length_pages']:,} pages), neighbour "
            f"{c0['neighbour_factor']:g}x EPC."
        )
        rep.table(["CPUs"] + [f"EWB/ELDU = {r:g}" for r in ratios], rows)
    for text in flip_findings(flips):
        rep.paragraph(text)


# -- plots -----------------------------------------------------------------------------------
def _envelope(t: list[int], v: list[int], buckets: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """A step series thinned for drawing: per time bucket the minimum and the maximum, so a
    dense trace keeps its extremes (a dip to 0 stays visible) at a bounded point count."""
    ta = np.asarray(t, dtype=np.float64)
    va = np.asarray(v, dtype=np.float64)
    if ta.size <= 2 * buckets:
        return ta, va
    edges = np.linspace(ta[0], ta[-1], buckets + 1)
    idx = np.clip(np.searchsorted(edges, ta, side="right") - 1, 0, buckets - 1)
    order = np.lexsort((va, idx))
    first = np.r_[0, np.flatnonzero(np.diff(idx[order])) + 1]
    last = np.r_[first[1:] - 1, order.size - 1]
    lo, hi = order[first], order[last]
    tt = np.repeat(edges[idx[lo]], 2)
    tt[1::2] = edges[np.minimum(idx[lo] + 1, buckets)] - 1e-9
    vv = np.empty(tt.size)
    vv[0::2], vv[1::2] = va[lo], va[hi]
    return tt, vv


def _phase_lines(ax, r: SeedRun) -> None:
    for name in ("modify_types", "eaccept", "remove_pages"):
        if name in r.phases:
            ax.axvline(r.phases[name] / 1e6, color="#888", linewidth=0.6, linestyle=":")


def plot_free_epc(rep: Report, runs: list[SeedRun]) -> None:
    """One panel per run, same axes: no trace can hide another, and the y axis starts at 0."""
    n = len(runs)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.5 + 1.35 * n), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    top = max(max(r.free_timeline[1]) for r in runs)
    for i, (ax, r) in enumerate(zip(axes, runs, strict=True)):
        t, v = _envelope(*r.free_timeline)
        ax.step(t / 1e6, v, where="post", color=colour(i), linewidth=0.8)
        ax.axhline(SGX_NR_LOW_PAGES, color="grey", linestyle=":", linewidth=0.8)
        ax.axhline(SGX_NR_HIGH_PAGES, color="grey", linestyle="--", linewidth=0.8)
        _phase_lines(ax, r)
        ax.set_yscale("symlog", linthresh=100)
        ax.set_ylim(0, top * 1.5)
        ax.text(0.99, 0.85, r.label, transform=ax.transAxes, ha="right", fontsize=8)
        ax.set_ylabel("free pages", fontsize=8)
    axes[-1].set_xlabel("simulated time (ms)")
    rep.figure(
        fig,
        "Free EPC pages over simulated time, one panel per run (symlog axis from 0; "
        f"dotted/dashed lines: SGX_NR_LOW_PAGES = {SGX_NR_LOW_PAGES}, SGX_NR_HIGH_PAGES = "
        f"{SGX_NR_HIGH_PAGES}; vertical dotted lines: start of MODIFY_TYPES, EACCEPT, "
        "REMOVE_PAGES)",
    )


def plot_progress(rep: Report, runs: list[SeedRun]) -> None:
    fig, ax = plt.subplots(figsize=(9, 3.8))
    # densest first, so the sparse traces are drawn on top of it
    order = sorted(range(len(runs)), key=lambda i: -len(runs[i].modify.progress))
    for z, i in enumerate(order):
        r = runs[i]
        for name, op, style in (("MODIFY_TYPES", r.modify, "-"), ("REMOVE_PAGES", r.remove, "--")):
            if op is not None and op.progress:
                ax.plot(
                    [t / 1e6 for t, _ in op.progress],
                    [p for _, p in op.progress],
                    style,
                    color=colour(i),
                    label=f"{name}, {r.label}",
                    linewidth=2.2 - 0.4 * z,
                    zorder=z,
                )
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("pages done")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    rep.figure(fig, "Progress of the page-range operations (each -EAGAIN is a flat step)")


def plot_eagain(rep: Report, runs: list[SeedRun]) -> None:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for i, r in enumerate(runs):
        times = sorted(r.modify.eagain_at + (r.remove.eagain_at if r.remove else []))
        t = np.r_[0.0, np.asarray(times, dtype=np.float64) / 1e6, r.phases.get("end", 0) / 1e6]
        y = np.r_[0, np.arange(1, len(times) + 1), len(times)]
        ax.step(
            t,
            y,
            where="post",
            color=colour(i),
            linewidth=1.4,
            label=f"{r.label}: {len(times):,} -EAGAIN returns",
        )
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("-EAGAIN returns (cumulative)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    rep.figure(fig, "Every -EAGAIN the runtime's retry loop saw")


# -- configuration ---------------------------------------------------------------------------
def write_configuration(rep: Report, runs: list[SeedRun]) -> None:
    rep.heading("Configuration")
    r0 = runs[0]
    cfg = r0.system_config
    epc_pages = cfg["epc_bytes"] // 4096
    rows: list[list[Any]] = [
        ["EPC", f"{epc_pages:,} pages ({cfg['epc_bytes'] / 2**20:.1f} MiB)"],
        ["heap", f"{r0.length_pages:,} pages ({r0.config.heap_factor:g}x the EPC)"],
        ["image", "2 TCS + 2 code + 2 data pages (encl_buffer), measured"],
        ["CPUs", ", ".join(sorted({str(r.config.cpus) for r in runs}))],
        ["seed", ", ".join(sorted({str(r.config.seed) for r in runs}))],
        ["mutex (encl->lock)", ", ".join(dict.fromkeys(r.mutex for r in runs))],
        ["scheduler", ", ".join(dict.fromkeys(r.sched for r in runs))],
        ["direct reclaim", ", ".join(dict.fromkeys(str(r.config.direct_reclaim) for r in runs))],
        ["reclaim policy", cfg.get("policy", "lru")],
        ["content mode", cfg.get("content_mode", "")],
        [
            "watermarks",
            f"SGX_NR_LOW_PAGES {SGX_NR_LOW_PAGES}, SGX_NR_HIGH_PAGES {SGX_NR_HIGH_PAGES}, "
            f"batch SGX_NR_TO_SCAN {SGX_NR_TO_SCAN}",
        ],
    ]
    rep.table(["setting", "value"], rows)
    rep.paragraph(
        "Costs: simulated time per step. 'assumed' marks a figure with no public per-leaf "
        "measurement (the model's assumption); the others come from the sources cited in "
        "epcsim.engine.costs and spec/costs.md."
    )
    crow = []
    for name, val in cfg["costs"].items():
        if name == "clock_ghz":
            crow.append([name, f"{val:g} GHz", "", ""])
            continue
        crow.append(
            [name, f"{val:,} ns", f"{val / 1e3:g} µs", "assumed" if name in ASSUMED else "cited"]
        )
    rep.table(["cost", "ns", "µs", "source"], crow)


# -- the report ------------------------------------------------------------------------------
def write_demo_report(runs: list[SeedRun], flips: list[dict] | None, out_dir: Path) -> Path:
    rep = Report("epcsim demo — EDMM page removal on an oversubscribed EPC")
    rep.heading("The answer")
    for text in findings(runs):
        rep.paragraph(text)
    if flips:
        for text in flip_findings(flips):
            rep.paragraph(text)
    rep.paragraph(
        "The scenario follows the kernel's page-removal stress test "
        "(unclobbered_vdso_oversubscribed_remove): build an enclave whose heap is "
        f"{runs[0].config.heap_factor:g}x the EPC, EINIT, the SGX2 probe ioctl, "
        "PUT_TO_BUFFER and GET_FROM_BUFFER, then SGX_IOC_ENCLAVE_MODIFY_TYPES(TRIM) over the "
        "heap, one enclave entry per page for EACCEPT, and SGX_IOC_ENCLAVE_REMOVE_PAGES. The "
        "runtime retries from offset + count after -EAGAIN (the Sep 2022 selftest patch).",
        cls="note",
    )
    rep.heading("Outcome")
    header, rows = table_rows(runs)
    rep.table(header, rows)
    plot_free_epc(rep, runs)
    plot_progress(rep, runs)
    plot_eagain(rep, runs)
    if flips:
        write_flip_section(rep, flips)
    write_configuration(rep, runs)
    rep.heading("All counters")
    rep.code({r.label: r.stats for r in runs})
    return rep.write(out_dir / "report.html")
