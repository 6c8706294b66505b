"""How fast polymodal starts: each command in a fresh interpreter, median wall time of N runs.

- ``python -c pass`` (Python's own start), ``import torch``, ``import polymodal`` (which
  loads its public names on first use, so also with a model, the trainer and a batch
  loaded: ``pm.MVAE, pm.Trainer, pm.Batch``);
- ``python -m polymodal --help``;
- the first training step: ``import polymodal``, a small model, one epoch on arrays (the
  optimizer's first step included, where torch's wrappers would import ``torch._dynamo``).

Reports each median and the differences the targets read (``import polymodal``
beyond ``import torch``; ``--help`` beyond Python's start).

    python -m benchmarks.start [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks.results import Run, record_options

FIT = (
    "import numpy as np, polymodal as pm\n"
    "schema = pm.Schema([pm.Modality('a', (2,)), pm.Modality('b', (1,))])\n"
    "batch = pm.Batch.from_data(schema, {'a': np.ones((4, 2)), 'b': np.array([[1.0], [np.nan], [0.0], [2.0]])})\n"
    "pm.Trainer(pm.MVAE(schema, hidden=(4,)), epochs=1, progress=False).fit(batch)\n"
)

COMMANDS = {
    "python": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import polymodal": ["-c", "import polymodal"],
    "import polymodal, its models": ["-c", "import polymodal as pm; pm.MVAE, pm.Trainer, pm.Batch"],
    "polymodal --help": ["-m", "polymodal", "--help"],
    "first fit": ["-c", FIT],
}


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = record_options(parser).parse_args()
    run = Run("start", args, title="How fast polymodal starts",
              description="Each command in a fresh interpreter, interleaved; the median wall time of the runs.")
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):  # interleaved, so that a busy moment spreads over every command
        for name, command in COMMANDS.items():
            times[name].append(wall(command))
    table = "start-up"
    run.table(table, f"median wall time (s) of {args.runs} runs")
    m = {name: statistics.median(t) for name, t in times.items()}
    for name, median in m.items():
        run.add(table, row=name, column="median (s)", value=median)
    differences = {"polymodal's models beyond import torch": m["import polymodal, its models"] - m["import torch"],
                   "--help beyond python": m["polymodal --help"] - m["python"],
                   "first fit beyond loading the models": m["first fit"] - m["import polymodal, its models"]}
    for name, difference in differences.items():
        run.add(table, row=name, column="median (s)", value=difference)
    run.save()


if __name__ == "__main__":
    main()
