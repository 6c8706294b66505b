"""The documentation site: it builds with ``mkdocs build --strict`` (the ``docs`` extra), every
code block of its pages runs as written, and headless Chromium renders its pages."""

import importlib.util
import json
import os
import re
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


def cli_walk(folder):
    assert ",," not in (folder / "wine_filled.csv").read_text() and (folder / "runs" / "wine" / "report.html").is_file()
    scores = json.loads((folder / "runs" / "wine" / "scores.json").read_text())
    numeric = [s["nrmse"] for s in scores.values() if "nrmse" in s]
    assert sum(numeric) / len(numeric) < 0.95  # the page says 0.85, where the column mean scores 1.01


# What a page's blocks must have made, beyond running without an error.
MADE = {
    "cli.md": cli_walk,
    "guides/sequences.md": lambda folder: (folder / "waves_filled.csv").is_file() or pytest.fail("no waves_filled.csv"),
    "guides/torchrun.md": lambda folder: (folder / "runs" / "ddp" / "model" / "config.json").is_file()
    or pytest.fail("the torchrun run saved no model"),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("page", [p for p in PAGES if any(not why for _, _, why in blocks(p))],
                         ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_every_block_of_a_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_blocks(page, tmp_path)
    MADE.get(str(page.relative_to(ROOT / "docs")), lambda folder: None)(tmp_path)


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_no_block_writes_over_an_earlier_steps_file(page):
    """Each file or folder a page's commands write (`-o`, `--out`, `--save`, `> FILE`) is written by one command only."""
    code = "\n".join(code for lang, code, why in blocks(page) if lang == "bash" and not why)
    written = re.findall(r"(?:-o|--out|--save|>)\s+([\w./-]+)", code)
    assert len(written) == len(set(written)), written


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
