"""Run the ```python and ```bash blocks of a Markdown page as a reader would, top to bottom.

Python blocks share one namespace, in order, as a reader pasting them into one session
would; bash blocks run in the same folder with this interpreter's ``bin`` (where
``polymodal`` is installed) first on PATH. A block that cannot run here is preceded by an
HTML comment ``<!-- not run by tests: why -->``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- not run by tests: (?P<why>[^>]+) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S)


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """``(language, code, why it is not run or None)`` for each block of the page."""
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(page.read_text())]


def run_blocks(page: Path, folder: Path) -> None:
    """Run every runnable block of ``page`` in ``folder`` (the caller makes it the working directory)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {}
    for i, (lang, code, why) in enumerate(blocks(page)):
        if why:
            continue
        if lang == "python":
            exec(compile(code, f"{page.name} block {i}", "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-e", "-c", code], cwd=folder, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"{page.name} block {i} failed:\n{code}\n{result.stderr[-3000:]}"
