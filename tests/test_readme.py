"""Every ```python and ```bash block of README.md runs as written, top to bottom, in an empty folder
(``tests/pageblocks.py`` says how blocks run and how a block that cannot run here says why)."""

import subprocess
from pathlib import Path

import pytest
from pageblocks import blocks, run_blocks

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_has_runnable_blocks_and_says_why_others_do_not_run():
    found = blocks(README)
    assert sum(lang == "python" for lang, _, why in found if not why) >= 2
    assert sum(lang == "bash" for lang, _, why in found if not why) >= 1
    assert all(len(why.split()) >= 4 for _, _, why in found if why)


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


def test_make_chooses_the_torch_build_and_the_demo_installs_no_development_tools(tmp_path):
    def plan(*args):
        return subprocess.run(["make", "-n", "-C", str(README.parent), *args, f"VENV={tmp_path / 'venv'}"],
                              capture_output=True, text=True, check=True).stdout

    demo = plan("demo")
    assert "pip install -e .\n" in demo and "[dev" not in demo and "--index-url" not in demo
    cpu = "https://download.pytorch.org/whl/cpu"
    assert f"pip install torch==2.13.0 --index-url {cpu}" in plan("install", f"TORCH_INDEX={cpu}")
    assert f"make install TORCH_INDEX={cpu}" in README.read_text()
    assert 'pip install -e ".[dev,docs]"' in plan("test")


@pytest.mark.filterwarnings("ignore")
def test_every_readme_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_blocks(README, tmp_path)
    filled = (tmp_path / "wine_filled.csv").read_text()
    assert ",," not in filled and filled == (tmp_path / "again_filled.csv").read_text()
