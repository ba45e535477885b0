"""The docs site shows every table and code block whole at 1280 px: measured in headless Chromium.

The site is built with mkdocs into tmp_path; each page is copied with a small probe script appended, which, once
the page has laid out, records every table and code block wider than the content column (or needing a horizontal
scroll) into an attribute of <body>; Chromium's --dump-dom prints the DOM after the script ran. Debian's `chromium`
package provides the browser (`make test` installs it when it is missing; tools/ensure_chromium.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ("index.html", "findings/index.html", "results/index.html", "byon/index.html")
PROBE = """
<script>
window.addEventListener('load', () => {
  const content = document.querySelector('.md-content__inner') || document.body;
  const limit = content.getBoundingClientRect().right + 1;
  const bad = [];
  content.querySelectorAll('table, pre').forEach((el) => {
    const box = el.getBoundingClientRect();
    const scroller = el.tagName === 'PRE' ? el.querySelector('code') || el : el.parentElement;
    const scrolls = scroller.scrollWidth > scroller.clientWidth + 1;
    if (box.right > limit || scrolls) {
      bad.push(el.tagName + ' ' + Math.round(box.width) + 'px: ' + el.textContent.trim().slice(0, 60));
    }
  });
  const figures = [];
  content.querySelectorAll('img').forEach((img) => figures.push(Math.round(img.getBoundingClientRect().width)));
  document.body.setAttribute('data-overflow', JSON.stringify(bad));
  document.body.setAttribute('data-figures', JSON.stringify(figures));
});
</script>
"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: `make test` installs it (tools/ensure_chromium.sh), or apt-get install chromium"
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--quiet", "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_tables_and_code_blocks_fit_at_1280px(site, page, tmp_path):
    source = site / page
    probed = source.with_name(source.stem + ".probe.html")
    probed.write_text(source.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2200",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-overflow="([^"]*)"', done.stdout)
    assert found, f"the probe did not run on {page}: {done.stderr[-500:]}"
    overflowing = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert not overflowing, f"{page}: {len(overflowing)} tables or code blocks wider than the page: {overflowing}"
    figures = json.loads(re.search(r'data-figures="([^"]*)"', done.stdout).group(1).replace("&quot;", '"'))
    assert all(width >= 700 or width == 0 for width in figures if width), f"{page}: figures squeezed: {figures}"
