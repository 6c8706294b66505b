"""The documentation site: it builds with ``mkdocs build --strict`` (the ``docs`` extra), every
code block of its pages runs as written, and headless Chromium renders its pages."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium
from matplotlib.image import imread
from pageblocks import blocks, run_blocks

ROOT = Path(__file__).parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md"))
MKDOCS = importlib.util.find_spec("mkdocs") is not None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not MKDOCS:
        pytest.skip("needs the docs extra: pip install -e '.[docs]'")
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_the_site_builds_strictly_with_every_page_and_the_api_reference(site):
    built = {p.relative_to(site).with_suffix("") for p in site.rglob("*.html")}
    assert {p.relative_to(ROOT / "docs").with_suffix("") for p in PAGES} <= built
    api = (site / "api.html").read_text()
    assert 'id="polymodal.imputer.Imputer"' in api and 'id="polymodal.models.base.Model.impute"' in api


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("page", [p for p in PAGES if any(not why for _, _, why in blocks(p))],
                         ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_every_block_of_a_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_blocks(page, tmp_path)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (.ci/run installs it)")
@pytest.mark.parametrize("page, text", [("index.html", "incomplete multimodal data"),
                                        ("benchmarks/index.html", "linear interpolation")])
def test_chromium_renders_the_pages(site, tmp_path, page, text):
    shot = tmp_path / "page.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", (site / page).as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.std() > 0.05  # a rendered page, not a blank one
    dom = chromium(tmp_path, "--dump-dom", (site / page).as_uri()).stdout
    assert text in dom and "md-header" in dom  # the Material theme's header
