"""The ``epcsim demo`` report: the race and its fix, plus where the race flips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from epcsim.demo import SeedRun
from epcsim.engine.costs import Costs
from epcsim.report.html import Report

TABLE_COLUMNS = [
    ("direct reclaim", lambda s: s["direct_reclaim"]),
    ("heap pages", lambda s: s["length_pages"]),
    ("pages done by 1st call", lambda s: s["first_call_count_pages"]),
    ("1st call errno", lambda s: s["first_call_errno"] or "ok"),
    ("-EAGAIN returns", lambda s: s["eagain_returns"]),
    ("retries to finish", lambda s: s["calls_to_complete"] - 2),
    ("simulated time (ms)", lambda s: s["simulated_ns"] / 1e6),
    ("EWB", lambda s: s["ewb"]),
    ("ELDU", lambda s: s["eldu"]),
    ("ksgxd wakeups", lambda s: s["ksgxd_wakeups"]),
    ("direct reclaim calls", lambda s: s["direct_reclaim_calls"]),
]


def table_rows(runs: list[SeedRun]) -> tuple[list[str], list[list[Any]]]:
    header = [c for c, _ in TABLE_COLUMNS]
    rows = [[f(r.summary()) for _, f in TABLE_COLUMNS] for r in runs]
    return header, rows


def write_flip_section(rep: Report, flips: list[dict]) -> None:
    rep.heading("Where does the race flip?")
    rep.paragraph(
        "Without direct reclaim, does the first MODIFY_TYPES call cover the whole range? Rows "
        "are CPU counts, columns the EWB cost relative to ELDU (defaults: EWB 9 µs, ELDU "
        "10 µs). A cell shows the pages the first call completed, or 'all'."
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
        f0 = cells[0]
        rep.paragraph(
            f"Victims from the {layout}: EPC {f0['epc']}, heap {f0['heap_factor']:g}x "
            f"EPC ({f0['length_pages']:,} pages), neighbour "
            f"{f0['neighbour_factor']:g}x EPC."
        )
        rep.table(["CPUs"] + [f"EWB/ELDU = {r:g}" for r in ratios], rows)
    rep.paragraph(
        "Why: the ioctl holds encl->lock for each page (ELDU, EMODT, ETRACK), and ksgxd needs "
        "the same mutex three times per page it reclaims from that enclave (backing + "
        "BEING_RECLAIMED, EBLOCK, EWB). The two alternate on the lock, so ksgxd frees about one "
        "page per three the ioctl consumes whatever EWB costs: with the enclave's own pages as "
        "victims the race is lost on any cost ratio. When the victims belong to another "
        "enclave there is no shared lock, and the race turns on the per-page cost of EWB "
        "against ELDU + EMODT + ETRACK. On one CPU ksgxd runs only when the ioctl's scheduler "
        "slice ends, which comes later than the free pages run out.",
        cls="note",
    )


def write_demo_report(runs: list[SeedRun], flips: list[dict] | None, out_dir: Path) -> Path:
    rep = Report("epcsim demo — EDMM page removal on an oversubscribed EPC")
    cfg = runs[0].config
    rep.paragraph(
        "The seed scenario: an enclave whose heap is "
        f"{cfg.heap_factor:g}x the EPC ({runs[0].length_pages:,} pages) is built with "
        "ADD_PAGES, then SGX_IOC_ENCLAVE_MODIFY_TYPES(TRIM) covers the whole heap, the enclave "
        "EACCEPTs every page, and SGX_IOC_ENCLAVE_REMOVE_PAGES removes them. A userspace retry "
        "loop continues from offset + count after -EAGAIN. Run once without and once with "
        "sgx_reclaim_direct()."
    )
    rep.heading("Outcome")
    header, rows = table_rows(runs)
    rep.table(header, rows)

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for r in runs:
        t, v = r.free_timeline
        label = "direct reclaim" if r.config.direct_reclaim else "no direct reclaim"
        ax.step([x / 1e6 for x in t], v, where="post", label=label, linewidth=1)
    ax.axhline(32, color="grey", linestyle=":", linewidth=1, label="SGX_NR_LOW_PAGES")
    ax.axhline(64, color="grey", linestyle="--", linewidth=1, label="SGX_NR_HIGH_PAGES")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("free EPC pages")
    ax.set_yscale("symlog", linthresh=100)
    ax.legend(loc="upper right", fontsize=8)
    rep.figure(fig, "Free EPC pages over simulated time (symlog scale)")

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for r in runs:
        label = "direct reclaim" if r.config.direct_reclaim else "no direct reclaim"
        for name, op, style in (("MODIFY_TYPES", r.modify, "-"), ("REMOVE_PAGES", r.remove, "--")):
            if op is not None and op.progress:
                ax.plot(
                    [t / 1e6 for t, _ in op.progress],
                    [p for _, p in op.progress],
                    style,
                    label=f"{name}, {label}",
                    linewidth=1.2,
                )
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("pages done")
    ax.legend(fontsize=8)
    rep.figure(fig, "Progress of the page-range operations (each -EAGAIN is a flat step)")

    fig, ax = plt.subplots(figsize=(9, 3.2))
    for r in runs:
        label = "direct reclaim" if r.config.direct_reclaim else "no direct reclaim"
        times = sorted(r.modify.eagain_at + (r.remove.eagain_at if r.remove else []))
        ax.step(
            [0.0] + [t / 1e6 for t in times],
            range(len(times) + 1),
            where="post",
            label=f"{label}: {len(times):,} -EAGAIN returns",
        )
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("-EAGAIN returns (cumulative)")
    ax.legend(fontsize=8)
    rep.figure(
        fig,
        "Every -EAGAIN the runtime's retry loop saw: without direct reclaim the "
        "operation advances a page or so per call once ksgxd falls behind",
    )

    if flips:
        write_flip_section(rep, flips)

    rep.heading("Cost model")
    rep.paragraph(
        "Costs marked [ASSUMED] in epcsim.engine.costs have no public per-leaf "
        "measurement; they are this model's assumptions:",
        cls="note",
    )
    rep.code({k: v for k, v in sorted(Costs().assumed().items())})
    rep.heading("Configuration and counters")
    rep.code({("direct" if r.config.direct_reclaim else "no_direct"): r.stats for r in runs})
    return rep.write(out_dir / "report.html")
