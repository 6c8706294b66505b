"""The benchmarks' shared table: rows of named cells, each a list of values over seeds."""

from __future__ import annotations

import statistics

Rows = dict[str, dict[str, list[float]]]


def add(rows: Rows, name: str, column: str, value: float) -> None:
    rows.setdefault(name, {}).setdefault(column, []).append(float(value))


def summary(values: list[float]) -> str:
    """``mean ± SD`` over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.3g}"


def markdown(rows: Rows) -> str:
    """The rows as a Markdown table, a column per distinct cell name in order of appearance."""
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(summary(row[c]) if c in row else "" for c in columns) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)
