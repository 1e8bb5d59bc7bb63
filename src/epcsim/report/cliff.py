"""The report of ``epcsim cliff``: slowdown and fault rate against EPC size.

The vertical line is the footprint; the shaded side is oversubscribed: there the EPC cannot
hold every page the enclaves may use. Whether the run falls off the cliff there depends on
how much of the footprint is the working set (a scan falls at once, a skewed Zipf workload
later).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from epcsim.report.html import Report

_MIB = 2**20


def _figure(res):
    xs = [p.epc_bytes / _MIB for p in res.points]
    foot = res.footprint_pages * 4096 / _MIB
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.4), sharex=True)
    ax1.plot(xs, [p.slowdown for p in res.points], "o-", color="C3", linewidth=1.4)
    ax1.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax1.set_ylabel("slowdown vs all-resident")
    ax1.set_yscale("log")
    ax2.plot(xs, [p.fault_rate for p in res.points], "o-", label="page faults per access")
    ax2.plot(xs, [p.eldu_per_access for p in res.points], "s--", label="ELDU per access")
    ax2.set_ylabel("per access")
    ax2.set_xlabel("EPC size (MiB)")
    for ax in (ax1, ax2):
        ax.axvline(foot, color="black", linestyle="--", linewidth=1)
        ax.axvspan(min(xs[0], foot), foot, color="C3", alpha=0.06, linewidth=0)
    ax1.annotate(
        f"footprint {foot:,.1f} MiB",
        xy=(foot, 1.0),
        xytext=(5, 10),
        textcoords="offset points",
        fontsize=8,
    )
    ax2.legend(fontsize=8)
    return fig


def write_cliff_report(res, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` for a ``CliffResult``."""
    plan = res.plan
    rep = Report(f"epcsim cliff — {plan.title}")
    if plan.description:
        rep.paragraph(plan.description)
    rep.paragraph(
        f"The same workload (seed {plan.seed}) at {len(res.points)} EPC sizes. The footprint is"
        f" {res.footprint_pages:,} pages ({res.footprint_pages * 4096 / _MIB:,.1f} MiB: SECS,"
        " TCS and every region). Slowdown is the run time divided by the run time of an"
        f" all-resident run ({res.baseline_run_ns / 1e6:,.3f} ms)."
    )
    rep.heading("The cliff")
    rep.figure(_figure(res), "Slowdown (log scale) and fault rates against EPC size")
    rep.table(
        [
            "EPC (MiB)",
            "EPC pages",
            "run time (ms)",
            "slowdown",
            "faults/access",
            "ELDU/access",
            "EWB",
            "checks",
        ],
        [
            [
                p.epc_bytes / _MIB,
                p.epc_pages,
                p.run_ns / 1e6,
                p.slowdown,
                p.fault_rate,
                p.eldu_per_access,
                p.ewb,
                "ok" if p.ok else "; ".join(p.failures),
            ]
            for p in res.points
        ],
    )
    rep.heading("Configuration used")
    rep.code(plan.source if plan.source else plan.config)
    return rep.write(Path(out_dir) / "report.html")
