"""Every ```python and ```bash block of README.md runs as written, top to bottom.

Python blocks share one namespace, in order, as a reader pasting them into one session
would; bash blocks run in the same empty folder with this interpreter's ``bin`` (where
``polymodal`` is installed) first on PATH. A block that cannot run here is preceded by an
HTML comment ``<!-- not run by tests/test_readme.py: why -->``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- not run by tests/test_readme.py: (?P<why>[^>]+) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```",
                   re.S)


def blocks():
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(README.read_text())]


def test_the_readme_has_runnable_blocks_and_says_why_others_do_not_run():
    found = blocks()
    assert sum(lang == "python" for lang, _, why in found if not why) >= 4
    assert sum(lang == "bash" for lang, _, why in found if not why) >= 4
    assert all(len(why.split()) >= 4 for _, _, why in found if why)


@pytest.mark.filterwarnings("ignore")
def test_make_chooses_the_torch_build_and_the_demo_installs_no_development_tools(tmp_path):
    def plan(*args):
        return subprocess.run(["make", "-n", "-C", str(README.parent), *args, f"VENV={tmp_path / 'venv'}"],
                              capture_output=True, text=True, check=True).stdout

    demo = plan("demo")
    assert "pip install -e .\n" in demo and "[dev]" not in demo and "--index-url" not in demo
    cpu = "https://download.pytorch.org/whl/cpu"
    assert f"pip install torch==2.13.0 --index-url {cpu}" in plan("install", f"TORCH_INDEX={cpu}")
    assert f"make install TORCH_INDEX={cpu}" in README.read_text()
    assert 'pip install -e ".[dev]"' in plan("test")


def test_no_block_writes_over_an_earlier_steps_file():
    """Each file or folder a command writes (`-o`, `--out`, `--save`, `> FILE`) is written by one command only."""
    code = "\n".join(code for lang, code, why in blocks() if lang == "bash" and not why)
    written = re.findall(r"(?:-o|--out|--save|>)\s+([\w./-]+)", code)
    assert len(written) >= 8 and len(written) == len(set(written)), written


def test_every_readme_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {}
    for i, (lang, code, why) in enumerate(blocks()):
        if why:
            continue
        if lang == "python":
            exec(compile(code, f"README.md block {i}", "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"README block {i} failed:\n{code}\n{result.stderr[-3000:]}"
    filled = (tmp_path / "wine_filled.csv").read_text()
    assert ",," not in filled and (tmp_path / "runs" / "wine" / "report.html").is_file()
    scores = json.loads((tmp_path / "runs" / "wine" / "scores.json").read_text())
    numeric = [s["nrmse"] for s in scores.values() if "nrmse" in s]
    assert sum(numeric) / len(numeric) < 0.95  # README: 0.85, where the column mean scores 1.01
    assert (tmp_path / "runs" / "ddp" / "model" / "config.json").is_file()
    assert (tmp_path / "waves_filled.csv").is_file()
