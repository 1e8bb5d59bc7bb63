"""The report of ``epcsim replay`` over several EPC sizes and policies: the miss-ratio curve.

One line per policy, one colour per policy in the plot and the table order; the dashed
vertical line is the trace's footprint (above it every page fits and only pages the build
wrote back can miss).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from epcsim.report.html import Report

_MIB = 2**20


def _figure(res):
    fig, ax = plt.subplots(figsize=(9, 4))
    policies = list(dict.fromkeys(p.policy for p in res.points))
    for i, policy in enumerate(policies):
        pts = [p for p in res.points if p.policy == policy]
        ax.plot(
            [p.epc_bytes / _MIB for p in pts],
            [p.miss_ratio for p in pts],
            "o-",
            color=f"C{i % 10}",
            label=policy,
            linewidth=1.4,
        )
    foot = res.plan.footprint_pages * 4096 / _MIB
    ax.axvline(foot, color="black", linestyle="--", linewidth=1, label="footprint")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("EPC size (MiB)")
    ax.set_ylabel("miss ratio (ELDU per access)")
    ax.legend(fontsize=8)
    return fig


def write_mrc_report(res, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` for an ``MrcResult``."""
    plan = res.plan
    rep = Report(f"epcsim — miss-ratio curve of {plan.title}")
    rep.paragraph(
        f"The same replay (seed {plan.seed}, {plan.planned_accesses():,} accesses, footprint"
        f" {plan.footprint_pages:,} pages) at each EPC size for each reclaim policy. A miss is"
        " an access whose page had to be loaded back from the backing store (ELDU); lru is"
        " the kernel's policy, the others are named deviations."
    )
    rep.heading("Miss-ratio curve")
    rep.figure(_figure(res), "Miss ratio against EPC size, one line per reclaim policy")
    rep.table(
        [
            "policy",
            "EPC (MiB)",
            "EPC pages",
            "accesses",
            "misses (ELDU)",
            "miss ratio",
            "faults/access",
            "run time (ms)",
            "checks",
        ],
        [
            [
                p.policy,
                p.epc_bytes / _MIB,
                p.epc_pages,
                p.accesses,
                p.misses,
                p.miss_ratio,
                p.fault_rate,
                p.run_ns / 1e6,
                "ok" if p.ok else "; ".join(p.failures),
            ]
            for p in res.points
        ],
    )
    rep.heading("Configuration used")
    rep.code(plan.config)
    return rep.write(Path(out_dir) / "report.html")
