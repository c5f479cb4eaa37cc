"""report.html in a real browser (Debian's chromium, headless) at a phone's width (412 px) and a
desktop's (1280 px): the page never scrolls sideways, no chart, heading or table box runs past
the window's edge (wide tables scroll inside their own box), and every chart is shown.

The measurement runs in the page: a copy of report.html gets a script that checks the layout on
every frame and paints an 8x8 px square at the top left, green when nothing overflows, red when
something does; the test reads that pixel from chromium's screenshot. The report itself is
screenshotted untouched too (the committed pictures: profiles/reports/reference-vs-emulator/).
.ci/run installs chromium when the machine lacks it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from swiftformer_qnn.report import make_report

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (412, 1280)
OK, OVERFLOW = (0, 255, 0), (255, 0, 0)

PROBE = """
<div id="layout-probe" style="position:fixed;top:0;left:0;width:8px;height:8px;z-index:99999;background:#0000ff"></div>
<script>
function layoutProbe() {
  const w = document.documentElement.clientWidth;
  let bad = document.documentElement.scrollWidth > w;
  for (const el of document.querySelectorAll("img, .scroll, h1, h2, h3, p, li")) {
    if (el.getBoundingClientRect().right > w + 0.5) bad = true;
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.complete || img.naturalWidth === 0 || img.getBoundingClientRect().width < 50) bad = true;
  }
  document.getElementById("layout-probe").style.background = bad ? "#ff0000" : "#00ff00";
  requestAnimationFrame(layoutProbe);
}
layoutProbe();
</script>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is needed for the report's layout test: apt-get install -y chromium (.ci/run does)"
    return found


def screenshot(html: Path, png: Path, width: int, height: int) -> Image.Image:
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return Image.open(png).convert("RGB")


def probe_colour(report_html: Path, width: int, tmp_path: Path) -> tuple[int, int, int]:
    probed = tmp_path / f"probed-{width}.html"
    probed.write_text(report_html.read_text().replace("</body>", PROBE + "</body>"))
    image = screenshot(probed, tmp_path / f"probe-{width}.png", width, 900)
    assert image.width == width
    return image.getpixel((3, 3))


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    make_report([REPO / "profiles" / "reference", REPO / "profiles" / "emulator"], out=out)
    return out / "report.html"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_reads_at_phone_and_desktop_width(report_page, width, tmp_path):
    colour = probe_colour(report_page, width, tmp_path)
    assert colour == OK, f"report.html overflows at {width} px (probe pixel {colour}): see {tmp_path}"
    shot = screenshot(report_page, tmp_path / f"report-{width}.png", width, 1600)
    assert shot.size == (width, 1600)


def test_the_probe_sees_an_overflow(tmp_path):
    """The check can fail: a page with a wide unboxed table and a fixed-width image overflows."""
    page = tmp_path / "wide.html"
    page.write_text('<!doctype html><html><head><meta name="viewport" content="width=device-width"></head><body>'
                    "<table><tr>" + "<td>wide-cell-wide-cell</td>" * 40 + "</tr></table></body></html>")
    assert probe_colour(page, 412, tmp_path) == OVERFLOW
