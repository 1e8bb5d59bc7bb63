"""``--timeline-csv PATH``: a run's sampled timeline as CSV, for a spreadsheet or pandas.

One row per sample (the sampler's points, ``epcsim.scenario.sampler``): ``t_ns`` (simulated
time), ``epc_free`` (free EPC pages), per enclave ``resident:NAME`` and ``swapped:NAME``
(pages in the EPC and in backing), then the cumulative counters (``page_faults``, ``ewb``,
``eldu`` ...; a per-interval rate is the difference of two rows).
"""

from __future__ import annotations

import csv
from pathlib import Path


def write_timeline_csv(res, path: Path) -> Path:
    s = res.samples
    if s is None:
        raise ValueError("timeline: the run was made without sampling")
    names = list(s["resident"])
    counters = list(s["counters"])
    header = [
        "t_ns",
        "epc_free",
        *(f"resident:{n}" for n in names),
        *(f"swapped:{n}" for n in names),
        *counters,
    ]
    cols = [
        s["t"],
        s["free"],
        *(s["resident"][n] for n in names),
        *(s["swapped"][n] for n in names),
        *(s["counters"][c] for c in counters),
    ]
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(s["t"])):
            w.writerow([int(c[i]) for c in cols])
    tmp.replace(p)  # a reader never sees half a file
    return p
