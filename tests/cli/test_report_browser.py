"""The run report in a real browser: headless Debian chromium opens ``report.html`` offline,
decodes every plot and logs nothing to the console.

Each detector is first shown to catch a broken page (a script error, an undecodable
image), so a pass means something. Skipped where chromium is absent; ``make test``
installs it when run as root with apt.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from epcsim.cli import app

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (`make browser` installs it as root and runs this)",
    ),
]

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-probe",
    imgs.length + "/" + ok.length + "/" + ok.map((i) => i.naturalWidth).join(","));
});
</script>"""


def _chromium(tmp_path: Path, url: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *args,
        url.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _console(stderr: str) -> list[str]:
    """Console messages and uncaught errors of the page (the report has no script, so any
    console output at all is a problem)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def _probe(tmp_path: Path, html: str) -> tuple[int, int, list[int]]:
    page = tmp_path / f"probe-{len(list(tmp_path.iterdir()))}.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    p = _chromium(tmp_path, page, "--dump-dom")
    m = re.search(r'data-probe="(\d+)/(\d+)/([\d,]*)"', p.stdout)
    assert m, p.stdout[-500:] + p.stderr[-2000:]
    widths = [int(w) for w in m.group(3).split(",") if w]
    return int(m.group(1)), int(m.group(2)), widths


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    r = CliRunner().invoke(app, ["run", "examples/edmm_grow_trim.toml", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out / "report.html"


def test_detectors_catch_a_broken_page(tmp_path):
    broken_img = '<img src="data:image/png;base64,AAAA">'
    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<html><body>{broken_img}<script>throw new Error("boom")</script></body></html>'
    )
    p = _chromium(tmp_path, bad, "--dump-dom")
    assert any("boom" in ln for ln in _console(p.stderr))
    total, decoded, _ = _probe(tmp_path, f"<html><body>{broken_img}</body></html>")
    assert (total, decoded) == (1, 0)


def test_report_renders_its_plots_without_console_errors(tmp_path, report):
    p = _chromium(tmp_path, report, "--dump-dom")
    assert p.returncode == 0, p.stderr[-2000:]
    assert _console(p.stderr) == []
    dom = p.stdout
    assert len(re.findall(r"<img\b", dom)) >= 5 and "Counters" in dom
    total, decoded, widths = _probe(tmp_path, report.read_text())
    assert total >= 5 and decoded == total
    assert all(w > 300 for w in widths)  # real figures, not broken-image icons


def test_report_screenshot_is_not_blank(tmp_path, report):
    img = pytest.importorskip("matplotlib.image")
    shot = tmp_path / "shot.png"
    p = _chromium(tmp_path, report, f"--screenshot={shot}", "--window-size=1200,2400")
    assert shot.exists(), p.stderr[-2000:]
    px = img.imread(shot)[..., :3]
    ink = (px < 0.9).any(axis=-1).mean()
    assert ink > 0.03  # text, tables and plots, not an empty page
    # matplotlib's first colour (#1f77b4) is on the page: a plot was drawn
    blue = (abs(px[..., 0] - 0x1F / 255) < 0.08) & (abs(px[..., 2] - 0xB4 / 255) < 0.08)
    assert blue.sum() > 200
